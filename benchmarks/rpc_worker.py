"""The processes of the RPC benchmarks: one server, one load generator, for each system compared.

``python rpc_worker.py serve KIND [--uvloop]`` serves and prints ``READY <address>``;
``python rpc_worker.py load KIND ADDRESS ...`` runs a closed loop against it and
prints one JSON line (see :class:`_harness.Load`). KIND is ``micro`` (``micro-nodebug``: the
service without its Debug handler's trace and stats wrappers), ``raw``
(length-prefixed asyncio echo), ``grpc`` (``grpc.aio`` unary, identity
serializers), ``grpc-typed`` (``grpc.aio`` unary with protobuf messages, a 5 s deadline on
every call, the handler reading the caller's metadata and deadline), ``aiohttp`` (JSON POST),
``micro-grpc`` (the micro service served by asyncmicro-grpc, called with micro's grpc client),
``micro-grpc-server`` (the same server, called as ``grpc`` is),
``micro-otel``, ``micro-otel-all``, ``micro-prometheus`` (the micro service with asyncmicro-opentelemetry at
the default sample or every call sampled, or with asyncmicro-prometheus, selected by name) or
``micro-api`` (the micro service behind ``micro api``, asyncmicro-api's HTTP gateway, called as ``aiohttp`` is).

Every system answers two calls: ``echo`` of a small JSON object, and ``blob``
of ``{"data": "x" * size}`` for the payload sweep. The micro handler is typed
(dataclasses in and out), as an application's would be.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import closed_loop

SERVICE = "bench-echo"
SMALL: dict[str, Any] = {"name": "bench", "id": 12345, "tags": ["a", "b", "c"], "ok": True}
GRPC_ECHO = "/bench.Echo/Echo"
WORKER_PATH = os.path.abspath(__file__)


@dataclass
class Small:
    name: str
    id: int
    tags: list[str] = field(default_factory=list)
    ok: bool = False


@dataclass
class Blob:
    data: str


def body(size: int) -> dict[str, Any]:
    return SMALL if size <= 0 else {"data": "x" * size}


# -- servers -------------------------------------------------------------------------------------


async def until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


class Bench:
    """The micro handler: typed in, typed out."""

    async def echo(self, req: Small) -> Small:
        return req

    async def blob(self, req: Blob) -> Blob:
        return req


async def serve_micro(debug: bool = True) -> None:
    import micro

    service = micro.Service(SERVICE, drain_timeout=1.0, handle_signals=True, debug=debug)
    service.handle(Bench())
    service.hook("after_start", lambda: print(f"READY {service.server.address}", flush=True))
    await service.run()


_LENGTH = struct.Struct(">II")  # body length, call id


class RawServer(asyncio.Protocol):
    """Echoes each length-prefixed frame back as it is: the least work a Python RPC server can do."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport
        self.buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        start = 0
        end = len(buffer)
        out = []
        while end - start >= 8:
            size, _ = _LENGTH.unpack_from(buffer, start)
            stop = start + 8 + size
            if stop > end:
                break
            out.append(bytes(buffer[start:stop]))
            start = stop
        if start:
            del buffer[:start]
        if out:
            self.transport.write(b"".join(out))


async def serve_raw() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(RawServer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"READY 127.0.0.1:{port}", flush=True)
    await until_stopped()
    server.close()


async def serve_grpc_handler(handler: Any) -> None:
    """A ``grpc.aio`` server with one generic ``handler`` on a loopback port, until stopped."""
    import grpc

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"READY 127.0.0.1:{port}", flush=True)
    await until_stopped()
    await server.stop(0.5)


async def serve_grpc() -> None:
    import grpc

    async def echo(request: bytes, context: Any) -> bytes:
        return request

    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {"Echo": grpc.unary_unary_rpc_method_handler(echo)},  # no (de)serializers: bytes in, bytes out
    )
    await serve_grpc_handler(handler)


