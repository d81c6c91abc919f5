"""micro.registry.cache.RegistryCache: the one registry-watch cache the selectors and the http broker share."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from micro.errors import BackendUnavailable, BadRequest, NotSupported, Unavailable
from micro.registry import Node, Service, Watcher
from micro.registry.cache import RegistryCache
from micro.registry.memory import MemoryRegistry

from .conftest import eventually_true


class Counting(MemoryRegistry):
    """Counts ``get_service`` calls; raises ``fail`` when set."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0
        self.fail: BaseException | None = None
        self.watches = 0

    async def get_service(self, name: str) -> list[Service]:
        self.lookups += 1
        if self.fail is not None:
            raise self.fail
        return await super().get_service(name)

    def watch(self, service: str | None = None) -> Watcher:
        self.watches += 1
        return super().watch(service)


def node(node_id: str) -> Node:
    return Node(node_id, "127.0.0.1:9000")


@pytest.fixture
async def registry() -> AsyncIterator[Counting]:
    reg = Counting()
    await reg.register(Service("greeter", "1", nodes=[node("a")]))
    yield reg
    await reg.close()


@pytest.fixture
async def changes() -> list[str]:
    return []


@pytest.fixture
async def cache(registry: Counting, changes: list[str]) -> AsyncIterator[RegistryCache]:
    c = RegistryCache(registry, ttl=60, on_change=changes.append)
    yield c
    await c.close()


async def ids(cache: RegistryCache, name: str = "greeter") -> set[str]:
    return {n.id for n in (await cache.get(name)).nodes}


async def test_a_warm_get_does_not_touch_the_registry(cache: RegistryCache, registry: Counting) -> None:
    assert await ids(cache) == {"a"}
    assert await ids(cache) == {"a"}
    assert registry.lookups == 1


async def test_concurrent_misses_share_one_lookup(cache: RegistryCache, registry: Counting) -> None:
    results = await asyncio.gather(*(cache.get("greeter") for _ in range(20)))
    assert registry.lookups == 1
    assert all(r is results[0] for r in results)


async def test_watch_events_are_applied(cache: RegistryCache, registry: Counting, changes: list[str]) -> None:
    await cache.get("greeter")
    await registry.register(Service("greeter", "1", nodes=[node("a"), node("b")]))
    await registry.register(Service("greeter", "2", nodes=[node("c")]))

    async def all_three() -> bool:
        entry = cache.peek("greeter")
        return entry is not None and {n.id for n in entry.nodes} == {"a", "b", "c"}

    await eventually_true(all_three)
    entry = cache.peek("greeter")
    assert entry is not None
    assert [s.version for s in entry.services] == ["1", "2"]  # sorted by version
    assert registry.lookups == 1
    assert changes.count("greeter") >= 2  # the fetch and the watch results
    await registry.deregister(Service("greeter", "1", nodes=[node("a"), node("b")]))
    await registry.deregister(Service("greeter", "2", nodes=[node("c")]))

    async def gone() -> bool:
        return cache.peek("greeter") is None

    await eventually_true(gone)


async def test_reconnects_after_a_watch_error_and_reads_again(cache: RegistryCache, registry: Counting) -> None:
    await cache.get("greeter")
    broken = cache._watcher
    assert broken is not None
    assert cache.watching
    registry._watchers.fail(Unavailable("watch broke"))

    async def rewatching() -> bool:
        return cache._watcher not in (None, broken)

    await eventually_true(rewatching)
    assert registry.watches == 2
    # What changed while no watch ran is read again: the entry was invalidated.
    assert await ids(cache) == {"a"}
    assert registry.lookups == 2
    await registry.register(Service("greeter", "1", nodes=[node("a"), node("d")]))

    async def has_d() -> bool:
        return "d" in await ids(cache)

    await eventually_true(has_d)
    assert registry.lookups == 2  # the new watch brought it


