"""A registry that counts lookups and can be made to fail or stall, and selectors built on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from micro.registry import Node, Service
from micro.registry.memory import MemoryRegistry
from micro.selector import SelectorOptions
from micro.selector.cache import CacheSelector, RandomSelector, RoundRobinSelector


class CountingRegistry(MemoryRegistry):
    """A MemoryRegistry whose ``get_service`` calls are counted, and can raise ``fail`` or wait for ``gate``."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0
        self.fail: BaseException | None = None
        self.gate: asyncio.Event | None = None

    async def get_service(self, name: str) -> list[Service]:
        self.lookups += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return await super().get_service(name)


def nodes(*ids: str, **metadata: str) -> list[Node]:
    return [Node(i, f"127.0.0.1:{9000 + n}", dict(metadata)) for n, i in enumerate(ids)]


@pytest.fixture
async def registry() -> AsyncIterator[CountingRegistry]:
    reg = CountingRegistry()
    await reg.register(Service("greeter", "1", nodes=nodes("a", "b", "c")))
    yield reg
    await reg.close()


@pytest.fixture(params=[RandomSelector, RoundRobinSelector], ids=["random", "roundrobin"])
async def selector(request: pytest.FixtureRequest, registry: CountingRegistry) -> AsyncIterator[CacheSelector]:
    sel: CacheSelector = request.param(SelectorOptions(cooldown=30), registry=registry)
    yield sel
    await sel.close()
