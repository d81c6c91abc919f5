"""The built-in selectors: strategies, filters, demotion, and the registry cache (L1-L5 and more)."""

from __future__ import annotations

import asyncio
import collections
import time

import micro
import pytest
from micro.errors import (
    BackendUnavailable,
    BadRequest,
    InternalError,
    NoneAvailable,
    NotFound,
    NotSupported,
    ServiceNotFound,
    Timeout,
    Unavailable,
    from_wire,
)
from micro.registry import Endpoint, Node, Service
from micro.registry.memory import MemoryRegistry
from micro.selector import SelectorOptions, filter_endpoint, filter_label, filter_version, round_robin
from micro.selector.cache import CacheSelector, RandomSelector, RoundRobinSelector

from .conftest import CountingRegistry, nodes


async def eventually_true(check, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.01)


# -- strategies ----------------------------------------------------------------------------------


async def test_random_covers_every_node(selector: CacheSelector) -> None:
    next_node = await selector.select("greeter", strategy=None)
    assert {next_node().id for _ in range(300)} == {"a", "b", "c"}


async def test_round_robin_cycles_and_shares_its_position(registry: CountingRegistry) -> None:
    async with RoundRobinSelector(registry=registry) as selector:
        next_node = await selector.select("greeter")
        first = [next_node().id for _ in range(6)]
        assert sorted(first[:3]) == ["a", "b", "c"]
        assert first[3:] == first[:3]
        # A new selection continues where the last one stopped: requests take turns too.
        again = await selector.select("greeter")
        assert again().id == first[0]


async def test_round_robin_starts_at_a_random_node(registry: CountingRegistry) -> None:
    firsts = set()
    for _ in range(40):
        async with RoundRobinSelector(registry=registry) as selector:
            firsts.add((await selector.select("greeter"))().id)
    assert len(firsts) > 1


async def test_explicit_strategy_overrides_the_default(selector: CacheSelector) -> None:
    next_node = await selector.select("greeter", strategy=round_robin)
    ids = [next_node().id for _ in range(3)]
    assert sorted(ids) == ["a", "b", "c"]


async def test_concurrent_next_calls_are_balanced(registry: CountingRegistry) -> None:
    async with RoundRobinSelector(registry=registry) as selector:
        next_node = await selector.select("greeter")

        async def call() -> str:
            await asyncio.sleep(0)
            return next_node().id

        ids = await asyncio.gather(*(call() for _ in range(30)))
        assert collections.Counter(ids) == {"a": 10, "b": 10, "c": 10}


# -- filters -------------------------------------------------------------------------------------


@pytest.fixture
async def versions(registry: CountingRegistry) -> CountingRegistry:
    await registry.register(
        Service("greeter", "2", endpoints=[Endpoint("Greeter.Hello")], nodes=nodes("x", "y", zone="eu"))
    )
    await registry.register(
        Service(
            "greeter", "2", endpoints=[Endpoint("Greeter.Hello")], nodes=[Node("z", "127.0.0.1:9100", {"zone": "us"})]
        )
    )
    return registry


async def test_filter_version(selector: CacheSelector, versions: CountingRegistry) -> None:
    next_node = await selector.select("greeter", filters=[filter_version("2")])
    assert {next_node().id for _ in range(100)} == {"x", "y", "z"}


async def test_filter_label(selector: CacheSelector, versions: CountingRegistry) -> None:
    next_node = await selector.select("greeter", filters=[filter_label("zone", "eu")])
    assert {next_node().id for _ in range(100)} == {"x", "y"}


async def test_filter_endpoint(selector: CacheSelector, versions: CountingRegistry) -> None:
    next_node = await selector.select("greeter", filters=[filter_endpoint("Greeter.Hello")])
    assert {next_node().id for _ in range(100)} == {"x", "y", "z"}
    with pytest.raises(NoneAvailable):
        await selector.select("greeter", filters=[filter_endpoint("Greeter.Missing")])


async def test_filters_combine_and_leave_the_cache_intact(selector: CacheSelector, versions: CountingRegistry) -> None:
    next_node = await selector.select("greeter", filters=[filter_version("2"), filter_label("zone", "us")])
    assert {next_node().id for _ in range(20)} == {"z"}
    with pytest.raises(NoneAvailable):
        await selector.select("greeter", filters=[filter_version("1"), filter_label("zone", "us")])
    unfiltered = await selector.select("greeter")
    assert {unfiltered().id for _ in range(300)} == {"a", "b", "c", "x", "y", "z"}


# -- demotion ------------------------------------------------------------------------------------


async def test_mark_demotes_and_a_live_next_skips_the_node(selector: CacheSelector) -> None:
    next_node = await selector.select("greeter")
    selector.mark("greeter", Node("b", "127.0.0.1:9001"), Unavailable("connection refused"))
    assert "b" not in {next_node().id for _ in range(100)}
    selector.mark("greeter", Node("b", "127.0.0.1:9001"), None)
    assert "b" in {next_node().id for _ in range(100)}