def typed_messages() -> tuple[Any, Any]:
    """Protobuf classes ``bench.Small`` and ``bench.Blob`` (the JSON bodies' fields), built from a descriptor in
    code as grpcio-tools' generated modules would define them: the ``grpc-typed`` kind's messages."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    field_ = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="bench_typed.proto", package="bench", syntax="proto3")
    small = file.message_type.add(name="Small")
    small.field.add(name="name", number=1, type=field_.TYPE_STRING, label=field_.LABEL_OPTIONAL)
    small.field.add(name="id", number=2, type=field_.TYPE_INT64, label=field_.LABEL_OPTIONAL)
    small.field.add(name="tags", number=3, type=field_.TYPE_STRING, label=field_.LABEL_REPEATED)
    small.field.add(name="ok", number=4, type=field_.TYPE_BOOL, label=field_.LABEL_OPTIONAL)
    blob = file.message_type.add(name="Blob")
    blob.field.add(name="data", number=1, type=field_.TYPE_STRING, label=field_.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    get = message_factory.GetMessageClass
    return get(pool.FindMessageTypeByName("bench.Small")), get(pool.FindMessageTypeByName("bench.Blob"))


async def serve_grpc_typed() -> None:
    # What a grpcio user writes: message classes with their (de)serializers, the caller's metadata and
    # deadline read as a handler that logs or propagates them would.
    import grpc

    small, blob = typed_messages()

    async def echo(request: Any, context: Any) -> Any:
        context.invocation_metadata()
        context.time_remaining()
        return request

    def method(message: Any) -> Any:
        return grpc.unary_unary_rpc_method_handler(
            echo, request_deserializer=message.FromString, response_serializer=message.SerializeToString
        )

    handler = grpc.method_handlers_generic_handler("bench.Typed", {"Echo": method(small), "Blob": method(blob)})
    await serve_grpc_handler(handler)


async def serve_aiohttp() -> None:
    from aiohttp import web

    async def echo(request: web.Request) -> web.Response:
        return web.json_response(await request.json())

    app = web.Application(client_max_size=8 * 2**20)
    app.router.add_post("/echo", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    assert site._server is not None
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    print(f"READY 127.0.0.1:{port}", flush=True)
    await until_stopped()
    await runner.cleanup()


async def serve_micro_nodebug() -> None:
    await serve_micro(debug=False)


async def serve_micro_grpc() -> None:
    # The same service and handler as "micro", served by asyncmicro-grpc's server (MICRO_SERVER=grpc).
    os.environ["MICRO_SERVER"] = "grpc"
    await serve_micro()


async def serve_micro_http() -> None:
    # The same service and handler as "micro", over the http transport (MICRO_TRANSPORT=http).
    os.environ["MICRO_TRANSPORT"] = "http"
    await serve_micro()


#: The nats transport's settings for both ends of the "micro-nats" rows (the NATS server of the broker rows).
NATS_TRANSPORT = {
    "MICRO_TRANSPORT": "nats",
    "MICRO_TRANSPORT_SERVERS": "nats://127.0.0.1:4222",
    "MICRO_TRANSPORT_SUBJECT_PREFIX": "bench.transport",
}


async def serve_micro_nats() -> None:
    # The same service and handler as "micro", listening on a NATS subject (MICRO_TRANSPORT=nats).
    os.environ.update(NATS_TRANSPORT)
    await serve_micro()


async def serve_micro_otel() -> None:
    # asyncmicro-opentelemetry selected by name, at micro's default sample (10% of new traces recorded),
    # with no exporter: the cost of the spans and the traceparent, not of a collector.
    os.environ["MICRO_TRACER"] = "opentelemetry"
    await serve_micro()


async def serve_micro_otel_all() -> None:
    # Every call recorded as a span (MICRO_TRACER_SAMPLE=1), still with no exporter.
    os.environ["MICRO_TRACER"] = "opentelemetry"
    os.environ["MICRO_TRACER_SAMPLE"] = "1"
    await serve_micro()


async def serve_micro_prometheus() -> None:
    # asyncmicro-prometheus selected by name: a counter and a histogram per call, /metrics on a free port.
    os.environ["MICRO_STATS"] = "prometheus"
    os.environ["MICRO_STATS_ADDRESS"] = "127.0.0.1:0"
    await serve_micro()


async def serve_micro_api() -> None:
    # The same micro service in a process of its own, and micro api (asyncmicro-api) in front of it in this
    # one: HTTP in, micro's RPC out, as a user deploys the gateway. Both find each other in the local registry.
    import uvicorn
    from micro_api import APIOptions, Gateway
    from micro_api.server import bind, config

    service = await asyncio.create_subprocess_exec(
        sys.executable, WORKER_PATH, "serve", "micro", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert service.stdout is not None
        line = (await service.stdout.readline()).decode()
        if not line.startswith("READY"):
            raise RuntimeError(f"the service behind the gateway did not start: {line!r}")
        gateway = Gateway(APIOptions(address="127.0.0.1:0", max_connections=10_000))
        server = uvicorn.Server(config(gateway))
        sock = bind("127.0.0.1:0")
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        print(f"READY 127.0.0.1:{sock.getsockname()[1]}", flush=True)
        stopped = asyncio.create_task(until_stopped())
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        await task
        sock.close()
    finally:
        if service.returncode is None:
            service.terminate()
        await service.wait()


SERVERS: dict[str, Callable[[], Awaitable[None]]] = {
    "micro": serve_micro,
    # Without the Debug handler's trace and stats wrappers: what they cost per call.
    "micro-nodebug": serve_micro_nodebug,
    "raw": serve_raw,
    "grpc": serve_grpc,
    "grpc-typed": serve_grpc_typed,
    "aiohttp": serve_aiohttp,
    "micro-grpc": serve_micro_grpc,
    "micro-grpc-server": serve_micro_grpc,
    "micro-http": serve_micro_http,
    "micro-nats": serve_micro_nats,
    "micro-otel": serve_micro_otel,
    "micro-otel-all": serve_micro_otel_all,
    "micro-prometheus": serve_micro_prometheus,
    "micro-api": serve_micro_api,
}


# -- load generators -----------------------------------------------------------------------------

Call = Callable[[], Awaitable[Any]]


class RawClient(asyncio.Protocol):
    """One connection; calls are matched to replies by id, so many callers share it."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.next_id = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        start = 0
        end = len(buffer)
        while end - start >= 8:
            size, call_id = _LENGTH.unpack_from(buffer, start)
            stop = start + 8 + size
            if stop > end:
                break
            future = self.pending.pop(call_id, None)
            if future is not None and not future.done():
                future.set_result(bytes(buffer[start + 8 : stop]))
            start = stop
        if start:
            del buffer[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("connection lost"))

    async def call(self, payload: bytes) -> bytes:
        self.next_id = call_id = (self.next_id + 1) & 0xFFFFFFFF
        future = asyncio.get_running_loop().create_future()
        self.pending[call_id] = future
        self.transport.write(_LENGTH.pack(len(payload), call_id) + payload)
        return await future


