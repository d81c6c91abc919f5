"""Services in separate OS processes on the default blocks (local registry, tcp transport, http broker).

The root conftest points the per-user runtime directory at a temporary one, so
these processes find each other "with no configuration" without touching the
developer's real registry.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest
from micro import create
from micro.client import Client
from micro.errors import ServiceNotFound
from procs import Spawn


@pytest.fixture
async def client() -> Any:
    made = create("client", cls=Client, retries=2)
    try:
        yield made
    finally:
        await made.close()


async def test_call_another_process(spawn: Spawn, unique: str, client: Client) -> None:
    server = await spawn(unique)
    reply = await client.call(unique, "Echo.hello", {"name": "Alice"})
    assert reply["message"] == "Hello Alice"
    assert reply["pid"] == server.process.pid
    async with await client.stream(unique, "Echo.count", {"to": 3}) as stream:
        assert [n async for n in stream] == [0, 1, 2]


async def test_publish_reaches_a_subscriber_in_another_process(spawn: Spawn, unique: str, client: Client) -> None:
    await spawn(unique)
    await client.publish(f"{unique}.events", {"n": 1})
    for _ in range(200):  # bounded: at most ~10s
        if await client.call(unique, "Echo.received") == [{"n": 1}]:
            break
        await asyncio.sleep(0.05)
    assert await client.call(unique, "Echo.received") == [{"n": 1}]


async def test_sigterm_drains_the_call_in_flight(spawn: Spawn, unique: str, client: Client) -> None:
    server = await spawn(unique)
    call = asyncio.create_task(client.call(unique, "Echo.slow", {"seconds": 1.0}, timeout=10))
    await server.expect("STARTED Echo.slow")
    server.signal(signal.SIGTERM)
    assert (await call)["slept"] == 1.0  # finished although SIGTERM arrived mid-call
    assert await server.wait() == 0
    assert "STOPPED" in server.lines or await server.expect("STOPPED")
    with pytest.raises(ServiceNotFound):  # deregistered on the way out
        await create("registry").get_service(unique)


async def test_retry_reaches_the_second_node_when_the_first_is_killed(
    spawn: Spawn, unique: str, client: Client
) -> None:
    first = await spawn(unique)
    second = await spawn(unique)
    first.signal(signal.SIGKILL)  # no deregistration: the registry keeps listing the dead node
    await first.wait()
    registry = create("registry")
    try:
        (entry,) = await registry.get_service(unique)
        assert len(entry.nodes) == 2
    finally:
        await registry.close()
    pids = {(await client.call(unique, "Echo.hello", {"name": str(n)}))["pid"] for n in range(10)}
    assert pids == {second.process.pid}
