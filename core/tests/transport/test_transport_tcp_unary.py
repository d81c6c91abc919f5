"""The tcp transport's unary paths: ``exchange`` (a request and its reply without a socket object, the RPC
client's) and the listener's ``one_shot`` hook (a whole request handed to the handler, the RPC server's)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from micro.errors import ConnectionClosed, MessageTooLarge
from micro.transport import Message, Socket, TransportOptions
from micro.transport.tcp import TCPTransport


@pytest.fixture
async def server() -> AsyncIterator[TCPTransport]:
    transport = TCPTransport()
    await transport.start()
    yield transport
    await transport.close()


@pytest.fixture
async def client() -> AsyncIterator[TCPTransport]:
    transport = TCPTransport()
    await transport.start()
    yield transport
    await transport.close()


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (bounded) until ``check()`` holds; polls, so a loaded machine only makes it slower."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


def streams(transport: TCPTransport) -> int:
    return sum(len(conn._streams) for conn in transport._connections)


class Hooked:
    """A handler with a ``one_shot`` hook; ``decide`` says whether the hook takes a request."""

    def __init__(self, decide: Callable[[Socket, dict[str, str], bytes], bool]) -> None:
        self.decide = decide
        self.ordinary: list[Message] = []

    async def __call__(self, socket: Socket) -> None:
        message = await socket.recv()
        self.ordinary.append(message)
        await socket.send_last(Message({"path": "socket"}, message.body))

    def one_shot(self, reply: Socket, header: dict[str, str], body: bytes) -> bool:
        return self.decide(reply, header, body)


async def test_a_unary_call_gets_its_reply_and_leaves_no_stream(server: TCPTransport, client: TCPTransport) -> None:
    async def echo(socket: Socket) -> None:
        message = await socket.recv()
        await socket.send_last(Message({"seen": message.header["k"]}, message.body.upper()))

    listener = await server.listen("127.0.0.1:0", echo)
    replies = await asyncio.gather(
        *(client.exchange(listener.address, Message({"k": str(i)}, b"hi")) for i in range(50))
    )
    assert [(r.header, r.body) for r in replies] == [({"seen": str(i)}, b"HI") for i in range(50)]
    await eventually(lambda: streams(client) == 0 and streams(server) == 0)


async def test_a_reply_before_the_peers_end_resets_the_stream(server: TCPTransport, client: TCPTransport) -> None:
    sockets: list[Socket] = []

    async def answer_then_wait(socket: Socket) -> None:
        sockets.append(socket)
        await socket.recv()
        await socket.send(Message({}, b"early"))  # no END: the stream stays open on this side
        await asyncio.sleep(10)

    listener = await server.listen("127.0.0.1:0", answer_then_wait)
    reply = await client.exchange(listener.address, Message({}, b"x"))
    assert reply.body == b"early"
    # The client closed the stream as a socket's close would (RESET): the server forgets it, sending is refused.
    await eventually(lambda: streams(server) == 0)
    with pytest.raises(ConnectionClosed, match="closed the stream"):
        await sockets[0].send(Message({}, b"more"))
    assert streams(client) == 0


async def test_a_cancelled_call_resets_its_stream(server: TCPTransport, client: TCPTransport) -> None:
    sockets: list[Socket] = []

    async def never_answer(socket: Socket) -> None:
        sockets.append(socket)
        await socket.recv()
        await asyncio.sleep(10)

    listener = await server.listen("127.0.0.1:0", never_answer)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await client.exchange(listener.address, Message({}, b"x"))
    assert streams(client) == 0
    await eventually(lambda: streams(server) == 0)  # the RESET reached it
    with pytest.raises(ConnectionClosed, match="closed the stream"):
        await sockets[0].send(Message({}, b"late"))


async def test_an_end_without_a_reply_and_a_lost_connection_are_connection_closed(
    server: TCPTransport, client: TCPTransport
) -> None:
    async def hang_up(socket: Socket) -> None:
        await socket.recv()  # then run_handler closes the socket: a bare END

    listener = await server.listen("127.0.0.1:0", hang_up)
    with pytest.raises(ConnectionClosed, match="ended the stream"):
        await client.exchange(listener.address, Message({}, b"x"))

    started = asyncio.Event()

    async def wait(socket: Socket) -> None:
        started.set()
        await asyncio.sleep(10)

    other = await server.listen("127.0.0.1:0", wait)
    call = asyncio.create_task(client.exchange(other.address, Message({}, b"x")))
    await asyncio.wait_for(started.wait(), 5)
    for conn in list(server._connections):
        conn.abort()
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(call, 5)


async def test_unary_calls_keep_to_max_streams_and_max_message_size(client: TCPTransport) -> None:
    server = TCPTransport(TransportOptions(max_streams=2, max_message_size=1024))
    await server.start()
    most = 0

    async def slow(socket: Socket) -> None:
        nonlocal most
        most = max(most, streams(server))
        message = await socket.recv()
        await asyncio.sleep(0.01)
        await socket.send_last(message)

    try:
        listener = await server.listen("127.0.0.1:0", slow)
        limited = TCPTransport(TransportOptions(max_streams=2, max_message_size=1024))
        await limited.start()
        try:
            replies = await asyncio.gather(
                *(limited.exchange(listener.address, Message({}, b"%d" % i)) for i in range(8))
            )
            assert [r.body for r in replies] == [b"%d" % i for i in range(8)]
            assert most <= 2, "the caller waited for a free stream instead of meeting a RESET"
            with pytest.raises(MessageTooLarge):
                await limited.exchange(listener.address, Message({}, b"x" * 2000))
        finally:
            await limited.close()
    finally:
        await server.close()


async def test_the_one_shot_hook_takes_a_whole_request(server: TCPTransport, client: TCPTransport) -> None:
    def take(reply: Socket, header: dict[str, str], body: bytes) -> bool:
        async def answer() -> None:
            await reply.send_last(Message({"path": "hook", **header}, body[::-1]))
            with pytest.raises(ConnectionClosed):
                await reply.send_last(Message({}, b"twice"))

        asyncio.get_running_loop().create_task(answer())
        return True

    handler = Hooked(take)
    listener = await server.listen("127.0.0.1:0", handler)
    reply = await client.exchange(listener.address, Message({"a": "b"}, b"abc"))
    assert (reply.header, reply.body) == ({"path": "hook", "a": "b"}, b"cba")
    assert handler.ordinary == []
    await eventually(lambda: streams(server) == 0)

    # A stream opened and written in separate frames is not a one-shot request: it takes the socket path.
    socket = await client.dial(listener.address)
    await socket.send(Message({}, b"two"))
    await asyncio.sleep(0.05)  # the END leaves in a later write than the message, not joined to it
    await socket.close_send()
    assert (await socket.recv()).header == {"path": "socket"}
    await socket.close()


@pytest.mark.parametrize("outcome", ["declined", "raised"])
async def test_a_declined_or_failing_hook_leaves_the_request_to_the_socket_path(
    server: TCPTransport, client: TCPTransport, outcome: str
) -> None:
    def decline(reply: Socket, header: dict[str, str], body: bytes) -> bool:
        if outcome == "raised":
            raise RuntimeError("a bug in the hook")
        return False

    handler = Hooked(decline)
    listener = await server.listen("127.0.0.1:0", handler)
    reply = await client.exchange(listener.address, Message({"k": "v"}, b"body"))
    assert (reply.header, reply.body) == ({"path": "socket"}, b"body")
    assert [(m.header, m.body) for m in handler.ordinary] == [({"k": "v"}, b"body")]


async def test_a_one_shot_reply_after_the_callers_reset_is_refused(server: TCPTransport, client: TCPTransport) -> None:
    replies: list[Socket] = []
    handed = asyncio.Event()

    def keep(reply: Socket, header: dict[str, str], body: bytes) -> bool:
        replies.append(reply)
        handed.set()
        return True

    listener = await server.listen("127.0.0.1:0", Hooked(keep))
    call = asyncio.create_task(client.exchange(listener.address, Message({}, b"x")))
    await asyncio.wait_for(handed.wait(), 5)
    call.cancel()  # the caller gives up: RESET
    with pytest.raises(asyncio.CancelledError):
        await call
    await eventually(lambda: streams(server) == 0)
    with pytest.raises(ConnectionClosed, match="closed the stream"):
        await replies[0].send_last(Message({}, b"late"))


async def test_a_one_shot_closed_without_a_reply_ends_the_stream(server: TCPTransport, client: TCPTransport) -> None:
    def hang_up(reply: Socket, header: dict[str, str], body: bytes) -> bool:
        asyncio.get_running_loop().create_task(reply.close())
        return True

    listener = await server.listen("127.0.0.1:0", Hooked(hang_up))
    with pytest.raises(ConnectionClosed, match="ended the stream"):
        await client.exchange(listener.address, Message({}, b"x"))
    await eventually(lambda: streams(server) == 0)


async def test_a_draining_listener_still_sends_its_one_shot_replies(server: TCPTransport, client: TCPTransport) -> None:
    pending: list[tuple[Socket, bytes]] = []

    def later(reply: Socket, header: dict[str, str], body: bytes) -> bool:
        pending.append((reply, body))
        return True

    listener = await server.listen("127.0.0.1:0", Hooked(later))
    calls = [asyncio.create_task(client.exchange(listener.address, Message({}, b"%d" % i))) for i in range(3)]
    await eventually(lambda: len(pending) == 3)
    await listener.close()  # drains: open streams finish, the connection closes after the last
    for reply, body in pending:
        await reply.send_last(Message({}, body))
    assert [r.body for r in await asyncio.gather(*calls)] == [b"0", b"1", b"2"]


async def test_a_large_one_shot_request_reaches_the_hook_whole(server: TCPTransport, client: TCPTransport) -> None:
    # A frame over the read path's chunk threshold is kept as chunks and joined once: the hook gets that body.
    bodies: list[bytes] = []

    def take(reply: Socket, header: dict[str, str], body: bytes) -> bool:
        bodies.append(body)
        asyncio.get_running_loop().create_task(reply.send_last(Message({}, body[-10:])))
        return True

    listener = await server.listen("127.0.0.1:0", Hooked(take))
    big = bytes(range(256)) * (3 * 1024 * 1024 // 256)
    reply = await client.exchange(listener.address, Message({"k": "v"}, big))
    assert reply.body == big[-10:]
    assert len(bodies) == 1
    assert bodies[0] == big
