"""The micro grpc client against a plain grpcio server written here from grpc's documented API, and against
micro's own grpc server with dataclass and untyped handlers."""

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import grpc
import pytest
from micro import context
from micro.client import ClientOptions
from micro.client.rpc import RPCClient
from micro.errors import ConnectionClosed, Forbidden, NotFound, NotSupported, ServiceNotFound, Timeout
from micro.registry.base import Node, Service
from micro.registry.memory import MemoryRegistry
from micro.selector.cache import RandomSelector
from micro_grpc import GRPCClient, GRPCClientOptions, GRPCServer, GRPCServerOptions


def plain_servicer(pb2: ModuleType, pb2_grpc: ModuleType) -> Any:
    """An Echo servicer as grpc's documentation writes one: no micro anywhere."""

    class Echo(pb2_grpc.EchoServicer):
        async def Say(self, request, context):
            user = dict(context.invocation_metadata()).get("x-user", "-")
            context.set_trailing_metadata((("x-plain", "yes"),))
            return pb2.Msg(text=f"{request.text}|{user}", n=request.n * 2)

        async def Count(self, request, context):
            for i in range(request.n):
                yield pb2.Msg(text=request.text, n=i)

        async def Join(self, request_iterator, context):
            texts = [r.text async for r in request_iterator]
            return pb2.Msg(text="+".join(texts), n=len(texts))

        async def Chat(self, request_iterator, context):
            async for r in request_iterator:
                yield pb2.Msg(text=r.text[::-1], n=r.n)

        async def Slow(self, request, context):
            await asyncio.sleep(30)
            return pb2.Msg()

        async def Fail(self, request, context):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no {request.text}")

        async def Boom(self, request, context):
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, "nope")

    return Echo()