async def test_invalidation_and_dropping_a_node(cache: RegistryCache, registry: Counting, changes: list[str]) -> None:
    await registry.register(Service("greeter", "1", nodes=[node("a"), node("b")]))
    assert await ids(cache) == {"a", "b"}
    lookups = registry.lookups
    cache.drop_node("greeter", "b")
    assert await ids(cache) == {"a"}
    assert registry.lookups == lookups
    assert changes[-1] == "greeter"
    cache.invalidate("greeter")
    assert await ids(cache) == {"a", "b"}  # read again: the registry still has b
    assert registry.lookups == lookups + 1
    cache.invalidate()
    await cache.get("greeter")
    assert registry.lookups == lookups + 2


async def test_a_failing_registry_serves_the_stale_entry(registry: Counting) -> None:
    async with asyncio.timeout(30):
        cache = RegistryCache(registry, ttl=0.05)
        try:
            await cache.get("greeter")
            registry.fail = BackendUnavailable("down")
            await asyncio.sleep(0.1)
            assert {n.id for n in (await cache.get("greeter")).nodes} == {"a"}
            assert registry.lookups == 2
            fresh = RegistryCache(registry, ttl=60)
            with pytest.raises(BackendUnavailable, match="down"):
                await fresh.get("greeter")
            registry.fail = RuntimeError("driver exploded")
            with pytest.raises(BackendUnavailable, match="driver exploded"):
                await fresh.get("greeter")
            await fresh.close()
        finally:
            await cache.close()


async def test_unknown_services_are_kept_only_when_asked(registry: Counting) -> None:
    plain = RegistryCache(registry, ttl=60)
    keeping = RegistryCache(registry, ttl=60, keep_empty=True)
    try:
        assert (await plain.get("nobody")).services == []
        assert plain.peek("nobody") is None
        assert (await keeping.get("nobody")).services == []
        assert keeping.peek("nobody") is not None
        lookups = registry.lookups
        await keeping.get("nobody")
        assert registry.lookups == lookups
        # The watch fills in a service that appears later.
        await registry.register(Service("nobody", "1", nodes=[node("z")]))

        async def appeared() -> bool:
            entry = keeping.peek("nobody")
            return entry is not None and [n.id for n in entry.nodes] == ["z"]

        await eventually_true(appeared)
        with pytest.raises(BadRequest):
            await plain.get("")
    finally:
        await plain.close()
        await keeping.close()


async def test_one_service_only(registry: Counting) -> None:
    cache = RegistryCache(registry, ttl=60, service="greeter", keep_empty=True)
    try:
        await cache.get("greeter")
        await cache.get("other")
        await registry.register(Service("other", "1", nodes=[node("o")]))
        await registry.register(Service("greeter", "1", nodes=[node("a"), node("g")]))

        async def greeter_changed() -> bool:
            entry = cache.peek("greeter")
            return entry is not None and len(entry.nodes) == 2

        await eventually_true(greeter_changed)
        entry = cache.peek("other")
        assert entry is not None
        assert entry.services == []
    finally:
        await cache.close()


async def test_a_registry_that_cannot_watch_is_polled(registry: Counting) -> None:
    class Blind(Counting):
        def watch(self, service: str | None = None) -> Watcher:
            raise NotSupported("no watch")

    blind = Blind()
    await blind.register(Service("greeter", "1", nodes=[node("a")]))
    cache = RegistryCache(blind, ttl=60, poll=2)
    try:
        entry = await cache.get("greeter")
        assert cache.watching
        assert 0 < entry.expires - time.monotonic() <= 2
    finally:
        await cache.close()
        await blind.close()


async def test_close_stops_the_watch_and_the_cache_can_be_used_again(cache: RegistryCache, registry: Counting) -> None:
    await cache.get("greeter")
    watcher = cache._watcher
    await cache.close()
    assert cache.peek("greeter") is None
    assert cache._watcher is None
    assert watcher is not None
    assert await ids(cache) == {"a"}
    assert cache._watcher is not None
