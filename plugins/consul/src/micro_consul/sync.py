"""``consul``: a :class:`~micro.sync.Sync` on Consul sessions and the KV store (locks and leader election).

* **Sessions.** Each started instance creates one Consul session (``behavior``
  delete, no lock-delay, ``session_ttl``) and renews it every third of its TTL.
  Every lock it takes is a KV key *acquired* with that session, so if the
  process dies its locks disappear once Consul invalidates the session (at
  most twice ``session_ttl`` later), and :meth:`~ConsulSync.close` releases them
  all at once by destroying it. A session that lapsed anyway (the process was
  paused past its TTL) is replaced, and the locks it held are gone.
* **Locks.** The key ``<root><prefix+id>`` (the id percent-encoded into one
  segment) holds ``{"owner": ..., "expires": <unix time or null>}``. A lock's
  own ``ttl`` can be far shorter than Consul's 10 s minimum session TTL, so it is
  enforced through ``expires``: a contender takes over a key whose time has
  passed. Taking, taking over, refreshing and releasing are transactions
  guarded by the key's index (``check-not-exists``/``delete-cas`` + ``lock``,
  ``cas``, ``delete-cas``), so two contenders never both win. Expiry compares
  wall clocks: hosts sharing locks need synchronised clocks (NTP), and a lock's
  ttl should exceed their skew.
* **Waiting.** :meth:`~ConsulSync.lock` blocks on the key with a blocking query
  until it changes, the holder's time runs out or ``wait`` ends, so a release is
  noticed at once without polling.

Leader election is :class:`micro.sync.Leader`: the leader refreshes its lock
every ``ttl / 3`` and learns that it lost it from a failed refresh.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import consul.exceptions
from micro.errors import LockHeld, LockNotFound, MicroError
from micro.sync import Sync

from ._client import Consul, dumps, wait_param
from .options import ConsulSyncOptions

__all__ = ["ConsulSync"]

logger = logging.getLogger("micro.sync.consul")

#: Rounds of read-then-transaction before giving up to a key that keeps changing underneath.
_ROUNDS: Final = 5
#: The longest single blocking query while waiting for a lock (Consul adds jitter of wait/16).
_MAX_BLOCK: Final = 30.0


@dataclass(frozen=True, slots=True)
class _Hold:
    owner: str
    #: Unix time at which the lock lapses, or ``None``.
    expires: float | None

    def live(self, now: float) -> bool:
        return self.expires is None or self.expires > now


def _hold(entry: dict[str, Any]) -> _Hold:
    try:
        value = json.loads(entry.get("Value") or b"")
        owner, expires = str(value["owner"]), value.get("expires")
        return _Hold(owner, None if expires is None else float(expires))
    except (ValueError, TypeError, KeyError, AttributeError):
        # Not written by micro: someone else's key at our path. Treat it as held for good.
        return _Hold(f"unknown (session {entry.get('Session') or 'none'})", None)


def _renew(api: Any, *, session: str) -> Any:
    return api.session.renew(session)


def _encode(value: dict[str, Any]) -> str:
    return base64.b64encode(dumps(value).encode()).decode()


class ConsulSync(Sync):
    """Locks and leader election through Consul. See the module docstring."""

    options_type: ClassVar[type[ConsulSyncOptions]] = ConsulSyncOptions
    options: ConsulSyncOptions

    def __init__(self, options: ConsulSyncOptions | None = None) -> None:
        super().__init__(options)
        self._consul = Consul(
            self.options.address,
            variable="MICRO_SYNC_ADDRESS",
            token=self.options.token,
            datacenter=self.options.datacenter,
            timeout=self.options.timeout,
        )
        self._session: str | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._open = False
        self._replacing = asyncio.Lock()

    @property
    def address(self) -> str:
        """The Consul agent in use."""
        return self._consul.address

    @property
    def session(self) -> str | None:
        """The ID of this instance's Consul session while started."""
        return self._session

    # -- lifecycle ------------------------------------------------------------------------------

    async def _start(self) -> None:
        """Connect and create this instance's session.

        Raises :class:`~micro.errors.BackendUnavailable` naming the address and
        ``MICRO_SYNC_ADDRESS`` if no agent answers within ``timeout``.
        """
        await self._consul.open()
        try:
            self._session = await self._create_session()
        except BaseException:
            await self._consul.close()
            raise
        self._renewer = asyncio.create_task(self._renew(), name="micro.sync.consul:session")
        self._open = True

    async def _close(self) -> None:
        """Destroy the session: Consul deletes every lock it holds (the base has resigned the leaderships)."""
        self._open = False
        renewer, self._renewer = self._renewer, None
        if renewer is not None:
            renewer.cancel()
            await asyncio.wait({renewer})
        if self._background:
            await asyncio.wait(self._background, timeout=self.options.timeout)
        session, self._session = self._session, None
        if session is not None:
            try:
                await self._consul.call("destroying the session", lambda api: api.session.destroy(session))
            except (MicroError, consul.exceptions.ConsulException) as exc:
                logger.warning("could not destroy Consul session %s (its locks go when it expires): %s", session, exc)
        await self._consul.close()

    async def _create_session(self) -> str:
        ttl = round(self.options.session_ttl)
        session: str = await self._consul.call(
            "creating a session",
            lambda api: api.session.create(name=f"micro sync {self.owner}", behavior="delete", lock_delay=0, ttl=ttl),
        )
        return session

    async def _current_session(self) -> str:
        """This instance's session, created anew if the last one was lost."""
        async with self._replacing:
            if self._session is None:
                self._session = await self._create_session()
            return self._session

    def _lost(self, session: str) -> None:
        if self._session == session:
            logger.warning("Consul session %s is gone, and with it the locks it held; making a new one", session)
            self._session = None

    async def _renew(self) -> None:
        interval = self.options.session_ttl / 3
        pause = interval
        while True:
            await asyncio.sleep(pause)
            pause = interval
            try:
                session = await self._current_session()
            except MicroError as exc:
                logger.warning("could not create a Consul session: %s", exc)
                pause = min(interval, 1.0)
                continue
            try:
                await self._consul.call("renewing the session", functools.partial(_renew, session=session))
            except consul.exceptions.NotFound:
                self._lost(session)
                pause = 0.0
            except (MicroError, consul.exceptions.ConsulException) as exc:
                logger.warning("could not renew the Consul session: %s", exc)
                pause = min(interval, 1.0)  # keep trying more often while the agent is away

    def _key(self, name: str) -> str:
        segment = urllib.parse.quote(name, safe="")
        if segment in (".", ".."):
            segment = segment.replace(".", "%2E")  # a path segment of dots would be resolved away in the URL
        return self.options.root + segment

    # -- KV helpers -----------------------------------------------------------------------------

    async def _get(
        self, client: Consul, key: str, *, index: str | None = None, wait: float = 0.0
    ) -> tuple[str, dict[str, Any] | None]:
        if index is None:
            result = await client.call(f"reading lock {key!r}", lambda api: api.kv.get(key, consistency="consistent"))
        else:
            result = await client.call(
                f"waiting on lock {key!r}",
                lambda api: api.kv.get(key, index=index, wait=wait_param(wait)),
                wait=wait,
            )
        found, entry = result
        return str(found), entry

    def _value(self, ttl: float | None) -> str:
        return _encode({"owner": self.owner, "expires": None if ttl is None else time.time() + ttl})

    # -- the interface --------------------------------------------------------------------------

    async def _try_lock(self, name: str, ttl: float | None) -> bool:
        key = self._key(name)
        attempt = asyncio.ensure_future(self._acquire(key, ttl))
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # The transaction may still commit: if it does, give the lock back rather than hold it unknowingly.
            attempt.add_done_callback(lambda done: self._release_if_won(done, name))
            raise

    def _release_if_won(self, attempt: asyncio.Future[bool], name: str) -> None:
        if attempt.cancelled() or attempt.exception() is not None or not attempt.result() or not self._open:
            return
        task = asyncio.ensure_future(self._release_quietly(name))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _release_quietly(self, name: str) -> None:
        with contextlib.suppress(MicroError):
            await self._unlock(name)

    async def _acquire(self, key: str, ttl: float | None) -> bool:
        client = self._consul
        for _ in range(_ROUNDS):
            _, entry = await self._get(client, key)
            session = await self._current_session()
            lock = {"KV": {"Verb": "lock", "Key": key, "Value": self._value(ttl), "Session": session}}
            if entry is None:
                guard = {"KV": {"Verb": "check-not-exists", "Key": key}}
            elif _hold(entry).live(time.time()):
                return False
            else:
                # Lapsed: remove it, guarded by its index so that only one contender takes it over.
                guard = {"KV": {"Verb": "delete-cas", "Key": key, "Index": entry["ModifyIndex"]}}
            outcome = await client.txn(f"taking lock {key!r}", [guard, lock])
            if outcome.ok:
                return True
            if any("session" in error.lower() for error in outcome.errors):
                self._lost(session)  # invalidated before the renewer noticed: the next round makes a new one
            # Otherwise another contender changed the key between our read and the transaction: look again.
        return False

    async def _lock(self, name: str, ttl: float | None, wait: float | None) -> bool:
        """Take the lock, waiting on the key with blocking queries rather than polling."""
        key = self._key(name)
        client = self._consul
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        while not await self._try_lock(name, ttl):
            now = loop.time()
            if deadline is not None and now >= deadline:
                return False
            index, entry = await self._get(client, key)
            if entry is None:
                continue  # released meanwhile
            hold = _hold(entry)
            limits = [_MAX_BLOCK]
            if deadline is not None:
                limits.append(deadline - now)
            if hold.expires is not None:
                limits.append(hold.expires - time.time())
            block = min(limits)
            if block <= 0.001:
                await asyncio.sleep(0.001)  # lapsing this instant: try again without a blocking query
                continue
            await self._get(client, key, index=index, wait=block)
            self._check_open()
        return True

    async def _unlock(self, name: str) -> None:
        key = self._key(name)
        client = self._consul
        for _ in range(_ROUNDS):
            entry = await self._mine(client, key, name, "unlock")
            outcome = await client.txn(
                f"releasing lock {key!r}",
                [{"KV": {"Verb": "delete-cas", "Key": key, "Index": entry["ModifyIndex"]}}],
            )
            if outcome.ok:
                return
        raise LockHeld(f"cannot unlock lock {name!r}: it keeps changing underneath")

    async def _refresh(self, name: str, ttl: float | None) -> None:
        key = self._key(name)
        client = self._consul
        for _ in range(_ROUNDS):
            entry = await self._mine(client, key, name, "refresh")
            outcome = await client.txn(
                f"refreshing lock {key!r}",
                [{"KV": {"Verb": "cas", "Key": key, "Value": self._value(ttl), "Index": entry["ModifyIndex"]}}],
            )
            if outcome.ok:
                return
        raise LockHeld(f"cannot refresh lock {name!r}: it keeps changing underneath")

    async def _mine(self, client: Consul, key: str, id: str, what: str) -> dict[str, Any]:
        """The live entry of ``key`` held by this owner, or the error :meth:`unlock` raises."""
        _, entry = await self._get(client, key)
        if entry is None:
            raise LockNotFound(f"cannot {what} lock {id!r}: nobody holds it")
        hold = _hold(entry)
        if not hold.live(time.time()):
            raise LockNotFound(f"cannot {what} lock {id!r}: nobody holds it (its ttl lapsed)")
        if hold.owner != self.owner:
            raise LockHeld(f"cannot {what} lock {id!r}: it is held by {hold.owner}")
        return entry
