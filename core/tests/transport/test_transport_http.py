"""The http transport beyond the contract: what an outside HTTP client sees, and the limits of a listener.

Every request here comes from plain aiohttp or a raw TCP socket, never from the
transport's own dialler, so a malformed request is really malformed. Each
answer must come as an HTTP error (or an in-band RESET once the stream is
open) within a bound: nothing may hang.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import msgpack
import pytest
from micro.errors import ConnectionClosed, Unavailable
from micro.transport import Listener, Message, Socket, TransportOptions
from micro.transport.http import CONTENT_TYPE, PATH, PREFACE, HTTPTransport

# Generous: the machine is shared; a hang is what these bounds catch, not slowness.
BOUND = 10.0


async def echo(socket: Socket) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await socket.send(await socket.recv())


def frame(flags: int, header: dict[str, str] | None = None, body: bytes = b"") -> bytes:
    packed = msgpack.packb(header) if header else b""
    return struct.pack("!IBI", 5 + len(packed) + len(body), flags, len(packed)) + packed + body


@pytest.fixture
async def server() -> AsyncIterator[HTTPTransport]:
    transport = HTTPTransport(TransportOptions(read_timeout=0.5, first_message_timeout=0.5, idle_timeout=0.5))
    yield transport
    await transport.close()


@pytest.fixture
async def listener(server: HTTPTransport) -> AsyncIterator[Listener]:
    listener = await server.listen("127.0.0.1:0", echo)
    yield listener
    await listener.close()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=BOUND)) as session:
        yield session


async def answer(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, str]:
    async with session.request(method, url, **kwargs) as response:
        return response.status, await response.text()


async def test_requests_it_will_not_serve_get_a_plain_http_error(
    listener: Listener, session: aiohttp.ClientSession
) -> None:
    base = f"http://{listener.address}"
    headers = {"Content-Type": CONTENT_TYPE}
    status, text = await answer(session, "GET", base + PATH)
    assert (status, "POST") == (405, text.split()[-1])
    status, text = await answer(session, "POST", base + "/elsewhere", data=PREFACE, headers=headers)
    assert status == 404
    assert PATH in text
    status, text = await answer(session, "POST", base + PATH, data=PREFACE, headers={"Content-Type": "text/plain"})
    assert status == 415
    assert CONTENT_TYPE in text
    status, text = await answer(session, "POST", base + PATH, data=b"GARBAGE!rest", headers=headers)
    assert status == 400
    assert "preface" in text
    status, text = await answer(session, "POST", base + PATH, data=b"MH", headers=headers)
    assert status == 400
    assert "ended before the preface" in text


async def raw_exchange(address: str, data: bytes) -> bytes:
    """Send ``data`` on a fresh TCP connection and read until the listener closes it."""
    host, _, port = address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), BOUND)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def test_bytes_that_are_not_http_get_400_and_the_connection_closes(listener: Listener) -> None:
    for garbage in (b"NOT HTTP \x00\x01\r\n\r\n", b"\x16\x03\x01 a TLS hello to a plain port\r\n\r\n"):
        reply = await raw_exchange(listener.address, garbage)
        assert reply.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), reply[:80]


async def test_a_request_head_without_its_preface_gets_408(listener: Listener) -> None:
    reply = await raw_exchange(listener.address, request_head(listener.address))
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"read_timeout" in reply


def request_head(address: str) -> bytes:
    return (
        f"POST {PATH} HTTP/1.1\r\nHost: {address}\r\nContent-Type: {CONTENT_TYPE}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


async def test_a_frame_over_the_limit_gets_a_reset_naming_the_problem(server: HTTPTransport) -> None:
    listener = await server.listen("127.0.0.1:0", echo)
    huge = struct.pack("!IBI", 5 + server.options.max_message_size + 1, 0x02, 0)
    reply = await raw_exchange(listener.address, request_head(listener.address) + chunk(PREFACE + huge))
    assert reply.startswith(b"HTTP/1.1 200"), reply[:80]
    assert b"protocol error" in reply
    assert b"exceeds max_message_size" in reply


async def test_a_malformed_frame_after_a_good_one_gets_a_reset(server: HTTPTransport) -> None:
    listener = await server.listen("127.0.0.1:0", echo)
    good = frame(0x02, {"k": "v"}, b"hello")
    bad = struct.pack("!IBI", 5, 0x80, 0)  # an unknown flag
    reply = await raw_exchange(listener.address, request_head(listener.address) + chunk(PREFACE + good + bad))
    assert b"hello" in reply, "the good frame was not echoed before the reset"
    assert b"unknown frame flags 0x80" in reply


async def test_a_socket_with_no_frame_after_the_preface_is_reset(server: HTTPTransport) -> None:
    listener = await server.listen("127.0.0.1:0", echo)
    reply = await raw_exchange(listener.address, request_head(listener.address) + chunk(PREFACE))
    assert b"first_message_timeout" in reply


async def test_a_frame_that_stops_halfway_is_reset_after_read_timeout(server: HTTPTransport) -> None:
    listener = await server.listen("127.0.0.1:0", echo)
    half = frame(0x02, None, b"x" * 100)[:50]
    reply = await raw_exchange(listener.address, request_head(listener.address) + chunk(PREFACE + half))
    assert b"read_timeout" in reply


async def test_an_idle_connection_is_closed_after_idle_timeout(listener: Listener) -> None:
    host, _, port = listener.address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        assert await asyncio.wait_for(reader.read(), BOUND) == b""
    finally:
        writer.close()


async def test_connections_over_max_connections_get_503() -> None:
    server = HTTPTransport(TransportOptions(max_connections=2))
    try:
        listener = await server.listen("127.0.0.1:0", echo)
        client = HTTPTransport()
        try:
            held = [await client.dial(listener.address, timeout=BOUND) for _ in range(2)]
            other = HTTPTransport()
            try:

                async def one_more() -> None:
                    # dial returns once the request is out; the 503 may come before or after that.
                    late = await other.dial(listener.address, timeout=BOUND)
                    await late.send(Message({}, b"refused"))
                    await late.recv(timeout=BOUND)

                with pytest.raises(Unavailable, match="max_connections"):
                    await one_more()
            finally:
                await other.close()
            for socket in held:
                await socket.send(Message({}, b"still served"))
                assert (await socket.recv(timeout=BOUND)).body == b"still served"
        finally:
            await client.close()
    finally:
        await server.close()


async def test_a_unary_exchange_reuses_the_connection(listener: Listener) -> None:
    """Request, END, reply, END: both bodies end cleanly, so the next dial goes out on the same connection."""
    client = HTTPTransport()
    try:
        locals_seen = set()
        for n in range(5):
            socket = await client.dial(listener.address, timeout=BOUND)
            await socket.send(Message({"n": str(n)}, b"ping"))
            await socket.close_send()
            assert (await socket.recv(timeout=BOUND)).header == {"n": str(n)}
            with pytest.raises(ConnectionClosed):
                await socket.recv(timeout=BOUND)
            await socket.close()
            locals_seen.add(socket.local)
            await asyncio.sleep(0.05)  # aiohttp hands the connection back once its body writer has finished
        # One connection for all, or two if a dial raced the hand-back under load; five would mean no reuse.
        assert len(locals_seen) <= 2, f"the exchanges did not share a connection: {locals_seen}"
    finally:
        await client.close()


async def test_a_pooled_connection_to_a_closed_listener_fails_fast(server: HTTPTransport) -> None:
    """A kept-alive connection left idle when its listener closes is closed too: a dialler reusing it
    gets Unavailable at once instead of a request the listener would never read."""
    listener = await server.listen("127.0.0.1:0", echo)
    client = HTTPTransport()
    try:
        socket = await client.dial(listener.address, timeout=BOUND)
        await socket.send(Message({}, b"ping"))
        await socket.close_send()
        assert (await socket.recv(timeout=BOUND)).body == b"ping"
        with pytest.raises(ConnectionClosed):
            await socket.recv(timeout=BOUND)
        await socket.close()
        await listener.close()

        async def late_call() -> None:
            late = await client.dial(listener.address, timeout=BOUND)
            try:
                await late.send(Message({}, b"late"))
                await late.close_send()
                await late.recv(timeout=BOUND)
            finally:
                await late.close()

        with pytest.raises(Unavailable):  # not Timeout: nothing may wait for an answer that never comes
            await late_call()
    finally:
        await client.close()


async def test_concurrent_unary_exchanges_keep_their_connections(server: HTTPTransport) -> None:
    """Request+END, reply+END, as the RPC client and server do, from many callers at once: every exchange
    succeeds and the connections are kept alive for the next ones (one per caller in flight, not per call)."""
    peers: set[str] = set()

    async def reply_and_end(socket: Socket) -> None:
        peers.add(socket.remote)
        message = await socket.recv()
        await socket.send(message)
        await socket.close_send()

    listener = await server.listen("127.0.0.1:0", reply_and_end)
    client = HTTPTransport()
    callers, calls = 16, 15

    async def caller(n: int) -> None:
        for i in range(calls):
            socket = await client.dial(listener.address, timeout=BOUND)
            try:
                await socket.send(Message({"n": f"{n}.{i}"}, b"x"))
                await socket.close_send()
                assert (await socket.recv(timeout=BOUND)).header == {"n": f"{n}.{i}"}
                with pytest.raises(ConnectionClosed):
                    await socket.recv(timeout=BOUND)
            finally:
                await socket.close()

    try:
        await asyncio.gather(*(caller(n) for n in range(callers)))
    finally:
        await client.close()
    # A connection is handed back once its exchange has ended on both sides; a caller may dial again just
    # before that, so allow twice the callers, far below one connection per call.
    assert len(peers) <= 2 * callers, f"{len(peers)} connections for {callers * calls} calls"


async def test_small_messages_a_handler_does_not_read_are_bounded_by_what_they_hold() -> None:
    """Unread messages count their header and their Python objects, not their body alone.

    Empty-bodied messages counted for nothing: a listener whose handler did not read kept reading them,
    every one held (~500 bytes each), for as long as the peer sent. Now reading stops at the limit.
    """
    release = asyncio.Event()
    accepted: list[Socket] = []

    async def idle(socket: Socket) -> None:
        accepted.append(socket)
        await release.wait()

    server = HTTPTransport()
    listener = await server.listen("127.0.0.1:0", idle)
    host, _, port = listener.address.rpartition(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    header = {"Content-Type": "application/json", "Micro-Id": "1", "Micro-Stream": "true", "X": "y"}
    batch = chunk(b"".join(frame(0x02, header) for _ in range(1000)))
    writer.write(request_head(listener.address) + chunk(PREFACE + frame(0x02, header)))
    sent = 0
    try:
        for _ in range(200):  # at most 200,000 messages, ~14 MB on the wire
            writer.write(batch)
            try:
                await asyncio.wait_for(writer.drain(), 1.0)
            except TimeoutError:
                break  # the listener stopped reading, and the socket buffers are full
            sent += 1000
        await asyncio.sleep(0.3)
        (socket,) = accepted
        inbox = len(socket._inbox)  # type: ignore[attr-defined]
        # 8 MiB (the default limit) at ~900 bytes a message is ~9,300 messages; the old count held every one.
        assert inbox < 20_000, f"{inbox} unread messages held (of {sent} sent)"
    finally:
        release.set()
        writer.close()
        await listener.close()
        await server.close()


async def test_malformed_requests_are_one_line_without_a_traceback(
    listener: Listener, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp logged each request it could not parse as an ERROR with a traceback: a peer could fill the log."""
    too_long = f"POST {PATH} HTTP/1.1\r\nHost: x\r\nX-Pad: {'a' * 10_000}\r\n\r\n".encode()
    too_many = f"POST {PATH} HTTP/1.1\r\n".encode() + b"".join(b"h%d: v\r\n" % i for i in range(500)) + b"\r\n"
    with caplog.at_level(logging.DEBUG):
        for request in (too_long, too_many, too_long):
            reply = await raw_exchange(listener.address, request)
            assert reply.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), reply[:80]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text
    lines = [r.getMessage() for r in caplog.records if "malformed HTTP request" in r.getMessage()]
    assert len(lines) == 1, lines  # rate-limited: one line for the three
    assert lines[0].startswith("http transport: refused a malformed HTTP request: ")


async def test_a_burst_of_connections_does_not_overshoot_max_connections() -> None:
    """aiohttp counts a connection a loop turn after it is accepted: a batch of accepts overshot the limit."""
    server = HTTPTransport(TransportOptions(max_connections=20))
    listener = await server.listen("127.0.0.1:0", echo)
    host, _, port = listener.address.rpartition(":")
    clients = await asyncio.gather(*(asyncio.open_connection(host, int(port)) for _ in range(200)))
    try:
        await asyncio.sleep(0.5)
        open_here = len(listener._web.connections)  # type: ignore[attr-defined]
        assert open_here <= 20, f"{open_here} connections open, max_connections 20"
    finally:
        for _, writer in clients:
            writer.close()
        await listener.close()
        await server.close()
