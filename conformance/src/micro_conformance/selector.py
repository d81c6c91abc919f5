"""The selector contract (:class:`micro.selector.Selector`): cases L01-L13.

Each test gives the selector a registry of its own (``registry_name``, the
in-memory one by default) and fills it with uniquely named services. A
selector has no capabilities; its default strategy is told by
:attr:`SelectorContract.strategy` (``micro conformance`` sets it for the
built-in selectors).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Self, cast

import pytest
from micro.errors import BadRequest, InternalError, NoneAvailable, ServiceNotFound
from micro.registry import Endpoint, Node, Registry, Service
from micro.selector import Next, Selector, filter_endpoint, filter_label, filter_version, random, round_robin

from .base import Contract, create

__all__ = ["SelectorContract"]


class SelectorContract(Contract[Selector]):
    """The behaviour every :class:`~micro.selector.Selector` shares; see :mod:`micro.selector.base`."""

    interface = "selector"
    #: The registry the selector reads, built with ``micro.create("registry", registry_name)``.
    registry_name: ClassVar[str] = "memory"
    #: The selector's own strategy when ``select`` gets none: checked if known, else only node validity is.
    strategy: ClassVar[Literal["random", "roundrobin", "leastconn"] | None] = None

    _registry: Registry | None = None

    @classmethod
    def adapt(cls, implementation: type) -> type[Self]:
        from micro.selector.cache import RandomSelector, RoundRobinSelector
        from micro.selector.leastconn import LeastConnSelector

        known_strategies = (
            (RoundRobinSelector, "roundrobin"),
            (RandomSelector, "random"),
            (LeastConnSelector, "leastconn"),
        )
        for known, strategy in known_strategies:
            if issubclass(implementation, known):
                return type(cls.__name__, (cls,), {"strategy": strategy})
        return cls

    async def make(self, **options: Any) -> Selector:
        if self.name is None:
            return await super().make(**options)
        values = {**self.options, **options}
        registry = await self.registry()
        return cast(
            Selector, create("selector", self.name, strings=self.option_strings, values=values, registry=registry)
        )

    async def registry(self) -> Registry:
        """The registry of this test, started (the same one for every selector the test makes)."""
        if self._registry is None:
            registry = cast(Registry, create("registry", self.registry_name))
            self._registry = await self.start(registry)
        return self._registry

    @pytest.fixture
    def selector(self, subject: Selector) -> Selector:
        return subject

    async def add(self, label: str, *node_ids: str, version: str = "1", **node_metadata: str) -> Service:
        """Register nodes ``node_ids`` of service ``label`` (one version) and return the service."""
        service = Service(
            name=self.names(label),
            version=version,
            nodes=[Node(n, f"127.0.0.1:{22000 + i}", dict(node_metadata)) for i, n in enumerate(node_ids)],
        )
        await (await self.registry()).register(service)
        return service

    def draws(self, pick: Next, count: int) -> list[str]:
        return [pick().id for _ in range(count)]

    # -- lookups ---------------------------------------------------------------------------

    async def test_l01_unknown_service_raises_service_not_found(self, selector: Selector) -> None:
        """select() of a service the registry does not know raises ServiceNotFound; "" raises BadRequest."""
        with pytest.raises(ServiceNotFound):
            await selector.select(self.names("missing"))
        with pytest.raises(BadRequest):
            await selector.select("")

    async def test_l02_nothing_left_after_filters_raises_none_available(self, selector: Selector) -> None:
        """When the filters leave no node, select() raises NoneAvailable."""
        service = await self.add("svc", "a", "b")
        with pytest.raises(NoneAvailable):
            await selector.select(service.name, filters=[filter_version("no-such-version")])
        with pytest.raises(NoneAvailable):
            await selector.select(service.name, filters=[lambda services: []])

    async def test_l03_next_returns_only_nodes_of_the_service(self, selector: Selector) -> None:
        """Every node next() returns belongs to the service, with its address and metadata."""
        service = await self.add("svc", "a", "b", "c", zone="z1")
        await self.add("other", "x")
        pick = await selector.select(service.name)
        known = {n.id: n for n in service.nodes}
        for _ in range(30):
            node = pick()
            assert node.id in known, f"next() returned {node.id!r}, not a node of the service"
            assert (node.address, node.metadata) == (known[node.id].address, {"zone": "z1"})

    async def test_l04_default_strategy(self, selector: Selector) -> None:
        """The selector's own strategy: random covers every node; roundrobin cycles, shared across selections."""
        service = await self.add("svc", "a", "b", "c")
        if self.strategy == "roundrobin":
            nexts = [await selector.select(service.name) for _ in range(3)]
            picks = [nexts[i % 3]().id for i in range(12)]
            for i in range(len(picks) - 2):
                window = picks[i : i + 3]
                assert sorted(window) == ["a", "b", "c"], f"round-robin repeated a node within one cycle: {picks}"
        elif self.strategy == "random":
            counts = Counter(self.draws(await selector.select(service.name), 300))
            assert set(counts) == {"a", "b", "c"}, f"300 random picks missed a node: {dict(counts)}"
            assert max(counts.values()) < 200, f"random picks are lopsided: {dict(counts)}"
        elif self.strategy == "leastconn":
            # Calls never marked stay in flight, so each round of three picks takes every node once.
            pick = await selector.select(service.name)
            for _ in range(4):
                picks = self.draws(pick, 3)
                assert sorted(picks) == ["a", "b", "c"], f"leastconn picked a busier node over an idle one: {picks}"
        else:
            pytest.skip("the contract was not told the selector's default strategy (set `strategy`)")

    async def test_l05_strategy_argument_is_honoured(self, selector: Selector) -> None:
        """select(strategy=...) uses that strategy over the filtered nodes: round_robin, random, or a custom one."""
        service = await self.add("svc", "a", "b", "c")
        picks = self.draws(await selector.select(service.name, strategy=round_robin), 9)
        for i in range(len(picks) - 2):
            assert sorted(picks[i : i + 3]) == ["a", "b", "c"], f"strategy=round_robin did not cycle: {picks}"
        assert set(self.draws(await selector.select(service.name, strategy=random), 300)) == {"a", "b", "c"}
        given: list[list[str]] = []

        def last(nodes: Sequence[Node]) -> Next:
            given.append([n.id for n in nodes])
            return lambda: nodes[-1]

        pick = await selector.select(service.name, filters=[filter_version("1")], strategy=last)
        assert [pick().id for _ in range(3)] == [pick().id] * 3
        assert given and sorted(given[0]) == ["a", "b", "c"]

    async def test_l06_filters_narrow_versions_labels_and_endpoints(self, selector: Selector) -> None:
        """filter_version, filter_label and filter_endpoint keep only the matching nodes, and combine."""
        name = self.names("svc")
        registry = await self.registry()
        await registry.register(
            Service(name, "1", nodes=[Node("a", "127.0.0.1:1", {"zone": "x"}), Node("b", "127.0.0.1:2", {"zone": "y"})])
        )
        await registry.register(
            Service(name, "2", endpoints=[Endpoint("Greeter.Hello")], nodes=[Node("c", "127.0.0.1:3", {"zone": "x"})])
        )

        async def ids(*filters: Any) -> set[str]:
            return set(self.draws(await selector.select(name, filters=list(filters), strategy=round_robin), 6))

        assert await ids() == {"a", "b", "c"}
        assert await ids(filter_version("2")) == {"c"}
        assert await ids(filter_label("zone", "x")) == {"a", "c"}
        assert await ids(filter_endpoint("Greeter.Hello")) == {"c"}
        assert await ids(filter_version("1"), filter_label("zone", "x")) == {"a"}

    # -- marks -----------------------------------------------------------------------------

    async def test_l07_mark_demotes_and_success_restores(self, selector: Selector) -> None:
        """A node marked with an error is skipped, even by a Next obtained earlier; a success mark restores it."""
        service = await self.add("svc", "a", "b", "c")
        pick = await selector.select(service.name, strategy=round_robin)
        node_a = next(n for n in service.nodes if n.id == "a")
        selector.mark(service.name, node_a, ConnectionError("refused"))
        assert "a" not in self.draws(pick, 30), "a Next taken before the mark still returned the demoted node"
        assert "a" not in self.draws(await selector.select(service.name), 30)
        selector.mark(service.name, node_a, None)
        assert "a" in self.draws(await selector.select(service.name, strategy=round_robin), 6)

    async def test_l08_reset_restores_every_node(self, selector: Selector) -> None:
        """reset(service) forgets every mark of it at once."""
        service = await self.add("svc", "a", "b", "c")
        for node in service.nodes[:2]:
            selector.mark(service.name, node, TimeoutError("slow"))
        assert set(self.draws(await selector.select(service.name, strategy=round_robin), 6)) == {"c"}
        selector.reset(service.name)
        assert set(self.draws(await selector.select(service.name, strategy=round_robin), 6)) == {"a", "b", "c"}
        selector.reset(self.names("never-selected"))

    async def test_l09_client_errors_do_not_demote(self, selector: Selector) -> None:
        """A 4xx error (the caller's fault) leaves the node in use; marks of unknown nodes do not raise."""
        service = await self.add("svc", "a", "b")
        node_a = service.nodes[0]
        selector.mark(service.name, node_a, BadRequest("bad input"))
        assert "a" in self.draws(await selector.select(service.name, strategy=round_robin), 4)
        selector.mark(service.name, node_a, InternalError("crashed"))
        assert "a" not in self.draws(await selector.select(service.name, strategy=round_robin), 4)
        selector.mark(service.name, Node("ghost", "127.0.0.1:9"), ConnectionError("x"))
        selector.mark(self.names("unknown"), Node("ghost", "127.0.0.1:9"), ConnectionError("x"))

    async def test_l10_all_demoted_fails_open_or_raises(self, selector: Selector) -> None:
        """With every node demoted, fail_open (the default) still returns one; fail_open=False raises NoneAvailable."""
        service = await self.add("svc", "a", "b")
        closed = await self.another(fail_open=False)
        for sel in (selector, closed):
            for node in service.nodes:
                sel.mark(service.name, node, ConnectionError("down"))
        assert (await selector.select(service.name))().id in {"a", "b"}
        with pytest.raises(NoneAvailable):
            (await closed.select(service.name))()

    async def test_l11_demotion_ends_after_cooldown(self) -> None:
        """A demoted node is used again once options.cooldown has passed."""
        selector = await self.another(cooldown=0.2)
        service = await self.add("svc", "a", "b")
        selector.mark(service.name, service.nodes[0], ConnectionError("down"))
        assert "a" not in self.draws(await selector.select(service.name, strategy=round_robin), 4)

        async def back() -> None:
            assert "a" in self.draws(await selector.select(service.name, strategy=round_robin), 4)

        await self.eventually(back, "the demoted node coming back after its cooldown")

    # -- the registry behind it ------------------------------------------------------------

    async def test_l12_registry_changes_reach_the_selector(self, selector: Selector) -> None:
        """A node added after the first select is eventually selected; a removed service eventually raises."""
        service = await self.add("svc", "a")
        assert set(self.draws(await selector.select(service.name), 3)) == {"a"}
        await self.add("svc", "b")

        async def both() -> None:
            assert set(self.draws(await selector.select(service.name, strategy=round_robin), 4)) == {"a", "b"}

        await self.eventually(both, "the new node being selected")
        registry = await self.registry()
        await registry.deregister(service.replace(nodes=[Node("a", "x"), Node("b", "x")]))

        async def gone() -> None:
            with pytest.raises((ServiceNotFound, NoneAvailable)):
                await selector.select(service.name)

        await self.eventually(gone, "the deregistered service disappearing from the selector")

    async def test_l13_concurrent_selections_and_close_leave_the_registry(self, selector: Selector) -> None:
        """Fifty concurrent select()+next() calls all get valid nodes; close() does not close a registry passed in."""
        service = await self.add("svc", "a", "b", "c")

        async def one() -> str:
            return (await selector.select(service.name))().id

        picked = await asyncio.gather(*(one() for _ in range(50)))
        assert set(picked) <= {"a", "b", "c"}
        await selector.close()
        registry = await self.registry()
        assert [n.id for s in await registry.get_service(service.name) for n in s.nodes] == ["a", "b", "c"]
