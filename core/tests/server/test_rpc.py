"""The RPC server and client over the in-process stack: round trips, errors, metadata, wrappers, deadlines."""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from typing import Any

import orjson
import pydantic
import pytest
from micro import _mucp, context
from micro.errors import (
    BadRequest,
    CodecError,
    ConfigError,
    EndpointNotFound,
    InternalError,
    MessageTooLarge,
    NotFound,
    RPCError,
    ServiceNotFound,
    Timeout,
)
from micro.server import HandlerFunc, Request
from micro.transport import Message as Frame
from rpcstack import Stack


@dataclass
class HelloRequest:
    name: str


@dataclass
class HelloResponse:
    message: str


class Item(pydantic.BaseModel):
    id: int
    tags: list[str] = []


class Say:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def hello(self, req: HelloRequest) -> HelloResponse:
        return HelloResponse(message=f"Hello {req.name}")

    async def item(self, req: Item) -> Item:
        return Item(id=req.id + 1, tags=[*req.tags, "seen"])

    async def echo(self, req: dict[str, Any]) -> dict[str, Any]:
        return req

    async def nothing(self) -> None:
        return None

    async def fail(self, req: dict[str, Any]) -> None:
        raise ValueError(f"cannot handle {req.get('what')}")

    async def refuse(self, req: dict[str, Any]) -> None:
        raise BadRequest("name is required")

    async def slow(self, req: dict[str, Any]) -> dict[str, Any]:
        self.started.set()
        await asyncio.sleep(req.get("seconds", 10))
        return {"slept": True}

    async def blocked(self, req: dict[str, Any]) -> dict[str, Any]:
        self.started.set()
        await self.release.wait()
        return {"released": True}

    async def whoami(self, req: dict[str, Any]) -> dict[str, Any]:
        context.set_header("X-Served-By", "node-1")
        return {"user": context.get("X-User"), "remaining": context.remaining(), "metadata": dict(context.metadata())}

    async def big(self, req: dict[str, Any]) -> str:
        return "x" * req["size"]

    async def unencodable(self, req: dict[str, Any]) -> object:
        return object()


async def started(stack: Stack, *handlers: object, **options: Any) -> None:
    await stack.server(*handlers, **options).start()


async def test_unary_round_trips(stack: Stack) -> None:
    await started(stack, Say())
    client = stack.client()
    assert await client.call(stack.name, "Say.hello", HelloRequest(name="Alice"), response_type=HelloResponse) == (
        HelloResponse(message="Hello Alice")
    )
    assert await client.call(stack.name, "Say.hello", {"name": "Bob"}) == {"message": "Hello Bob"}
    assert await client.call(stack.name, "Say.item", Item(id=1), response_type=Item) == Item(id=2, tags=["seen"])
    assert await client.call(stack.name, "Say.echo", {"nested": [1, {"a": None}]}) == {"nested": [1, {"a": None}]}
    assert await client.call(stack.name, "Say.nothing") is None
    # another codec, chosen per call
    reply = await client.call(stack.name, "Say.hello", {"name": "Eve"}, content_type="application/msgpack")
    assert reply == {"message": "Hello Eve"}


async def test_server_registers_endpoints_and_deregisters(stack: Stack) -> None:
    server = stack.server(Say(), metadata={"zone": "a"})
    await server.start()
    (entry,) = await stack.registry.get_service(stack.name)
    (node,) = entry.nodes
    assert node.address == server.address
    assert node.metadata["zone"] == "a"
    assert node.metadata["protocol"] == "mucp"
    endpoints = {e.name: e for e in entry.endpoints}
    assert endpoints["Say.hello"].request is not None
    assert endpoints["Say.hello"].request.type == "HelloRequest"
    assert [v.name for v in endpoints["Say.hello"].request.values] == ["name"]
    await server.stop()
    with pytest.raises(ServiceNotFound):
        await stack.registry.get_service(stack.name)
    await server.stop()  # idempotent


