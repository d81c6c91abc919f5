"""The default tcp transport's limits, hit from outside against a service in its own process.

Each limit is set low through its ``MICRO_TRANSPORT_*`` variable; hitting it must end in a clean
close or a typed refusal, with the service still answering and its memory and descriptors back
where they were.
"""

from __future__ import annotations

import asyncio
import struct
import time
from typing import Any

import micro
import pytest
from conftest import Figure, eventually
from micro.client import Client
from procs import ServiceProcess

PREFACE = b"MICRO/1\n"
OPEN = 0x01
LIMITS = {
    "MICRO_TRANSPORT_MAX_CONNECTIONS": "16",
    "MICRO_TRANSPORT_IDLE_TIMEOUT": "2",
    "MICRO_TRANSPORT_READ_TIMEOUT": "1",
    "MICRO_TRANSPORT_FIRST_MESSAGE_TIMEOUT": "1",
    "MICRO_TRANSPORT_MAX_STREAMS": "32",
}


def _frame(stream: int, flags: int, body: bytes = b"") -> bytes:
    return struct.pack("!IIBI", 9 + len(body), stream, flags, 0) + body


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


@pytest.fixture
async def client() -> Any:
    made = micro.create("client", cls=Client)
    try:
        yield made
    finally:
        await made.close()


async def _closed_by_server(reader: asyncio.StreamReader, timeout: float) -> bool:
    """Whether the server ends the connection within ``timeout``: an EOF, or a reset (a socket closed
    with our preface still unread in its buffer is reset by the kernel rather than shut down)."""
    try:
        while await asyncio.wait_for(reader.read(65536), timeout):
            pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


@pytest.mark.slow
async def test_idle_and_excess_connections_are_closed(spawn: Any, unique: str, client: Client, figure: Figure) -> None:
    server: ServiceProcess = await spawn(unique, LIMITS)
    await client.call(unique, "Echo.hello", {}, timeout=10)
    baseline = server.open_fds()
    host, port = _host_port(server.address)
    connections = []
    for _ in range(40):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(PREFACE)
        connections.append((reader, writer))
    await asyncio.sleep(0.5)
    held = server.open_fds() - baseline
    figure("tcp: connections held with max_connections=16 after 40 were opened", held)
    assert held <= 16 + 2  # the cap, and the client's own connection being replaced
    started = time.monotonic()
    closed = await asyncio.gather(*(_closed_by_server(r, 30) for r, _ in connections))
    figure(
        "tcp: idle connections closed by the server (idle_timeout 2 s), slowest after", time.monotonic() - started, "s"
    )
    assert all(closed), [i for i, c in enumerate(closed) if not c]
    for _, writer in connections:
        writer.close()
    await eventually(lambda: server.open_fds() <= baseline, "descriptors back to the baseline")
    await client.call(unique, "Echo.hello", {}, timeout=10)
    await server.stop()
    assert "Traceback" not in await server.stderr()


@pytest.mark.slow
async def test_a_frame_that_never_completes_is_cut_off(spawn: Any, unique: str, client: Client, figure: Figure) -> None:
    server: ServiceProcess = await spawn(unique, LIMITS)
    host, port = _host_port(server.address)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(PREFACE + struct.pack("!I", 4 * 1024 * 1024) + b"\x00" * 1000)  # a 4 MiB frame, 1 kB of it sent
    await writer.drain()
    started = time.monotonic()
    assert await _closed_by_server(reader, 10)
    figure("tcp: a partial frame cut off (read_timeout 1 s) after", time.monotonic() - started, "s")
    writer.close()
    await client.call(unique, "Echo.hello", {}, timeout=10)
    await server.stop()


@pytest.mark.slow
async def test_a_flood_of_bare_stream_opens_is_bounded(spawn: Any, unique: str, client: Client, figure: Figure) -> None:
    server: ServiceProcess = await spawn(unique, LIMITS)
    await client.call(unique, "Echo.hello", {}, timeout=10)
    rss_before = server.rss_mib()
    host, port = _host_port(server.address)
    _, writer = await asyncio.open_connection(host, port)
    writer.write(PREFACE)
    sent = 0
    try:
        for batch in range(50):
            writer.write(b"".join(_frame(batch * 1000 + n + 1, OPEN) for n in range(1000)))
            await writer.drain()
            sent += 1000
    except OSError:
        pass  # the server disconnected a peer that would not stop: that is the limit working
    writer.close()
    await client.call(unique, "Echo.hello", {}, timeout=10)  # served after the flood, and after it was read
    growth = server.rss_mib() - rss_before
    figure("tcp: bare stream opens sent on one connection (max_streams 32)", sent)
    figure("tcp: server RSS growth after the flood", growth, "MiB")
    assert growth < 64
    await server.stop()
