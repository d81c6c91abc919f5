"""Files and directories private to the user: how every embedded default creates what it keeps on disk.

Another local user on a shared machine must not be able to read or write what
micro keeps (the registry, the sqlite store, the file sync, the runtime's
state, keys, the local secret), nor make micro create it somewhere of their
choosing. So every helper here:

* creates with the final mode (directories ``0o700`` with ``mkdir``, files
  ``0o600`` with ``O_CREAT | O_EXCL``), never with a ``chmod`` afterwards, so
  there is no moment at which the thing exists with a looser mode;
* never follows a symlink at a path it creates or owns (``O_NOFOLLOW`` on every
  open, and the checks run on the opened descriptor, not on a second lookup;
  a SQLite database is never opened by micro itself, since closing any
  descriptor of it drops the locks SQLite holds for the process, so it is
  created by linking a 0600 file into place and checked with ``lstat``, in a
  directory nobody else can rename entries of);
* refuses, with :class:`UnsafePath`, a path that another user owns, that is not
  what it should be (a symlink, a file where a directory belongs), or whose
  parent lets other users rename entries (writable without the sticky bit).

A path the user owns but left open to others (an older micro made its data
directory ``0o755`` and its store ``0o644``) is tightened, through the descriptor
just opened without following links, so upgrading keeps working.

:func:`runtime_dir` is ``$XDG_RUNTIME_DIR/micro``, else ``<tempdir>/micro-<uid>``.
Another user can create ``/tmp/micro-<uid>`` first (as a directory, a file or a
symlink) to hijack it or to deny service; micro then falls back to a private
directory in the user's home, the same for every process of the user on this
machine (so they still find each other), and logs a warning that names the
squatted path. If that cannot be made either, :class:`UnsafePath` says what to do.

POSIX only: on a system without user ids the ownership checks are skipped.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import socket
import stat
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from .errors import BackendUnavailable

__all__ = [
    "SECRET_SIZE",
    "UnsafePath",
    "create_private_file",
    "data_dir",
    "local_secret",
    "open_private",
    "private_dir",
    "private_file",
    "private_sqlite",
    "runtime_dir",
    "shared_parent",
    "write_private",
]

log = logging.getLogger("micro.private")

#: Bytes in the :func:`local_secret`.
SECRET_SIZE: Final = 32

_NOFOLLOW: Final = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY: Final = getattr(os, "O_DIRECTORY", 0)
#: Files SQLite creates beside a database; they get the database file's mode.
SQLITE_SIDE_FILES: Final = ("-wal", "-shm", "-journal")


class UnsafePath(BackendUnavailable):
    """A file or directory micro keeps is not safely private: another user's, a symlink, or open to others.

    The message names the path and what to do (remove it, fix its mode, or set
    another location). It is an :class:`OSError` too, through ``ConnectionError``.
    """


def _uid() -> int | None:
    return os.getuid() if hasattr(os, "getuid") else None


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def _home(env: Mapping[str, str]) -> Path:
    home = env.get("HOME") or os.path.expanduser("~")
    if not os.path.isabs(home):  # no HOME and no passwd entry: "~" would land in the working directory
        raise UnsafePath("the home directory is unknown (HOME is not set); set HOME or XDG_RUNTIME_DIR")
    return Path(home)


def _owner_check(path: Path, info: os.stat_result, what: str) -> None:
    uid = _uid()
    if uid is not None and info.st_uid != uid:
        raise UnsafePath(
            f"{what} {path} belongs to uid {info.st_uid}, not to this user (uid {uid}); "
            "another user may have created it: remove it or choose another location"
        )


def shared_parent(path: Path | str) -> bool:
    """Whether other users can create entries beside ``path`` (its parent is world-writable, like /tmp).

    Raises :class:`UnsafePath` if they could also rename or remove it (no sticky bit).
    """
    target = Path(os.path.abspath(os.fspath(path)))
    _check_parent(target)
    try:
        return bool(target.parent.stat().st_mode & stat.S_IWOTH)
    except OSError as exc:
        raise UnsafePath(f"cannot inspect {target.parent}: {exc}") from exc


def _check_parent(path: Path) -> None:
    """Refuse ``path`` if every user may rename entries of its parent (world-writable, not sticky).

    A group-writable parent is accepted: with user-private groups (umask 002)
    that is the norm for a home's subdirectories, and the group is the admin's choice.
    """
    parent = path.parent
    try:
        info = parent.stat()
    except OSError as exc:
        raise UnsafePath(f"cannot inspect {parent}: {exc}") from exc
    if info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
        raise UnsafePath(
            f"{parent} is writable by other users (by everyone, without the sticky bit), so another user could "
            f"replace {path.name}; choose another location"
        )


def _open_dir(path: Path, *, leaf: bool) -> None:
    """Check the directory ``path`` without following a symlink; tighten the user's own leaf to 0700."""
    try:
        fd = os.open(path, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR) or os.path.islink(path):
            raise UnsafePath(f"{path} is not a directory (a symlink or a file); remove it") from exc
        raise UnsafePath(f"cannot open the directory {path}: {exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISDIR(info.st_mode):
            raise UnsafePath(f"{path} is not a directory; remove it")
        _owner_check(path, info, "the directory")
        if leaf:
            if stat.S_IMODE(info.st_mode) != 0o700:
                # Ours, so only we (or root) made it looser: an older micro did. Through the fd: no link race.
                os.fchmod(fd, 0o700)
        elif info.st_mode & stat.S_IWOTH and not info.st_mode & stat.S_ISVTX:
            raise UnsafePath(f"{path} is writable by every user; chmod o-w it or choose another location")
    finally:
        os.close(fd)


def private_dir(path: Path | str) -> Path:
    """Make ``path`` a directory only the user can use (0700) and return it.

    Missing components are created one by one with mode 0700 and each is
    checked, without following links, to be a directory of the user's. An
    existing ``path`` must be the user's own directory, not a symlink, and is
    tightened to 0700 if it was looser; its parent must not let other users
    rename it (writable by them without the sticky bit).

    Raises :class:`UnsafePath` otherwise.
    """
    target = Path(os.path.abspath(os.fspath(path)))
    missing: list[Path] = []
    probe = target
    while not os.path.lexists(probe) and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    # The first existing ancestor (the target's parent, or above the first directory created).
    _check_parent(missing[-1] if missing else target)
    if not missing:
        _open_dir(target, leaf=True)
        return target
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            pass  # another process made it at the same time: checked below like ours
        except OSError as exc:
            raise UnsafePath(f"cannot create the directory {directory}: {exc}") from exc
        _open_dir(directory, leaf=directory == target)
    return target


def create_private_file(path: Path | str) -> bool:
    """Create ``path`` empty with mode 0600 if it does not exist (never through a symlink); whether it did.

    The file is made under a temporary name and linked into place, so ``path``
    itself is never opened: closing a descriptor of a SQLite database would drop
    the locks every connection of this process holds on it (POSIX locks are per
    process). An existing file is left as it is (see :func:`private_file`).
    """
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.new")
    try:
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600))
    except OSError as exc:
        raise UnsafePath(f"cannot create {target}: {exc}") from exc
    try:
        os.link(temporary, target, follow_symlinks=False)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise UnsafePath(f"cannot create {target}: {exc}") from exc
        # A file system without hard links: create it in place. Nothing can have the new file open yet.
        return _create_in_place(target)
    finally:
        temporary.unlink(missing_ok=True)
    return True