async def clients_raw(address: str, callers: int, connections: int, size: int) -> tuple[list[Call], Any]:
    host, port = address.rsplit(":", 1)
    loop = asyncio.get_running_loop()
    conns: list[RawClient] = []
    for _ in range(connections):
        _, protocol = await loop.create_connection(RawClient, host, int(port))
        conns.append(protocol)
    payload = json.dumps(body(size)).encode()

    def make(conn: RawClient) -> Call:
        async def call() -> None:
            reply = await conn.call(payload)
            if len(reply) != len(payload):
                raise AssertionError("short echo")

        return call

    async def close() -> None:
        for conn in conns:
            conn.transport.close()

    return [make(conns[i % connections]) for i in range(callers)], close


async def clients_micro(address: str, callers: int, connections: int, size: int) -> tuple[list[Call], Any]:
    import micro
    from micro.client.rpc import RPCClient
    from micro.selector.base import Selector
    from micro.transport.base import Transport

    # One selector (warm cache, one registry watch) for every client; one transport per connection.
    selector = micro.create("selector", cls=Selector)
    clients = [
        RPCClient(transport=micro.create("transport", cls=Transport), selector=selector) for _ in range(connections)
    ]
    for client in clients:
        await client.start()
    if size <= 0:
        endpoint, request, rtype = "Bench.echo", Small(**SMALL), Small
    else:
        endpoint, request, rtype = "Bench.blob", Blob("x" * size), Blob

    def make(client: RPCClient) -> Call:
        async def call() -> None:
            reply = await client.call(SERVICE, endpoint, request, response_type=rtype)
            if type(reply) is not rtype:
                raise AssertionError(f"got {type(reply).__name__}")

        return call

    async def close() -> None:
        for client in clients:
            await client.transport.close()
            await client.close()
        await selector.close()

    return [make(clients[i % connections]) for i in range(callers)], close


async def clients_micro_nats(address: str, callers: int, connections: int, size: int) -> tuple[list[Call], Any]:
    os.environ.update(NATS_TRANSPORT)
    return await clients_micro(address, callers, connections, size)


