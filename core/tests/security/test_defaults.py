"""What the embedded defaults keep on disk, against a second local user (issue #16).

Each default runs as the test's user (root in CI; the checks are by owner, so
root is an ordinary victim here) with no XDG_* settings and ``shared`` as its
temporary directory; the attacker is a real second user acting through setpriv.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from micro.auth.jwt import JWTAuth
from micro.auth.options import JWTAuthOptions
from micro.errors import BackendUnavailable, InvalidOption
from micro.registry import LocalRegistryOptions, Node, Service
from micro.registry.local import LocalRegistry
from micro.runtime.base import RuntimeService, Status
from micro.runtime.local import LocalRuntime
from micro.runtime.options import RuntimeOptions
from micro.store import Record, SQLiteStoreOptions
from micro.store.sqlite import SQLiteStore
from micro.sync.file import FileSync

from .conftest import Attacker

SIDE = ("-wal", "-shm", "-journal")


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def with_side_files(db: Path) -> Iterator[Path]:
    yield db
    for suffix in SIDE:
        side = db.with_name(db.name + suffix)
        if side.exists():
            yield side


def assert_private(attacker: Attacker, directory: Path, files: list[Path]) -> None:
    """``directory`` is 0700 and each file 0600, and the attacker can neither list, read nor write them."""
    assert mode(directory) == 0o700, directory
    assert not attacker.can_list(directory)
    for path in files:
        assert mode(path) == 0o600, path
        assert os.lstat(path).st_uid == os.getuid()
        assert not attacker.can_read(path), path
        assert not attacker.can_write(path), path


def empty(directory: Path) -> bool:
    """Whether ``directory`` has no entries (the attacker's target got nothing)."""
    return not any(directory.iterdir())


def everything_under(root: Path) -> tuple[list[Path], list[Path]]:
    directories, files = [root], []
    for base, dirs, names in os.walk(root):
        directories += [Path(base) / d for d in dirs]
        files += [Path(base) / n for n in names]
    return directories, files


@pytest.fixture
def exposed(shared: Path) -> Path:
    """A directory of the victim's that everyone can read: where a followed symlink would expose files."""
    path = shared / "victim-public"
    path.mkdir()
    path.chmod(0o755)
    return path


# -- local registry -----------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["victim's readable directory", "attacker's directory"])
async def test_registry_does_not_follow_a_symlink_planted_at_its_default_directory(
    attacker: Attacker, shared: Path, exposed: Path, target: Path, victim_env: dict[str, str], where: str
) -> None:
    squatted = shared / f"micro-{os.getuid()}"
    link_to = exposed if where.startswith("victim") else target
    attacker.ok("ln", "-s", link_to, squatted)
    registry = LocalRegistry()
    async with registry:
        await registry.register(Service("secret.svc", nodes=[Node("n1", "127.0.0.1:1")]))
        assert [s.name for s in await registry.list_services()] == ["secret.svc"]
        assert empty(link_to)
        assert not registry.path.is_relative_to(squatted)
        assert registry.path.is_relative_to(victim_env["HOME"])
        files = list(with_side_files(registry.path))
        assert {p.name for p in files} >= {"registry.db", "registry.db-wal", "registry.db-shm"}
        assert_private(attacker, registry.path.parent, files)
    assert empty(link_to)


async def test_registry_precreated_default_directory_is_not_a_denial_of_service(
    attacker: Attacker, shared: Path, victim_env: dict[str, str]
) -> None:
    squatted = shared / f"micro-{os.getuid()}"
    attacker.ok("mkdir", "-m", "777", squatted)
    first, second = LocalRegistry(), LocalRegistry()
    async with first, second:
        await first.register(Service("found.svc", nodes=[Node("n1", "127.0.0.1:1")]))
        # Two processes of the user (two instances here) still find each other on the fallback.
        assert [s.name for s in await second.get_service("found.svc")] == ["found.svc"]
    assert first.path == second.path
    assert empty(squatted)


async def test_registry_files_are_private_in_the_default_directory(
    attacker: Attacker, shared: Path, victim_env: dict[str, str]
) -> None:
    registry = LocalRegistry()
    async with registry:
        await registry.register(Service("private.svc", nodes=[Node("n1", "127.0.0.1:1")]))
        assert registry.path.parent == shared / f"micro-{os.getuid()}"
        assert_private(attacker, registry.path.parent, list(with_side_files(registry.path)))


async def test_registry_configured_in_a_shared_directory_refuses_a_planted_symlink(
    attacker: Attacker, shared: Path, target: Path
) -> None:
    attacker.ok("ln", "-s", target / "stolen.db", shared / "app-registry.db")
    registry = LocalRegistry(LocalRegistryOptions(path=str(shared / "app-registry.db")))
    with pytest.raises(BackendUnavailable, match="symlink"):
        await registry.start()
    await registry.close()
    assert empty(target)


# -- sqlite store -------------------------------------------------------------------------------


async def test_store_files_are_private_in_the_default_directory(
    attacker: Attacker, home: Path, victim_env: dict[str, str]
) -> None:
    store = SQLiteStore()
    async with store:
        await store.write(Record("card", b"4111-1111"))
        assert store.path is not None
        path = Path(store.path)
        assert path == home / ".local" / "share" / "micro" / "store.db"
        files = list(with_side_files(path))
        assert {p.name for p in files} >= {"store.db", "store.db-wal", "store.db-shm"}
        assert_private(attacker, path.parent, files)
        # Every directory the store made on the way is private too, so nothing below home is reachable.
        for made in (home / ".local", home / ".local" / "share"):
            assert mode(made) == 0o700


async def test_store_configured_in_an_open_directory_keeps_its_files_private(attacker: Attacker, exposed: Path) -> None:
    store = SQLiteStore(SQLiteStoreOptions(path=str(exposed / "app.db")))
    async with store:
        await store.write(Record("card", b"4111-1111"))
        files = list(with_side_files(exposed / "app.db"))
        assert len(files) >= 3
        for path in files:
            assert mode(path) == 0o600
            assert not attacker.can_read(path)
            assert not attacker.can_write(path)


@pytest.mark.parametrize("planted", ["app.db", "app.db-wal", "app.db-shm"])
async def test_store_configured_in_a_shared_directory_refuses_planted_symlinks(
    attacker: Attacker, shared: Path, target: Path, planted: str
) -> None:
    attacker.ok("ln", "-s", target / "stolen", shared / planted)
    store = SQLiteStore(SQLiteStoreOptions(path=str(shared / "app.db")))
    with pytest.raises(BackendUnavailable, match=r"symlink.*MICRO_STORE_PATH"):
        await store.start()
    assert empty(target)


async def test_store_refuses_a_database_file_of_another_user(attacker: Attacker, shared: Path) -> None:
    attacker.ok("touch", shared / "theirs.db")
    store = SQLiteStore(SQLiteStoreOptions(path=str(shared / "theirs.db")))
    with pytest.raises(BackendUnavailable, match="belongs to uid"):
        await store.start()


# -- file sync ----------------------------------------------------------------------------------


async def test_sync_does_not_follow_a_symlink_planted_at_its_default_directory(
    attacker: Attacker, shared: Path, exposed: Path, victim_env: dict[str, str]
) -> None:
    squatted = shared / f"micro-{os.getuid()}"
    attacker.ok("ln", "-s", exposed, squatted)
    sync = FileSync()
    async with sync:
        assert await sync.try_lock("payroll")
        assert sync.path is not None
        path = Path(sync.path)
        assert not path.is_relative_to(squatted)
        assert empty(exposed)
        assert_private(attacker, path.parent, list(with_side_files(path)))


async def test_sync_files_are_private_in_the_default_directory(
    attacker: Attacker, shared: Path, victim_env: dict[str, str]
) -> None:
    sync = FileSync()
    async with sync:
        assert await sync.try_lock("payroll")
        assert sync.path == str(shared / f"micro-{os.getuid()}" / "sync.db")
        path = Path(sync.path)
        assert_private(attacker, path.parent, list(with_side_files(path)))


# -- local runtime ------------------------------------------------------------------------------


async def test_runtime_state_is_private(attacker: Attacker, home: Path, victim_env: dict[str, str]) -> None:
    source = home / "svc"
    source.mkdir()
    (source / "main.py").write_text("print('the token is hunter2')\n")
    runtime = LocalRuntime(RuntimeOptions(grace=2.0))
    assert runtime.directory == home / ".local" / "state" / "micro" / "runtime"
    await runtime.create(RuntimeService(name="leaky", source=str(source)), env={"API_TOKEN": "hunter2"})
    try:
        deadline = time.monotonic() + 60
        while (await runtime.read(name="leaky"))[0].status is Status.RUNNING:
            assert time.monotonic() < deadline, "the service did not exit"
            await asyncio.sleep(0.05)
        directories, files = everything_under(runtime.directory)
        assert {p.name for p in files} >= {"lock", "leaky.json", "leaky.log"}
        for directory in directories:
            assert mode(directory) == 0o700, directory
        assert_private(attacker, runtime.directory, files)
        for made in (home / ".local" / "state", home / ".local" / "state" / "micro"):
            assert mode(made) == 0o700
    finally:
        await runtime.delete(RuntimeService(name="leaky"))


# -- JWT keys -----------------------------------------------------------------------------------


async def test_generated_jwt_keys_are_private(attacker: Attacker, home: Path, victim_env: dict[str, str]) -> None:
    auth = JWTAuth(JWTAuthOptions())
    await auth.start()
    key_dir = home / ".config" / "micro" / "auth"
    files = sorted(key_dir.iterdir())
    assert [p.name for p in files] == ["eddsa_private.pem", "eddsa_public.pem"]
    assert_private(attacker, key_dir, files)
    for made in (home / ".config", home / ".config" / "micro"):
        assert mode(made) == 0o700


async def test_a_default_jwt_key_that_is_a_symlink_is_refused(home: Path, victim_env: dict[str, str]) -> None:
    key_dir = home / ".config" / "micro" / "auth"
    key_dir.mkdir(parents=True, mode=0o700)
    (home / "elsewhere.pem").write_bytes(b"")
    (key_dir / "eddsa_private.pem").symlink_to(home / "elsewhere.pem")
    with pytest.raises(InvalidOption, match=r"key_dir.*symlink|symlink.*key_dir"):
        await JWTAuth(JWTAuthOptions()).start()
