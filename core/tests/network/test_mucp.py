import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import micro
import pytest
from micro.errors import InvalidOption, Unauthorized
from micro.network import Network, Peer, Route
from micro.network.mucp import MUCPNetwork
from micro.network.options import NetworkOptions
from micro.registry.base import Node, Service
from micro.registry.memory import MemoryRegistry, MemoryRegistryOptions

Factory = Callable[..., MUCPNetwork]


@pytest.fixture
async def make() -> AsyncIterator[Factory]:
    made: list[MUCPNetwork] = []

    def factory(id: str, **options) -> MUCPNetwork:
        options.setdefault("interval", 0.05)
        # Each node a machine of its own: memory registries on one loop share a space unless told apart.
        registry = MemoryRegistry(MemoryRegistryOptions(space=id))
        network = MUCPNetwork(NetworkOptions(id=id, **options), registry=registry)
        made.append(network)
        return network

    yield factory
    for network in made:
        await network.close()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def greeter(address: str = "127.0.0.1:9001", node: str = "g1") -> Service:
    return Service(name="greeter", version="1.0", nodes=[Node(id=node, address=address)])


def test_created_by_name_from_environment():
    network = micro.create("network", environ={"MICRO_NETWORK_NAME": "prod", "MICRO_NETWORK_INTERVAL": "2s"})
    assert isinstance(network, MUCPNetwork)
    assert (network.options.name, network.options.interval) == ("prod", 2.0)
    with pytest.raises(InvalidOption, match="MICRO_NETWORK_INTERVAL"):
        micro.create("network", environ={"MICRO_NETWORK_INTERVAL": "0"})
    with pytest.raises(InvalidOption, match="name"):
        NetworkOptions(name="")


async def test_a_service_registered_on_a_is_routable_from_b(make):
    a = make("a")
    await a.connect()
    b = make("b", nodes=(a.address,))
    await b.connect()
    await a.registry.register(greeter())

    async def b_knows() -> bool:
        return bool(await b.routes(service="greeter"))

    await eventually(b_knows, "B to learn greeter")
    (learned,) = await b.routes(service="greeter")
    (link,) = b.tunnel.links()
    assert learned == Route(
        "greeter",
        "1.0",
        "127.0.0.1:9001",
        node="a",
        gateway="a",
        network="micro",
        metric=2,
        link=link.id,
        delay=learned.delay,
    )
    assert learned.delay >= 0
    assert await a.routes() == [Route("greeter", "1.0", "127.0.0.1:9001", "a", "", "micro", 1)]

    async def peers_known() -> bool:
        return [p.id for p in a.nodes()] == ["b"] and b.nodes() == [Peer("a", a.address)]

    await eventually(peers_known, "both to hear from each other")

    await a.registry.deregister(greeter())

    async def withdrawn() -> bool:
        return await b.routes(service="greeter") == []

    await eventually(withdrawn, "the route to be withdrawn")


async def test_routes_travel_along_a_chain_without_echo(make):
    a = make("a")
    await a.connect()
    b = make("b", nodes=(a.address,))
    await b.connect()
    c = make("c", nodes=(b.address,))
    await c.connect()
    await a.registry.register(greeter())
    await c.registry.register(Service(name="users", nodes=[Node(id="u1", address="127.0.0.1:9002")]))

    async def spread() -> bool:
        return bool(await c.routes(service="greeter")) and bool(await a.routes(service="users"))

    await eventually(spread, "routes to cross the chain")
    (via_b,) = await c.routes(service="greeter")
    assert (via_b.node, via_b.gateway, via_b.metric) == ("a", "b", 3)
    (users,) = await a.routes(service="users")
    assert (users.node, users.gateway, users.metric) == ("c", "b", 3)
    # a never learns its own service back from b
    assert [r.gateway for r in await a.routes(service="greeter")] == [""]


async def test_a_departed_peer_routes_expire(make):
    a = make("a")
    await a.connect()
    b = make("b", nodes=(a.address,))
    await b.connect()
    await b.registry.register(greeter())

    async def learned() -> bool:
        return bool(await a.routes(service="greeter"))

    await eventually(learned, "A to learn greeter")
    await b.close()

    async def forgotten() -> bool:
        return await a.routes(service="greeter") == [] and a.nodes() == []

    await eventually(forgotten, "the route to expire")


async def test_other_networks_and_garbage_are_ignored(make):
    a = make("a", name="blue")
    await a.connect()
    b = make("b", name="green", nodes=(a.address,))
    await b.connect()
    await a.registry.register(greeter())
    await asyncio.sleep(0.3)  # several advert rounds
    assert a.tunnel.links()  # linked, but not the same network
    assert await b.routes(service="greeter") == []
    assert b.nodes() == []
    assert not b._learn(b"not json", "")
    assert not b._learn(b'{"network": "green", "node": "x", "address": "y", "routes": [{"service": 1}]}', "")
    assert b.nodes() == []


async def test_a_peer_with_another_token_cannot_join(make):
    a = make("a", token="one")
    await a.connect()
    b = make("b", token="two", nodes=(a.address,))
    with pytest.raises(Unauthorized):
        await b.connect()


async def test_close_is_idempotent_and_network_is_a_network(make):
    a = make("a")
    await a.connect()
    await a.connect()
    await a.close()
    await a.close()
    assert isinstance(a, Network)
    assert await a.routes() == []