async def clients_grpc(address: str, callers: int, connections: int, size: int) -> tuple[list[Call], Any]:
    import grpc

    payload = json.dumps(body(size)).encode()
    options = [("grpc.max_receive_message_length", 8 * 2**20), ("grpc.max_send_message_length", 8 * 2**20)]
    # A distinct channel argument per channel keeps gRPC from sharing one subchannel among them.
    channels = [
        grpc.aio.insecure_channel(address, options=[*options, ("bench.channel", i)]) for i in range(connections)
    ]
    stubs = [channel.unary_unary(GRPC_ECHO) for channel in channels]  # identity serializers: bytes both ways

    def make(stub: Any) -> Call:
        async def call() -> None:
            reply = await stub(payload)
            if len(reply) != len(payload):
                raise AssertionError("short echo")

        return call

    async def close() -> None:
        for channel in channels:
            await channel.close()

    return [make(stubs[i % connections]) for i in range(callers)], close


async def clients_grpc_typed(address: str, callers: int, connections: int, size: int) -> tuple[list[Call], Any]:
    import grpc

    small, blob = typed_messages()
    if size <= 0:
        path, message = "/bench.Typed/Echo", small(**SMALL)
    else:
        path, message = "/bench.Typed/Blob", blob(data="x" * size)
    kind = type(message)
    options = [("grpc.max_receive_message_length", 8 * 2**20), ("grpc.max_send_message_length", 8 * 2**20)]
    channels = [
        grpc.aio.insecure_channel(address, options=[*options, ("bench.channel", i)]) for i in range(connections)
    ]
    stubs = [
        channel.unary_unary(path, request_serializer=kind.SerializeToString, response_deserializer=kind.FromString)
        for channel in channels
    ]

    def make(stub: Any) -> Call:
        async def call() -> None:
            reply = await stub(message, timeout=5.0)  # a deadline on every call, as micro's client sends
            if type(reply) is not kind:
                raise AssertionError(f"got {type(reply).__name__}")

        return call

    async def close() -> None:
        for channel in channels:
            await channel.close()

    return [make(stubs[i % connections]) for i in range(callers)], close


async def clients_micro_grpc(address: str, callers: int, connections: int, size: int) -> tuple[list[Call], Any]:
    from micro.registry.base import Node, Service
    from micro.registry.memory import MemoryRegistry
    from micro.selector.cache import RandomSelector
    from micro_grpc import GRPCClient

    # micro's grpc client end to end; the node is registered here so the load is the calls, not the registry.
    registry = MemoryRegistry()
    await registry.register(
        Service(name=SERVICE, nodes=[Node(id="bench", address=address, metadata={"protocol": "grpc"})])
    )
    client = GRPCClient(selector=RandomSelector(registry=registry))
    await client.start()
    if size <= 0:
        endpoint, request, rtype = "Bench.echo", Small(**SMALL), Small
    else:
        endpoint, request, rtype = "Bench.blob", Blob("x" * size), Blob

    async def call() -> None:
        reply = await client.call(SERVICE, endpoint, request, response_type=rtype)
        if type(reply) is not rtype:
            raise AssertionError(f"got {type(reply).__name__}")

    async def close() -> None:
        await client.close()

    return [call] * callers, close


async def clients_micro_http(address: str, callers: int, connections: int, size: int) -> tuple[list[Call], Any]:
    # micro's client over the http transport: a keep-alive connection per caller in flight (HTTP/1.1).
    os.environ["MICRO_TRANSPORT"] = "http"
    return await clients_micro(address, callers, connections, size)


async def clients_grpc_to_micro(address: str, callers: int, connections: int, size: int) -> tuple[list[Call], Any]:
    import grpc
    from micro_grpc.client import marshals

    # grpcio's own bytes-in, bytes-out client (as "grpc" uses) against micro's grpc server: the server's cost.
    value: Any = Small(**SMALL) if size <= 0 else Blob("x" * size)
    path = "/bench.Bench/echo" if size <= 0 else "/bench.Bench/blob"
    payload = marshals(type(value), type(value))[0].encode(value)
    options = [("grpc.max_receive_message_length", 8 * 2**20), ("grpc.max_send_message_length", 8 * 2**20)]
    channels = [
        grpc.aio.insecure_channel(address, options=[*options, ("bench.channel", i)]) for i in range(connections)
    ]
    stubs = [channel.unary_unary(path) for channel in channels]

    def make(stub: Any) -> Call:
        async def call() -> None:
            reply = await stub(payload)
            if len(reply) != len(payload):
                raise AssertionError("short echo")

        return call

    async def close() -> None:
        for channel in channels:
            await channel.close()

    return [make(stubs[i % connections]) for i in range(callers)], close