async def test_endpoint_added_while_running_is_published(stack: Stack) -> None:
    class Late:
        async def ping(self) -> str:
            return "pong"

    server = stack.server(Say())
    await server.start()
    server.handle(Late())
    client = stack.client()
    assert await client.call(stack.name, "Late.ping") == "pong"

    async def published() -> None:
        (entry,) = await stack.registry.get_service(stack.name)
        assert "Late.ping" in {e.name for e in entry.endpoints}

    from rpcstack import eventually

    await eventually(published)


def test_duplicate_endpoint_is_refused(stack: Stack) -> None:
    server = stack.server(Say())
    with pytest.raises(ConfigError, match=r"endpoint Say\.\w+ is already served"):
        server.handle(Say())


async def test_unknown_service_is_404_naming_it(stack: Stack) -> None:
    client = stack.client()
    with pytest.raises(ServiceNotFound, match=r"no\.such\.service") as caught:
        await client.call("no.such.service", "Say.hello", {})
    assert caught.value.code == 404


async def test_unknown_endpoint_is_404_naming_it_and_server_keeps_serving(stack: Stack) -> None:
    await started(stack, Say())
    client = stack.client()
    with pytest.raises(NotFound, match=r"Say\.nope") as caught:
        await client.call(stack.name, "Say.nope", {})
    assert isinstance(caught.value, RPCError)
    assert isinstance(caught.value, EndpointNotFound) or caught.value.code == 404
    assert caught.value.id == stack.name
    assert await client.call(stack.name, "Say.hello", {"name": "x"}) == {"message": "Hello x"}