def _create_in_place(target: Path) -> bool:
    try:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600))
    except FileExistsError:
        return False
    except OSError as exc:
        raise UnsafePath(f"cannot create {target}: {exc}") from exc
    return True


def open_private(path: Path | str, flags: int, *, create: bool = True) -> int:
    """``os.open`` of a regular file of the user's that only they can use; the descriptor is the caller's.

    ``O_NOFOLLOW`` and ``O_CLOEXEC`` are added, and ``O_CREAT`` with mode 0600
    if ``create``. The opened file must be a regular file of the user's
    (:class:`UnsafePath` otherwise: a symlink, a FIFO, another user's); the
    user's own looser file (left by an older micro) is tightened through the
    descriptor. ``FileNotFoundError`` passes through when not creating.
    """
    target = Path(path)
    flags |= _NOFOLLOW | _CLOEXEC | (os.O_CREAT if create else 0)
    try:
        fd = os.open(target, flags, 0o600)
    except FileNotFoundError:
        if not create:
            raise
        raise UnsafePath(f"cannot create {target}: its directory is missing") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(target):
            raise UnsafePath(f"{target} is a symlink; remove it") from exc
        raise UnsafePath(f"cannot open {target}: {exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(f"{target} is not a regular file; remove it")
        _owner_check(target, info, "the file")
        if stat.S_IMODE(info.st_mode) & 0o077:
            os.fchmod(fd, stat.S_IMODE(info.st_mode) & 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_file(path: Path | str, *, create: bool = True) -> bool:
    """Make sure ``path`` is a regular file of the user's with no access for others; whether it exists now.

    Created 0600 if missing (unless ``create`` is false). An existing one that is
    a symlink, not a regular file or another user's raises :class:`UnsafePath`;
    the user's own looser one (left by an older micro) is tightened. Checked with
    ``lstat``, never opened (see :func:`create_private_file` for why), so call it
    only for a path whose directory other users cannot rename entries of (a
    private directory, or a sticky one like /tmp): then nobody else can swap the
    file between the check and the ``chmod``.
    """
    target = Path(path)
    if create:
        create_private_file(target)
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise UnsafePath(f"cannot inspect {target}: {exc}") from exc
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePath(f"{target} is a symlink; remove it")
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePath(f"{target} is not a regular file; remove it")
    _owner_check(target, info, "the file")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(target, stat.S_IMODE(info.st_mode) & 0o700)
    return True


def private_sqlite(path: Path | str) -> None:
    """Prepare a SQLite database file in a private directory: the file 0600, its side files checked.

    SQLite creates ``-wal``, ``-shm`` and ``-journal`` with the database file's
    own mode, so creating that file 0600 before SQLite opens it makes them
    private from the moment they exist. Side files left over by an older micro
    are checked and tightened like the database.
    """
    target = Path(path)
    private_file(target)
    for suffix in SQLITE_SIDE_FILES:
        private_file(target.with_name(target.name + suffix), create=False)


def write_private(path: Path | str, data: bytes) -> None:
    """Replace ``path`` atomically with ``data`` in a file created 0600 (never through a symlink)."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# -- well-known directories ---------------------------------------------------------------------


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/micro``, else ``~/.local/share/micro`` (not created): where persistent defaults live."""
    env = _env(environ)
    base = env.get("XDG_DATA_HOME") or str(_home(env) / ".local" / "share")
    return Path(base) / "micro"


def _temp_base(env: Mapping[str, str]) -> str:
    given = env.get("TMPDIR")
    return given if given and os.path.isdir(given) else tempfile.gettempdir()


def _xdg_runtime(env: Mapping[str, str]) -> Path | None:
    """``$XDG_RUNTIME_DIR`` if it is set and a directory of the user's (else it is ignored, as after ``su``)."""
    base = env.get("XDG_RUNTIME_DIR")
    if not base:
        return None
    try:
        info = os.stat(base)
    except OSError:
        return None
    uid = _uid()
    if not stat.S_ISDIR(info.st_mode) or (uid is not None and info.st_uid != uid):
        return None
    return Path(base)


def _fallback_runtime(env: Mapping[str, str]) -> Path:
    """The same private directory for every process of the user on this host, in a home only the user writes."""
    host = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname()) or "localhost"
    cache = env.get("XDG_CACHE_HOME") or str(_home(env) / ".cache")
    return Path(cache) / "micro" / f"runtime-{host}"


def runtime_dir(environ: Mapping[str, str] | None = None) -> Path:
    """The private per-user directory of this machine (made 0700): ``$XDG_RUNTIME_DIR/micro`` or ``<tmp>/micro-<uid>``.

    ``environ`` (default :data:`os.environ`) supplies ``XDG_RUNTIME_DIR``,
    ``TMPDIR``, ``XDG_CACHE_HOME`` and ``HOME``. If the temporary-directory
    path is another user's or not a plain directory (squatted), the fallback
    ``$XDG_CACHE_HOME/micro/runtime-<host>`` (``~/.cache/...``) is used, with a
    warning. :class:`UnsafePath` if neither can be made private.
    """
    env = _env(environ)
    xdg = _xdg_runtime(env)
    if xdg is not None:
        return private_dir(xdg / "micro")
    owner = _uid()
    shared = Path(_temp_base(env)) / f"micro-{owner if owner is not None else os.getpid()}"
    try:
        return private_dir(shared)
    except UnsafePath as exc:
        try:
            chosen = private_dir(_fallback_runtime(env))
        except UnsafePath as again:
            raise UnsafePath(
                f"no private runtime directory: {exc}; and the fallback failed: {again}. "
                f"Set XDG_RUNTIME_DIR to a directory only you can use, or remove {shared}"
            ) from again
        log.warning("%s; using %s instead (set XDG_RUNTIME_DIR, or remove %s)", exc, chosen, shared)
        return chosen


# -- the local secret ---------------------------------------------------------------------------


def _read_secret(path: Path) -> bytes:
    """The secret at ``path``; FileNotFoundError if there is none; UnsafePath if it is not safely the user's."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(path):
            raise UnsafePath(f"the local secret {path} is a symlink; remove it") from exc
        raise UnsafePath(f"cannot read the local secret {path}: {exc}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(f"the local secret {path} is not a regular file; remove it")
        _owner_check(path, info, "the local secret")
        if stat.S_IMODE(info.st_mode) != 0o600:
            raise UnsafePath(
                f"the local secret {path} has mode {stat.S_IMODE(info.st_mode):o}, not 600; "
                "others may have read it: remove it (a new one is made on next use)"
            )
        data = os.read(fd, SECRET_SIZE + 1)
    finally:
        os.close(fd)
    if len(data) != SECRET_SIZE:
        raise UnsafePath(f"the local secret {path} has {len(data)} bytes, not {SECRET_SIZE}; remove it")
    return data


def local_secret(environ: Mapping[str, str] | None = None) -> bytes:
    """32 random bytes shared by every process of this user on this machine, and by no other user.

    "Every process" means every one that resolves the same :func:`runtime_dir`
    (the same ``XDG_RUNTIME_DIR``, or none), like the local registry.

    Kept in ``runtime_dir()/secret`` (mode 0600). The first caller writes it
    to a fresh 0600 file (``O_CREAT | O_EXCL | O_NOFOLLOW``) and links it into
    place, so a reader never sees a partial secret and concurrent first callers
    agree on one. Reads use ``O_NOFOLLOW``; a file that is a symlink, another
    user's, not mode 0600 or not 32 bytes raises :class:`UnsafePath`. Not
    cached: callers that need it often keep it.
    """
    path = runtime_dir(environ) / "secret"
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    temporary = path.with_name(f".secret.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600)
    try:
        # A umask that strips the owner's bits would leave it unreadable or 0400; the file is not yet visible.
        os.fchmod(fd, 0o600)
        data = secrets.token_bytes(SECRET_SIZE)
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        os.fsync(fd)
        os.close(fd)
        fd = -1
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process won: use its secret
    finally:
        if fd >= 0:
            os.close(fd)
        temporary.unlink(missing_ok=True)
    return _read_secret(path)
