"""A stub grpcio-tools generated calls micro handlers over the grpc server: every call kind, errors, deadlines,
limits; and the client's channel bound.

No ``from __future__ import annotations`` here: the handlers are defined around message classes generated
at test time, and micro reads their hints when they are registered.
"""

import asyncio
import dataclasses
import logging
import socket
import time
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import grpc
import pytest
from micro.errors import InvalidOption, Timeout, Unavailable
from micro.registry.memory import MemoryRegistry
from micro_grpc import GRPCClient, GRPCClientOptions, GRPCServer, GRPCServerOptions
from micro_grpc.client import marshals


@pytest.fixture
async def served(echo: tuple[ModuleType, ModuleType], echo_handler: Any) -> AsyncIterator[tuple[GRPCServer, Any]]:
    pb2, pb2_grpc = echo
    registry = MemoryRegistry()
    server = GRPCServer(GRPCServerOptions(name="echo.svc"), registry=registry)
    server.handle(echo_handler(pb2))
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    try:
        yield server, pb2_grpc.EchoStub(channel)
    finally:
        await channel.close()
        await server.stop()


async def test_unary_with_metadata_both_ways(served, echo):
    _, stub = served
    pb2, _ = echo
    call = stub.Say(pb2.Msg(text="hi", n=1), metadata=(("x-user", "ann"),), timeout=10)
    reply = await call
    assert (reply.text, reply.n) == ("hi|ann", 2)
    assert ("x-served-by", "micro") in tuple(await call.trailing_metadata())
    assert await call.code() == grpc.StatusCode.OK


async def test_server_stream(served, echo):
    _, stub = served
    pb2, _ = echo
    got = [(m.text, m.n) async for m in stub.Count(pb2.Msg(text="x", n=3), timeout=10)]
    assert got == [("x", 0), ("x", 1), ("x", 2)]


async def test_client_stream(served, echo):
    _, stub = served
    pb2, _ = echo

    async def requests() -> AsyncIterator[Any]:
        for text in ("a", "b", "c"):
            yield pb2.Msg(text=text)

    reply = await stub.Join(requests(), timeout=10)
    assert (reply.text, reply.n) == ("a+b+c", 3)


async def test_bidirectional_stream(served, echo):
    _, stub = served
    pb2, _ = echo
    call = stub.Chat(timeout=10)
    answers = []
    for i, text in enumerate(("one", "two")):
        await call.write(pb2.Msg(text=text, n=i))
        answer = await call.read()
        answers.append((answer.text, answer.n))
    await call.done_writing()
    assert await call.read() == grpc.aio.EOF
    assert answers == [("ONE", 0), ("TWO", 1)]


