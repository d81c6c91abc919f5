"""Deadline scopes that share timers: ``asyncio.timeout`` semantics at a fraction of the cost.

Every RPC runs under a deadline on both sides, so a timer per call is on the
hot path. ``asyncio.timeout`` schedules one ``TimerHandle`` per scope, and a
busy server leaves tens of thousands of cancelled handles in the loop's heap,
each push and pop paying Python-level comparisons. Here scopes whose deadlines
fall in the same :data:`GRANULARITY` slot share one timer: entering a scope is
a dictionary lookup and a set insert.

The price is precision: a scope expires up to :data:`GRANULARITY` seconds after
its deadline, never before.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from types import TracebackType
from typing import Final, Self

__all__ = ["GRANULARITY", "Deadline"]

#: Seconds: deadlines are rounded up to a multiple of this.
GRANULARITY: Final = 0.01

_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[int, set[Deadline]]] = weakref.WeakKeyDictionary()


# The last loop asked for (weakly: a closed loop must not be kept alive) and its slots. One loop runs
# everything in almost every process, so most scopes skip the WeakKeyDictionary lookup.
_last: tuple[weakref.ref[asyncio.AbstractEventLoop] | None, dict[int, set[Deadline]]] = (None, {})


def _slots_of(loop: asyncio.AbstractEventLoop) -> dict[int, set[Deadline]]:
    global _last
    last, slots = _last
    if last is None or last() is not loop:
        found = _slots.get(loop)
        if found is None:
            found = _slots[loop] = {}
        slots = found
        _last = (weakref.ref(loop), slots)
    return slots


# asyncio's BaseEventLoop.time: time.monotonic(), the clock deadlines are given in.
_MONOTONIC_TIME: Final = asyncio.BaseEventLoop.time


def _expire(loop: asyncio.AbstractEventLoop, slot: int) -> None:
    scopes = _slots.get(loop, {}).pop(slot, None)
    if scopes:
        for scope in scopes:
            scope._fire()


class Deadline:
    """``async with Deadline(when):`` cancels the block at ``when`` (a ``time.monotonic()`` instant)
    and raises :class:`TimeoutError` out of it, like ``asyncio.timeout_at``; ``None`` never expires.
    ``with Deadline(when):`` inside a task does the same without awaiting.

    A cancellation that does not come from the deadline propagates unchanged.
    """

    __slots__ = ("_expired", "_scopes", "_task", "_when")

    def __init__(self, when: float | None) -> None:
        self._when = when
        self._task: asyncio.Task[object] | None = None
        self._scopes: set[Deadline] | None = None
        self._expired = False

    @property
    def expired(self) -> bool:
        """Whether the deadline cancelled the block."""
        return self._expired

    async def __aenter__(self) -> Self:
        return self.__enter__()

    def __enter__(self) -> Self:
        # Also a plain ``with`` inside a coroutine: entering and leaving await nothing, so the hot paths skip
        # the two coroutines ``async with`` costs.
        if self._when is None:
            return self
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadline must be used inside a task")
        self._task = task
        loop = task.get_loop()
        last, slots = _last
        if last is None or last() is not loop:
            slots = _slots_of(loop)
        when = self._when
        if type(loop).time is not _MONOTONIC_TIME:
            # Map the monotonic deadline onto the loop's clock (uvloop's may differ). asyncio's own loops
            # use time.monotonic() itself: nothing to map.
            when = loop.time() + (when - time.monotonic())
        slot = math.ceil(when / GRANULARITY)
        scopes = slots.get(slot)
        if scopes is None:
            scopes = slots[slot] = set()
            loop.call_at(slot * GRANULARITY, _expire, loop, slot)
        scopes.add(self)
        self._scopes = scopes
        return self

    def _fire(self) -> None:
        if self._task is not None and not self._task.done():
            self._expired = True
            self._task.cancel()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._scopes is not None:
            self._scopes.discard(self)
            self._scopes = None
        # Undo our own cancel; if someone else also cancelled the task, their cancellation wins.
        if (
            self._expired
            and self._task is not None
            and self._task.uncancel() == 0
            and exc_type is asyncio.CancelledError
        ):
            raise TimeoutError from exc
