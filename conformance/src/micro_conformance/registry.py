"""The registry contract (:class:`micro.registry.Registry`): cases R01-R22.

Service names start with the test's unique prefix, and listings are filtered by
it, so a registry shared with running services is tested safely. Capabilities:
``ttl`` and ``watch``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import ClassVar

import pytest
from micro.errors import BadRequest, ConnectionClosed, NotSupported, ServiceNotFound, Unavailable
from micro.registry import Endpoint, Node, Registry, Result, Service, Value, Watcher

from .base import Contract, Unreachable, absent, eventually, requires

__all__ = ["RegistryContract", "WatchLog"]


class WatchLog:
    """Reads a watcher in a background task and keeps the results about services with ``prefix``."""

    def __init__(self, watcher: Watcher, prefix: str) -> None:
        self.watcher = watcher
        self.prefix = prefix
        self.results: list[Result] = []
        self.error: BaseException | None = None
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for result in self.watcher:
                if result.service.name.startswith(self.prefix):
                    self.results.append(result)
        except Exception as exc:  # kept for the test to report; the watcher is stopped either way
            self.error = exc

    def actions(self, name: str | None = None) -> list[tuple[str, str, list[str]]]:
        """``(action, service name, node ids)`` per result, optionally for one service."""
        return [
            (r.action, r.service.name, [n.id for n in r.service.nodes])
            for r in self.results
            if name is None or r.service.name == name
        ]

    async def close(self) -> None:
        await self.watcher.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, timeout=5)


class RegistryContract(Contract[Registry]):
    """The behaviour every :class:`~micro.registry.Registry` shares; see :mod:`micro.registry.base`."""

    interface = "registry"
    known_capabilities = frozenset({"ttl", "watch"})
    #: The node TTL, in seconds, used by expiry cases; raise it for a registry whose expiry is coarse.
    ttl: ClassVar[float] = 1.0
    #: Extra seconds an expired node may linger before the case fails.
    ttl_slack: ClassVar[float] = 2.0

    @pytest.fixture
    def registry(self, subject: Registry) -> Registry:
        return subject

    def service(self, label: str = "svc", *nodes: str, version: str = "1.0.0", **metadata: str) -> Service:
        """A service named uniquely for this test, with nodes ``nodes`` on distinct loopback ports."""
        return Service(
            name=self.names(label),
            version=version,
            metadata=dict(metadata),
            nodes=[Node(node, f"127.0.0.1:{20000 + i}", {"node": node}) for i, node in enumerate(nodes or ("n1",))],
        )

    async def register(self, registry: Registry, service: Service, *, ttl: float | None = None) -> None:
        """Register ``service``, deregistering it when the test ends."""
        await registry.register(service, ttl=ttl)
        self.later(lambda: registry.deregister(service))

    async def watch(self, registry: Registry, service: str | None = None) -> WatchLog:
        log = WatchLog(registry.watch(service), self.names.prefix)
        self.later(log.close)
        return log

    async def ours(self, registry: Registry) -> list[tuple[str, str]]:
        return [(s.name, s.version) for s in await registry.list_services() if s.name.startswith(self.names.prefix)]

    async def nodes(self, registry: Registry, name: str) -> list[str]:
        """The node ids of ``name`` (all versions), ``[]`` if the service is unknown."""
        try:
            return [n.id for s in await registry.get_service(name) for n in s.nodes]
        except ServiceNotFound:
            return []

    # -- register and read -----------------------------------------------------------------

    async def test_r01_register_then_get_returns_the_whole_service(self, registry: Registry) -> None:
        """get_service returns name, version, metadata, endpoints and nodes (id, address, metadata) as registered."""
        service = self.service("svc", "n1", team="core")
        service.endpoints = [
            Endpoint(
                "Greeter.Hello",
                request=Value("HelloRequest", "HelloRequest", [Value("name", "string")]),
                response=Value("HelloResponse", "HelloResponse", [Value("greeting", "string")]),
                metadata={"stream": "false"},
            )
        ]
        service.nodes[0].metadata.update({"protocol": "mucp", "unicode": "ünïcødé"})
        await self.register(registry, service)
        (found,) = await registry.get_service(service.name)
        assert (found.name, found.version, found.metadata) == (service.name, "1.0.0", {"team": "core"})
        assert [n.to_dict() for n in found.nodes] == [n.to_dict() for n in service.nodes]
        assert [e.to_dict() for e in found.endpoints] == [e.to_dict() for e in service.endpoints]

    async def test_r02_versions_are_kept_apart_and_sorted(self, registry: Registry) -> None:
        """Two versions of one service are both returned, one Service each, sorted by version."""
        v2 = self.service("svc", "b", version="2.0.0")
        v1 = self.service("svc", "a", version="1.0.0")
        await self.register(registry, v2)
        await self.register(registry, v1)
        found = await registry.get_service(v1.name)
        assert [(s.version, [n.id for n in s.nodes]) for s in found] == [("1.0.0", ["a"]), ("2.0.0", ["b"])]

    async def test_r03_registering_nodes_merges_and_upserts(self, registry: Registry) -> None:
        """Nodes registered separately merge (sorted by id); a known node id is replaced, not duplicated."""
        first = self.service("svc", "n2")
        second = self.service("svc", "n1", team="new")
        await self.register(registry, first)
        await self.register(registry, second)
        (found,) = await registry.get_service(first.name)
        assert [n.id for n in found.nodes] == ["n1", "n2"]
        assert found.metadata == {"team": "new"}, "the version's metadata is not the last registration's"
        moved = first.replace(nodes=[Node("n2", "127.0.0.1:29999", {"moved": "yes"})])
        await registry.register(moved)
        (found,) = await registry.get_service(first.name)
        assert [(n.id, n.address, n.metadata) for n in found.nodes] == [
            ("n1", "127.0.0.1:20000", {"node": "n1"}),
            ("n2", "127.0.0.1:29999", {"moved": "yes"}),
        ]

    async def test_r04_deregister_removes_only_the_nodes_given(self, registry: Registry) -> None:
        """Deregistering one node keeps the others; deregistering the last makes get_service raise."""
        service = self.service("svc", "n1", "n2")
        await self.register(registry, service)
        await registry.deregister(service.replace(nodes=[service.nodes[0]]))
        assert await self.nodes(registry, service.name) == ["n2"]
        await registry.deregister(service.replace(nodes=[service.nodes[1]]))
        with pytest.raises(ServiceNotFound):
            await registry.get_service(service.name)
        assert await self.ours(registry) == []

    async def test_r05_deregister_of_unknown_nodes_is_not_an_error(self, registry: Registry) -> None:
        """Deregistering a node that is not registered, or a service never seen, changes nothing and raises nothing."""
        service = self.service("svc", "n1")
        await self.register(registry, service)
        await registry.deregister(service.replace(nodes=[Node("ghost", "127.0.0.1:1")]))
        await registry.deregister(self.service("never", "x"))
        await registry.deregister(service.replace(version="9.9.9"))
        assert await self.nodes(registry, service.name) == ["n1"]

    async def test_r06_unknown_service_raises_service_not_found(self, registry: Registry) -> None:
        """get_service of a name never registered raises ServiceNotFound naming it (not an empty list)."""
        name = self.names("missing")
        with pytest.raises(ServiceNotFound) as caught:
            await registry.get_service(name)
        assert name in str(caught.value), f"ServiceNotFound does not name the service: {caught.value}"

    async def test_r07_list_services_lists_each_version(self, registry: Registry) -> None:
        """list_services has one entry per live (name, version), sorted; deregistered ones are gone."""
        b = self.service("b", "n1")
        a1 = self.service("a", "n1", version="1")
        a2 = self.service("a", "n2", version="2")
        for service in (b, a2, a1):
            await self.register(registry, service)
        assert await self.ours(registry) == [(a1.name, "1"), (a2.name, "2"), (b.name, "1.0.0")]
        await registry.deregister(a2)
        assert await self.ours(registry) == [(a1.name, "1"), (b.name, "1.0.0")]

    async def test_r08_services_are_copies(self, registry: Registry) -> None:
        """Changing a service after registering it, or one returned by get_service, changes nothing stored."""
        service = self.service("svc", "n1", team="core")
        await self.register(registry, service)
        service.metadata["team"] = "changed"
        service.nodes[0].metadata["node"] = "changed"
        service.nodes.append(Node("n9", "127.0.0.1:9"))
        (found,) = await registry.get_service(service.name)
        found.nodes.clear()
        found.metadata.clear()
        (again,) = await registry.get_service(service.name)
        assert again.metadata == {"team": "core"}
        assert [(n.id, n.metadata) for n in again.nodes] == [("n1", {"node": "n1"})]

    async def test_r09_bad_input_raises_bad_request(self, registry: Registry) -> None:
        """Empty names, nodes without id or address, repeated node ids and a negative ttl raise BadRequest."""
        bad = [
            Service(name="", nodes=[Node("n", "127.0.0.1:1")]),
            Service(name=self.names("svc"), nodes=[Node("", "127.0.0.1:1")]),
            Service(name=self.names("svc"), nodes=[Node("n", "")]),
            Service(name=self.names("svc"), nodes=[Node("n", "127.0.0.1:1"), Node("n", "127.0.0.1:2")]),
        ]
        for service in bad:
            with pytest.raises(BadRequest):
                await registry.register(service)
        with pytest.raises(BadRequest):
            await registry.register(self.service("svc", "n1"), ttl=-1)
        with pytest.raises(BadRequest):
            await registry.get_service("")
        with pytest.raises(BadRequest):
            await registry.deregister(Service(name=""))
        assert await self.ours(registry) == []

    async def test_r10_concurrent_registrations_all_land(self, registry: Registry) -> None:
        """Twenty nodes of one service registered at once are all there afterwards."""
        ids = [f"n{i:02d}" for i in range(20)]
        services = [
            self.service("svc", node_id).replace(nodes=[Node(node_id, f"127.0.0.1:{21000 + i}")])
            for i, node_id in enumerate(ids)
        ]
        await asyncio.gather(*(registry.register(s) for s in services))
        self.later(lambda: registry.deregister(services[0].replace(nodes=[n for s in services for n in s.nodes])))
        assert await self.nodes(registry, services[0].name) == ids

    # -- ttl -------------------------------------------------------------------------------

    @requires("ttl")
    async def test_r11_nodes_expire_after_their_ttl(self, registry: Registry) -> None:
        """A node registered with a ttl and not refreshed disappears; one registered with ttl=0 stays."""
        expiring = self.service("svc", "short")
        permanent = self.service("svc", "long")
        await self.register(registry, permanent, ttl=0)
        await self.register(registry, expiring, ttl=self.ttl)
        assert await self.nodes(registry, expiring.name) == ["long", "short"]

        async def expired() -> None:
            assert await self.nodes(registry, expiring.name) == ["long"]

        await eventually(expired, timeout=self.ttl + self.ttl_slack, what="the unrefreshed node expiring")

    @requires("ttl")
    async def test_r12_refreshing_keeps_a_node_alive(self, registry: Registry) -> None:
        """Registering a node again before its ttl lapses keeps it past the ttl; then it expires."""
        service = self.service("svc", "n1")
        await self.register(registry, service, ttl=self.ttl)
        loop = asyncio.get_running_loop()
        until = loop.time() + 2 * self.ttl
        while loop.time() < until:
            await asyncio.sleep(self.ttl / 4)
            assert await self.nodes(registry, service.name) == ["n1"], "a refreshed node expired"
            await registry.register(service, ttl=self.ttl)

        async def expired() -> None:
            assert await self.nodes(registry, service.name) == []

        await eventually(expired, timeout=self.ttl + self.ttl_slack, what="the node expiring once unrefreshed")

    @absent("ttl")
    async def test_r13_ttl_without_capability_raises_not_supported(self, registry: Registry) -> None:
        """Without "ttl", register(ttl=<positive>) raises NotSupported and registers nothing."""
        with pytest.raises(NotSupported):
            await registry.register(self.service("svc", "n1"), ttl=30)
        assert await self.ours(registry) == []

    # -- watch -----------------------------------------------------------------------------

    @requires("watch")
    async def test_r14_watch_reports_create_update_delete_in_order(self, registry: Registry) -> None:
        """A watcher sees create, update (whole new state) and delete (last state) for a service version."""
        service = self.service("svc", "n1", "n2")
        log = await self.watch(registry, service.name)
        await registry.register(service.replace(nodes=[service.nodes[0]]))
        self.later(lambda: registry.deregister(service))
        await self.eventually(lambda: len(log.results) >= 1, "the create result")
        await registry.register(service.replace(nodes=[service.nodes[1]]))
        await self.eventually(lambda: len(log.results) >= 2, "the update result")
        await registry.deregister(service.replace(nodes=[service.nodes[0]]))
        await self.eventually(lambda: len(log.results) >= 3, "the update after a node left")
        await registry.deregister(service.replace(nodes=[service.nodes[1]]))
        await self.eventually(lambda: len(log.results) >= 4, "the delete result")
        await self.quiet()
        assert log.actions() == [
            ("create", service.name, ["n1"]),
            ("update", service.name, ["n1", "n2"]),
            ("update", service.name, ["n2"]),
            ("delete", service.name, ["n2"]),
        ]
        assert all(r.service.version == "1.0.0" for r in log.results)

    @requires("watch")
    async def test_r15_watch_filters_by_service_and_does_not_replay(self, registry: Registry) -> None:
        """watch(name) reports only that service; watch() reports every one; earlier changes are not replayed."""
        early = self.service("early", "n1")
        await self.register(registry, early)
        one = await self.watch(registry, self.names("a"))
        every = await self.watch(registry)
        a, b = self.service("a", "n1"), self.service("b", "n1")
        await self.register(registry, b)
        await self.register(registry, a)
        await self.eventually(lambda: len(one.results) >= 1 and len(every.results) >= 2, "the create results")
        await self.quiet()
        assert one.actions() == [("create", a.name, ["n1"])]
        # Order is promised per service version; a polling registry may report two services' changes sorted.
        assert sorted(every.actions()) == [("create", a.name, ["n1"]), ("create", b.name, ["n1"])]

    @requires("watch")
    async def test_r16_stop_ends_iteration_even_for_a_waiting_reader(self, registry: Registry) -> None:
        """stop() makes a pending __anext__ raise StopAsyncIteration; stop is idempotent; async with stops."""
        watcher = registry.watch(self.names("svc"))
        pending = asyncio.create_task(watcher.__anext__())
        await asyncio.sleep(0)
        before = watcher.stopped
        await watcher.stop()
        await watcher.stop()
        assert (before, watcher.stopped) == (False, True), "stopped does not follow stop()"
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(pending, timeout=self.timeout)
        with pytest.raises(StopAsyncIteration):
            await watcher.__anext__()
        async with registry.watch() as scoped:
            pass
        assert scoped.stopped

    @requires("ttl")
    @requires("watch")
    async def test_r18_expiry_is_reported_as_delete(self, registry: Registry) -> None:
        """A version whose last node expires is reported to watchers as a delete carrying that node."""
        service = self.service("svc", "n1")
        log = await self.watch(registry, service.name)
        await self.register(registry, service, ttl=self.ttl)
        await eventually(
            lambda: [a for a, _, _ in log.actions()] == ["create", "delete"],
            timeout=self.ttl + self.ttl_slack + self.timeout,
            what="a create then a delete for the expiring node",
        )
        assert log.actions() == [("create", service.name, ["n1"]), ("delete", service.name, ["n1"])]

    @requires("watch")
    async def test_r19_reregistering_an_unchanged_service_reports_nothing(self, registry: Registry) -> None:
        """A heartbeat (registering the same service again) is no change: watchers see nothing for it."""
        service = self.service("svc", "n1")
        log = await self.watch(registry, service.name)
        await self.register(registry, service)
        await self.eventually(lambda: len(log.results) >= 1, "the create result")
        for _ in range(3):
            await registry.register(service)
        await registry.register(self.service("svc", "n1", "n2"))
        await self.eventually(lambda: len(log.results) >= 2, "the update that added n2")
        await self.quiet()
        assert log.actions() == [("create", service.name, ["n1"]), ("update", service.name, ["n1", "n2"])]

    @requires("watch")
    async def test_r20_close_stops_every_watcher_and_the_registry_starts_again(self) -> None:
        """close() stops the registry's watchers (a waiting reader ends); close repeats safely; start() works again."""
        registry = await self.another()
        watcher = registry.watch(self.names("svc"))
        everything = registry.watch()
        pending = asyncio.ensure_future(watcher.__anext__())
        await asyncio.sleep(0)
        await registry.close()
        await registry.close()
        assert watcher.stopped and everything.stopped, "close() left a watcher running"
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(pending, timeout=self.timeout)
        await self.start(registry)
        service = self.service("svc", "n1")
        await self.register(registry, service)
        assert await self.nodes(registry, service.name) == ["n1"]

    async def test_r21_a_registry_never_started_starts_on_first_use(self) -> None:
        """register() and get_service() on a registry whose start() was never awaited work."""
        registry = await self.make()
        self.later(registry.close)
        service = self.service("svc", "n1")
        try:
            await registry.register(service)
        except ConnectionClosed:
            raise  # refusing to start on first use is the defect this case looks for, not an outage
        except Unavailable as exc:
            raise Unreachable(f"{type(registry).__name__} could not start on first use: {exc}") from exc
        self.later(lambda: registry.deregister(service))
        assert await self.nodes(registry, service.name) == ["n1"]

    async def test_r22_a_closed_registry_refuses_until_started_again(self, registry: Registry) -> None:
        """After close(), every method raises ConnectionClosed (watch too, at once) until start() is called again."""
        closed = await self.another()
        service = self.service("svc", "n1")
        self.later(lambda: registry.deregister(service))  # through the subject, which stays open
        await closed.register(service)
        await closed.close()
        refused = {
            "register": lambda: closed.register(service),
            "deregister": lambda: closed.deregister(service),
            "get_service": lambda: closed.get_service(service.name),
            "list_services": closed.list_services,
        }
        for method, call in refused.items():
            with pytest.raises(ConnectionClosed):
                await call()
                pytest.fail(f"{method}() on a closed registry did not raise ConnectionClosed")
        if "watch" in type(closed).capabilities:
            with pytest.raises(ConnectionClosed):
                watcher = closed.watch(service.name)
                await watcher.stop()
        await self.start(closed)  # and usable again once started
        await closed.register(service)
        assert await self.nodes(closed, service.name) == ["n1"]

    @absent("watch")
    async def test_r17_watch_without_capability_raises_not_supported(self, registry: Registry) -> None:
        """Without "watch", watch() raises NotSupported."""
        with pytest.raises(NotSupported):
            registry.watch()