async def test_reset_restores_every_node(selector: CacheSelector) -> None:
    for node_id in ("a", "b"):
        selector.mark("greeter", Node(node_id, ""), ConnectionResetError())
    next_node = await selector.select("greeter")
    assert {next_node().id for _ in range(50)} == {"c"}
    selector.reset("greeter")
    assert {next_node().id for _ in range(300)} == {"a", "b", "c"}


@pytest.mark.parametrize(
    ("error", "demotes"),
    [
        (Unavailable(), True),
        (Timeout(), True),
        (InternalError(), True),
        (OSError("broken pipe"), True),
        (from_wire({"code": 503}), True),
        (BadRequest(), False),
        (NotFound(), False),
        (from_wire({"code": 404}), False),
    ],
    ids=repr,
)
async def test_which_errors_demote(selector: CacheSelector, error: BaseException, demotes: bool) -> None:
    selector.mark("greeter", Node("a", ""), error)
    next_node = await selector.select("greeter")
    assert ("a" not in {next_node().id for _ in range(100)}) is demotes


async def test_demotion_ends_after_the_cooldown(registry: CountingRegistry) -> None:
    async with RandomSelector(SelectorOptions(cooldown=0.1), registry=registry) as selector:
        selector.mark("greeter", Node("a", ""), Unavailable())
        next_node = await selector.select("greeter")
        assert "a" not in {next_node().id for _ in range(50)}

        async def back() -> bool:
            return "a" in {next_node().id for _ in range(50)}

        await eventually_true(back)


async def test_all_demoted_fails_open_by_default(selector: CacheSelector) -> None:
    for node_id in "abc":
        selector.mark("greeter", Node(node_id, ""), Unavailable())
    next_node = await selector.select("greeter")
    assert next_node().id in {"a", "b", "c"}


async def test_all_demoted_raises_when_not_failing_open(registry: CountingRegistry) -> None:
    async with RoundRobinSelector(SelectorOptions(fail_open=False), registry=registry) as selector:
        next_node = await selector.select("greeter")
        for node_id in "ab":
            selector.mark("greeter", Node(node_id, ""), Unavailable())
        assert {next_node().id for _ in range(5)} == {"c"}
        selector.mark("greeter", Node("c", ""), Unavailable())
        with pytest.raises(NoneAvailable, match="greeter"):
            next_node()


# -- the cache -----------------------------------------------------------------------------------


async def test_warm_select_does_not_call_the_registry(selector: CacheSelector, registry: CountingRegistry) -> None:
    for _ in range(100):
        await selector.select("greeter")
    assert registry.lookups == 1


async def test_concurrent_misses_share_one_lookup(selector: CacheSelector, registry: CountingRegistry) -> None:
    registry.gate = asyncio.Event()
    waiting = [asyncio.ensure_future(selector.select("greeter")) for _ in range(10)]
    await asyncio.sleep(0.01)
    assert registry.lookups == 1
    registry.gate.set()
    picks = await asyncio.gather(*waiting)
    assert {p().id for p in picks for _ in range(10)} <= {"a", "b", "c"}
    assert registry.lookups == 1


async def test_a_cancelled_caller_does_not_cancel_the_shared_lookup(
    selector: CacheSelector, registry: CountingRegistry
) -> None:
    registry.gate = asyncio.Event()
    first = asyncio.ensure_future(selector.select("greeter"))
    second = asyncio.ensure_future(selector.select("greeter"))
    await asyncio.sleep(0.01)
    first.cancel()
    registry.gate.set()
    assert (await second)().id in {"a", "b", "c"}
    assert first.cancelled()
    assert registry.lookups == 1


async def test_watch_keeps_the_cache_current(selector: CacheSelector, registry: CountingRegistry) -> None:
    await selector.select("greeter")
    await registry.register(Service("greeter", "1", nodes=[Node("d", "127.0.0.1:9200")]))
    await registry.deregister(Service("greeter", "1", nodes=nodes("a")))

    async def updated() -> bool:
        next_node = await selector.select("greeter")
        return {next_node().id for _ in range(200)} == {"b", "c", "d"}

    await eventually_true(updated)
    assert registry.lookups == 1


async def test_watch_delete_forgets_the_service(selector: CacheSelector, registry: CountingRegistry) -> None:
    await selector.select("greeter")
    await registry.deregister(Service("greeter", "1", nodes=nodes("a", "b", "c")))
    await asyncio.sleep(0)  # let the watch deliver
    with pytest.raises(ServiceNotFound, match="greeter"):
        await selector.select("greeter")


async def test_entries_expire_after_ttl(registry: CountingRegistry) -> None:
    async with RandomSelector(SelectorOptions(ttl=0.05), registry=registry) as selector:
        await selector.select("greeter")
        await asyncio.sleep(0.06)
        await selector.select("greeter")
        assert registry.lookups == 2


