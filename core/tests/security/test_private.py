"""micro._private: private directories and files, the runtime directory and the local secret."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from micro._private import (
    SECRET_SIZE,
    UnsafePath,
    local_secret,
    private_dir,
    private_file,
    private_sqlite,
    runtime_dir,
    write_private,
)
from micro.errors import BackendUnavailable

from .conftest import Attacker


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# -- as the user alone ------------------------------------------------------------------------


def test_private_dir_creates_every_missing_component_0700(tmp_path: Path) -> None:
    made = private_dir(tmp_path / "a" / "b" / "c")
    assert made == tmp_path / "a" / "b" / "c"
    for path in (tmp_path / "a", tmp_path / "a" / "b", made):
        assert mode(path) == 0o700


def test_private_dir_refuses_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafePath, match="symlink"):
        private_dir(tmp_path / "link")
    assert list((tmp_path / "real").iterdir()) == []


def test_private_dir_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(UnsafePath, match="not a directory"):
        private_dir(tmp_path / "file")


def test_private_dir_tightens_the_users_own_loose_directory(tmp_path: Path) -> None:
    (tmp_path / "old").mkdir()
    (tmp_path / "old").chmod(0o755)
    private_dir(tmp_path / "old")
    assert mode(tmp_path / "old") == 0o700


def test_private_dir_refuses_a_world_writable_parent_without_the_sticky_bit(tmp_path: Path) -> None:
    (tmp_path / "open").mkdir()
    (tmp_path / "open").chmod(0o777)
    with pytest.raises(UnsafePath, match="sticky"):
        private_dir(tmp_path / "open" / "mine")


def test_unsafe_path_is_a_backend_unavailable() -> None:
    assert issubclass(UnsafePath, BackendUnavailable)


def test_private_file_creates_0600_under_any_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        assert private_file(tmp_path / "f")
    finally:
        os.umask(old)
    assert mode(tmp_path / "f") == 0o600


def test_private_file_refuses_a_symlink_and_leaves_its_target_alone(tmp_path: Path) -> None:
    (tmp_path / "target").write_bytes(b"x")
    (tmp_path / "target").chmod(0o644)
    (tmp_path / "f").symlink_to(tmp_path / "target")
    with pytest.raises(UnsafePath, match="symlink"):
        private_file(tmp_path / "f")
    assert mode(tmp_path / "target") == 0o644


def test_private_sqlite_checks_leftover_side_files(tmp_path: Path) -> None:
    (tmp_path / "db-wal").write_bytes(b"")
    (tmp_path / "db-wal").chmod(0o644)
    private_sqlite(tmp_path / "db")
    assert mode(tmp_path / "db") == 0o600
    assert mode(tmp_path / "db-wal") == 0o600
    assert not (tmp_path / "db-shm").exists()


def test_write_private_replaces_atomically_with_mode_0600(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private(tmp_path / "f", b"one")
        write_private(tmp_path / "f", b"two")
    finally:
        os.umask(old)
    assert (tmp_path / "f").read_bytes() == b"two"
    assert mode(tmp_path / "f") == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_runtime_dir_prefers_xdg_runtime_dir(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir(mode=0o700)
    assert runtime_dir({"XDG_RUNTIME_DIR": str(tmp_path / "run")}) == tmp_path / "run" / "micro"
    assert mode(tmp_path / "run" / "micro") == 0o700


def test_runtime_dir_without_xdg_is_micro_uid_in_tmpdir(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    got = runtime_dir({"TMPDIR": str(tmp), "HOME": str(tmp_path)})
    assert got == tmp / f"micro-{os.getuid()}"
    assert mode(got) == 0o700


def test_local_secret_is_32_private_bytes_shared_by_every_caller(tmp_path: Path) -> None:
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    results: list[bytes] = []
    threads = [threading.Thread(target=lambda: results.append(local_secret(env))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    assert len(results[0]) == SECRET_SIZE
    assert mode(tmp_path / "micro" / "secret") == 0o600
    assert sorted(p.name for p in (tmp_path / "micro").iterdir()) == ["secret"]


def test_local_secret_refuses_a_loose_or_short_or_linked_file(tmp_path: Path) -> None:
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    path = tmp_path / "micro" / "secret"
    local_secret(env)
    path.chmod(0o644)
    with pytest.raises(UnsafePath, match="mode 644"):
        local_secret(env)
    path.unlink()
    path.write_bytes(b"short")
    path.chmod(0o600)
    with pytest.raises(UnsafePath, match="5 bytes"):
        local_secret(env)
    path.unlink()
    (tmp_path / "elsewhere").write_bytes(b"x" * SECRET_SIZE)
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafePath, match="symlink"):
        local_secret(env)


# -- against another local user ---------------------------------------------------------------


def test_another_user_cannot_hijack_the_runtime_dir_with_a_symlink(
    attacker: Attacker, shared: Path, target: Path, victim_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    squatted = shared / f"micro-{os.getuid()}"
    attacker.ok("ln", "-s", target, squatted)
    with caplog.at_level(logging.WARNING, logger="micro.private"):
        got = runtime_dir(victim_env)
    assert got != squatted
    assert got.is_relative_to(Path(victim_env["HOME"]))
    assert mode(got) == 0o700
    assert list(target.iterdir()) == []
    # Not silent: the warning names the squatted path and what to do.
    assert str(squatted) in caplog.text
    assert "XDG_RUNTIME_DIR" in caplog.text
    # Every process of the user lands on the same fallback.
    assert runtime_dir(victim_env) == got


@pytest.mark.parametrize("kind", ["directory", "file"])
def test_another_user_precreating_the_runtime_dir_gets_a_fallback_not_a_denial(
    attacker: Attacker, shared: Path, victim_env: dict[str, str], kind: str
) -> None:
    squatted = shared / f"micro-{os.getuid()}"
    if kind == "directory":
        attacker.ok("mkdir", "-m", "777", squatted)
    else:
        attacker.ok("touch", squatted)
    got = runtime_dir(victim_env)
    assert got != squatted
    assert mode(got) == 0o700
    if kind == "directory":
        assert list(squatted.iterdir()) == []


def test_fallback_that_cannot_be_made_says_what_to_do(
    attacker: Attacker, shared: Path, victim_env: dict[str, str], home: Path
) -> None:
    attacker.ok("mkdir", shared / f"micro-{os.getuid()}")
    (home / ".cache").write_bytes(b"")  # the fallback's parent cannot be a directory
    with pytest.raises(UnsafePath, match="Set XDG_RUNTIME_DIR") as caught:
        runtime_dir(victim_env)
    assert str(shared / f"micro-{os.getuid()}") in str(caught.value)


def test_another_user_cannot_read_the_local_secret_nor_plant_one(
    attacker: Attacker, shared: Path, target: Path, victim_env: dict[str, str]
) -> None:
    secret = local_secret(victim_env)
    path = runtime_dir(victim_env) / "secret"
    assert not attacker.can_read(path)
    assert not attacker.can_write(path)
    assert not attacker.can_list(path.parent)
    assert local_secret(victim_env) == secret


def test_a_secret_file_of_another_user_is_refused(attacker: Attacker, tmp_path: Path) -> None:
    (tmp_path / "micro").mkdir(mode=0o700)
    path = tmp_path / "micro" / "secret"
    path.write_bytes(b"k" * SECRET_SIZE)
    path.chmod(0o600)
    os.chown(path, attacker.uid, attacker.gid)
    with pytest.raises(UnsafePath, match="belongs to uid"):
        local_secret({"XDG_RUNTIME_DIR": str(tmp_path)})


def test_no_fallback_into_the_working_directory_without_a_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    tmp.chmod(0o1777)
    (tmp / f"micro-{os.getuid()}").write_bytes(b"")  # not a directory: the fallback is needed
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsafePath, match=r"HOME is not set.*Set XDG_RUNTIME_DIR"):
        runtime_dir({"TMPDIR": str(tmp), "HOME": "~"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]


def test_checking_a_database_in_use_keeps_sqlites_locks(tmp_path: Path) -> None:
    # POSIX locks belong to the process: closing any descriptor of the file would drop those SQLite holds.
    path = tmp_path / "db"
    private_sqlite(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("CREATE TABLE t (x)")
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t VALUES (1)")
        private_sqlite(path)  # what a second instance in this process does before it opens the file
        other = (
            "import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None)\n"
            "try:\n    c.execute('BEGIN IMMEDIATE')\nexcept sqlite3.OperationalError as e:\n    print(e)\n"
            "else:\n    print('got the write lock')\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", other, str(path)], capture_output=True, text=True, timeout=60, check=True
        )
        assert done.stdout.strip() == "database is locked"
    finally:
        conn.close()


def test_a_file_system_without_hard_links_still_gets_a_private_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_links(*args: object, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted")  # what vfat or many FUSE file systems answer

    monkeypatch.setattr(os, "link", no_links)
    assert private_file(tmp_path / "db")
    assert mode(tmp_path / "db") == 0o600
    assert private_file(tmp_path / "db")  # already there: checked, not created again
    assert [p.name for p in tmp_path.iterdir()] == ["db"]


@pytest.mark.parametrize(("ci", "outcome", "code"), [("true", "must run, not skip", 1), ("", "1 skipped", 0)])
def test_without_root_these_tests_skip_but_fail_under_ci(attacker: Attacker, ci: str, outcome: str, code: int) -> None:
    core = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [
            "setpriv",
            f"--reuid={attacker.uid}",
            f"--regid={attacker.gid}",
            "--clear-groups",
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rs",
            "tests/security/test_private.py::test_a_secret_file_of_another_user_is_refused",
        ],
        cwd=core,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp", "CI": ci},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert outcome in done.stdout, done.stdout + done.stderr
    assert done.returncode == code, done.stdout + done.stderr
