"""A second, unprivileged local user (the attacker) and a sticky, /tmp-like directory both users share.

The tests run as root (as in CI) and create the attacker with ``useradd`` for the
session; the attacker's steps run in subprocesses under ``setpriv --reuid/--regid
--clear-groups``. Without root they cannot run: skipped on a developer machine,
a failure under CI (``CI=true``), where not testing this is not an option.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_SETPRIV = shutil.which("setpriv")


@dataclass(frozen=True)
class Attacker:
    """Another local user; :meth:`run` runs a command as them."""

    name: str
    uid: int
    gid: int

    def run(self, *argv: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
        command = [str(_SETPRIV), f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", *map(str, argv)]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=60, check=False, env={"PATH": "/usr/bin:/bin"}
        )

    def ok(self, *argv: str | os.PathLike[str]) -> None:
        """Run and require success (a setup step of the attack)."""
        done = self.run(*argv)
        assert done.returncode == 0, f"attacker step {argv} failed: {done.stderr}"

    def can_read(self, path: Path) -> bool:
        return self.run("cat", path).returncode == 0

    def can_write(self, path: Path) -> bool:
        return self.run("sh", "-c", 'printf x >> "$1"', "sh", path).returncode == 0

    def can_list(self, path: Path) -> bool:
        return self.run("ls", path).returncode == 0


def _need_root() -> None:
    if hasattr(os, "geteuid") and os.geteuid() == 0 and _SETPRIV and shutil.which("useradd"):
        return
    reason = "needs root with useradd and setpriv to create a second local user and act as it"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; under CI these tests must run, not skip")
    pytest.skip(reason)


def _retry(argv: list[str]) -> None:
    # useradd/userdel lock /etc/passwd; other test runs on the machine may hold it for a moment.
    for _ in range(50):
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return
        if "lock" not in done.stderr:
            raise RuntimeError(f"{argv} failed: {done.stderr}")
        time.sleep(0.2)
    raise RuntimeError(f"{argv} kept failing on a lock")


@pytest.fixture(scope="session")
def attacker() -> Iterator[Attacker]:
    _need_root()
    name = f"microsec{os.getpid()}"
    _retry(["useradd", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", name])
    try:
        entry = pwd.getpwnam(name)
        yield Attacker(name, entry.pw_uid, entry.pw_gid)
    finally:
        _retry(["userdel", name])


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory like /tmp: world-writable with the sticky bit, reachable by the attacker."""
    path = Path(tempfile.mkdtemp(prefix="micro-shared-", dir="/tmp"))
    path.chmod(0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def home() -> Iterator[Path]:
    """The victim's home: the victim's own, traversable (0711) so the attacker can try paths inside it."""
    path = Path(tempfile.mkdtemp(prefix="micro-home-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def victim_env(monkeypatch: pytest.MonkeyPatch, shared: Path, home: Path) -> dict[str, str]:
    """The environment of a user without XDG_* settings whose temporary directory is ``shared``."""
    for name in ("XDG_RUNTIME_DIR", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TMPDIR", str(shared))
    # tempfile caches its choice; older code asked it rather than TMPDIR.
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    monkeypatch.setenv("HOME", str(home))
    return {"TMPDIR": str(shared), "HOME": str(home)}


@pytest.fixture
def target(attacker: Attacker, shared: Path) -> Path:
    """A directory of the attacker's, open to everyone: where a hijacked default would put its files."""
    path = shared / "attacker-target"
    attacker.ok("mkdir", "-m", "777", path)
    return path
