"""The network contract (:class:`micro.network.Network`): cases N01-N07.

Each case joins instances of the implementation under test on loopback. Every
instance is a "machine" of its own: the contract hands each one its own memory
registry (``registry=``) and memory broker space (``broker=``), so a service
registered for one node is known to the others only through the network.
Capabilities: ``proxy`` (the node serves calls at ``proxy_address`` and routes
them to the service, wherever it runs: unary calls, streams, ``ServiceNotFound``
when there is no route) and ``publish`` (messages published through the proxy
reach subscribers behind other nodes, once each).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from micro.broker.memory import MemoryBroker, MemoryBrokerOptions
from micro.errors import ServiceNotFound, Unauthorized
from micro.network import Network, Route
from micro.registry.base import Node, Registry, Service
from micro.registry.memory import MemoryRegistry, MemoryRegistryOptions

from .base import Contract, create, requires

__all__ = ["NetworkContract"]


class Echo:
    """The service behind the network in the proxy cases."""

    async def hello(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"message": f"Hello {req.get('name')}"}

    async def count(self, req: dict[str, Any]) -> AsyncIterator[int]:
        for n in range(int(req["to"])):
            yield n


class NetworkContract(Contract[Network]):
    """The behaviour every :class:`~micro.network.Network` shares; see :mod:`micro.network.base`."""

    interface = "network"
    known_capabilities = frozenset({"proxy", "publish"})
    #: Adverts every half second: routes spread and are withdrawn within a case, and a loaded machine keeps up.
    options = {"address": "127.0.0.1:0", "interval": 0.5}
    timeout = 10.0

    @pytest.fixture
    def network(self, subject: Network) -> Network:
        return subject

    async def make(self, **options: Any) -> Network:
        """A node with a registry and a broker space of its own (see the module docstring)."""
        if self.name is None:
            raise NotImplementedError(f"{type(self).__name__} sets neither `name` nor overrides `make()`")
        space = f"network-{uuid.uuid4().hex}"
        registry = MemoryRegistry(MemoryRegistryOptions(space=space))
        await self.start(registry)
        broker = MemoryBroker(MemoryBrokerOptions(space=space))
        self.later(broker.close)  # the node starts it on first use and never closes what it was given
        values = {"token": f"token-{self.names.prefix}", **self.options, **options}
        node = create(
            self.interface, self.name, strings=self.option_strings, values=values, registry=registry, broker=broker
        )
        assert isinstance(node, Network)
        self._machines()[id(node)] = (registry, space)
        return node

    _machine_table: dict[int, tuple[Registry, str]] | None = None

    def _machines(self) -> dict[int, tuple[Registry, str]]:
        """Each node's registry and broker space, by ``id()`` of the node (one table per test)."""
        if self._machine_table is None:
            self._machine_table = {}
        return self._machine_table

    def registry(self, node: Network) -> Registry:
        """The registry of ``node``'s machine."""
        return self._machines()[id(node)][0]

    async def joined(self, *peers: Network, **options: Any) -> Network:
        """Another started node that joins ``peers``, once each lists it among its nodes."""
        other = await self.another(nodes=tuple(p.address for p in peers), **options)
        for peer in peers:

            def hears(peer: Network = peer) -> bool:
                return any(n.id == other.id for n in peer.nodes())

            await self.eventually(hears, f"{peer.id} hears {other.id}")
        return other

    async def learned(self, node: Network, service: str, **where: Any) -> Route:
        """Wait until ``node`` has a route to ``service`` (matching ``where``); return it."""

        async def find() -> Route | bool:
            for route in await node.routes(service=service):
                if all(getattr(route, k) == v for k, v in where.items()):
                    return route
            return False  # eventually() waits while the check returns False

        found: Route = await self.eventually(find, f"{node.id} to learn {service} {where or ''}")
        return found

    async def serve(self, node: Network, name: str) -> list[Any]:
        """Run the service ``name`` (Echo, and a subscriber to ``<name>.events``) on ``node``'s machine."""
        import micro
        from micro.transport.tcp import TCPTransport

        registry, space = self._machines()[id(node)]
        received: list[Any] = []
        service = micro.Service(
            name,
            registry=registry,
            broker=MemoryBroker(MemoryBrokerOptions(space=space)),
            transport=TCPTransport(),
            environ={},
            handle_signals=False,
            drain_timeout=1.0,
        )
        service.handle(Echo())

        async def on_event(event: Any) -> None:
            received.append(event)

        service.subscribe(f"{name}.events", on_event)
        await service.start()
        self.later(service.stop)
        return received

    def client(self, node: Network) -> Any:
        from micro.client import ClientOptions
        from micro.client.rpc import RPCClient

        client = RPCClient(ClientOptions(proxy=node.proxy_address, request_timeout=self.timeout))
        self.later(client.close)
        return client

    @staticmethod
    def service(name: str, address: str = "127.0.0.1:9") -> Service:
        return Service(name=name, version="1.0", nodes=[Node(id=f"{name}-1", address=address)])

    # -- cases -------------------------------------------------------------------------------

    async def test_n01_connect_binds_and_connect_and_close_repeat(self, network: Network) -> None:
        """A connected node has an id and a real address; connect and close repeat; a closed node has no routes."""
        host, _, port = network.address.rpartition(":")
        assert network.id, "a node has an id"
        assert host and port.isdigit() and int(port) > 0, f"network address {network.address!r}"
        await network.connect()
        other = await self.make()
        await other.connect()
        await other.connect()
        await other.close()
        await other.close()
        assert await other.routes() == []

    async def test_n02_a_service_on_one_node_is_routed_from_its_peer(self, network: Network) -> None:
        """A service in A's registry: A routes it locally (metric 1, no gateway); B learns it via A at metric 2."""
        name = self.names("svc")
        await self.registry(network).register(self.service(name))
        other = await self.joined(network)
        route = await self.learned(other, name)
        assert (route.node, route.gateway, route.metric) == (network.id, network.id, 2), route
        assert route.address == "127.0.0.1:9"
        mine = [r for r in await network.routes(service=name) if r.gateway == ""]
        assert [(r.node, r.metric) for r in mine] == [(network.id, 1)]
        await self.eventually(lambda: [p.id for p in other.nodes()] == [network.id], "B to list A among its nodes")
        assert other.id in [p.id for p in network.nodes()]
        assert name in await other.services()

    async def test_n03_routes_are_withdrawn_when_the_service_or_node_goes(self, network: Network) -> None:
        """Deregistering withdraws the route from the peer; a node that leaves takes its routes and itself away."""
        name, second = self.names("svc"), self.names("svc2")
        await self.registry(network).register(self.service(name))
        await self.registry(network).register(self.service(second, "127.0.0.1:10"))
        other = await self.joined(network)
        await self.learned(other, name)
        await self.learned(other, second)
        await self.registry(network).deregister(self.service(name))

        async def withdrawn() -> bool:
            return await other.routes(service=name) == []

        await self.eventually(withdrawn, f"{name} to be withdrawn")
        await network.close()

        async def gone() -> bool:
            return await other.routes(service=second) == [] and other.nodes() == []

        await self.eventually(gone, "the departed node's routes and itself to go")

    async def test_n04_routes_travel_along_a_chain_one_hop_at_a_time_without_echo(self, network: Network) -> None:
        """A - B - C: C learns A's service at metric 3 via B; A never learns its own service back."""
        name = self.names("svc")
        await self.registry(network).register(self.service(name))
        b = await self.joined(network)
        c = await self.joined(b)
        route = await self.learned(c, name)
        assert (route.node, route.gateway, route.metric) == (network.id, b.id, 3), route
        await self.learned(b, name)
        await asyncio.sleep(float(self.options.get("interval", 0.5)) * 2)  # B's adverts to A since it learned
        assert [r.gateway for r in await network.routes(service=name)] == [""], "A learned its own route back"

    async def test_n05_other_networks_and_tokens_are_kept_apart(self, network: Network) -> None:
        """A node of another network (same token) links but learns nothing; one with another token cannot join."""
        name = self.names("svc")
        await self.registry(network).register(self.service(name))
        stranger = await self.another(nodes=(network.address,), name=f"other-{self.names.prefix}")
        witness = await self.joined(network)
        await self.learned(witness, name)  # adverts are flowing
        assert await stranger.routes(service=name) == [], "a node of another network learned a route"
        assert stranger.nodes() == []
        intruder = await self.make(nodes=(network.address,), token="not-the-token")
        with pytest.raises(Unauthorized):
            await intruder.connect()
        await intruder.close()

    @requires("proxy")
    async def test_n06_the_proxy_routes_calls_and_streams_to_a_service_behind_a_peer(self, network: Network) -> None:
        """A client of B's proxy calls and streams to a service only A's registry holds; no route: ServiceNotFound."""
        name = self.names("greeter")
        await self.serve(network, name)
        b = await self.joined(network)
        await self.learned(b, name)
        client = self.client(b)
        response = await client.invoke(name, "Echo.hello", {"name": "B"})
        assert response.body == {"message": "Hello B"}
        async with await client.stream(name, "Echo.count", {"to": 3}) as stream:
            assert [n async for n in stream] == [0, 1, 2]
        with pytest.raises(ServiceNotFound):
            await client.invoke(self.names("nobody"), "Echo.hello", {}, retries=0)

    @requires("publish")
    async def test_n07_publishing_through_the_proxy_reaches_subscribers_behind_peers_once(
        self, network: Network
    ) -> None:
        """A message published at C's proxy reaches the subscriber on A, via B, exactly once."""
        name = self.names("greeter")
        received = await self.serve(network, name)
        b = await self.joined(network)
        c = await self.joined(b)
        client = self.client(c)
        await client.publish(f"{name}.events", {"n": 1})
        await self.eventually(lambda: received == [{"n": 1}], "the message to arrive")
        await self.quiet()
        await self.quiet()
        assert received == [{"n": 1}], "delivered more than once"
        assert c.id  # the publisher's node is linked through b only
