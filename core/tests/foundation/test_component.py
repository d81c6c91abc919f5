"""The one lifecycle rule of Component: idempotent start/close around the _start/_close hooks."""

from __future__ import annotations

import asyncio

import pytest
from micro.component import Component
from micro.errors import ConnectionClosed


class Thing(Component):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def _start(self) -> None:
        self.events.append("start")
        await self.gate.wait()
        self.events.append("started")

    async def _close(self) -> None:
        self.events.append("close")

    def use(self) -> None:
        self._check_open()


class Eager(Thing):
    starts_on_use = True


async def test_close_during_a_start_waits_for_it_then_closes() -> None:
    thing = Thing()
    thing.gate.clear()
    starting = asyncio.create_task(thing.start())
    await asyncio.sleep(0)
    closing = asyncio.create_task(thing.close())
    await asyncio.sleep(0.01)
    assert thing.events == ["start"]  # close() waits for the start in progress
    thing.gate.set()
    await asyncio.gather(starting, closing)
    assert thing.events == ["start", "started", "close"]
    with pytest.raises(ConnectionClosed, match="Thing is closed; start"):
        thing.use()


async def test_a_failed_start_leaves_the_instance_unstarted() -> None:
    class Broken(Thing):
        async def _start(self) -> None:
            raise OSError("no")

    broken = Broken()
    with pytest.raises(OSError, match="no"):
        await broken.start()
    with pytest.raises(ConnectionClosed, match="Broken is not started"):
        broken.use()
    await broken.close()
    assert broken.events == []  # nothing to release


async def test_starts_on_use_starts_a_new_instance_but_not_a_closed_one() -> None:
    lazy, eager = Thing(), Eager()
    with pytest.raises(ConnectionClosed, match="not started"):
        await lazy._open_for_use()
    await eager._open_for_use()
    assert eager.events == ["start", "started"]
    await eager.close()
    with pytest.raises(ConnectionClosed, match="closed; start"):
        await eager._open_for_use()
    await eager.start()  # restartable
    await eager._open_for_use()