async def test_deadline_exceeded(served, echo):
    _, stub = served
    pb2, _ = echo
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Slow(pb2.Msg(), timeout=0.5)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_typed_errors_come_out_as_their_status(served, echo):
    _, stub = served
    pb2, _ = echo
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Fail(pb2.Msg(text="gizmo"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert caught.value.details() == "no such thing gizmo"
    trailers = dict(caught.value.trailing_metadata())
    assert trailers["micro-error-code"] == "404"
    assert trailers["micro-error-id"] == "echo.svc"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Fail(pb2.Msg(text="conflict"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS


async def test_internal_errors_go_out_as_a_reference_without_their_text(served, echo, caplog):
    _, stub = served
    pb2, _ = echo
    with caplog.at_level(logging.ERROR, logger="micro.server"), pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Boom(pb2.Msg(), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INTERNAL
    detail = caught.value.details()
    assert "hunter2" not in detail
    assert "RuntimeError" not in detail
    assert "Echo.Boom: internal error (ref " in detail
    reference = detail.split("ref ")[1].split(";")[0]
    assert any(reference in record.getMessage() for record in caplog.records)


async def test_undecodable_request_is_invalid_argument(served):
    server, _ = served
    async with grpc.aio.insecure_channel(server.address) as channel:
        say = channel.unary_unary("/echo.v1.Echo/Say")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await say(b"\xff\xff\xff", timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_unknown_methods_are_unimplemented(served):
    server, _ = served
    async with grpc.aio.insecure_channel(server.address) as channel:
        for path in ("/echo.v1.Echo/Nope", "/echo.v1.Other/Say", "/x"):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await channel.unary_unary(path)(b"", timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED, path
            assert dict(caught.value.trailing_metadata())["micro-error-code"] == "404"
            assert caught.value.details() == f"echo.svc has no method {path!r}"


async def test_oversized_messages_are_refused(echo, echo_handler):
    pb2, pb2_grpc = echo
    server = GRPCServer(GRPCServerOptions(name="echo.small", max_message_size=1024), registry=MemoryRegistry())
    server.handle(echo_handler(pb2))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pb2_grpc.EchoStub(channel).Say(pb2.Msg(text="x" * 4096), timeout=10)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        await server.stop()


async def test_the_node_says_it_speaks_grpc(served):
    server, _ = served
    [found] = await server.registry.get_service("echo.svc")
    [node] = found.nodes
    assert node.metadata["protocol"] == "grpc"
    assert node.address == server.address
    assert "transport" not in node.metadata


async def test_a_busy_port_is_an_error_not_a_shared_listener(served, echo, echo_handler):
    server, _ = served
    pb2, _ = echo
    second = GRPCServer(GRPCServerOptions(name="echo.two", address=server.address), registry=MemoryRegistry())
    second.handle(echo_handler(pb2))
    with pytest.raises(Unavailable, match="cannot listen on"):
        await second.start()


def test_local_only_is_refused_with_the_option_name():
    with pytest.raises(InvalidOption, match="local_only"):
        GRPCServerOptions(local_only=True)


async def test_caller_metadata_does_not_decide_the_service(echo, echo_handler):
    pb2, pb2_grpc = echo
    seen: list[tuple[str, str]] = []

    def record(next_: Any) -> Any:
        async def handler(request: Any) -> Any:
            seen.append((request.service, request.endpoint))
            return await next_(request)

        return handler

    server = GRPCServer(GRPCServerOptions(name="echo.trust"), registry=MemoryRegistry())
    server.handle(echo_handler(pb2))
    server.wrap(record)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = pb2_grpc.EchoStub(channel)
            claims = (("micro-service", "billing"), ("micro-endpoint", "Billing.refund"))
            await stub.Say(pb2.Msg(text="x"), metadata=claims, timeout=10)
            # Another package prefix reaches the same endpoint of this server, never another service.
            await channel.unary_unary("/billing.Echo/Say")(pb2.Msg(text="y").SerializeToString(), timeout=10)
    finally:
        await server.stop()
    assert seen == [("echo.trust", "Echo.Say"), ("echo.trust", "Echo.Say")]


async def test_calls_beyond_max_concurrent_rpcs_are_refused_not_queued(echo, echo_handler):
    pb2, pb2_grpc = echo
    server = GRPCServer(GRPCServerOptions(name="echo.busy", max_concurrent_rpcs=1), registry=MemoryRegistry())
    server.handle(echo_handler(pb2))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = pb2_grpc.EchoStub(channel)
            slow = stub.Slow(pb2.Msg(), timeout=30)
            for _ in range(1000):  # bounded wait (20 s on a loaded machine) until the slow call holds the only slot
                if server._grpc_calls:
                    break
                await asyncio.sleep(0.02)
            assert server._grpc_calls
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Say(pb2.Msg(text="x"), timeout=10)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            slow.cancel()
    finally:
        await server.stop()


async def _hold(kind: str, stub: Any, pb2: ModuleType) -> Any:
    """A call of ``kind`` left open (its handler still running); the call object, to cancel."""
    if kind == "server stream":
        call = stub.Count(pb2.Msg(text="x" * 100, n=10_000_000), timeout=30)  # flow control keeps it running
        await call.read()
    elif kind == "client stream":
        call = stub.Join(timeout=30)
        await call.write(pb2.Msg(text="a"))
    else:
        call = stub.Chat(timeout=30)
        await call.write(pb2.Msg(text="a"))
        await call.read()
    return call


@pytest.mark.parametrize("kind", ["server stream", "client stream", "bidirectional stream"])
async def test_a_running_stream_counts_against_max_concurrent_rpcs_until_it_ends(echo, echo_handler, kind):
    pb2, pb2_grpc = echo
    server = GRPCServer(GRPCServerOptions(name="echo.streams", max_concurrent_rpcs=1), registry=MemoryRegistry())
    server.handle(echo_handler(pb2))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = pb2_grpc.EchoStub(channel)
            held = await _hold(kind, stub, pb2)
            for _ in range(1000):  # bounded wait until the server has taken the call (a client stream's write
                if server._grpc_calls:  # can return before the handler starts)
                    break
                await asyncio.sleep(0.02)
            assert server._grpc_calls == 1
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Say(pb2.Msg(text="x"), timeout=10)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_concurrent_rpcs" in (caught.value.details() or "")
            held.cancel()  # the client goes away: the slot is given back, not leaked
            for _ in range(1000):  # bounded wait (20 s on a loaded machine)
                if not server._grpc_calls:
                    break
                await asyncio.sleep(0.02)
            assert server._grpc_calls == 0
            assert (await stub.Say(pb2.Msg(text="x"), timeout=10)).text.startswith("x|")
    finally:
        await server.stop()


async def test_client_channels_beyond_max_channels_are_closed():

    client = GRPCClient(GRPCClientOptions(max_channels=2))
    for port in (1, 2, 3):
        client._channel(f"127.0.0.1:{port}")
    assert list(client._channels) == ["127.0.0.1:2", "127.0.0.1:3"]
    await client.close()
    assert not client._channels


async def test_the_servers_own_deadline_is_a_timeout_saying_so():
    # The server's deadline scope, not only grpcio's, ends a handler past the call's deadline, with a 408 saying why.
    server = GRPCServer(GRPCServerOptions(name="echo.deadline"))
    started = time.monotonic()
    with pytest.raises(Timeout, match=r"Echo\.Slow: deadline exceeded"):
        await server.within(started + 0.2, "Echo.Slow", asyncio.sleep(30))
    assert time.monotonic() - started < 10


@dataclasses.dataclass
class Nap:
    seconds: float


class Napper:
    async def nap(self, nap: Nap) -> Nap:
        await asyncio.sleep(nap.seconds)
        return nap


async def test_stop_lets_a_running_call_finish_within_drain_timeout():
    # gRPC calls are drained by grpcio's stop(drain_timeout), not by RPCServer's task tracking.
    server = GRPCServer(GRPCServerOptions(name="nap.svc", drain_timeout=20.0), registry=MemoryRegistry())
    server.handle(Napper())
    await server.start()
    encode, decode = marshals(Nap, Nap)[0].encode, marshals(Nap, Nap)[1].decode
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            nap = channel.unary_unary("/nap.Napper/nap")
            running = asyncio.ensure_future(nap(encode(Nap(1.0)), timeout=30))
            for _ in range(1000):  # bounded wait (20 s on a loaded machine) until the call runs
                if server._grpc_calls:
                    break
                await asyncio.sleep(0.02)
            assert server._grpc_calls
            stopping = asyncio.ensure_future(server.stop())
            assert decode(await running) == Nap(1.0)
            await stopping
    finally:
        await server.stop()


async def test_request_remote_is_the_callers_address():
    seen: list[Any] = []

    def keep(next: Any) -> Any:
        async def handler(request: Any) -> Any:
            seen.append(request)
            return await next(request)

        return handler

    server = GRPCServer(GRPCServerOptions(name="nap.remote"), wrappers=[keep])
    server.handle(Napper())
    await server.start()
    encode = marshals(Nap, Nap)[0].encode
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            await channel.unary_unary("/nap.Napper/nap")(encode(Nap(0.0)), timeout=30)
    finally:
        await server.stop()
    (request,) = seen
    # Read after the call is over too (grpcio's own peer() would crash then: it is read during the call).
    assert request.remote.startswith("ipv4:127.0.0.1:")


async def test_a_unary_calls_request_has_every_field_a_request_has():
    # The unary path builds its Request slot by slot (see _UnaryRequest): none of Request's may be left out.
    from micro.server.base import Request

    seen: list[Any] = []

    def keep(next: Any) -> Any:
        async def handler(request: Any) -> Any:
            seen.append(request)
            return await next(request)

        return handler

    server = GRPCServer(GRPCServerOptions(name="nap.fields"), wrappers=[keep])
    server.handle(Napper())
    handler = server._lookup("/nap.Napper/nap")
    assert handler is not None
    await handler.unary_unary(marshals(Nap, Nap)[0].encode(Nap(0.0)), _Context(None))
    (request,) = seen
    expected = Request(
        service="nap.fields",
        endpoint="Napper.nap",
        content_type="application/grpc+proto",
        metadata=request.metadata,
        header={},
        body=Nap(0.0),
        remote="ipv4:127.0.0.1:5000",
    )
    for slot in Request.__slots__:
        assert getattr(request, slot) == getattr(expected, slot), slot


class _Aborted(Exception):
    pass


class _Context:
    """What a unary call's handler asks of grpcio's servicer context, answered here; ``abort`` recorded."""

    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining
        self.aborted: tuple[Any, str, dict[str, str]] | None = None

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def time_remaining(self) -> float | None:
        return self.remaining

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5000"

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass

    async def abort(self, code: Any, details: str, trailers: Any = ()) -> None:
        self.aborted = (code, details, dict(trailers))
        raise _Aborted


async def test_a_unary_calls_deadline_ends_its_handler_with_a_timeout():
    # The server's own deadline scope on the unary path (inline there, not through within()): a 408 saying why.
    server = GRPCServer(GRPCServerOptions(name="nap.deadline"))
    server.handle(Napper())
    handler = server._lookup("/nap.Napper/nap")
    assert handler is not None
    context = _Context(0.2)
    started = time.monotonic()
    with pytest.raises(_Aborted):
        await handler.unary_unary(marshals(Nap, Nap)[0].encode(Nap(30.0)), context)
    assert time.monotonic() - started < 10
    assert context.aborted is not None
    code, details, trailers = context.aborted
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert details == "Napper.nap: deadline exceeded"
    assert trailers["micro-error-code"] == "408"


# -- the listening port's own limits: connections, handshake, idle connections, metadata ----------------------


async def _read_until_closed(sock: socket.socket, within: float) -> float:
    """Seconds until the server closed ``sock`` (reading and dropping what it sent); fails after ``within``."""
    started = time.monotonic()
    sock.settimeout(within)
    while await asyncio.to_thread(sock.recv, 4096):
        pass
    return time.monotonic() - started


async def test_connections_beyond_max_connections_are_closed_as_accepted(echo, echo_handler):
    pb2, pb2_grpc = echo
    server = GRPCServer(GRPCServerOptions(name="echo.conns", max_connections=2), registry=MemoryRegistry())
    server.handle(echo_handler(pb2))
    await server.start()
    host, port = server.address.rsplit(":", 1)
    held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(2)]
    try:
        for sock in held:  # accepted and served: the server's HTTP/2 SETTINGS frame arrives
            sock.settimeout(10)
            assert await asyncio.to_thread(sock.recv, 9), "a connection within max_connections was not served"
        with socket.create_connection((host, int(port)), timeout=10) as third:
            assert await _read_until_closed(third, within=10) < 10
        # The same for a real client: no channel gets a connection while the two are held.
        async with grpc.aio.insecure_channel(server.address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pb2_grpc.EchoStub(channel).Say(pb2.Msg(text="x"), timeout=2)
            assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        for sock in held:
            sock.close()
    try:
        # The slots come back when those connections close.
        reply = None
        for _ in range(50):  # bounded: 50 attempts of up to 2 s
            async with grpc.aio.insecure_channel(server.address) as channel:
                try:
                    reply = await pb2_grpc.EchoStub(channel).Say(pb2.Msg(text="back"), timeout=2)
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.1)
        assert reply is not None, "no call got through after the held connections closed"
        assert reply.text.startswith("back")
    finally:
        await server.stop()


async def test_a_peer_that_connects_and_sends_nothing_is_closed_after_handshake_timeout(echo, echo_handler):
    pb2, _ = echo
    server = GRPCServer(GRPCServerOptions(name="echo.shake", handshake_timeout=0.5), registry=MemoryRegistry())
    server.handle(echo_handler(pb2))
    await server.start()
    host, port = server.address.rsplit(":", 1)
    try:
        started = time.monotonic()  # before the connection: the server's timer starts after this
        with socket.create_connection((host, int(port)), timeout=10) as silent:
            # grpcio's own default is 120 s: closed well within 10 s only if the option reached it.
            await _read_until_closed(silent, within=10)
        assert 0.4 < time.monotonic() - started < 10
    finally:
        await server.stop()


async def test_an_idle_connection_is_ended_after_idle_timeout_and_the_next_call_reconnects(echo, echo_handler):
    pb2, pb2_grpc = echo
    server = GRPCServer(GRPCServerOptions(name="echo.idle", idle_timeout=0.5), registry=MemoryRegistry())
    server.handle(echo_handler(pb2))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = pb2_grpc.EchoStub(channel)
            await stub.Say(pb2.Msg(text="a"), timeout=10)
            assert channel.get_state() == grpc.ChannelConnectivity.READY
            for _ in range(200):  # bounded: 10 s for the server's GOAWAY after 0.5 s without a call
                if channel.get_state() == grpc.ChannelConnectivity.IDLE:
                    break
                await asyncio.sleep(0.05)
            assert channel.get_state() == grpc.ChannelConnectivity.IDLE, "the server kept an idle connection"
            reply = await stub.Say(pb2.Msg(text="b"), timeout=10)
            assert reply.text.startswith("b")
    finally:
        await server.stop()


async def test_metadata_beyond_max_metadata_size_is_refused_before_the_handler(echo, echo_handler):
    pb2, pb2_grpc = echo
    served: list[str] = []

    def record(next_: Any) -> Any:
        async def handler(request: Any) -> Any:
            served.append(request.endpoint)
            return await next_(request)

        return handler

    server = GRPCServer(GRPCServerOptions(name="echo.meta", max_metadata_size=2048), registry=MemoryRegistry())
    server.handle(echo_handler(pb2))
    server.wrap(record)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = pb2_grpc.EchoStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.Say(pb2.Msg(text="x"), metadata=(("x-user", "a" * 4000),), timeout=10)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert served == []
            reply = await stub.Say(pb2.Msg(text="y"), metadata=(("x-user", "a" * 100),), timeout=10)
            assert reply.text.startswith("y")
            assert served == ["Echo.Say"]
    finally:
        await server.stop()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MICRO_SERVER_MAX_CONNECTIONS", "0"),
        ("MICRO_SERVER_IDLE_TIMEOUT", "0"),
        ("MICRO_SERVER_HANDSHAKE_TIMEOUT", "-1"),
        ("MICRO_SERVER_MAX_METADATA_SIZE", "many"),
    ],
)
def test_bad_port_limits_are_refused_with_their_variable(variable, value):
    from micro.plugins import create
    from micro.server import Server

    with pytest.raises(InvalidOption) as caught:
        create("server", cls=Server, environ={"MICRO_SERVER": "grpc", variable: value})
    assert variable in str(caught.value)


def test_the_port_limits_have_safe_defaults():
    options = GRPCServerOptions()
    assert (options.max_connections, options.idle_timeout, options.handshake_timeout) == (1024, 300.0, 30.0)
    assert options.max_metadata_size == 16384


async def test_calls_that_never_send_their_request_are_bounded_too(echo, echo_handler):
    # A peer can open calls and never send the request message: no handler runs, so micro's own count never
    # sees them, and each holds a task and memory in the server until the peer goes. grpcio's limiter holds
    # them to twice max_concurrent_rpcs; past that they are refused as they arrive.
    pb2, pb2_grpc = echo
    server = GRPCServer(GRPCServerOptions(name="echo.pending", max_concurrent_rpcs=5), registry=MemoryRegistry())
    server.handle(echo_handler(pb2))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            opened = channel.stream_unary("/echo.Echo/Say")  # a unary method, called as a client stream
            pending = [opened(timeout=30) for _ in range(20)]
            refused = 0
            for _ in range(100):  # bounded: the refusals arrive within 10 s
                refused = sum(call.done() for call in pending)
                if refused >= 10:
                    break
                await asyncio.sleep(0.1)
            assert refused == 10, f"{20 - refused} calls without a request held open, at most 10 allowed"
            assert {await call.code() for call in pending if call.done()} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
            for call in pending:
                call.cancel()
            reply = None
            for _ in range(50):  # bounded: the slots come back once grpcio sees the cancellations
                try:
                    reply = await pb2_grpc.EchoStub(channel).Say(pb2.Msg(text="z"), timeout=2)
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.1)
            assert reply is not None, "the slots of cancelled calls did not come back"
    finally:
        await server.stop()
