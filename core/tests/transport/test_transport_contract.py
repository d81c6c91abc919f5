"""The transport contract (conformance cases T1-T11), run against tcp and memory alike."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from micro.errors import BadRequest, ConnectionClosed, MessageTooLarge, Timeout, Unavailable
from micro.transport import Listener, Message, Socket, Transport


async def echo(socket: Socket) -> None:
    """Send every message back until the peer half-closes."""
    while True:
        try:
            message = await socket.recv()
        except ConnectionClosed:
            return
        await socket.send(message)


async def roundtrip(transport: Transport, address: str, message: Message) -> Message:
    socket = await transport.dial(address)
    async with socket:
        await socket.send(message)
        return await socket.recv(timeout=5)


async def eventually_refused(transport: Transport, address: str) -> None:
    """A new socket to ``address`` fails: at dial (nothing listens) or on first use (the listener refuses it)."""
    try:
        socket = await transport.dial(address, timeout=2)
        await socket.send(Message({}, b"x"))
        await socket.recv(timeout=2)
    except Unavailable:
        return
    pytest.fail(f"a new socket to {address} was served")


async def test_listen_on_port_zero_gives_a_real_address(transport: Transport) -> None:
    first = await transport.listen("127.0.0.1:0", echo)
    second = await transport.listen("127.0.0.1:0", echo)
    for listener in (first, second):
        host, _, port = listener.address.rpartition(":")
        assert host == "127.0.0.1"
        assert int(port) > 0
    assert first.address != second.address
    assert repr(first) == f"<{type(first).__name__} {first.address}>"


async def test_listening_twice_on_one_address_fails(transport: Transport) -> None:
    listener = await transport.listen("127.0.0.1:0", echo)
    with pytest.raises(Unavailable, match="cannot listen on"):
        await transport.listen(listener.address, echo)


@pytest.mark.parametrize(
    "message",
    [
        Message({}, b""),
        Message({"Micro-Id": "1", "Content-Type": "application/json"}, b'{"name": "x"}'),
        Message({"ключ": "значение 🚀", "": ""}, bytes(range(256))),
    ],
    ids=["empty", "typical", "unicode-binary"],
)
async def test_round_trip_keeps_header_and_body(transport: Transport, client: Transport, message: Message) -> None:
    listener = await transport.listen("127.0.0.1:0", echo)
    reply = await roundtrip(client, listener.address, message)
    assert reply.header == message.header
    assert reply.body == message.body
    assert type(reply.body) is bytes


async def test_many_messages_arrive_in_order_while_the_peer_waits(transport: Transport, client: Transport) -> None:
    received: list[bytes] = []
    done = asyncio.Event()

    async def collect(socket: Socket) -> None:
        try:
            while True:
                received.append((await socket.recv()).body)
        except ConnectionClosed:
            done.set()

    listener = await transport.listen("127.0.0.1:0", collect)
    socket = await client.dial(listener.address)
    for i in range(500):
        await socket.send(Message({"n": str(i)}, str(i).encode()))
    await socket.close_send()
    await asyncio.wait_for(done.wait(), 5)
    assert received == [str(i).encode() for i in range(500)]
    await socket.close()


async def test_streaming_both_ways_with_half_close(transport: Transport, client: Transport) -> None:
    async def upper_then_summary(socket: Socket) -> None:
        count = 0
        while True:
            try:
                message = await socket.recv()
            except ConnectionClosed:
                break
            count += 1
            await socket.send(Message(message.header, message.body.upper()))
        await socket.send(Message({"summary": "yes"}, str(count).encode()))
        await socket.close_send()

    listener = await transport.listen("127.0.0.1:0", upper_then_summary)
    socket = await client.dial(listener.address)

    async def produce() -> None:
        for i in range(100):
            await socket.send(Message({}, f"msg {i}".encode()))
        await socket.close_send()

    producer = asyncio.create_task(produce())
    replies = []
    while True:
        try:
            replies.append(await socket.recv(timeout=5))
        except ConnectionClosed:
            break
    await producer
    assert [r.body for r in replies[:-1]] == [f"MSG {i}".encode() for i in range(100)]
    assert replies[-1] == Message({"summary": "yes"}, b"100")
    with pytest.raises(ConnectionClosed):  # every later call too
        await socket.recv()
    with pytest.raises(ConnectionClosed, match="send side"):
        await socket.send(Message({}, b"late"))
    await socket.close()


async def test_recv_after_the_peer_closes_raises_connection_closed(transport: Transport, client: Transport) -> None:
    async def reply_once(socket: Socket) -> None:
        await socket.recv()
        await socket.send(Message({}, b"bye"))
        # returning closes the socket

    listener = await transport.listen("127.0.0.1:0", reply_once)
    socket = await client.dial(listener.address)
    await socket.send(Message({}, b"hi"))
    assert (await socket.recv(timeout=5)).body == b"bye"
    for _ in range(2):
        with pytest.raises(ConnectionClosed):
            await socket.recv(timeout=5)
    with pytest.raises(ConnectionClosed):
        await socket.send(Message({}, b"anyone?"))
    await socket.close()


async def test_a_pending_recv_is_woken_by_the_peer_closing(transport: Transport, client: Transport) -> None:
    release = asyncio.Event()

    async def close_on_signal(socket: Socket) -> None:
        await release.wait()

    listener = await transport.listen("127.0.0.1:0", close_on_signal)
    socket = await client.dial(listener.address)
    pending = asyncio.create_task(socket.recv())
    await asyncio.sleep(0.01)
    assert not pending.done()
    release.set()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(pending, 5)


async def test_close_wakes_a_local_recv_and_is_idempotent(transport: Transport, client: Transport) -> None:
    listener = await transport.listen("127.0.0.1:0", echo)
    socket = await client.dial(listener.address)
    pending = asyncio.create_task(socket.recv())
    await asyncio.sleep(0.01)
    await socket.close()
    await socket.close()
    await socket.close_send()
    with pytest.raises(ConnectionClosed, match="closed"):
        await asyncio.wait_for(pending, 5)
    with pytest.raises(ConnectionClosed):
        await socket.send(Message({}, b"x"))
    await listener.close()
    await listener.close()
    await client.close()
    await client.close()


async def test_dialling_a_dead_address_fails_fast(transport: Transport) -> None:
    listener = await transport.listen("127.0.0.1:0", echo)
    address = listener.address
    await listener.close()
    started = time.monotonic()
    with pytest.raises(Unavailable, match=address.replace("[", r"\[").replace("]", r"\]")):
        await transport.dial(address, timeout=5)
    assert time.monotonic() - started < 1


async def test_recv_timeout_is_honoured_and_the_socket_stays_usable(transport: Transport, client: Transport) -> None:
    listener = await transport.listen("127.0.0.1:0", echo)
    socket = await client.dial(listener.address)
    started = time.monotonic()
    with pytest.raises(Timeout, match=r"no message received within 0\.05s"):
        await socket.recv(timeout=0.05)
    assert 0.04 < time.monotonic() - started < 2
    await socket.send(Message({}, b"still here"))
    assert (await socket.recv(timeout=5)).body == b"still here"
    await socket.close()


async def test_cancelling_recv_loses_no_message(transport: Transport, client: Transport) -> None:
    listener = await transport.listen("127.0.0.1:0", echo)
    socket = await client.dial(listener.address)
    waiting = asyncio.create_task(socket.recv())
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await socket.send(Message({}, b"kept"))
    assert (await socket.recv(timeout=5)).body == b"kept"
    await socket.close()


async def test_concurrent_sockets_each_get_their_own_replies(transport: Transport, client: Transport) -> None:
    async def slow_echo(socket: Socket) -> None:
        message = await socket.recv()
        await asyncio.sleep(0.001 * (int(message.body) % 7))
        await socket.send(message)

    listener = await transport.listen("127.0.0.1:0", slow_echo)

    async def call(i: int) -> bytes:
        return (await roundtrip(client, listener.address, Message({"i": str(i)}, str(i).encode()))).body

    results = await asyncio.gather(*(call(i) for i in range(200)))
    assert results == [str(i).encode() for i in range(200)]


async def test_a_large_message_both_ways(transport: Transport, client: Transport) -> None:
    listener = await transport.listen("127.0.0.1:0", echo)
    body = os.urandom(3 * 1024 * 1024 + 17)
    reply = await roundtrip(client, listener.address, Message({"size": str(len(body))}, body))
    assert reply.body == body


async def test_an_oversized_message_is_refused_before_sending(transport: Transport) -> None:
    small = type(transport)(transport.options.replace(max_message_size=1024))
    try:
        listener = await transport.listen("127.0.0.1:0", echo)
        socket = await small.dial(listener.address)
        with pytest.raises(MessageTooLarge, match="exceeds max_message_size 1024"):
            await socket.send(Message({}, b"x" * 1025))
        with pytest.raises(MessageTooLarge):
            await socket.send(Message({"k": "v" * 1024}, b""))
        # the socket and the server are fine
        await socket.send(Message({}, b"x" * 1000))
        assert len((await socket.recv(timeout=5)).body) == 1000
        await socket.close()
        assert (await roundtrip(small, listener.address, Message({}, b"again"))).body == b"again"
    finally:
        await small.close()


async def test_handler_exceptions_do_not_stop_the_listener(
    transport: Transport, client: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    calls = 0

    async def flaky(socket: Socket) -> None:
        nonlocal calls
        calls += 1
        message = await socket.recv()
        if calls == 1:
            raise RuntimeError("handler bug")
        await socket.send(message)

    listener = await transport.listen("127.0.0.1:0", flaky)
    broken = await client.dial(listener.address)
    await broken.send(Message({}, b"1"))
    with pytest.raises(ConnectionClosed):
        await broken.recv(timeout=5)
    assert (await roundtrip(client, listener.address, Message({}, b"2"))).body == b"2"
    assert any("handler bug" in (r.exc_text or "") or r.exc_info for r in caplog.records)


async def test_closing_the_listener_lets_running_sockets_finish(transport: Transport, client: Transport) -> None:
    proceed = asyncio.Event()

    async def wait_then_reply(socket: Socket) -> None:
        message = await socket.recv()
        await proceed.wait()
        await socket.send(message)

    listener = await transport.listen("127.0.0.1:0", wait_then_reply)
    socket = await client.dial(listener.address)
    await socket.send(Message({}, b"in flight"))
    await asyncio.sleep(0.02)  # let the handler start; the assertion below does not depend on it
    await listener.close()
    await eventually_refused(client, listener.address)
    proceed.set()
    assert (await socket.recv(timeout=5)).body == b"in flight"
    await socket.close()


async def test_closing_the_transport_fails_sockets_and_cancels_handlers(
    transport: Transport, client: Transport
) -> None:
    cancelled = asyncio.Event()

    async def forever(socket: Socket) -> None:
        await socket.recv()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    listener = await transport.listen("127.0.0.1:0", forever)
    socket = await client.dial(listener.address)
    await socket.send(Message({}, b"x"))
    pending = asyncio.create_task(socket.recv())
    await asyncio.sleep(0.02)
    await transport.close()
    assert cancelled.is_set()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(pending, 5)
    await eventually_refused(client, listener.address)
    await transport.close()


async def test_bad_input_is_a_bad_request(transport: Transport, client: Transport) -> None:
    for address in ("no-port", "host:port", "host:99999", "::1:80"):
        with pytest.raises(BadRequest, match="invalid address"):
            await client.dial(address)
        with pytest.raises(BadRequest, match="invalid address"):
            await transport.listen(address, echo)
    listener = await transport.listen("127.0.0.1:0", echo)
    socket = await client.dial(listener.address)
    with pytest.raises(BadRequest, match="header must map str to str"):
        await socket.send(Message({"n": 1}, b""))  # type: ignore[dict-item]
    with pytest.raises(BadRequest, match="body must be bytes"):
        await socket.send(Message({}, "text"))  # type: ignore[arg-type]
    await socket.send(Message({}, bytearray(b"buffers are fine")))
    assert (await socket.recv(timeout=5)).body == b"buffers are fine"
    await socket.close()


async def test_a_reused_send_buffer_does_not_change_what_was_sent(transport: Transport, client: Transport) -> None:
    listener = await transport.listen("127.0.0.1:0", echo)
    socket = await client.dial(listener.address)
    buffer = bytearray(b"first")
    await socket.send(Message({}, buffer))
    buffer[:] = b"SECOND"
    await socket.send(Message({}, buffer))
    assert (await socket.recv(timeout=5)).body == b"first"
    assert (await socket.recv(timeout=5)).body == b"SECOND"
    await socket.close()


async def test_listen_without_address_uses_the_option(transport: Transport) -> None:
    configured = type(transport)(transport.options.replace(address="127.0.0.1:0"))
    try:
        listener: Listener = await configured.listen(None, echo)
        assert listener.address.startswith("127.0.0.1:")
    finally:
        await configured.close()


async def test_local_and_remote_addresses(transport: Transport, client: Transport) -> None:
    seen: list[tuple[str, str]] = []

    async def record(socket: Socket) -> None:
        seen.append((socket.local, socket.remote))
        await echo(socket)

    listener = await transport.listen("127.0.0.1:0", record)
    socket = await client.dial(listener.address)
    await socket.send(Message({}, b"x"))
    await socket.recv(timeout=5)
    assert socket.remote == listener.address
    assert seen == [(listener.address, socket.local)]
    await socket.close()
