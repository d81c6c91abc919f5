"""``redis``: locks and leader election on one Redis server, shared by every process that points at it.

A lock is the string key ``<key_prefix><prefix><id>`` (by default ``micro:sync:<id>``),
whose value names its holder: the instance's :attr:`~micro.sync.Sync.owner`, then ``|``
and 16 hex digits drawn for that acquisition. Its TTL is the key's Redis expiry, to the
millisecond.

* **Taking** a lock is one atomic step on the server (``SET NX PX`` semantics, in a Lua
  script): there is no window in which two owners both win. A lapsed lock is simply a
  key Redis has expired.
* **Releasing and refreshing** compare the holder's owner and delete or extend in the
  same script, so a lock that lapsed and was taken by someone else is never released or
  extended by its former owner: that raises :class:`~micro.errors.LockHeld`, a missing
  key :class:`~micro.errors.LockNotFound`.
* **Waiting** :meth:`~micro.sync.Sync.lock` polls with jittered exponential backoff, from
  5 ms up to :attr:`~micro.sync.SyncOptions.poll_interval`, until ``wait`` runs out.
* **Leader election** is :class:`micro.sync.Leader`: the leader refreshes its lock every
  ``ttl / 3`` and signals :attr:`~micro.sync.Leader.lost` when a refresh finds the lock
  gone or taken, or cannot reach Redis before the lock would lapse.
* **Lost connections.** A command whose connection breaks is sent once more on a new
  connection. The scripts make that safe: the acquisition's random part lets a repeated
  attempt recognise a lock its first attempt took, and a repeated release that finds the
  lock gone counts as done. If Redis stays unreachable the call raises
  :class:`~micro.errors.BackendUnavailable`, and a lock it may have taken lapses after its TTL.
* **Close** releases the locks this instance took and still holds (not those another
  instance with the same ``owner`` took). It waits at most ``request_timeout`` for
  commands still in flight (an interrupted acquisition giving its lock back), then
  abandons them: a lock they leave behind lapses after its TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from typing import Any, ClassVar, Final

from micro.errors import ConnectionClosed, LockHeld, LockNotFound, MicroError
from micro.sync import Sync
from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError

from ._client import Server
from ._errors import translated
from .options import RedisSyncOptions

__all__ = ["RedisSync"]

# The random part of a holder's value: "|" and 16 hex digits, so the owner is all but the last 17 characters.
_TOKEN_LENGTH: Final = 16

# KEYS[1] lock; ARGV[1] holder value, ARGV[2] ttl in ms or "" for none.
# 1: held by this value now (taken, or taken by an earlier attempt of the same acquisition); 0: held by another.
_ACQUIRE: Final = """
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then return 1 end
if current then return 0 end
if ARGV[2] == '' then
    redis.call('SET', KEYS[1], ARGV[1])
else
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
return 1
"""

# KEYS[1] lock; ARGV[1] owner, ARGV[2] "release" or "refresh", ARGV[3] ttl in ms or "" for none.
# {1}: done; {0}: nobody holds it; {2, holder}: another owner does.
_SETTLE: Final = """
local current = redis.call('GET', KEYS[1])
if not current then return {0} end
local owner = string.sub(current, 1, -18)
if owner ~= ARGV[1] then return {2, owner} end
if ARGV[2] == 'release' then
    redis.call('DEL', KEYS[1])
elseif ARGV[3] == '' then
    redis.call('PERSIST', KEYS[1])