@pytest.fixture
async def plain(echo: tuple[ModuleType, ModuleType]) -> AsyncIterator[tuple[GRPCClient, ModuleType]]:
    """A plain grpcio server registered as ``plain.echo`` (with ``protocol: grpc``), and a micro client."""
    pb2, pb2_grpc = echo
    server = grpc.aio.server()
    pb2_grpc.add_EchoServicer_to_server(plain_servicer(pb2, pb2_grpc), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    registry = MemoryRegistry()
    await registry.register(
        Service(
            name="plain.echo",
            nodes=[Node(id="plain-1", address=f"127.0.0.1:{port}", metadata={"protocol": "grpc"})],
        )
    )
    client = GRPCClient(GRPCClientOptions(retries=0), selector=RandomSelector(registry=registry))
    try:
        yield client, pb2
    finally:
        await client.close()
        await server.stop(None)


async def test_unary_call_to_a_plain_grpc_server(plain):
    client, pb2 = plain
    response = await client.invoke(
        "plain.echo", "echo.v1.Echo.Say", pb2.Msg(text="hi", n=21), response_type=pb2.Msg, metadata={"X-User": "ann"}
    )
    assert (response.body.text, response.body.n) == ("hi|ann", 42)
    assert response.metadata["x-plain"] == "yes"


async def test_streams_to_a_plain_grpc_server(plain):
    client, pb2 = plain
    stream = await client.stream("plain.echo", "echo.v1.Echo.Count", pb2.Msg(text="c", n=3), response_type=pb2.Msg)
    assert [(m.text, m.n) async for m in stream] == [("c", 0), ("c", 1), ("c", 2)]
    assert stream.done

    stream = await client.stream("plain.echo", "echo.v1.Echo.Join", response_type=pb2.Msg)
    for text in ("a", "b"):
        await stream.send(pb2.Msg(text=text))
    await stream.close_send()
    joined = await stream.recv()
    assert (joined.text, joined.n) == ("a+b", 2)
    with pytest.raises(ConnectionClosed):
        await stream.send(pb2.Msg(text="late"))

    async with await client.stream("plain.echo", "echo.v1.Echo.Chat", response_type=pb2.Msg) as chat:
        await chat.send(pb2.Msg(text="abc", n=1))
        assert (await chat.recv()).text == "cba"
        await chat.send(pb2.Msg(text="xy", n=2))
        assert (await chat.recv()).text == "yx"
        await chat.close_send()
        with pytest.raises(ConnectionClosed):
            await chat.recv()
        assert chat.done


async def test_statuses_of_a_plain_server_become_typed_errors(plain):
    client, pb2 = plain
    with pytest.raises(NotFound, match="no thing") as caught:
        await client.call("plain.echo", "echo.v1.Echo.Fail", pb2.Msg(text="thing"), response_type=pb2.Msg)
    assert caught.value.code == 404
    assert caught.value.id == "plain.echo"
    with pytest.raises(Forbidden):
        await client.call("plain.echo", "echo.v1.Echo.Boom", pb2.Msg(), response_type=pb2.Msg)
    with pytest.raises(NotSupported):  # UNIMPLEMENTED
        await client.call("plain.echo", "echo.v1.Echo.Missing", pb2.Msg(), response_type=pb2.Msg)
    stream = await client.stream("plain.echo", "echo.v1.Echo.Fail", pb2.Msg(text="s"), response_type=pb2.Msg)
    with pytest.raises(NotFound):
        await stream.recv()


async def test_deadline_goes_out_as_the_grpc_timeout(plain):
    client, pb2 = plain
    with pytest.raises(Timeout):
        await client.call("plain.echo", "echo.v1.Echo.Slow", pb2.Msg(), response_type=pb2.Msg, timeout=0.3)


async def test_only_grpc_nodes_are_picked(echo):
    """With no grpc node, the grpc client raises ServiceNotFound naming what the nodes speak; dials nothing."""
    registry = MemoryRegistry()
    await registry.register(Service(name="mixed", nodes=[Node(id="m", address="127.0.0.1:1", metadata={})]))
    client = GRPCClient(GRPCClientOptions(retries=0), selector=RandomSelector(registry=registry))
    try:
        with pytest.raises(ServiceNotFound, match="no node of 'mixed' speaks grpc; its nodes speak: mucp") as caught:
            await client.call("mixed", "Echo.Say", {})
        assert caught.value.code == 404
    finally:
        await client.close()


async def test_a_mixed_registry_routes_each_client_to_the_nodes_it_speaks(plain):
    """gRPC and mucp nodes under one name: the grpc client only calls the gRPC node, a mucp client only mucp ones."""
    client, pb2 = plain
    registry = client.selector.registry
    [service] = await registry.get_service("plain.echo")
    mucp = Node(id="mucp-1", address="127.0.0.1:9", metadata={"protocol": "mucp", "transport": "tcp"})
    await registry.register(service.replace(nodes=[mucp]))
    [mixed] = await registry.get_service("plain.echo")
    assert sorted(n.id for n in mixed.nodes) == ["mucp-1", "plain-1"]
    for n in range(20):  # random picks: a mucp node would answer nothing here
        response = await client.invoke("plain.echo", "echo.v1.Echo.Say", pb2.Msg(text="hi", n=n), response_type=pb2.Msg)
        assert response.body.n == 2 * n
    mucp_client = RPCClient(ClientOptions(retries=0), selector=RandomSelector(registry=registry))
    try:
        await registry.deregister(service.replace(nodes=[mucp]))
        with pytest.raises(ServiceNotFound, match="speaks mucp over tcp; its nodes speak: grpc"):
            await mucp_client.call("plain.echo", "Echo.Say", {})
    finally:
        await mucp_client.close()


@dataclasses.dataclass
class Point:
    x: int
    y: int
    label: str = ""
    tags: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Area:
    size: float
    corners: list[Point]
    meta: dict[str, int] = dataclasses.field(default_factory=dict)


class Shapes:
    async def square(self, p: Point) -> Area:
        context.set_header("x-seen", context.get("x-who") or "")
        corners = [Point(0, 0), Point(p.x, 0), Point(p.x, p.y), Point(0, p.y)]
        return Area(size=float(p.x * p.y), corners=corners, meta={"n": len(p.tags)})

    async def walk(self, p: Point) -> AsyncIterator[Point]:
        for i in range(p.x):
            yield Point(i, i, label=p.label)

    async def total(self, points: AsyncIterator[Point]) -> Area:
        seen = [p async for p in points]
        return Area(size=float(sum(p.x for p in seen)), corners=seen)

    async def anything(self, value: Any) -> Any:
        return {"got": value}

    async def drip(self, p: Point) -> AsyncIterator[Point]:
        context.set_header("x-drip", "on")
        yield Point(0, 0)
        await asyncio.sleep(30)
        yield Point(1, 1)


@pytest.fixture
async def shapes() -> AsyncIterator[GRPCClient]:
    registry = MemoryRegistry()
    server = GRPCServer(GRPCServerOptions(name="shapes"), registry=registry)
    server.handle(Shapes())
    await server.start()
    client = GRPCClient(GRPCClientOptions(retries=0), selector=RandomSelector(registry=registry))
    try:
        yield client
    finally:
        await client.close()
        await server.stop()


async def test_micro_to_micro_with_dataclasses(shapes):
    response = await shapes.invoke(
        "shapes", "Shapes.square", Point(2, 3, tags=["a", "b"]), response_type=Area, metadata={"X-Who": "me"}
    )
    assert response.body == Area(size=6.0, corners=[Point(0, 0), Point(2, 0), Point(2, 3), Point(0, 3)], meta={"n": 2})
    assert response.metadata["x-seen"] == "me"
    stream = await shapes.stream("shapes", "Shapes.walk", Point(3, 0, label="w"), response_type=Point)
    assert [p async for p in stream] == [Point(0, 0, "w"), Point(1, 1, "w"), Point(2, 2, "w")]
    stream = await shapes.stream("shapes", "Shapes.total", response_type=Area)
    await stream.send(Point(1, 1))
    await stream.send(Point(2, 2))
    await stream.close_send()
    assert (await stream.recv()).size == 3.0


class _PassThrough(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details, request)


class _InterceptedClient(GRPCClient):
    """Channels with an interceptor: grpcio's call objects are then of another class, without the finished
    status the client reads the trailers from, so the client falls back to awaiting them."""

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is None:
            channel = self._channels[address] = grpc.aio.insecure_channel(address, interceptors=[_PassThrough()])
        return channel


async def test_response_headers_come_back_from_an_intercepted_channel_too(shapes):
    client = _InterceptedClient(GRPCClientOptions(retries=0), selector=shapes.selector)
    try:
        response = await client.invoke(
            "shapes", "Shapes.square", Point(1, 1), response_type=Area, metadata={"X-Who": "them"}
        )
    finally:
        await client.close()
    assert response.body.size == 1.0
    assert response.metadata["x-seen"] == "them"
    # And without a header set, the metadata is empty.
    plain = await shapes.invoke("shapes", "Shapes.anything", 1)
    assert dict(plain.metadata) == {}


async def test_untyped_endpoints_carry_json(shapes):
    assert await shapes.call("shapes", "Shapes.anything", [1, "two"]) == {"got": [1, "two"]}


async def test_an_unknown_method_of_a_micro_server_is_not_found(shapes):
    # The server answers UNIMPLEMENTED (gRPC's convention) carrying micro's 404: the same error as over mucp.
    with pytest.raises(NotFound, match="has no method '/Shapes/nothing'") as caught:
        await shapes.call("shapes", "Shapes.nothing", {})
    assert caught.value.code == 404
    assert caught.value.id == "shapes"


async def test_a_stream_past_its_deadline_raises_timeout(shapes):
    stream = await shapes.stream("shapes", "Shapes.drip", Point(1, 1), response_type=Point, timeout=2.0)
    assert await stream.recv() == Point(0, 0)
    with pytest.raises(Timeout):
        await stream.recv()
    with pytest.raises(ConnectionClosed):
        await stream.recv()
    assert not stream.done
