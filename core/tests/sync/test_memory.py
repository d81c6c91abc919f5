"""MemorySync beyond the shared contract: one table for the whole process, across threads and loops."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

from micro.sync import SyncOptions
from micro.sync.memory import MemorySync


async def test_a_waiter_on_another_threads_loop_is_woken_by_unlock() -> None:
    options = SyncOptions(prefix=f"t{uuid.uuid4().hex}/")
    got: list[float] = []
    waiting = threading.Event()

    async def other_loop() -> None:
        async with MemorySync(options) as sync:
            waiting.set()
            await sync.lock("x", ttl=None, wait=10)
            got.append(time.monotonic())
            await sync.unlock("x")

    async with MemorySync(options) as sync:
        await sync.lock("x", ttl=None)
        thread = threading.Thread(target=asyncio.run, args=(other_loop(),))
        thread.start()
        try:
            assert await asyncio.to_thread(waiting.wait, 5)
            await asyncio.sleep(0.05)
            assert got == []
            released = time.monotonic()
            await sync.unlock("x")
        finally:
            await asyncio.to_thread(thread.join, 10)
    assert not thread.is_alive()
    assert len(got) == 1
    assert got[0] - released < 1.0  # woken, not a 10 s timeout


async def test_a_waiter_wakes_when_the_hold_lapses_without_polling() -> None:
    options = SyncOptions(prefix=f"t{uuid.uuid4().hex}/", poll_interval=60)
    async with MemorySync(options) as a, MemorySync(options) as b:
        await a.lock("x", ttl=0.2)
        started = time.monotonic()
        await b.lock("x", wait=5)
        assert 0.1 < time.monotonic() - started < 1.0