async def test_stale_entry_is_served_when_the_registry_fails(registry: CountingRegistry) -> None:
    async with RandomSelector(SelectorOptions(ttl=0.05), registry=registry) as selector:
        await selector.select("greeter")
        registry.fail = BackendUnavailable("registry down")
        await asyncio.sleep(0.06)
        next_node = await selector.select("greeter")
        assert next_node().id in {"a", "b", "c"}
        assert registry.lookups == 2
        # While it is down the registry is not asked again on every call.
        await selector.select("greeter")
        assert registry.lookups == 2


async def test_registry_failure_without_a_cached_entry(registry: CountingRegistry) -> None:
    async with RandomSelector(registry=registry) as selector:
        registry.fail = BackendUnavailable("registry down")
        with pytest.raises(BackendUnavailable, match="registry down"):
            await selector.select("greeter")
        registry.fail = RuntimeError("driver exploded")
        with pytest.raises(BackendUnavailable, match="driver exploded"):
            await selector.select("greeter")


async def test_broken_watch_is_reestablished_and_entries_refetched(
    selector: CacheSelector, registry: CountingRegistry
) -> None:
    await selector.select("greeter")
    broken = selector._cache._watcher
    registry._watchers.fail(Unavailable("watch broke"))  # what a backend failure looks like

    async def rewatching() -> bool:
        return selector._cache._watcher not in (None, broken)

    await eventually_true(rewatching)
    # A change made while no watch ran is picked up: the entry was refetched.
    await selector.select("greeter")
    assert registry.lookups == 2
    # The new watch delivers changes again without further lookups.
    await registry.register(Service("greeter", "1", nodes=[Node("d", "127.0.0.1:9200")]))

    async def has_d() -> bool:
        next_node = await selector.select("greeter")
        return "d" in {next_node().id for _ in range(200)}

    await eventually_true(has_d)
    assert registry.lookups == 2


async def test_lookup_without_a_watch_is_cached_briefly() -> None:
    class Blind(CountingRegistry):
        def watch(self, service=None):
            raise Unavailable("cannot watch right now")

    blind = Blind()
    await blind.register(Service("greeter", nodes=nodes("a")))
    async with RandomSelector(SelectorOptions(ttl=60), registry=blind) as selector:
        await selector.select("greeter")
        await selector.select("greeter")
        assert blind.lookups == 1
        entry = selector._cache.peek("greeter")
        assert entry.expires - time.monotonic() <= 1.0  # not the 60 s ttl: changes would go unseen


async def test_registry_that_cannot_watch_uses_the_ttl() -> None:
    class NoWatch(CountingRegistry):
        capabilities = frozenset({"ttl"})

        def watch(self, service=None):
            raise NotSupported("no watch")

    plain = NoWatch()
    await plain.register(Service("greeter", nodes=nodes("a")))
    async with RandomSelector(SelectorOptions(ttl=60), registry=plain) as selector:
        await selector.select("greeter")
        assert selector._cache.peek("greeter").expires - time.monotonic() > 50


async def test_unknown_and_bad_service_names(selector: CacheSelector) -> None:
    with pytest.raises(ServiceNotFound, match="nobody"):
        await selector.select("nobody")
    with pytest.raises(BadRequest):
        await selector.select("")


async def test_close_is_idempotent_and_the_selector_restarts(
    selector: CacheSelector, registry: CountingRegistry
) -> None:
    await selector.select("greeter")
    await selector.close()
    await selector.close()
    assert (await selector.select("greeter"))().id in {"a", "b", "c"}
    assert registry.lookups == 2


async def test_passed_registry_is_not_closed(registry: CountingRegistry) -> None:
    selector = RandomSelector(registry=registry)
    await selector.select("greeter")
    await selector.close()
    assert await registry.get_service("greeter")


async def test_warm_select_is_cheap(registry: CountingRegistry) -> None:
    async with RandomSelector(registry=registry) as selector:
        await selector.select("greeter")
        rounds = 2000
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(rounds):
                await selector.select("greeter")
            best = min(best, (time.perf_counter() - started) / rounds)
        # The goal is < 5 us; the bound leaves room for a loaded CI machine.
        assert best < 50e-6, f"warm select took {best * 1e6:.1f} us"


# -- selection by name ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"), [(None, RandomSelector), ("random", RandomSelector), ("roundrobin", RoundRobinSelector)]
)
async def test_created_by_name_with_a_default_registry(monkeypatch: pytest.MonkeyPatch, name, cls) -> None:
    monkeypatch.setenv("MICRO_REGISTRY", "memory")
    monkeypatch.delenv("MICRO_SELECTOR", raising=False)
    selector = micro.create("selector", name, ttl=5.0)
    assert type(selector) is cls
    assert selector.options.ttl == 5.0
    assert isinstance(selector.registry, MemoryRegistry)
    await selector.registry.register(Service("svc", nodes=nodes("a")))
    assert (await selector.select("svc"))().id == "a"
    await selector.close()
    with pytest.raises(ServiceNotFound):  # the registry it built was closed with it
        await selector.select("svc")
