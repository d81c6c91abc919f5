"""``postgres``: locks and leader election on PostgreSQL advisory locks.

A lock is a *session-level* advisory lock whose 64-bit id is the BLAKE2b hash of
``micro_postgres.sync:`` and the prefixed lock name, taken on one connection each
:class:`PostgresSync` instance keeps for itself (its ``application_name`` is the
instance's :attr:`~micro.sync.Sync.owner`, so ``pg_stat_activity`` names every holder).

* **Taking** is ``pg_try_advisory_lock``: atomic on the server, so two owners never both
  win. PostgreSQL's advisory locks are re-entrant within a session; this instance keeps
  the locks it holds and answers ``False`` for one it already holds, as the contract says.
* **TTL.** The server knows nothing of a TTL: the holding instance releases the lock
  itself when the TTL runs out (a timer on its event loop, moved by
  :meth:`~micro.sync.Sync.refresh`). From then on its :meth:`~micro.sync.Sync.unlock`
  raises :class:`~micro.errors.LockNotFound`. If the holder's process dies, or its
  connection is lost, the server ends the session and the lock is free at once, TTL or not
  (a lock taken with ``ttl=None`` included, which a crashed holder never leaves behind
  here). A process whose event loop is blocked past the TTL keeps the lock until the
  loop runs again: the timer cannot fire.
* **Releasing and refreshing** a lock this instance does not hold raise
  :class:`~micro.errors.LockHeld` naming the holder's ``application_name`` if another
  session holds it, :class:`~micro.errors.LockNotFound` otherwise. A session lock belongs
  to its connection: two instances given the same ``owner`` in one process (and event loop)
  release and refresh each other's locks by asking the holding instance; in two processes
  they cannot (``LockHeld``, naming that same owner). A refresh also checks, in ``pg_locks``, that the session
  still holds the lock, so a leader whose connection was replaced learns it has lost.
* **Cancellation.** A cancelled :meth:`~micro.sync.Sync.try_lock` whose statement won gives
  the lock back, and a cancelled :meth:`~micro.sync.Sync.unlock` still releases it: both
  finish in a task of their own that :meth:`~micro.sync.Sync.close` waits for.
* **Waiting** :meth:`~micro.sync.Sync.lock` polls with jittered backoff up to
  :attr:`~micro.sync.SyncOptions.poll_interval` (a blocking ``pg_advisory_lock`` would
  hold the instance's one connection).
* **Lost connections.** A statement whose connection breaks fails with
  :class:`~micro.errors.BackendUnavailable`; the next call opens a new connection, and
  the locks of the old one are gone (the server released them).
* **Advisory ids are per database** and shared with anything else that takes advisory
  locks in it: pick a :attr:`~micro.sync.SyncOptions.prefix` per application.
* **Close** releases every lock of the session (``pg_advisory_unlock_all``) before it
  closes the connection, so others can take them as soon as ``close()`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import weakref
from typing import Any, ClassVar, Final

import asyncpg
from micro.errors import ConnectionClosed, LockHeld, LockNotFound, MicroError
from micro.sync import Sync

from ._client import Server
from .options import PostgresSyncOptions

__all__ = ["PostgresSync", "lock_id"]

_NAMESPACE: Final = "micro_postgres.sync:"

# A bigint advisory lock shows in pg_locks as classid (high 32 bits), objid (low 32 bits), objsubid 1.
_HOLDER: Final = """
SELECT a.application_name, l.pid = pg_backend_pid()
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.classid = $1::bigint::oid AND l.objid = $2::bigint::oid
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def lock_id(name: str) -> int:
    """The signed 64-bit advisory lock id of the prefixed lock ``name``."""
    digest = hashlib.blake2b((_NAMESPACE + name).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _halves(key: int) -> tuple[int, int]:
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return unsigned >> 32, unsigned & 0xFFFF_FFFF


class PostgresSync(Sync):
    """Distributed locks with TTLs and leader election on advisory locks; see the module docstring."""

    options_type: ClassVar[type[PostgresSyncOptions]] = PostgresSyncOptions
    options: PostgresSyncOptions

    #: Started instances by (server, owner): an instance given the same ``owner`` as another in this
    #: process releases and refreshes the locks that one's session holds (a session lock cannot be
    #: released from another connection).
    _peers: ClassVar[dict[tuple[str, str], weakref.WeakSet[PostgresSync]]] = {}

    def __init__(self, options: PostgresSyncOptions | None = None) -> None:
        super().__init__(options)
        self._server = Server.of(self.options, "sync")
        self._conn: asyncpg.Connection | None = None
        # One statement at a time on the instance's connection.
        self._io = asyncio.Lock()
        # Lock names this session holds, with the timer that lets each lapse (None: no TTL).
        self._held: dict[str, asyncio.TimerHandle | None] = {}
        # Names this instance no longer holds (lapsed, or won by a cancelled call) that the session still
        # holds on the server until a release runs. Taking one of them again releases it first: advisory
        # locks are re-entrant, and a second grant would outlive the matching unlock.
        self._releasing: set[str] = set()
        # Releases still running: close() waits for them.
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def address(self) -> str:
        """The server, without credentials: ``127.0.0.1:5432/test``."""
        return self._server.address

    async def _start(self) -> None:
        """Open the instance's connection.

        Raises :class:`~micro.errors.BackendUnavailable` naming the address and
        ``MICRO_SYNC_ADDRESS`` if the server does not answer within ``connect_timeout``,
        and :class:`~micro.errors.Unauthorized` if it refuses the credentials.
        """
        self._conn = await self._server.connect(self.owner)
        self._loop = asyncio.get_running_loop()
        self._peers.setdefault(self._peer_key, weakref.WeakSet()).add(self)

    async def _close(self) -> None:
        """Release every lock of the session, then close the connection (the base has resigned its leaderships).

        Best effort: if the server cannot be reached, closing the connection releases them anyway.
        """
        peers = self._peers.get(self._peer_key)
        if peers is not None:
            peers.discard(self)
            if not peers:
                del self._peers[self._peer_key]
        self._forget_all()
        if self._in_flight:
            await asyncio.wait(list(self._in_flight), timeout=self.options.request_timeout)
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            async with self._io:
                await conn.execute("SELECT pg_advisory_unlock_all()")
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            await conn.close(timeout=self.options.request_timeout)

    def _translate(self, exc: Exception) -> MicroError | None:
        return self._server.translate(exc)

    # -- the hooks -------------------------------------------------------------------------------

    async def _try_lock(self, name: str, ttl: float | None) -> bool:
        if name in self._held and not self._lost():
            return False  # the server would grant it again (advisory locks are re-entrant); the contract says no
        attempt = asyncio.ensure_future(self._acquire(name, ttl))
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # The statement runs to completion on the server; if it won, give the lock back.
            self._track(attempt)
            attempt.add_done_callback(lambda done: self._undo(done, name))
            raise

    async def _acquire(self, name: str, ttl: float | None) -> bool:
        async with self._io:
            conn = await self._connection()
            if name in self._releasing:
                self._releasing.discard(name)
                await conn.execute("SELECT pg_advisory_unlock($1)", lock_id(name))
            won = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", lock_id(name)))
        if won:
            self._hold(name, ttl)
        return won

    async def _unlock(self, name: str) -> None:
        if name in self._held:
            self._forget(name)
            self._releasing.add(name)
            # Shielded and tracked: a cancelled unlock still releases, rather than leave the session holding it.
            release = asyncio.ensure_future(self._release(name))
            self._track(release)
            if await asyncio.shield(release):
                return
        elif (peer := self._peer_holding(name)) is not None:
            await peer._unlock(name)
            return
        await self._not_ours(name, "unlock")

    async def _refresh(self, name: str, ttl: float | None) -> None:
        if name not in self._held and (peer := self._peer_holding(name)) is not None:
            await peer._refresh(name, ttl)
            return
        if name in self._held:
            async with self._io:
                conn = await self._connection()
                holder = await self._holder(conn, name)
            if holder is not None and holder[1] and name in self._held:
                self._hold(name, ttl)
                return
            self._forget(name)
        await self._not_ours(name, "refresh")

    # -- machinery -------------------------------------------------------------------------------

    @property
    def _peer_key(self) -> tuple[str, str]:
        return self._server.dsn, self.owner

    def _peer_holding(self, name: str) -> PostgresSync | None:
        """Another started instance of this process and event loop, with this owner, whose session holds ``name``."""
        loop = asyncio.get_running_loop()
        for peer in list(self._peers.get(self._peer_key, ())):
            if peer is not self and peer._loop is loop and name in peer._held and not peer._lost():
                return peer
        return None

    def _lost(self) -> bool:
        """Whether the instance's connection was lost (and with it, on the server, every lock it held)."""
        return self._conn is not None and self._conn.is_closed()

    async def _connection(self) -> asyncpg.Connection:
        """The instance's connection, opened again if it was lost (whose locks the server released)."""
        if self._conn is None:
            raise ConnectionClosed(f"the {type(self).__name__} is closed")
        if self._conn.is_closed():
            self._forget_all()
            self._conn = await self._server.connect(self.owner)
        self._loop = asyncio.get_running_loop()
        self._peers.setdefault(self._peer_key, weakref.WeakSet()).add(self)
        return self._conn

    async def _holder(self, conn: asyncpg.Connection, name: str) -> tuple[str, bool] | None:
        """``(application_name, whether it is this session)`` of the session holding ``name``, or ``None``."""
        high, low = _halves(lock_id(name))
        row = await conn.fetchrow(_HOLDER, high, low)
        return None if row is None else (row[0] or "?", bool(row[1]))

    async def _not_ours(self, name: str, verb: str) -> None:
        """Raise :class:`LockHeld` naming the session that holds ``name``, or :class:`LockNotFound`."""
        async with self._io:
            holder = await self._holder(await self._connection(), name)
        if holder is None or holder[1]:
            raise LockNotFound(f"cannot {verb} lock {name!r}: nobody holds it")
        raise LockHeld(f"cannot {verb} lock {name!r}: it is held by {holder[0]}")

    def _hold(self, name: str, ttl: float | None) -> None:
        self._forget(name)
        timer = None if ttl is None else asyncio.get_running_loop().call_later(ttl, self._lapse, name)
        self._held[name] = timer

    def _forget(self, name: str) -> None:
        timer = self._held.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _forget_all(self) -> None:
        for name in list(self._held):
            self._forget(name)
        self._releasing.clear()

    def _lapse(self, name: str) -> None:
        """The TTL of ``name`` ran out: it is no longer held, and the server is told so."""
        self._held.pop(name, None)
        self._release_later(name)

    def _undo(self, attempt: asyncio.Future[bool], name: str) -> None:
        if attempt.cancelled() or attempt.exception() is not None or not attempt.result():
            return
        self._forget(name)
        self._release_later(name)

    def _release_later(self, name: str) -> None:
        self._releasing.add(name)
        self._track(asyncio.ensure_future(self._release_quietly(name)))

    def _track(self, future: asyncio.Future[Any]) -> None:
        self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)

    async def _release(self, name: str) -> bool:
        """Release ``name`` on the server if it is still waiting in :attr:`_releasing`; whether it was released.

        ``True`` also when there is nothing left to do (a new acquisition released it first); ``False`` when
        the session no longer held it (its connection was lost, so the server released it already).
        """
        conn = self._conn
        if conn is None or conn.is_closed():
            self._releasing.discard(name)
            return False
        async with self._io:
            if name not in self._releasing:
                return True
            self._releasing.discard(name)
            if conn is not self._conn or conn.is_closed():
                return False
            return bool(await conn.fetchval("SELECT pg_advisory_unlock($1)", lock_id(name)))

    async def _release_quietly(self, name: str) -> None:
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
            await self._release(name)