async def test_handler_exception_is_500_and_server_keeps_serving(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    await started(stack, Say())
    client = stack.client()
    with (
        caplog.at_level(logging.ERROR, logger="micro.server"),
        pytest.raises(InternalError, match=r"Say.fail: internal error \(ref [0-9a-f]{12}") as caught,
    ):
        await client.call(stack.name, "Say.fail", {"what": "this"})
    assert caught.value.code == 500
    assert caught.value.to_dict()["status"] == "Internal Server Error"
    # the exception's text stays in the server's log, under the reference the caller got
    assert "cannot handle" not in str(caught.value)
    reference = re.search(r"ref ([0-9a-f]{12})", str(caught.value))
    assert reference is not None
    (logged,) = [r for r in caplog.records if reference.group(1) in r.getMessage()]
    assert "ValueError: cannot handle this" in logged.getMessage()
    # typed errors keep their code
    with pytest.raises(BadRequest, match="name is required") as refused:
        await client.call(stack.name, "Say.refuse", {})
    assert refused.value.code == 400
    # a response the codec cannot encode is the server's fault
    with pytest.raises(InternalError, match="cannot encode the response"):
        await client.call(stack.name, "Say.unencodable", {})
    assert await client.call(stack.name, "Say.hello", {"name": "still"}) == {"message": "Hello still"}


async def test_wrong_request_shape_is_400_naming_the_field(stack: Stack) -> None:
    await started(stack, Say())
    client = stack.client()
    with pytest.raises(BadRequest, match="name") as caught:
        await client.call(stack.name, "Say.hello", {"wrong": 1})
    assert caught.value.code == 400


async def raw_call(stack: Stack, header: dict[str, str], body: bytes) -> Frame:
    """Send one frame straight through the transport, bypassing the client's checks."""
    server = stack.servers[0]
    socket = await stack.transport.dial(server.address)
    try:
        await socket.send(Frame(header, body))
        return await socket.recv(timeout=5)
    finally:
        await socket.close()


def wire_error(frame: Frame) -> dict[str, Any]:
    text = frame.header.get(_mucp.ERROR)
    assert text is not None, frame
    error: dict[str, Any] = orjson.loads(text)
    return error


async def test_undecodable_body_is_400_naming_the_codec(stack: Stack) -> None:
    await started(stack, Say())
    header = {"Micro-Service": stack.name, "Micro-Endpoint": "Say.hello", "Content-Type": "application/json"}
    error = wire_error(await raw_call(stack, header, b"{not json"))
    assert error["code"] == 400
    assert "json" in error["detail"]


async def test_unknown_content_type_is_400_naming_it(stack: Stack) -> None:
    await started(stack, Say())
    header = {"Micro-Service": stack.name, "Micro-Endpoint": "Say.hello", "Content-Type": "application/x-nope"}
    error = wire_error(await raw_call(stack, header, b"whatever"))
    assert error["code"] == 400
    assert "application/x-nope" in error["detail"]
    # the client refuses it before sending anything
    with pytest.raises(CodecError, match="application/x-nope"):
        await stack.client().call(stack.name, "Say.hello", {}, content_type="application/x-nope")


async def test_bad_timeout_header_is_400(stack: Stack) -> None:
    await started(stack, Say())
    header = {"Micro-Endpoint": "Say.echo", "Content-Type": "application/json", "Timeout": "soon"}
    error = wire_error(await raw_call(stack, header, b"{}"))
    assert error["code"] == 400
    assert "Timeout" in error["detail"]


async def test_go_style_headers_are_accepted(stack: Stack) -> None:
    """Go Micro's X-Micro-* and Micro-Method spellings, lower-case keys and a duration Timeout."""
    await started(stack, Say())
    header = {"x-micro-method": "Say.hello", "content-type": "application/json", "timeout": "2s", "micro-id": "7"}
    frame = await raw_call(stack, header, b'{"name":"Go"}')
    assert frame.header.get(_mucp.ERROR) is None
    assert frame.header[_mucp.ID] == "7"
    assert orjson.loads(frame.body) == {"message": "Hello Go"}


async def test_deadline_is_408_on_the_client(stack: Stack) -> None:
    await started(stack, Say())
    client = stack.client()
    with pytest.raises(Timeout) as caught:
        await client.call(stack.name, "Say.slow", {"seconds": 5}, timeout=0.1)
    assert caught.value.code == 408


async def test_timeout_header_bounds_the_handler(stack: Stack) -> None:
    await started(stack, Say())
    header = {"Micro-Endpoint": "Say.slow", "Content-Type": "application/json", "Timeout": str(50_000_000)}
    error = wire_error(await raw_call(stack, header, b'{"seconds": 5}'))
    assert error["code"] == 408
    assert "deadline exceeded" in error["detail"]


async def test_metadata_round_trip_and_deadline_propagation(stack: Stack) -> None:
    await started(stack, Say())
    client = stack.client()
    with context.with_metadata({"X-User": "bob", "X-Trace": "t1"}):
        response = await client.invoke(stack.name, "Say.whoami", {}, metadata={"X-Extra": "1"}, timeout=2.0)
    assert response.body["user"] == "bob"
    assert 0 < response.body["remaining"] <= 2.0
    sent = {k.lower(): v for k, v in response.body["metadata"].items()}
    assert sent == {"x-user": "bob", "x-trace": "t1", "x-extra": "1"}  # routing headers are not metadata
    assert response.metadata["x-served-by"] == "node-1"
    assert response.node is not None
    assert response.node.address == stack.servers[0].address


async def test_handler_deadline_caps_downstream_calls(stack: Stack) -> None:
    """A handler's remaining time bounds the calls it makes, even if they ask for more."""
    client = stack.client()

    class Front:
        async def relay(self, req: dict[str, Any]) -> dict[str, Any]:
            result: dict[str, Any] = await client.call(stack.name, "Say.whoami", {}, timeout=60)
            return result

    await started(stack, Say(), Front())
    response = await client.call(stack.name, "Front.relay", {}, timeout=1.0)
    assert 0 < response["remaining"] <= 1.0
    with context.with_metadata({"X-User": "carol"}):
        assert (await client.call(stack.name, "Front.relay", {}))["user"] == "carol"  # metadata flows through


async def test_wrappers_run_in_order(stack: Stack) -> None:
    order: list[str] = []

    def wrapper(name: str) -> Any:
        def wrap(next: HandlerFunc) -> HandlerFunc:
            async def handler(request: Request) -> Any:
                order.append(f"{name}>{request.endpoint}")
                result = await next(request)
                order.append(f"<{name}")
                return result

            return handler

        return wrap

    server = stack.server(Say())
    server.wrap(wrapper("outer"), wrapper("middle"))
    server.wrap(wrapper("inner"))  # added later: innermost
    await server.start()

    calls: list[str] = []

    def client_wrapper(name: str) -> Any:
        def wrap(next: Any) -> Any:
            async def call(request: Any) -> Any:
                calls.append(f"{name}:{request.node.address}")
                request.metadata[f"X-{name}"] = "1"
                return await next(request)

            return call

        return wrap

    client = stack.client()
    client.wrap(client_wrapper("a"), client_wrapper("b"))
    body = await client.call(stack.name, "Say.whoami", {})
    assert order == ["outer>Say.whoami", "middle>Say.whoami", "inner>Say.whoami", "<inner", "<middle", "<outer"]
    address = stack.servers[0].address
    assert calls == [f"a:{address}", f"b:{address}"]
    assert {"x-a", "x-b"} <= {k.lower() for k in body["metadata"]}


async def test_wrapper_can_refuse(stack: Stack) -> None:
    def deny(next: HandlerFunc) -> HandlerFunc:
        async def handler(request: Request) -> Any:
            if request.metadata.get("Authorization") is None:
                from micro.errors import Unauthorized

                raise Unauthorized(f"{request.service} {request.endpoint} needs a token")
            return await next(request)

        return handler

    server = stack.server(Say())
    server.wrap(deny)
    await server.start()
    client = stack.client()
    from micro.errors import Unauthorized

    with pytest.raises(Unauthorized, match=r"Say\.hello needs a token") as caught:
        await client.call(stack.name, "Say.hello", {"name": "x"})
    assert caught.value.code == 401
    ok = await client.call(stack.name, "Say.hello", {"name": "x"}, metadata={"Authorization": "Bearer t"})
    assert ok == {"message": "Hello x"}


async def test_auth_server_wrapper_plugs_in(stack: Stack) -> None:
    """micro.auth.wrappers.server_wrapper works on the server's Request unchanged."""
    from micro.auth.noop import NoopAuth
    from micro.auth.wrappers import current_account, server_wrapper

    class Me:
        async def account(self) -> str | None:
            account = current_account()
            return account.id if account else None

    server = stack.server(Me())
    server.wrap(server_wrapper(NoopAuth()))
    await server.start()
    assert await stack.client().call(stack.name, "Me.account", metadata={"Authorization": "Bearer abc"}) is not None


async def test_response_too_large_is_413(stack: Stack) -> None:
    small = stack.new_transport(max_message_size=4096)
    await started(stack, Say(), transport=small)
    client = stack.client(transport=small)
    with pytest.raises(MessageTooLarge) as caught:
        await client.call(stack.name, "Say.big", {"size": 10_000})
    assert caught.value.code == 413
    assert caught.value.id == stack.name
    assert await client.call(stack.name, "Say.big", {"size": 10}) == "x" * 10


async def test_request_over_the_nodes_limit_is_413_before_sending(stack: Stack) -> None:
    """The server publishes its limit; a client with a larger one refuses locally instead of losing the connection."""
    small = stack.new_transport(max_message_size=4096)
    await started(stack, Say(), transport=small)
    (entry,) = await stack.registry.get_service(stack.name)
    assert entry.nodes[0].metadata["max_message_size"] == "4096"
    client = stack.client()  # the stack's transport allows 4 MiB
    with pytest.raises(MessageTooLarge, match="accepts at most 4096") as caught:
        await client.call(stack.name, "Say.echo", {"pad": "y" * 10_000})
    assert caught.value.code == 413
    assert await client.call(stack.name, "Say.echo", {"pad": "ok"}) == {"pad": "ok"}


async def test_oversized_frame_closes_the_connection_and_server_keeps_serving(stack: Stack) -> None:
    """A client that ignores the published limit: the connection is cut, the error is not retried as-is,
    and the server goes on serving new connections."""
    small = stack.new_transport(max_message_size=4096)
    server = stack.server(Say(), transport=small)
    await server.start()
    client = stack.client()
    with pytest.raises((MessageTooLarge, ConnectionError)) as caught:
        await client.call(stack.name, "Say.echo", {"pad": "y" * 10_000}, address=server.address, retries=0)
    assert "4096" in str(caught.value) or caught.value.code == 413
    assert await client.call(stack.name, "Say.echo", {"pad": "ok"}, address=server.address) == {"pad": "ok"}


async def test_calls_during_stop_drain_and_new_ones_get_503(stack: Stack) -> None:
    say = Say()
    server = stack.server(Say(), drain_timeout=5.0)
    server.handle(say, name="Held")
    await server.start()
    client = stack.client()
    inflight = asyncio.create_task(client.call(stack.name, "Held.blocked", {}, timeout=5))
    await asyncio.wait_for(say.started.wait(), 2)
    stopping = asyncio.create_task(server.stop())

    async def deregistered() -> None:
        try:
            await stack.registry.get_service(stack.name)
        except ServiceNotFound:
            return
        raise AssertionError("still registered")

    from rpcstack import eventually

    await eventually(deregistered)
    assert not stopping.done()  # still draining
    # a new call on a connection that is still open is refused as retryable 503
    from micro.errors import Unavailable

    with pytest.raises(Unavailable):
        await client.call(stack.name, "Say.hello", {"name": "late"}, address=server.address, retries=0)
    say.release.set()
    assert await inflight == {"released": True}
    await asyncio.wait_for(stopping, 5)


async def test_drain_timeout_cancels_stragglers(stack: Stack) -> None:
    say = Say()
    server = stack.server(say, drain_timeout=0.1)
    await server.start()
    client = stack.client()
    inflight = asyncio.create_task(client.call(stack.name, "Say.blocked", {}, timeout=5, retries=0))
    await asyncio.wait_for(say.started.wait(), 2)
    await asyncio.wait_for(server.stop(), 3)
    with pytest.raises(Exception) as caught:
        await asyncio.wait_for(inflight, 3)
    assert isinstance(caught.value, (RPCError, ConnectionError, Timeout))


async def test_a_unary_call_over_tcp_is_one_frame_each_way() -> None:
    # The request carries its own end (OPEN|MSG|END) and so does the reply (MSG|END): no close frames follow.
    import struct

    import msgpack
    from micro.transport.tcp import END, MSG, OPEN, PREFACE, TCPTransport

    stack = Stack(name="test.frames", transport_type=TCPTransport)
    server = stack.server(Say(), address="127.0.0.1:0")
    await server.start()
    head = struct.Struct("!IIBI")
    header = msgpack.packb({"Micro-Endpoint": "Say.hello", "Content-Type": "application/json", "Micro-Id": "1"})
    body = b'{"name": "Ada"}'
    host, _, port = server.address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(PREFACE + head.pack(9 + len(header) + len(body), 1, OPEN | MSG | END, len(header)) + header + body)
        size, stream, flags, hsize = head.unpack(await reader.readexactly(13))
        rest = await reader.readexactly(size - 9)
        assert (stream, flags) == (1, MSG | END)
        assert orjson.loads(rest[hsize:]) == {"message": "Hello Ada"}
        # Nothing more comes for the stream: no RESET or END of its own follows the reply.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(13), 0.2)
    finally:
        writer.close()
        await writer.wait_closed()
        await server.stop()
        await stack.transport.close()
