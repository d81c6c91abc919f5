"""``memory``: the default sync, one lock table shared by every instance in this process.

All :class:`MemorySync` instances behave like clients of one lock server: two
of them contend for the same ids (use :attr:`~micro.sync.SyncOptions.prefix`
to keep applications apart). The table is guarded by a thread lock, so
instances on different event loops or threads work too. Waiters do not poll:
an unlock wakes them, and a lock's TTL bounds how long they sleep.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import ClassVar, Final

from ..errors import LockHeld, LockNotFound
from .base import Sync
from .options import SyncOptions

__all__ = ["MemorySync"]

_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


@dataclass(slots=True)
class _Hold:
    owner: str
    #: ``time.monotonic()`` at which it lapses, or ``None``.
    expires: float | None

    def live(self, now: float) -> bool:
        return self.expires is None or self.expires > now


class _Table:
    """Every lock of the process: who holds each id, and who waits for it."""

    def __init__(self) -> None:
        self.mutex = threading.Lock()
        self.holds: dict[str, _Hold] = {}
        self.waiters: dict[str, set[_Waiter]] = {}

    def acquire(self, key: str, owner: str, ttl: float | None) -> tuple[bool, float | None]:
        """Take ``key`` if free; else ``(False, seconds until it lapses or None)``. Caller holds ``mutex``."""
        now = time.monotonic()
        hold = self.holds.get(key)
        if hold is not None and hold.live(now):
            return False, None if hold.expires is None else hold.expires - now
        self.holds[key] = _Hold(owner, None if ttl is None else now + ttl)
        return True, None

    def held_by(self, key: str, owner: str, what: str) -> _Hold:
        """The live hold of ``key`` by ``owner``, or the error :meth:`Sync.unlock` raises. Caller holds ``mutex``."""
        hold = self.holds.get(key)
        if hold is None or not hold.live(time.monotonic()):
            self.holds.pop(key, None)
            raise LockNotFound(f"cannot {what} lock {key!r}: nobody holds it")
        if hold.owner != owner:
            raise LockHeld(f"cannot {what} lock {key!r}: it is held by {hold.owner}")
        return hold

    def release(self, key: str) -> None:
        """Drop ``key`` and wake its waiters. Caller holds ``mutex``."""
        del self.holds[key]
        for loop, future in self.waiters.pop(key, ()):
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # that loop is closed; its waiter is gone
                pass


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


_TABLE: Final = _Table()


class MemorySync(Sync):
    """In-process locks with TTLs and leader election."""

    options_type: ClassVar[type[SyncOptions]] = SyncOptions

    async def _close(self) -> None:
        """Release every lock this owner holds."""
        with _TABLE.mutex:
            for key in [k for k, hold in _TABLE.holds.items() if hold.owner == self.owner]:
                _TABLE.release(key)

    async def _lock(self, name: str, ttl: float | None, wait: float | None) -> bool:
        loop = asyncio.get_running_loop()
        deadline = None if wait is None else loop.time() + wait
        while True:
            future: asyncio.Future[None] = loop.create_future()
            waiter = (loop, future)
            with _TABLE.mutex:
                self._check_open()
                acquired, lapses_in = _TABLE.acquire(name, self.owner, ttl)
                if acquired:
                    return True
                _TABLE.waiters.setdefault(name, set()).add(waiter)
            try:
                now = loop.time()
                if deadline is not None and now >= deadline:
                    return False
                timeout = min(
                    (t for t in (lapses_in, None if deadline is None else deadline - now) if t is not None),
                    default=None,
                )
                # Woken by an unlock, or time to look again because the hold lapses or our wait ends.
                try:
                    async with asyncio.timeout(timeout):
                        await future
                except TimeoutError:
                    pass
            finally:
                with _TABLE.mutex:
                    waiters = _TABLE.waiters.get(name)
                    if waiters is not None:
                        waiters.discard(waiter)
                        if not waiters:
                            del _TABLE.waiters[name]

    async def _try_lock(self, name: str, ttl: float | None) -> bool:
        with _TABLE.mutex:
            acquired, _ = _TABLE.acquire(name, self.owner, ttl)
            return acquired

    async def _unlock(self, name: str) -> None:
        with _TABLE.mutex:
            _TABLE.held_by(name, self.owner, "unlock")
            _TABLE.release(name)

    async def _refresh(self, name: str, ttl: float | None) -> None:
        with _TABLE.mutex:
            hold = _TABLE.held_by(name, self.owner, "refresh")
            hold.expires = None if ttl is None else time.monotonic() + ttl
