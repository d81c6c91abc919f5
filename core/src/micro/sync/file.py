"""``file``: locks shared by every process of the user on this machine, kept in one SQLite file.

Each lock is a row ``(id, owner, expires)``; taking one is a single atomic
upsert that succeeds only if the row is absent or lapsed, so there is no window
in which two processes both think they won. The file defaults to
``$XDG_RUNTIME_DIR/micro/sync.db`` (``<tempdir>/micro-<uid>/sync.db`` without
it), in a directory only the user can write to.

* **TTL** is an absolute wall-clock time (processes share no monotonic clock),
  so a clock stepped forward makes locks lapse early. A process that dies
  without closing leaves its locks to lapse by their TTL.
* **Waiting** :meth:`~micro.sync.Sync.lock` polls with jittered exponential
  backoff, from 5 ms up to :attr:`~micro.sync.SyncOptions.poll_interval`.
* **Blocking** calls run on a thread owned by the instance, never on the event
  loop (see :mod:`micro._sqlite`, shared with the ``sqlite`` store).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from typing import ClassVar, Final

from .._sqlite import Database, immediate, resolve, runtime_dir
from ..errors import ConnectionClosed, LockHeld, LockNotFound
from .base import Sync
from .options import FileSyncOptions

__all__ = ["FileSync"]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS micro_locks (
    id      TEXT PRIMARY KEY,
    owner   TEXT NOT NULL,
    expires REAL
) WITHOUT ROWID
"""

_ACQUIRE: Final = """
INSERT INTO micro_locks (id, owner, expires) VALUES (?, ?, ?)
ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, expires = excluded.expires
WHERE micro_locks.expires IS NOT NULL AND micro_locks.expires <= ?
"""


def _setup(conn: sqlite3.Connection) -> None:
    with immediate(conn):
        conn.execute(_SCHEMA)
        conn.execute("DELETE FROM micro_locks WHERE expires <= ?", (time.time(),))


def _held_by(conn: sqlite3.Connection, key: str, owner: str, what: str) -> None:
    """Raise what :meth:`Sync.unlock` raises unless ``owner`` holds ``key``. Runs inside a transaction."""
    row = conn.execute("SELECT owner, expires FROM micro_locks WHERE id = ?", (key,)).fetchone()
    if row is None or (row[1] is not None and row[1] <= time.time()):
        raise LockNotFound(f"cannot {what} lock {key!r}: nobody holds it")
    if row[0] != owner:
        raise LockHeld(f"cannot {what} lock {key!r}: it is held by {row[0]}")


class FileSync(Sync):
    """Cross-process locks with TTLs and leader election, for one machine."""

    options_type: ClassVar[type[FileSyncOptions]] = FileSyncOptions
    options: FileSyncOptions

    def __init__(self, options: FileSyncOptions | None = None) -> None:
        super().__init__(options)
        self._db: Database | None = None
        # Releases scheduled for cancelled acquisitions, kept referenced until done.
        self._giving_back: set[asyncio.Future[None]] = set()

    @property
    def path(self) -> str | None:
        """The file in use, once started."""
        return None if self._db is None else self._db.path

    async def _start(self) -> None:
        """Open (creating if needed) the lock file.

        Raises :class:`~micro.errors.BackendUnavailable` if it cannot be opened,
        or if the default directory belongs to another user.
        """
        path = resolve(
            self.options.path, self.options.address, lambda: runtime_dir() / "sync.db", option="MICRO_SYNC_PATH"
        )
        db = Database(path, busy_timeout=self.options.busy_timeout, setup=_setup, synchronous="NORMAL")
        self._db = db
        try:
            await db.open()
        except BaseException:
            self._db = None
            await db.close()
            raise

    async def _close(self) -> None:
        """Release every lock this owner holds, and close the file."""
        db, self._db = self._db, None
        if db is None:
            return
        owner = self.owner

        def release_all(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM micro_locks WHERE owner = ?", (owner,))

        try:
            await db.run(release_all)
        finally:
            await db.close()

    async def _try_lock(self, name: str, ttl: float | None) -> bool:
        owner = self.owner

        def acquire(conn: sqlite3.Connection) -> bool:
            now = time.time()
            cursor = conn.execute(_ACQUIRE, (name, owner, None if ttl is None else now + ttl, now))
            return cursor.rowcount == 1

        db = self._database()
        attempt = db.submit(acquire)
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # The upsert runs to completion on the worker thread; if it won, give the lock back.
            attempt.add_done_callback(self._give_back(db, name))
            raise

    async def _unlock(self, name: str) -> None:
        owner = self.owner

        def release(conn: sqlite3.Connection) -> None:
            with immediate(conn):
                _held_by(conn, name, owner, "unlock")
                conn.execute("DELETE FROM micro_locks WHERE id = ?", (name,))

        await self._database().run(release)

    async def _refresh(self, name: str, ttl: float | None) -> None:
        owner = self.owner

        def extend(conn: sqlite3.Connection) -> None:
            with immediate(conn):
                _held_by(conn, name, owner, "refresh")
                expires = None if ttl is None else time.time() + ttl
                conn.execute("UPDATE micro_locks SET expires = ? WHERE id = ?", (expires, name))

        await self._database().run(extend)

    def _give_back(self, db: Database, key: str) -> Callable[[asyncio.Future[bool]], None]:
        owner = self.owner

        def release(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM micro_locks WHERE id = ? AND owner = ?", (key, owner))

        def done(attempt: asyncio.Future[bool]) -> None:
            if attempt.cancelled() or attempt.exception() is not None or not attempt.result():
                return
            try:
                future = db.submit(release)
            except ConnectionClosed:  # closed meanwhile: close() released every lock of this owner
                return
            self._giving_back.add(future)
            future.add_done_callback(self._given_back)

        return done

    def _given_back(self, future: asyncio.Future[None]) -> None:
        self._giving_back.discard(future)
        if not future.cancelled():
            future.exception()  # retrieved, so a failure is not reported as "never retrieved"; the TTL covers it

    def _database(self) -> Database:
        # The base refuses calls before start() and after close(); a hook still running when close()
        # takes the handle away finds it gone here.
        if self._db is None:
            raise ConnectionClosed(f"the {type(self).__name__} is closed")
        return self._db
