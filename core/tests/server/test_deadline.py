"""micro._deadline.Deadline: asyncio.timeout semantics with shared, coarse timers."""

from __future__ import annotations

import asyncio
import time

import pytest
from micro._deadline import GRANULARITY, Deadline


async def test_expires_never_early_and_raises_timeout_error() -> None:
    started = time.monotonic()
    scope = Deadline(started + 0.05)
    with pytest.raises(TimeoutError):
        async with scope:
            await asyncio.sleep(5)
    elapsed = time.monotonic() - started
    assert scope.expired
    # Never early; and it did fire (the sleep is 5 s): how late a coarse timer fires on a loaded machine
    # is not what is tested, so the upper bound only has to stay clear of the sleep.
    assert 0.05 <= elapsed < 4.0


async def test_a_plain_with_inside_a_task_expires_like_async_with() -> None:
    # The client's hot path enters the scope without awaiting (no coroutine for entering and leaving).
    scope = Deadline(time.monotonic() + 0.05)
    with pytest.raises(TimeoutError), scope:
        await asyncio.sleep(5)
    assert scope.expired
    entered = asyncio.Event()

    async def body() -> None:
        with Deadline(time.monotonic() + 5):
            entered.set()
            await asyncio.sleep(5)

    task = asyncio.create_task(body())
    await entered.wait()
    task.cancel()  # a cancellation from outside stays one
    with pytest.raises(asyncio.CancelledError):
        await task
    with Deadline(time.monotonic() + 5) as kept:
        await asyncio.sleep(0)
    assert not kept.expired


async def test_finishing_in_time_is_untouched() -> None:
    scope = Deadline(time.monotonic() + 5)
    async with scope:
        await asyncio.sleep(0)
    assert not scope.expired
    # the scope no longer holds the task: nothing fires later
    await asyncio.sleep(GRANULARITY * 2)


async def test_none_never_expires() -> None:
    async with Deadline(None) as scope:
        await asyncio.sleep(GRANULARITY * 2)
    assert not scope.expired


async def test_past_deadline_expires_at_the_first_await() -> None:
    with pytest.raises(TimeoutError):
        async with Deadline(time.monotonic() - 1):
            await asyncio.sleep(1)


async def test_outside_cancellation_is_not_turned_into_a_timeout() -> None:
    entered = asyncio.Event()

    async def body() -> None:
        async with Deadline(time.monotonic() + 5):
            entered.set()
            await asyncio.sleep(5)

    task = asyncio.create_task(body())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_many_scopes_share_one_slot_and_each_expires() -> None:
    when = time.monotonic() + 0.05

    async def one() -> bool:
        try:
            async with Deadline(when):
                await asyncio.sleep(5)
        except TimeoutError:
            return True
        return False

    assert await asyncio.gather(*(one() for _ in range(100))) == [True] * 100


async def test_nested_inner_expiry_is_caught_by_the_inner_scope() -> None:
    outer = Deadline(time.monotonic() + 5)
    inner = Deadline(time.monotonic() + 0.02)
    async with outer:
        with pytest.raises(TimeoutError):
            async with inner:
                await asyncio.sleep(5)
        await asyncio.sleep(0)  # the outer scope goes on normally
    assert inner.expired
    assert not outer.expired
