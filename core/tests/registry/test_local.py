"""The ``local`` registry: zero-configuration discovery across processes through one SQLite file."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
import sys
import textwrap
from pathlib import Path

import micro
import pytest
from micro.errors import BackendUnavailable, InvalidOption
from micro.registry import LocalRegistryOptions, Node, Service
from micro.registry.local import LocalRegistry, default_path

from .conftest import next_result

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture
def runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private XDG runtime directory, as a desktop session has; no MICRO_* variable is set."""
    directory = tmp_path / "run"
    directory.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(directory))
    for key in list(os.environ):
        if key.startswith("MICRO_"):
            monkeypatch.delenv(key)
    return directory


async def run_python(code: str, *, timeout: float = 30.0) -> str:
    """Run ``code`` in a new interpreter with this process's environment; return its stdout."""
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(code),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_two_processes_find_each_other_with_zero_configuration(runtime_dir: Path, unique: str) -> None:
    registry = micro.create("registry")
    assert isinstance(registry, LocalRegistry)
    assert registry.path == runtime_dir / "micro" / "registry.db"
    async with registry:
        await registry.register(Service(unique + ".parent", nodes=[Node("p1", "127.0.0.1:1111")]))
        out = await run_python(
            f"""
            import asyncio, json, micro
            from micro.registry import Node, Service

            async def main():
                async with micro.create("registry") as registry:
                    await registry.register(Service({unique!r} + ".child", nodes=[Node("c1", "127.0.0.1:2222")]))
                    found = await registry.get_service({unique!r} + ".parent")
                    print(json.dumps([s.to_dict() for s in found]))

            asyncio.run(main())
            """
        )
        (seen_by_child,) = [Service.from_dict(d) for d in json.loads(out)]
        assert [(n.id, n.address) for n in seen_by_child.nodes] == [("p1", "127.0.0.1:1111")]
        (child,) = await registry.get_service(unique + ".child")
        assert [(n.id, n.address) for n in child.nodes] == [("c1", "127.0.0.1:2222")]
    mode = stat.S_IMODE((runtime_dir / "micro").stat().st_mode)
    assert mode == 0o700


async def test_concurrent_writers_in_two_processes(tmp_path: Path, unique: str) -> None:
    path = tmp_path / "shared.db"
    writer = """
        import asyncio, sys
        from micro.registry import LocalRegistryOptions, Node, Service
        from micro.registry.local import LocalRegistry

        async def main(prefix):
            registry = LocalRegistry(LocalRegistryOptions(path={path!r}))
            for i in range(100):
                await registry.register(Service({unique!r}, nodes=[Node(f"{{prefix}}{{i:03}}", "127.0.0.1:1")]), ttl=60)
                if i % 10 == 0:
                    await registry.deregister(Service({unique!r}, nodes=[Node(f"{{prefix}}{{i:03}}", "")]))
            await registry.close()

        asyncio.run(main({prefix!r}))
    """
    async with LocalRegistry(LocalRegistryOptions(path=str(path))) as registry:
        await registry.start()
        await asyncio.gather(
            *(run_python(writer.format(path=str(path), unique=unique, prefix=p)) for p in ("a", "b")),
        )
        (found,) = await registry.get_service(unique)
    expected = sorted(f"{p}{i:03}" for p in "ab" for i in range(100) if i % 10)
    assert [n.id for n in found.nodes] == expected


async def test_watch_sees_changes_made_by_another_process(tmp_path: Path, unique: str) -> None:
    path = str(tmp_path / "watched.db")
    options = LocalRegistryOptions(path=path, poll_interval=0.02)
    async with LocalRegistry(options) as registry, registry.watch(unique) as watcher:
        await run_python(
            f"""
            import asyncio
            from micro.registry import LocalRegistryOptions, Node, Service
            from micro.registry.local import LocalRegistry

            async def main():
                async with LocalRegistry(LocalRegistryOptions(path={path!r})) as registry:
                    await registry.register(Service({unique!r}, nodes=[Node("x", "127.0.0.1:3")]))

            asyncio.run(main())
            """
        )
        result = await next_result(watcher, timeout=5)
        assert result.action == "create"
        assert [n.id for n in result.service.nodes] == ["x"]


def test_default_path_prefers_the_runtime_dir(tmp_path: Path) -> None:
    assert default_path({"XDG_RUNTIME_DIR": str(tmp_path)}) == tmp_path / "micro" / "registry.db"
    fallback = default_path({"XDG_RUNTIME_DIR": str(tmp_path / "missing")})
    assert fallback.name == "registry.db"
    assert fallback.parent.name == f"micro-{os.getuid()}"


def test_path_comes_from_path_then_address(tmp_path: Path) -> None:
    assert LocalRegistry(LocalRegistryOptions(path=str(tmp_path / "a.db"))).path == tmp_path / "a.db"
    assert LocalRegistry(LocalRegistryOptions(address=(str(tmp_path / "b.db"),))).path == tmp_path / "b.db"
    created = micro.create("registry", "local", environ={"MICRO_REGISTRY_PATH": str(tmp_path / "c.db")})
    assert created.path == tmp_path / "c.db"


def test_bad_options_are_refused() -> None:
    with pytest.raises(InvalidOption, match="poll_interval"):
        LocalRegistryOptions(poll_interval=0)
    with pytest.raises(InvalidOption, match="path"):
        LocalRegistryOptions(path=" ")
    with pytest.raises(InvalidOption, match="MICRO_REGISTRY_TTL"):
        micro.create("registry", "local", environ={"MICRO_REGISTRY_TTL": "-5s"})


async def test_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    registry = LocalRegistry(LocalRegistryOptions(path=str(shared / "r.db")))
    with pytest.raises(BackendUnavailable, match="writable by other users"):
        await registry.start()
    with pytest.raises(BackendUnavailable):
        await registry.get_service("x")


async def test_a_file_that_is_not_a_database_raises_backend_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    registry = LocalRegistry(LocalRegistryOptions(path=str(path)))
    with pytest.raises(BackendUnavailable, match=r"garbage\.db"):
        await registry.register(Service("x", nodes=[Node("a", "127.0.0.1:1")]))
    with pytest.raises(BackendUnavailable):
        registry.watch()
    await registry.close()


async def test_expired_rows_are_pruned_by_the_next_write(tmp_path: Path, unique: str) -> None:
    path = tmp_path / "prune.db"
    async with LocalRegistry(LocalRegistryOptions(path=str(path))) as registry:
        await registry.register(Service(unique, nodes=[Node("old", "127.0.0.1:1")]), ttl=0.05)
        await asyncio.sleep(0.06)
        await registry.register(Service(unique + ".other", nodes=[Node("new", "127.0.0.1:2")]))
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT service, id FROM nodes ORDER BY id").fetchall()
        versions = conn.execute("SELECT service FROM versions").fetchall()
    conn.close()
    assert rows == [(unique + ".other", "new")]
    assert versions == [(unique + ".other",)]
