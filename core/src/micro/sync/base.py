"""The sync interface: distributed locks and leader election (Go Micro ``sync/sync.go``, Dapr lock semantics).

A lock is named by an id (prefixed with :attr:`SyncOptions.prefix`) and held by
one *owner* at a time. Every :class:`Sync` instance is its own owner, with a
unique id unless :attr:`SyncOptions.owner` is set, so two instances in one
process contend exactly like two processes do.

The rules every implementation follows, and the conformance suite checks:

* **Not re-entrant.** Locking an id the same owner already holds waits (and
  :meth:`Sync.try_lock` returns ``False``) like any other contender.
* **TTL.** A lock taken with ``ttl`` seconds lapses by itself after that long
  unless :meth:`Sync.refresh` extends it; a lapsed lock no longer exists (another
  owner can take it, and its former owner's :meth:`Sync.unlock` raises
  :class:`~micro.errors.LockNotFound`). ``ttl=None`` holds it until unlocked,
  which a crashed process never does: prefer a TTL.
* **Waiting.** :meth:`Sync.lock` waits up to ``wait`` seconds (default 30, as
  Go Micro's memory sync; ``None`` forever; ``0`` one attempt) and then raises
  :class:`~micro.errors.LockTimeout`. :meth:`Sync.try_lock` never waits and
  never raises because the lock is held.
* **Release.** :meth:`Sync.unlock` of a lock nobody holds raises
  :class:`~micro.errors.LockNotFound`; of a lock another owner holds,
  :class:`~micro.errors.LockHeld` (the lock stays as it is).
* **Cancellation.** A cancelled :meth:`Sync.lock` or :meth:`Sync.try_lock` never
  leaves the lock held: if the outcome was still unknown when the call was
  cancelled, the implementation releases the lock once it learns it got it.
* **Close.** :meth:`Sync.close` resigns this instance's leaderships and
  releases the locks it holds.
* **Bad input** raises :class:`~micro.errors.BadRequest`: an empty id, a TTL that
  is not a positive finite number, a negative or NaN ``wait``.

Leader election (:meth:`Sync.leader`) is built here on those four operations, so
an implementation gets it for free: the leader holds the lock named by the
election id (``leader(id)`` and ``lock(id)`` contend with each other) and
refreshes it in the background every ``ttl / 3`` seconds.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import math
import os
import random
import socket
import uuid
from types import TracebackType
from typing import ClassVar, Self

from ..component import Component
from ..errors import BadRequest, LockHeld, LockNotFound, LockTimeout, MicroError
from .options import SyncOptions

__all__ = ["DEFAULT_TTL", "DEFAULT_WAIT", "Leader", "Sync", "check_id", "check_ttl", "check_wait"]

#: Seconds a lock lives when no ``ttl`` is given.
DEFAULT_TTL: float = 30.0
#: Seconds :meth:`Sync.lock` waits when no ``wait`` is given.
DEFAULT_WAIT: float = 30.0

# A waiting lock() polls first after this many seconds, doubling up to SyncOptions.poll_interval.
_FIRST_POLL = 0.005
# Seconds between the cancellations resign() sends a refresh task that has not ended yet.
_RECANCEL = 0.05


def check_id(id: object) -> str:
    """``id`` if it is a non-empty, UTF-8 encodable string, else :class:`~micro.errors.BadRequest`."""
    if not isinstance(id, str):
        raise BadRequest(f"lock id must be a str, not {type(id).__name__}")
    if not id:
        raise BadRequest("lock id must not be empty")
    try:
        id.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"lock id {id!r} is not valid Unicode (it contains a lone surrogate)") from None
    return id


def check_ttl(ttl: object, *, optional: bool = True) -> float | None:
    """``ttl`` as a float (``None`` allowed if ``optional``); BadRequest unless positive and finite."""
    if ttl is None and optional:
        return None
    if not isinstance(ttl, (int, float)) or isinstance(ttl, bool):
        raise BadRequest(f"ttl must be a number of seconds, not {type(ttl).__name__}")
    if not math.isfinite(ttl) or ttl <= 0:
        raise BadRequest(f"ttl must be a positive, finite number of seconds, got {ttl!r}")
    return float(ttl)


def check_wait(wait: object) -> float | None:
    """``wait`` as a float, ``None`` for forever; :class:`~micro.errors.BadRequest` if negative or NaN."""
    if wait is None:
        return None
    if not isinstance(wait, (int, float)) or isinstance(wait, bool):
        raise BadRequest(f"wait must be a number of seconds or None, not {type(wait).__name__}")
    if math.isnan(wait) or wait < 0:
        raise BadRequest(f"wait must be zero or more seconds (None to wait forever), got {wait!r}")
    return None if math.isinf(wait) else float(wait)


def _new_owner() -> str:
    # Host and pid make a lock's holder recognisable in a dump; the uuid makes it unique per instance.
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


class Sync(Component, abc.ABC):
    """Locks with a time to live, and leader election on top of them.

    Operations need a started instance (``await sync.start()`` or ``async
    with``); before that, and after :meth:`close`, they raise
    :class:`~micro.errors.ConnectionClosed`.

    **Hooks.** The public methods are concrete: they check the id, TTL and wait,
    add :attr:`SyncOptions.prefix`, apply the lifecycle rule and translate driver
    errors (``_translate``). A backend implements :meth:`_try_lock`,
    :meth:`_unlock` and :meth:`_refresh` on the prefixed *name*, optionally
    :meth:`_lock` (the default polls :meth:`_try_lock` with backoff), and its
    ``_start``/``_close``; :meth:`leader` is built on all of them. :meth:`close`
    resigns this instance's leaderships before the backend's ``_close`` runs.
    """

    interface: ClassVar[str] = "sync"
    options_type: ClassVar[type[SyncOptions]] = SyncOptions
    options: SyncOptions

    #: Optional behaviours this implementation has (none are defined yet).
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: SyncOptions | None = None) -> None:
        super().__init__(options)
        #: Who holds the locks this instance takes: ``options.owner`` or a unique id.
        self.owner: str = self.options.owner or _new_owner()
        self._leaders: set[Leader] = set()

    # -- the public contract -------------------------------------------------------------------

    async def lock(self, id: str, *, ttl: float | None = DEFAULT_TTL, wait: float | None = DEFAULT_WAIT) -> None:
        """Take the lock ``id`` for ``ttl`` seconds, waiting up to ``wait`` seconds for it (Go Micro ``Lock``).

        Makes at least one attempt, even with ``wait=0``. Raises
        :class:`~micro.errors.LockTimeout` if the lock is still held by someone
        (this owner included) when ``wait`` has passed; ``wait=None`` waits
        forever. Waiters are not served in order. Cancelling a waiting call
        leaves the lock untouched.
        """
        name = self._name(id)
        ttl = check_ttl(ttl)
        wait = check_wait(wait)
        self._check_open()
        try:
            acquired = await self._lock(name, ttl, wait)
        except Exception as exc:
            self._fail(exc)
        if not acquired:
            raise LockTimeout(f"lock {id!r} is held by another owner; gave up after {wait or 0:g}s")

    async def try_lock(self, id: str, *, ttl: float | None = DEFAULT_TTL) -> bool:
        """Take the lock ``id`` for ``ttl`` seconds if nobody holds it (Dapr ``TryLock``).

        Returns ``True`` if this owner now holds it, ``False`` if someone
        (this owner included) already does; never waits, and never raises
        because the lock is held. ``ttl=None``: held until unlocked.
        """
        name = self._name(id)
        ttl = check_ttl(ttl)
        self._check_open()
        try:
            return await self._try_lock(name, ttl)
        except Exception as exc:
            self._fail(exc)

    async def unlock(self, id: str) -> None:
        """Release the lock ``id`` held by this owner (Go Micro ``Unlock``).

        Raises :class:`~micro.errors.LockNotFound` if nobody holds it (never
        taken, released, or lapsed) and :class:`~micro.errors.LockHeld` if
        another owner does; the lock is then left as it is.
        """
        name = self._name(id)
        self._check_open()
        try:
            await self._unlock(name)
        except Exception as exc:
            self._fail(exc)

    async def refresh(self, id: str, *, ttl: float | None = DEFAULT_TTL) -> None:
        """Extend the lock ``id`` held by this owner to lapse ``ttl`` seconds from now.

        ``ttl=None`` makes it permanent. Raises :class:`~micro.errors.LockNotFound`
        and :class:`~micro.errors.LockHeld` as :meth:`unlock` does: a lock that
        has lapsed cannot be refreshed, only taken again.
        """
        name = self._name(id)
        ttl = check_ttl(ttl)
        self._check_open()
        try:
            await self._refresh(name, ttl)
        except Exception as exc:
            self._fail(exc)

    async def leader(self, id: str, *, ttl: float = DEFAULT_TTL, wait: float | None = None) -> Leader:
        """Campaign for leadership of ``id`` until elected, and return the :class:`Leader` (Go Micro ``Leader``).

        Election is taking the lock ``id`` (waiting up to ``wait`` seconds,
        forever by default, then :class:`~micro.errors.LockTimeout`); the leader
        then refreshes it every ``ttl / 3`` seconds until it resigns or loses
        it. At most one instance leads an id at a time, provided the refresh
        task gets to run: a process that blocks its event loop for longer than
        ``ttl`` loses leadership without noticing until the loop resumes.
        """
        check_id(id)
        lease = check_ttl(ttl, optional=False)
        assert lease is not None
        await self.lock(id, ttl=lease, wait=wait)
        leader = Leader(self, id, lease)
        self._leaders.add(leader)
        return leader

    async def close(self) -> None:
        """Resign every leadership of this instance, then release its locks (the backend's ``_close``). Idempotent."""
        if self._component_started():
            for leader in list(self._leaders):
                # One failing resignation must not keep the others, or the close, from happening.
                with contextlib.suppress(MicroError):
                    await leader.resign()
        await super().close()

    # -- the hooks a backend implements --------------------------------------------------------
    # ``name`` is the checked id with SyncOptions.prefix in front; ttl and wait are checked, and
    # the instance is started. Errors name the lock by ``name``.

    async def _lock(self, name: str, ttl: float | None, wait: float | None) -> bool:
        """Take ``name``, waiting up to ``wait`` seconds (``None``: forever); ``False`` if it is still held then.

        At least one attempt is made, even with ``wait=0``; the base raises :class:`LockTimeout` for ``False``.

        The default polls :meth:`_try_lock` with jittered backoff up to
        :attr:`SyncOptions.poll_interval`, checking before each attempt that the
        instance is still open. A backend that can wait for a release overrides it.
        """
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        delay = min(_FIRST_POLL, self.options.poll_interval)
        while not await self._try_lock(name, ttl):
            now = loop.time()
            if deadline is not None and now >= deadline:
                return False
            # Jitter keeps contenders that started together from polling in lockstep.
            pause = random.uniform(delay / 2, delay)
            await asyncio.sleep(pause if deadline is None else min(pause, deadline - now))
            delay = min(delay * 2, self.options.poll_interval)
            self._check_open()
        return True

    @abc.abstractmethod
    async def _try_lock(self, name: str, ttl: float | None) -> bool:
        """Take ``name`` for ``ttl`` seconds if nobody holds it; ``False`` if someone (this owner too) does.

        A cancelled call must not leave the lock held (see the module docstring).
        """

    @abc.abstractmethod
    async def _unlock(self, name: str) -> None:
        """Release ``name`` if this owner holds it; :class:`LockNotFound` / :class:`LockHeld` otherwise."""

    @abc.abstractmethod
    async def _refresh(self, name: str, ttl: float | None) -> None:
        """Extend this owner's hold on ``name`` to ``ttl`` from now; errors as :meth:`_unlock`."""

    def _name(self, id: object) -> str:
        return self.options.prefix + check_id(id)


class Leader:
    """Leadership of one election id, won by :meth:`Sync.leader` (Go Micro ``sync.Leader``).

    While :attr:`lost` is clear this instance leads. It is set, once and for
    good, when the leader resigns, when its :class:`Sync` closes, and when a
    refresh finds the lock gone or taken, or has not reached the backend by a
    little before the lock would lapse (``ttl / 10``, at most 1 s, early).
    Use it as ``async with await sync.leader(id):`` to resign on exit, and
    watch :attr:`lost` (or ``await wait_lost()``) to stop leading work when
    leadership ends.
    """

    def __init__(self, sync: Sync, id: str, ttl: float) -> None:
        self.id = id
        self.ttl = ttl
        #: Set when this instance stops leading, for whatever reason.
        self.lost = asyncio.Event()
        self._sync = sync
        self._resigned = False
        self._task = asyncio.get_running_loop().create_task(self._keep(), name=f"micro-sync-leader:{id}")

    @property
    def is_leader(self) -> bool:
        """Whether this instance still leads (as far as it knows)."""
        return not self.lost.is_set()

    async def wait_lost(self) -> None:
        """Return when leadership has ended."""
        await self.lost.wait()

    async def resign(self) -> None:
        """Stop leading and release the lock so that another contender is elected. Idempotent.

        :attr:`lost` is set before the lock is released, so nothing here still
        believes it leads once another instance can. A lock that lapsed or was
        taken meanwhile is not an error; failing to reach the backend raises
        :class:`~micro.errors.Unavailable` (the lock then lapses after its TTL).
        """
        if self._resigned:
            return
        self._resigned = True
        self._sync._leaders.discard(self)
        leading = not self.lost.is_set()
        self.lost.set()
        await self._stop_refreshing()
        if leading:
            with contextlib.suppress(LockNotFound, LockHeld):
                await self._sync.unlock(self.id)

    async def _stop_refreshing(self) -> None:
        """Cancel the refresh task and wait for it to end, for at most ``ttl`` seconds.

        A driver may swallow a cancellation: ``asyncio.wait_for`` (which redis-py wraps
        every command in) returns the result instead when the call it waits for finishes
        at the moment the cancel arrives (Python 3.11). So the cancel is repeated, and
        :meth:`_keep` also stops by itself once the leader has resigned. If it is still
        running at the deadline it is left to end on its own: a refresh landing after the
        release finds the lock gone or someone else's, and changes nothing. The caller's own
        cancellation propagates.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ttl
        while not self._task.done() and (left := deadline - loop.time()) > 0:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=min(left, _RECANCEL))
        if self._task.done() and not self._task.cancelled():
            self._task.result()  # a bug in the refresh loop surfaces here, as it did when awaited

    async def _keep(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.ttl / 3
        # The backend's lock lapses ttl seconds after the last successful refresh, which is no earlier
        # than when that refresh started. Giving up a little sooner than that absorbs the delay
        # between the backend granting the lock and this task learning of it, and timer lateness.
        lease = self.ttl - min(self.ttl / 10, 1.0)
        lapses = loop.time() + lease
        try:
            # Checked as well as cancelled: a refresh whose cancellation the driver swallowed
            # returns normally, and the loop must not go on leading after a resignation.
            while not self._resigned:
                await asyncio.sleep(max(0.0, min(interval, lapses - loop.time())))
                started = loop.time()
                if started >= lapses:
                    return
                try:
                    async with asyncio.timeout(lapses - started):
                        await self._sync.refresh(self.id, ttl=self.ttl)
                except (LockNotFound, LockHeld):
                    return
                except (MicroError, TimeoutError):
                    interval = min(self.ttl / 10, 1.0)  # the backend is unreachable: retry soon, until it lapses
                    continue
                lapses = started + lease
                interval = self.ttl / 3
        finally:
            self.lost.set()
            self._sync._leaders.discard(self)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.resign()

    def __repr__(self) -> str:
        state = "leading" if self.is_leader else "lost"
        return f"<Leader {self.id!r} {state} owner={self._sync.owner!r}>"