async def clients_aiohttp(
    address: str, callers: int, connections: int, size: int, *, path: str = "/echo"
) -> tuple[list[Call], Any]:
    import aiohttp

    # Keep-alive connections, one per caller up to ``connections`` (HTTP/1.1 has no multiplexing).
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=max(connections, callers)))
    url = f"http://{address}{path}"
    request = body(size)

    async def call() -> None:
        async with session.post(url, json=request) as response:
            reply = await response.json()
            if response.status != 200 or len(reply) != len(request):
                raise AssertionError(f"HTTP {response.status}")

    async def close() -> None:
        await session.close()

    return [call] * callers, close


async def clients_micro_api(address: str, callers: int, connections: int, size: int) -> tuple[list[Call], Any]:
    # The same HTTP client and JSON body as "aiohttp", to the gateway's path for the service's Bench.echo.
    path = f"/{SERVICE}/Bench/echo" if size <= 0 else f"/{SERVICE}/Bench/blob"
    return await clients_aiohttp(address, callers, connections, size, path=path)


CLIENTS = {
    "micro": clients_micro,
    "micro-nodebug": clients_micro,
    "micro-otel": clients_micro,
    "micro-otel-all": clients_micro,
    "micro-prometheus": clients_micro,
    "raw": clients_raw,
    "grpc": clients_grpc,
    "grpc-typed": clients_grpc_typed,
    "aiohttp": clients_aiohttp,
    "micro-grpc": clients_micro_grpc,
    "micro-grpc-server": clients_grpc_to_micro,
    "micro-http": clients_micro_http,
    "micro-api": clients_micro_api,
    "micro-nats": clients_micro_nats,
}


def _counted(call: Call, done: list[int]) -> Call:
    async def counted() -> Any:
        result = await call()
        done[0] += 1
        return result

    return counted


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds process ``pid`` has used so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rpartition(b")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(kind: str, address: str, args: argparse.Namespace) -> dict[str, Any]:
    calls, close = await CLIENTS[kind](address, args.callers, args.connections, args.size)
    # Every call made (warm-up included) and this process's CPU for them: CPU per call, whatever the load.
    done = [0]
    calls = [_counted(call, done) for call in calls]
    cpu = time.process_time()
    pids = [int(pid) for pid in args.cpu.split(",") if pid]
    try:
        # Connect every connection and warm the caches before timing, a hundred callers at a time.
        for start in range(0, len(calls), 100):
            await asyncio.gather(*(call() for call in calls[start : start + 100]))
        if not pids:
            result = (
                await closed_loop(calls, duration=args.duration, warmup=args.warmup, server_pid=args.server_pid)
            ).as_dict()
        else:
            # The servers' CPU over the measured window only: the warm-up runs as a loop of its own first.
            await closed_loop(calls, duration=args.warmup, warmup=0.0)
            before = [cpu_seconds(pid) for pid in pids]
            result = (await closed_loop(calls, duration=args.duration, warmup=0.0)).as_dict()
            used = [cpu_seconds(pid) - was for pid, was in zip(pids, before, strict=True)]
            result["cpu_us"] = [seconds * 1e6 / max(1, result["calls"]) for seconds in used]
    finally:
        await close()
    return {**result, "all_calls": done[0], "cpu_s": time.process_time() - cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=("serve", "load"))
    parser.add_argument("kind", choices=sorted(SERVERS))
    parser.add_argument("address", nargs="?", default="")
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--callers", type=int, default=64)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--size", type=int, default=0, help="payload bytes; 0 for the small JSON object")
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--server-pid", type=int, default=None, help="also report this process's CPU per call")
    parser.add_argument("--cpu", default="", help="comma-separated pids: report each one's CPU µs per call")
    args = parser.parse_args()
    if args.role == "serve":
        coroutine: Any = SERVERS[args.kind]()
    else:
        coroutine = load(args.kind, args.address, args)
    if args.uvloop:
        import uvloop

        result = uvloop.run(coroutine)
    else:
        result = asyncio.run(coroutine)
    if result is not None:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