else
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return {1}
"""


# KEYS[1] lock; ARGV[1] holder value. Releases the lock only if that exact acquisition still holds it.
_GIVE_BACK: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _milliseconds(ttl: float | None) -> str:
    # Redis expiries are whole milliseconds; a positive TTL must never become "no expiry" or "expired now".
    return "" if ttl is None else str(max(1, round(ttl * 1000)))


class RedisSync(Sync):
    """Distributed locks with TTLs and leader election on Redis; see the module docstring."""

    options_type: ClassVar[type[RedisSyncOptions]] = RedisSyncOptions
    options: RedisSyncOptions

    def __init__(self, options: RedisSyncOptions | None = None) -> None:
        super().__init__(options)
        self._server = Server.of(self.options, "sync")
        self._redis: Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        #: The name its connections give Redis (``CLIENT LIST``).
        self.client_name = f"micro-sync-{uuid.uuid4().hex[:8]}"
        # Lock keys this instance took and has not released, for close().
        self._held: set[str] = set()
        # Acquisitions still running after their caller was cancelled, and the releases that undo
        # them: close() waits for these before it closes the connections they use.
        self._in_flight: set[asyncio.Future[Any]] = set()

    @property
    def address(self) -> str:
        """The server, without credentials: ``127.0.0.1:6379``."""
        return self._server.address

    async def _start(self) -> None:
        """Connect and check the server answers.

        Raises :class:`~micro.errors.BackendUnavailable` naming the address and
        ``MICRO_SYNC_ADDRESS`` if it does not within ``connect_timeout``, and
        :class:`~micro.errors.Unauthorized` if it refuses the credentials.
        """
        client = await self._server.connect(self.client_name)
        self._scripts = {
            name: client.register_script(text)
            for name, text in (("acquire", _ACQUIRE), ("settle", _SETTLE), ("give_back", _GIVE_BACK))
        }
        self._redis = client

    async def _close(self) -> None:
        """Release the locks this instance holds, and disconnect (the base has resigned its leaderships).

        Releasing is best effort: a lock that cannot be released because Redis is
        unreachable lapses after its TTL.
        """
        if self._redis is None:
            return
        for key in list(self._held):
            with contextlib.suppress(MicroError):
                await self._settle(key, "release", None)
        self._held.clear()
        # A finishing acquisition may add the release that undoes it, so wait until none is left, but only for
        # request_timeout: past that Redis is not answering, and whatever those commands took lapses with its TTL.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.request_timeout
        while self._in_flight and (remaining := deadline - loop.time()) > 0:
            await asyncio.wait(list(self._in_flight), timeout=remaining)
        for straggler in list(self._in_flight):
            straggler.cancel()
        client, self._redis = self._redis, None
        await client.aclose()

    async def _try_lock(self, name: str, ttl: float | None) -> bool:
        key = self._key(name)
        holder = f"{self.owner}|{secrets.token_hex(_TOKEN_LENGTH // 2)}"
        attempt = asyncio.ensure_future(self._run("acquire", key, holder, _milliseconds(ttl)))
        try:
            won, _ = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # The script runs to completion on the server; if it won, give the lock back.
            self._track(attempt)
            attempt.add_done_callback(lambda done: self._give_back(done, key, holder))
            raise
        if won:
            self._held.add(key)
        return bool(won)

    async def _unlock(self, name: str) -> None:
        key = self._key(name)
        await self._settle(key, "release", None)
        self._held.discard(key)

    async def _refresh(self, name: str, ttl: float | None) -> None:
        await self._settle(self._key(name), "refresh", ttl)

    async def _settle(self, key: str, action: str, ttl: float | None) -> None:
        """Release or refresh ``key`` for this owner; raises what :meth:`unlock` raises."""
        reply, repeated = await self._run("settle", key, self.owner, action, _milliseconds(ttl))
        if reply[0] == 1:
            return
        verb = "unlock" if action == "release" else action
        name = key[len(self.options.key_prefix) :]  # the id with its prefix, as the caller knows it
        if reply[0] == 0:
            if action == "release" and repeated:
                return  # the first attempt released it, and its reply was lost with the connection
            raise LockNotFound(f"cannot {verb} lock {name!r}: nobody holds it")
        holder = reply[1].decode("utf-8", "replace") if isinstance(reply[1], bytes) else str(reply[1])
        raise LockHeld(f"cannot {verb} lock {name!r}: it is held by {holder}")

    async def _run(self, script: str, key: str, *args: str) -> tuple[Any, bool]:
        """Run a script on ``key``; returns its reply and whether it had to be sent twice.

        A script whose connection broke is sent once more on a new connection (the
        scripts are written so that a repeat is harmless). Driver errors are translated.
        """
        client = self._client()
        call = self._scripts[script]
        with translated(self._server.where):
            try:
                return await call(keys=[key], args=list(args), client=client), False
            except RedisConnectionError:
                return await call(keys=[key], args=list(args), client=client), True

    def _give_back(self, attempt: asyncio.Future[tuple[Any, bool]], key: str, holder: str) -> None:
        if attempt.cancelled() or attempt.exception() is not None or not attempt.result()[0]:
            return
        if self._redis is None:
            return
        self._track(asyncio.ensure_future(self._release_quietly(key, holder)))

    def _track(self, future: asyncio.Future[Any]) -> None:
        self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)

    async def _release_quietly(self, key: str, holder: str) -> None:
        with contextlib.suppress(MicroError):
            await self._run("give_back", key, holder)

    def _key(self, name: str) -> str:
        return self.options.key_prefix + name

    def _client(self) -> Redis:
        # The base refuses calls before start() and after close(); close() itself still releases
        # through here until it drops the client.
        if self._redis is None:
            raise ConnectionClosed(f"the {type(self).__name__} is closed")
        return self._redis
