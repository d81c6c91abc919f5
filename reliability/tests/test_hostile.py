"""Hostile input against a service on the default tcp transport and server, in its own process.

Everything is sent by hand (raw sockets, or transport messages with headers the micro client
would never write); afterwards the service must still answer a normal call, hold no more
file descriptors than before and have logged no traceback.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import micro
import pytest
from conftest import Figure, eventually
from micro.client import Client
from micro.transport import Message, Transport
from procs import ServiceProcess

PREFACE = b"MICRO/1\n"


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


async def _still_serves(client: Client, name: str) -> None:
    reply = await client.call(name, "Echo.hello", {"name": "after"}, timeout=10)
    assert reply["message"] == "Hello after"


async def _request(transport: Transport, address: str, header: dict[str, str], body: bytes = b"{}") -> Message:
    async with await transport.dial(address) as socket:
        await socket.send(Message(header, body))
        return await socket.recv(timeout=10)


@pytest.fixture
async def client() -> Any:
    made = micro.create("client", cls=Client)
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def transport() -> Any:
    made = micro.create("transport", cls=Transport)
    async with made:
        yield made


async def test_garbled_frames_leave_the_service_serving_without_a_leak(
    spawn: Any, unique: str, client: Client, figure: Figure
) -> None:
    server: ServiceProcess = await spawn(unique)
    await _still_serves(client, unique)
    fds_before = server.open_fds()
    rss_before = server.rss_mib()
    host, port = _host_port(server.address)
    rng = random.Random(1234)
    sent = 0

    async def garble(connection: int) -> None:
        nonlocal sent
        for attempt in range(50):
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                await asyncio.sleep(0.01)
                continue
            try:
                # Half the connections send the right preface first, so the frame parser is reached.
                prefix = PREFACE if (connection + attempt) % 2 else b""
                writer.write(prefix + rng.randbytes(rng.randint(1, 512)))
                await writer.drain()
                sent += 1
                await asyncio.wait_for(reader.read(), 5)  # the server answers ERROR and closes
            except (OSError, TimeoutError):
                pass
            finally:
                writer.close()

    await asyncio.gather(*(garble(c) for c in range(40)))
    await _still_serves(client, unique)
    await eventually(lambda: server.open_fds() <= fds_before, "the server's descriptors back to where they were")
    figure("garbled frames: connections sent garbage, service still serving", sent)
    figure("garbled frames: server RSS growth", server.rss_mib() - rss_before, "MiB")
    await server.stop()
    assert "Traceback" not in await server.stderr()


HOSTILE_TIMEOUTS = {
    "hundreds of digits": "9" * 400,
    "float overflowing to infinity": "1e999",
    "nan": "nan",
    "negative": "-5",
    "garbage": "soon",
    "empty": "",
    "non-ascii": "\uff15s",  # a fullwidth digit five
}


async def test_hostile_timeout_headers_get_a_typed_400(
    spawn: Any, unique: str, client: Client, transport: Transport, figure: Figure
) -> None:
    server: ServiceProcess = await spawn(unique)
    answered = 0
    for case, value in HOSTILE_TIMEOUTS.items():
        reply = await _request(
            transport,
            server.address,
            {
                "Micro-Service": unique,
                "Micro-Endpoint": "Echo.hello",
                "Micro-Id": f"hostile-{answered}",
                "Content-Type": "application/json",
                "Timeout": value,
            },
        )
        error = reply.header.get("Micro-Error")
        # An empty Timeout means "no deadline" to Go Micro too: either a normal answer or a 400 is acceptable.
        if case == "empty" and error is None:
            assert json.loads(reply.body)["message"].startswith("Hello")
        else:
            assert error is not None, f"{case}: no error for Timeout={value[:20]!r}"
            assert json.loads(error)["code"] == 400, f"{case}: {error}"
        answered += 1
    await _still_serves(client, unique)
    figure("hostile Timeout headers answered with a typed 400 (or served, for an empty one)", answered)
    await server.stop()
    assert "Traceback" not in await server.stderr()


async def test_an_internal_error_reaches_the_caller_without_its_detail(
    spawn: Any, unique: str, client: Client, transport: Transport
) -> None:
    """A handler's unexpected exception: the caller sees a generic 500 with an id, never the text."""
    server: ServiceProcess = await spawn(unique)
    reply = await _request(
        transport,
        server.address,
        {
            "Micro-Service": unique,
            "Micro-Endpoint": "Echo.leak",
            "Micro-Id": "leak-1",
            "Content-Type": "application/json",
        },
    )
    error = json.loads(reply.header["Micro-Error"])
    assert error["code"] == 500
    assert "hunter2" not in json.dumps(error)
    assert "postgres" not in json.dumps(error)
    await _still_serves(client, unique)
    await server.stop()
    assert "hunter2" not in await server.stderr(), "the password reached the server's log unmasked"
