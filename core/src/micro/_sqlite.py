"""One SQLite connection on a thread of its own, for the file-backed defaults (sqlite store, file sync, local registry).

sqlite3 blocks, so no call runs on the event loop: each :class:`Database` owns
a single worker thread that opens the connection and runs every statement, in
submission order. One thread per database keeps the connection on the thread
that made it, and the ordering gives each instance a simple sequential view
(a write then a read on one instance always sees the write).

Several processes share the file safely: WAL lets readers run beside the one
writer, ``busy_timeout`` makes a writer wait for another's transaction instead
of failing, and writes that read first take the write lock up front
(``BEGIN IMMEDIATE``), so they never fail half-way on a lock upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from . import _private
from .errors import BackendUnavailable, ConnectionClosed

__all__ = ["Database", "data_dir", "immediate", "prepare", "resolve", "retry_locked", "runtime_dir"]

T = TypeVar("T")


def retry_locked(fn: Callable[[], T], timeout: float) -> T:
    """``fn()``, tried again for up to ``timeout`` seconds while SQLite says the file is locked or busy.

    Several processes opening one fresh file at once can get "database is locked"
    at once, without ``busy_timeout`` applying (switching the journal to WAL takes an
    exclusive lock that SQLite does not wait for). Opening is idempotent, so it is
    retried with a short backoff; any other error, or the deadline, raises as before.
    """
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if ("locked" not in text and "busy" not in text) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def data_dir() -> Path:
    """``$XDG_DATA_HOME/micro``, else ``~/.local/share/micro``: where persistent defaults keep their files."""
    return _private.data_dir()


def runtime_dir() -> Path:
    """The user's private per-machine directory, created: see :func:`micro._private.runtime_dir`."""
    return _private.runtime_dir()


def prepare(target: Path, *, default: bool) -> None:
    """Make ``target``'s directory and the database file itself private before SQLite opens it.

    SQLite gives its ``-wal``, ``-shm`` and ``-journal`` files the database
    file's mode, so a database file created 0600 (``O_CREAT | O_EXCL |
    O_NOFOLLOW``) keeps them private from the moment they exist. A ``default``
    location is micro's own: its directory is made or checked 0700 and the
    user's, and the file and its side files are checked likewise. A configured
    path is the user's choice: missing directories are created 0700 and a
    missing file 0600, and what exists is left as it is, unless other users
    can create files beside it (a path in /tmp): then the file and its side
    files are checked as for a default, and a directory where they could also
    replace it (world-writable, not sticky) is refused.
    Raises :class:`~micro._private.UnsafePath` (a ``BackendUnavailable``).
    """
    if default:
        _private.private_dir(target.parent)
        _private.private_sqlite(target)
        return
    if not target.parent.exists():
        _private.private_dir(target.parent)
    if _private.shared_parent(target):
        _private.private_sqlite(target)
    else:
        _private.create_private_file(target)


def resolve(path: str | None, address: tuple[str, ...], default: Callable[[], Path], *, option: str) -> str:
    """The file to open, made ready by :func:`prepare`: ``path``, else ``address[0]``, else ``default()``.

    ``option`` (e.g. ``"MICRO_STORE_PATH"``) is named in errors, as the way to choose another file.
    Raises :class:`~micro.errors.BackendUnavailable` if the file or its directory cannot be made private.
    """
    chosen = path or (address[0] if address else None)
    if chosen == ":memory:":
        return chosen
    try:
        target = Path(os.path.expanduser(chosen)) if chosen else default()
        prepare(target, default=chosen is None)
    except _private.UnsafePath as exc:
        raise _private.UnsafePath(f"{exc} (or set {option})") from exc
    except OSError as exc:
        raise BackendUnavailable(f"cannot create {chosen or 'the default file'}: {exc} (or set {option})") from exc
    return str(target)


@contextlib.contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A write transaction that holds the write lock from its first statement; rolled back on error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class Database:
    """A SQLite file opened on a dedicated thread; :meth:`run` executes functions of the connection there.

    :param path: the file, or ``":memory:"``.
    :param busy_timeout: seconds a statement waits for another process's lock.
    :param setup: run once on open, on the worker thread (create the schema).
    :param synchronous: the ``synchronous`` pragma; ``"NORMAL"`` trades the last
        commits on power loss (never on a process crash) for speed.
    """

    def __init__(
        self,
        path: str,
        *,
        busy_timeout: float,
        setup: Callable[[sqlite3.Connection], None],
        synchronous: str = "FULL",
    ) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._setup = setup
        self._synchronous = synchronous
        self._conn: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = ThreadPoolExecutor(1, thread_name_prefix="micro-sqlite")

    async def open(self) -> None:
        """Open the file and run ``setup``; :class:`~micro.errors.BackendUnavailable` if that fails."""
        await self._execute(self._guard, retry_locked, self._open, self._busy_timeout)

    def _open(self) -> None:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
            self._setup(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def submit(self, fn: Callable[[sqlite3.Connection], T]) -> asyncio.Future[T]:
        """Queue ``fn(connection)`` on the worker thread, as :meth:`run` does, and return its future."""
        if self._executor is None:
            raise ConnectionClosed(f"the database {self.path} is closed")
        return asyncio.get_running_loop().run_in_executor(self._executor, self._guard, self._with_connection, fn)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(connection)`` on the worker thread.

        sqlite3 and OS errors become :class:`~micro.errors.BackendUnavailable`;
        micro errors raised by ``fn`` pass through. If the caller is cancelled,
        ``fn`` still runs to completion (a started statement cannot be taken back).
        """
        return await self.submit(fn)

    async def _execute(self, fn: Callable[..., T], *args: object) -> T:
        if self._executor is None:
            raise ConnectionClosed(f"the database {self.path} is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _with_connection(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._conn is None:
            raise ConnectionClosed(f"the database {self.path} is not open")
        return fn(self._conn)

    def _guard(self, fn: Callable[..., T], *args: object) -> T:
        try:
            return fn(*args)
        except (sqlite3.Error, OSError) as exc:
            raise BackendUnavailable(f"sqlite {self.path}: {exc}") from exc

    async def close(self) -> None:
        """Close the connection after every queued call has run, and stop the thread. Idempotent."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(executor, self._guard, self._close)
        finally:
            # The queue is empty now, so this returns as soon as the thread has exited.
            executor.shutdown(wait=True)

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()
