"""What the built-in transports add to the contract: their messages and their logging.

The contract itself (cases T01-T25) is micro-conformance's ``TransportContract``,
run for tcp and memory by ``core/tests/test_conformance.py``; these are the
details of the built-ins that the contract leaves to each implementation.
"""

from __future__ import annotations

import contextlib

import pytest
from micro.errors import BadRequest, ConnectionClosed, MessageTooLarge, Unavailable
from micro.transport import Message, Socket, Transport


async def echo(socket: Socket) -> None:
    """Send every message back until the peer half-closes."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            await socket.send(await socket.recv())


async def test_listener_repr_and_the_address_in_use_message(transport: Transport) -> None:
    listener = await transport.listen("127.0.0.1:0", echo)
    assert repr(listener) == f"<{type(listener).__name__} {listener.address}>"
    with pytest.raises(Unavailable, match="cannot listen on"):
        await transport.listen(listener.address, echo)


async def test_bad_addresses_and_messages_say_what_is_wrong(transport: Transport, client: Transport) -> None:
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
    await socket.close()


async def test_a_handler_exception_is_logged(
    transport: Transport, client: Transport, caplog: pytest.LogCaptureFixture
) -> None:
    async def failing(socket: Socket) -> None:
        await socket.recv()
        raise RuntimeError("handler bug")

    listener = await transport.listen("127.0.0.1:0", failing)
    socket = await client.dial(listener.address)
    await socket.send(Message({}, b"1"))
    with pytest.raises(ConnectionClosed):
        await socket.recv(timeout=5)
    assert any("handler bug" in (r.exc_text or "") or r.exc_info for r in caplog.records)


async def test_send_last_is_the_last_message_then_the_end(transport: Transport, client: Transport) -> None:
    """send_last: the peer gets the message, then ConnectionClosed; sending again is refused; the reply arrives."""
    received: list[bytes] = []

    async def handler(socket: Socket) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                received.append((await socket.recv()).body)
        await socket.send_last(Message({"n": "1"}, b"reply"))

    listener = await transport.listen("127.0.0.1:0", handler)
    socket = await client.dial(listener.address)
    await socket.send(Message({}, b"a"))
    await socket.send_last(Message({"k": "v"}, b"b"))
    with pytest.raises(ConnectionClosed):
        await socket.send(Message({}, b"after send_last"))
    with pytest.raises(ConnectionClosed):
        await socket.send_last(Message({}, b"after send_last"))
    reply = await socket.recv(timeout=5)
    assert (reply.header, reply.body) == ({"n": "1"}, b"reply")
    with pytest.raises(ConnectionClosed):
        await socket.recv(timeout=5)
    assert received == [b"a", b"b"]
    await socket.close()


async def test_send_last_too_large_sends_nothing_and_keeps_the_socket(transport: Transport, client: Transport) -> None:
    """After MessageTooLarge from send_last nothing was sent and the socket is not half-closed."""
    listener = await transport.listen("127.0.0.1:0", echo)
    socket = await client.dial(listener.address)
    with pytest.raises(MessageTooLarge):
        await socket.send_last(Message({}, b"x" * (transport.options.max_message_size + 1)))
    await socket.send_last(Message({}, b"fits"))
    assert (await socket.recv(timeout=5)).body == b"fits"
    with pytest.raises(ConnectionClosed):
        await socket.recv(timeout=5)
    await socket.close()


async def test_the_default_send_last_is_send_then_close_send() -> None:
    """A Socket that does not override send_last still half-closes after the message."""
    calls: list[str] = []

    class Recording(Socket):
        local = remote = "here"  # type: ignore[assignment]

        async def send(self, message: Message) -> None:
            calls.append(f"send {message.body.decode()}")

        async def recv(self, *, timeout: float | None = None) -> Message:
            raise ConnectionClosed("nothing")

        async def close_send(self) -> None:
            calls.append("close_send")

        async def close(self) -> None:
            calls.append("close")

    await Recording().send_last(Message({}, b"m"))
    assert calls == ["send m", "close_send"]
