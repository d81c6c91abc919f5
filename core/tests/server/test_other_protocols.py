"""RPCServer's API for servers of other wire protocols (asyncmicro-grpc's): route, methods, accepting,
call_started/call_finished and within, exercised as such a server uses them."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from micro.errors import Timeout
from micro.metadata import Metadata
from micro.registry.memory import MemoryRegistry
from micro.server import Request
from micro.server.options import ServerOptions
from micro.server.rpc import RPCServer
from micro.transport.memory import MemoryTransport


class Greeter:
    async def hello(self, name: str) -> str:
        return f"hello {name}"


def make() -> RPCServer:
    return RPCServer(
        ServerOptions(name=f"other-{uuid.uuid4().hex[:8]}", drain_timeout=5.0),
        transport=MemoryTransport(),
        registry=MemoryRegistry(),
    )


def request_for(server: RPCServer, endpoint: str, body: object) -> Request:
    return Request(
        service=server.options.name, endpoint=endpoint, content_type="x/test", metadata=Metadata(), header={}, body=body
    )


async def test_route_runs_the_handler_inside_the_servers_wrappers_and_follows_changes():
    server = make()
    assert server.route("Greeter.hello") is None
    server.handle(Greeter())
    assert list(server.methods) == ["Greeter.hello"]
    with pytest.raises(TypeError):
        server.methods["x"] = server.methods["Greeter.hello"]  # type: ignore[index]
    route = server.route("Greeter.hello")
    assert route is not None
    assert route.method.name == "Greeter.hello"
    assert await route.call(request_for(server, "Greeter.hello", "ann")) == "hello ann"

    seen: list[str] = []

    def wrapper(next_):  # type: ignore[no-untyped-def]
        async def call(request):  # type: ignore[no-untyped-def]
            seen.append(request.endpoint)
            return await next_(request)

        return call

    server.wrap(wrapper)
    fresh = server.route("Greeter.hello")
    assert fresh is not None
    assert fresh is not route  # replaced when wrappers change: looked up per call
    assert await fresh.call(request_for(server, "Greeter.hello", "bob")) == "hello bob"
    assert seen == ["Greeter.hello"]


async def test_within_turns_the_deadline_into_a_timeout_and_lets_other_cancellations_through():
    server = make()
    assert await server.within(None, "Greeter.hello", asyncio.sleep(0, "done")) == "done"
    assert await server.within(time.monotonic() + 5, "Greeter.hello", asyncio.sleep(0, "done")) == "done"
    started = time.monotonic()
    with pytest.raises(Timeout, match=r"Greeter\.hello: deadline exceeded"):
        await server.within(started + 0.05, "Greeter.hello", asyncio.sleep(30))
    assert time.monotonic() - started < 5
    task = asyncio.create_task(server.within(time.monotonic() + 30, "Greeter.hello", asyncio.sleep(30)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_stop_waits_for_a_call_counted_with_call_started_and_refuses_new_ones():
    server = make()
    server.handle(Greeter())
    await server.start()
    assert server.accepting
    release = asyncio.Event()
    finished: list[bool] = []

    async def call() -> None:
        token = server.call_started()
        try:
            await release.wait()
            finished.append(True)
        finally:
            server.call_finished(token)

    running = asyncio.create_task(call())
    await asyncio.sleep(0)
    stopping = asyncio.create_task(server.stop())
    await asyncio.sleep(0.05)
    assert not server.accepting
    assert not stopping.done()  # draining the counted call
    release.set()
    await asyncio.wait_for(stopping, 5)
    await running
    assert finished == [True]
