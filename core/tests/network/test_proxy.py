"""The proxy in one process: a client on A calls, streams and publishes to a service only C can reach, via B.

Each node is a "machine" of its own: its own memory registry and broker space, so the only way from A to the
service is the network. The multi-process version, on real sockets and in network namespaces, is
``test_line.py``.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import micro
import pytest
from micro.broker.memory import MemoryBroker, MemoryBrokerOptions
from micro.client import ClientOptions
from micro.client.rpc import RPCClient
from micro.errors import BadRequest, NotFound, ServiceNotFound, Unavailable
from micro.network.mucp import SERVICE, MUCPNetwork
from micro.network.options import NetworkOptions
from micro.registry.memory import MemoryRegistry, MemoryRegistryOptions
from micro.transport.base import Message
from micro.transport.tcp import TCPTransport


class Echo:
    async def hello(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"message": f"Hello {req.get('name')}"}

    async def count(self, req: dict[str, Any]) -> AsyncIterator[int]:
        for n in range(req["to"]):
            yield n

    async def wait(self, req: dict[str, Any]) -> AsyncIterator[int]:
        yield 0
        await asyncio.sleep(30)
        yield 1

    async def fail(self, req: dict[str, Any]) -> dict[str, Any]:
        raise BadRequest("no thanks")


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


class Line:
    """Nodes a - b - c, each with its own registry and broker space."""

    def __init__(self) -> None:
        self.nodes: dict[str, MUCPNetwork] = {}
        self.services: list[micro.Service] = []
        self.clients: list[RPCClient] = []

    async def node(self, id: str, *peers: str, **options: Any) -> MUCPNetwork:
        # Not shorter: a loaded machine can stall a loop for a few tenths of a second, and routes expire after
        # three intervals without an advert.
        options.setdefault("interval", 0.5)
        node = MUCPNetwork(
            NetworkOptions(id=id, nodes=tuple(self.nodes[p].address for p in peers), **options),
            registry=MemoryRegistry(MemoryRegistryOptions(space=id)),
            broker=MemoryBroker(MemoryBrokerOptions(space=id)),
        )
        self.nodes[id] = node
        await node.connect()
        return node

    async def service(self, on: str, name: str = "greeter") -> tuple[micro.Service, list[Any]]:
        received: list[Any] = []
        service = micro.Service(
            name,
            registry=self.nodes[on].registry,
            broker=MemoryBroker(MemoryBrokerOptions(space=on)),
            transport=TCPTransport(),
            environ={},
            handle_signals=False,
            drain_timeout=1.0,
        )
        service.handle(Echo())

        async def on_event(event: dict[str, Any]) -> None:
            received.append(event)

        service.subscribe(f"{name}.events", on_event)
        await service.start()
        self.services.append(service)
        return service, received

    def client(self, on: str) -> RPCClient:
        client = RPCClient(ClientOptions(proxy=self.nodes[on].proxy_address, request_timeout=5.0))
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for service in self.services:
            await service.stop()
        for node in reversed(self.nodes.values()):
            await node.close()


@pytest.fixture
async def line() -> AsyncIterator[Line]:
    made = Line()
    try:
        await made.node("c")
        await made.node("b", "c")
        await made.node("a", "b")
        yield made
    finally:
        await made.close()


async def routed(node: MUCPNetwork, service: str) -> None:
    async def known() -> bool:
        return bool(await node.routes(service=service))

    await eventually(known, f"{node.id} to learn {service}")


async def test_unary_stream_and_publish_cross_two_hops(line: Line):
    _, received = await line.service("c")
    await routed(line.nodes["a"], "greeter")
    (route,) = await line.nodes["a"].routes(service="greeter")
    assert (route.gateway, route.metric) == ("b", 3)

    client = line.client("a")
    response = await client.invoke("greeter", "Echo.hello", {"name": "A"})
    assert response.body == {"message": "Hello A"}

    async with await client.stream("greeter", "Echo.count", {"to": 4}) as stream:
        assert [n async for n in stream] == [0, 1, 2, 3]

    with pytest.raises(BadRequest, match="no thanks"):  # an application error crosses unchanged
        await client.invoke("greeter", "Echo.fail", {})

    await client.publish("greeter.events", {"n": 1})

    async def delivered() -> bool:
        return received == [{"n": 1}]

    await eventually(delivered, "the event to reach C's subscriber")
    await asyncio.sleep(0.3)
    assert received == [{"n": 1}]  # once, although every node passes it on


async def test_unknown_service_is_service_not_found_at_once(line: Line):
    client = line.client("a")
    started = time.monotonic()
    with pytest.raises(ServiceNotFound):
        await client.invoke("nobody", "X.y", {})
    stream = await client.stream("nobody", "X.y", {})
    with pytest.raises(ServiceNotFound):
        await stream.recv()
    assert time.monotonic() - started < 4.0  # an answer, not the 5s deadline


async def test_when_c_stops_the_route_goes_and_calls_fail_with_service_not_found(line: Line):
    await line.service("c")
    a = line.nodes["a"]
    await routed(a, "greeter")
    client = line.client("a")
    assert (await client.invoke("greeter", "Echo.hello", {"name": "x"})).body == {"message": "Hello x"}

    await line.nodes["c"].close()  # the node goes: b's link to it drops, b withdraws, a hears at once
    started = time.monotonic()

    async def gone() -> bool:
        return await a.routes(service="greeter") == []

    await eventually(gone, "the route to leave A")
    # the stated bound: link loss noticed (at once on a closed socket) + one watch tick + one triggered advert
    assert time.monotonic() - started < 3 * a.options.interval + 2.0
    with pytest.raises(ServiceNotFound):
        await client.invoke("greeter", "Echo.hello", {"name": "x"})


async def test_a_deregistered_service_is_withdrawn_within_two_intervals_per_hop(line: Line):
    service, _ = await line.service("c")
    a = line.nodes["a"]
    await routed(a, "greeter")
    await service.stop()
    line.services.remove(service)
    started = time.monotonic()

    async def gone() -> bool:
        return await a.routes(service="greeter") == []

    await eventually(gone, "the route to leave A")
    assert time.monotonic() - started < 2 * a.options.interval + 2.0


async def test_control_calls_show_the_view_from_a_node(line: Line):
    await line.service("c")
    a = line.nodes["a"]
    await routed(a, "greeter")
    client = RPCClient()
    line.clients.append(client)
    address = a.proxy_address
    nodes = (await client.invoke(SERVICE, "Network.Nodes", {}, address=address)).body
    assert nodes["node"]["id"] == "a"
    assert [n["id"] for n in nodes["nodes"]] == ["b"]
    routes = (await client.invoke(SERVICE, "Network.Routes", {"service": "greeter"}, address=address)).body
    assert [(r["node"], r["gateway"], r["metric"]) for r in routes["routes"]] == [("c", "b", 3)]
    assert (await client.invoke(SERVICE, "Network.Services", {}, address=address)).body == {"services": ["greeter"]}

    async def whole() -> bool:
        graph = (await client.invoke(SERVICE, "Network.Graph", {}, address=address)).body["graph"]
        return set(graph) == {"a", "b", "c"}

    await eventually(whole, "the graph to show every node")
    graph = (await client.invoke(SERVICE, "Network.Graph", {}, address=address)).body["graph"]
    assert graph["a"] == {"peers": ["b"], "hops": 0}
    assert graph["c"]["hops"] == 2
    assert set(graph["b"]["peers"]) == {"a", "c"}
    with pytest.raises(NotFound):
        await client.invoke(SERVICE, "Network.Nope", {}, address=address)


async def test_the_node_registers_so_micro_proxy_can_name_it(line: Line):
    await line.service("c")
    a = line.nodes["a"]
    await routed(a, "greeter")
    (registered,) = await a.registry.get_service(SERVICE)
    assert registered.nodes[0].address == a.proxy_address
    # a client that names the proxy service finds it through the selector of A's registry
    from micro.selector.cache import RandomSelector

    client = RPCClient(ClientOptions(proxy=SERVICE), selector=RandomSelector(registry=a.registry))
    line.clients.append(client)
    assert (await client.invoke("greeter", "Echo.hello", {"name": "n"})).body == {"message": "Hello n"}


async def test_the_proxy_refuses_past_max_calls_and_garbage(line: Line):
    solo = await line.node("solo", max_calls=1)
    await line.service("solo")
    client = line.client("solo")
    held = await client.stream("greeter", "Echo.wait", {})
    assert await held.recv() == 0  # the one call the proxy may carry is open
    with pytest.raises(Unavailable, match="max_calls"):
        await client.invoke("greeter", "Echo.hello", {}, retries=0)
    await held.close()

    async def free() -> bool:
        try:
            await client.invoke("greeter", "Echo.hello", {"name": "z"}, retries=0)
        except Unavailable:
            return False
        return True

    await eventually(free, "the proxy to take calls again")
    transport = TCPTransport()
    try:
        socket = await transport.dial(solo.proxy_address)
        await socket.send(Message({"Micro-Network-Hops": "x" * 50, "Micro-Service": "greeter"}, b""))
        reply = await socket.recv(timeout=5)
        assert isinstance(micro.errors.from_wire(reply.header["Micro-Error"]), BadRequest)
        await socket.close()
        socket = await transport.dial(solo.proxy_address)
        await socket.send(Message({"Micro-Network-Hops": "15", "Micro-Service": "greeter"}, b""))
        reply = await socket.recv(timeout=5)  # a call that went round too many nodes: no route
        assert isinstance(micro.errors.from_wire(reply.header["Micro-Error"]), ServiceNotFound)
        await socket.close()
    finally:
        await transport.close()


def test_micro_proxy_is_read_by_a_service_and_a_no_route_error_is_service_not_found():
    service = micro.Service("caller", environ={"MICRO_PROXY": "127.0.0.1:9999"}, handle_signals=False)
    assert service.client.options.proxy == "127.0.0.1:9999"
    assert micro.Service("caller", environ={}, handle_signals=False).client.options.proxy is None
    assert micro.create("client", environ={"MICRO_PROXY": "a:1"}).options.proxy == "a:1"  # micro call, too
    both = {"MICRO_PROXY": "a:1", "MICRO_CLIENT_PROXY": "b:2"}
    assert micro.create("client", environ=both).options.proxy == "b:2"
    error = micro.errors.from_wire({"id": SERVICE, "code": 404, "detail": "x", "status": "Service Not Found"})
    assert isinstance(error, ServiceNotFound)
    assert not isinstance(micro.errors.from_wire({"code": 404, "status": "Not Found"}), ServiceNotFound)
    with pytest.raises(micro.errors.InvalidOption, match="proxy"):
        ClientOptions(proxy=" ")
