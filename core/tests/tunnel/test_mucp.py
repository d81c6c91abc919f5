import asyncio
import time
from collections.abc import AsyncIterator, Callable

import micro
import pytest
from cryptography.exceptions import InvalidTag
from micro.errors import (
    BadRequest,
    Conflict,
    ConnectionClosed,
    InvalidOption,
    NoneAvailable,
    NotFound,
    Timeout,
    Unauthorized,
)
from micro.transport.base import Message, Transport
from micro.tunnel import Tunnel
from micro.tunnel.mucp import MUCPTunnel, _key
from micro.tunnel.options import TunnelOptions

Factory = Callable[..., MUCPTunnel]


@pytest.fixture(params=["memory", "tcp"])
async def make(request) -> AsyncIterator[Factory]:
    made: list[MUCPTunnel] = []

    def factory(**options) -> MUCPTunnel:
        options.setdefault("address", "127.0.0.1:0")
        transport = micro.create("transport", request.param, cls=Transport)
        tunnel = MUCPTunnel(TunnelOptions(**options), transport=transport)
        made.append(tunnel)
        return tunnel

    yield factory
    for tunnel in made:
        await tunnel.close()
        await tunnel.transport.close()


async def pair(make: Factory, **options) -> tuple[MUCPTunnel, MUCPTunnel]:
    b = make(id="b", **options)
    await b.connect()
    a = make(id="a", nodes=(b.address,), **options)
    await a.connect()
    return a, b


async def eventually(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def test_created_by_name_from_environment():
    tunnel = micro.create(
        "tunnel", environ={"MICRO_TUNNEL_NODES": "127.0.0.1:1,127.0.0.1:2", "MICRO_TUNNEL_TOKEN": "s3cret"}
    )
    assert isinstance(tunnel, MUCPTunnel)
    assert tunnel.options.nodes == ("127.0.0.1:1", "127.0.0.1:2")
    assert tunnel.options.token == "s3cret"
    with pytest.raises(InvalidOption, match="MICRO_TUNNEL_TOKEN"):
        micro.create("tunnel", environ={"MICRO_TUNNEL_TOKEN": ""})
    with pytest.raises(InvalidOption, match="reconnect"):
        TunnelOptions(reconnect=0)


async def test_dial_and_listen_exchange_messages_both_ways(make):
    a, b = await pair(make)
    listener = await b.listen("x")
    await eventually(lambda: any("x" in link.channels for link in a.links()), "B to announce x")

    session = await a.dial("x")
    accepted = await listener.accept(timeout=5)
    assert (session.id, session.channel) == (accepted.id, "x")

    await session.send(Message({"Greeting": "hi", "n": "1"}, b"from a"))
    got = await accepted.recv(timeout=5)
    assert (got.header, got.body) == ({"Greeting": "hi", "n": "1"}, b"from a")
    await accepted.send(Message({"Reply": "yes"}, b"from b"))
    back = await session.recv(timeout=5)
    assert (back.header, back.body) == ({"Reply": "yes"}, b"from b")

    (link_a,) = a.links()
    (link_b,) = b.links()
    assert (link_a.node, link_a.outbound, link_a.encrypted, link_a.sessions) == ("b", True, True, 1)
    assert (link_b.node, link_b.outbound) == ("a", False)
    assert session.link == link_a.id


async def test_a_wrong_token_is_rejected_with_a_clear_error(make):
    b = make(id="b", token="right")
    await b.connect()
    a = make(id="a", token="wrong", nodes=(b.address,))
    with pytest.raises(Unauthorized, match="does not have our token"):
        await a.connect()
    assert b.links() == []
    assert a.links() == []


async def test_a_dialler_that_skips_the_check_is_rejected_by_the_listener(make):
    b = make(id="b", token="right")
    await b.connect()
    socket = await b.transport.dial(b.address)
    await socket.send(Message({"Micro-Tunnel": "connect", "Micro-Tunnel-Id": "m", "Micro-Tunnel-Nonce": "n"}))
    assert (await socket.recv(timeout=5)).header["Micro-Tunnel"] == "verify"
    await socket.send(Message({"Micro-Tunnel": "auth", "Micro-Tunnel-Mac": "forged"}))
    reject = await socket.recv(timeout=5)
    assert reject.header["Micro-Tunnel"] == "reject"
    assert "tokens differ" in reject.header["Micro-Tunnel-Error"]
    with pytest.raises(ConnectionClosed):
        await socket.recv(timeout=5)
    await socket.close()
    assert b.links() == []


async def test_encryption_is_negotiated_and_keys_are_per_link(make):
    a, _ = await pair(make, encrypt=False)
    assert [link.encrypted for link in a.links()] == [False]
    c = make(id="c", encrypt=True)
    await c.connect()
    d = make(id="d", encrypt=False, nodes=(c.address,))
    await d.connect()
    assert [link.encrypted for link in d.links()] == [True]

    one, same, other = _key("t", "n1", "n2"), _key("t", "n1", "n2"), _key("t", "n1", "n3")
    sealed = b"\0" * 12 + one.encrypt(b"\0" * 12, b"secret", None)
    assert b"secret" not in sealed
    assert same.decrypt(sealed[:12], sealed[12:], None) == b"secret"
    with pytest.raises(InvalidTag):
        other.decrypt(sealed[:12], sealed[12:], None)


async def test_half_close_and_close_follow_the_socket_contract(make):
    a, b = await pair(make)
    listener = await b.listen("x")
    session = await a.dial("x")
    accepted = await listener.accept(timeout=5)

    await session.send(Message({}, b"last"))
    await session.close_send()
    assert (await accepted.recv(timeout=5)).body == b"last"
    with pytest.raises(ConnectionClosed):
        await accepted.recv(timeout=5)
    with pytest.raises(ConnectionClosed):
        await session.send(Message({}, b"too late"))
    await accepted.send(Message({}, b"still talking"))  # the other direction is open
    assert (await session.recv(timeout=5)).body == b"still talking"

    await accepted.close()
    with pytest.raises(ConnectionClosed):
        await session.recv(timeout=5)
    await session.close()
    await eventually(lambda: a.links()[0].sessions == 0 and b.links()[0].sessions == 0, "sessions to be released")


async def test_recv_times_out_and_bad_messages_are_refused(make):
    a, b = await pair(make)
    listener = await b.listen("x")
    session = await a.dial("x")
    await listener.accept(timeout=5)
    with pytest.raises(Timeout):
        await session.recv(timeout=0.05)
    with pytest.raises(BadRequest):
        await session.send(Message({"k": 1}, b""))  # type: ignore[dict-item]
    with pytest.raises(BadRequest):
        await session.send(Message({}, "text"))  # type: ignore[arg-type]


async def test_many_sessions_are_multiplexed_over_one_link(make):
    a, b = await pair(make)
    listener = await b.listen("echo")

    serving: set[asyncio.Task[None]] = set()

    async def echo() -> None:
        async for session in listener:
            serving.add(asyncio.create_task(serve(session)))

    async def serve(session) -> None:
        try:
            while True:
                message = await session.recv()
                await session.send(Message(message.header, message.body.upper()))
        except ConnectionClosed:
            await session.close()

    server = asyncio.create_task(echo())

    async def client(i: int) -> list[bytes]:
        session = await a.dial("echo")
        replies = []
        for j in range(5):
            await session.send(Message({"i": str(i)}, f"s{i}m{j}".encode()))
            replies.append((await session.recv(timeout=5)).body)
        await session.close()
        return replies

    results = await asyncio.gather(*(client(i) for i in range(20)))
    assert results == [[f"S{i}M{j}".encode() for j in range(5)] for i in range(20)]
    assert len(a.links()) == 1
    await listener.close()
    await asyncio.wait_for(server, 5)
    await asyncio.wait_for(asyncio.gather(*serving), 5)


async def test_a_frame_that_does_not_decrypt_ends_the_session_not_the_link(make):
    a, b = await pair(make)
    listener = await b.listen("x")
    session = await a.dial("x")
    accepted = await listener.accept(timeout=5)
    (link,) = a._links.values()
    await link.send("data", {"Micro-Tunnel-Session": session.id}, b"\x00" * 40)  # forged ciphertext
    with pytest.raises(ConnectionClosed):
        await accepted.recv(timeout=5)
    with pytest.raises(ConnectionClosed):
        await session.recv(timeout=5)
    other = await a.dial("x")
    await other.send(Message({}, b"fine"))
    assert (await (await listener.accept(timeout=5)).recv(timeout=5)).body == b"fine"


async def test_dial_errors(make):
    a, b = await pair(make)
    with pytest.raises(NoneAvailable, match="nobody"):
        await a.dial("nobody", timeout=0.1)
    with pytest.raises(NotFound, match="does not listen"):
        await a.dial("nobody", link="b")
    with pytest.raises(NotFound, match="no link"):
        await a.dial("x", link="zzz")
    with pytest.raises(BadRequest):
        await a.dial("a,b")
    with pytest.raises(BadRequest):
        await b.listen("")
    await b.listen("x")
    with pytest.raises(Conflict):
        await b.listen("x")


async def test_closing_a_listener_withdraws_the_channel(make):
    a, b = await pair(make)
    listener = await b.listen("x")
    await eventually(lambda: any("x" in link.channels for link in a.links()), "the announcement")
    pending = asyncio.create_task(listener.accept())
    await asyncio.sleep(0)
    await listener.close()
    with pytest.raises(ConnectionClosed):
        await pending
    await eventually(lambda: all("x" not in link.channels for link in a.links()), "the withdrawal")
    with pytest.raises(NoneAvailable):
        await a.dial("x", timeout=0.1)
    again = await b.listen("x")  # the name is free again
    assert again.channel == "x"


async def test_dial_waits_for_the_channel_to_be_announced(make):
    a, b = await pair(make)
    dialling = asyncio.create_task(a.dial("late", timeout=5))
    await asyncio.sleep(0.05)
    listener = await b.listen("late")
    session = await dialling
    assert (await listener.accept(timeout=5)).id == session.id


async def test_losing_the_link_fails_its_sessions(make):
    a, b = await pair(make)
    listener = await b.listen("x")
    session = await a.dial("x")
    await listener.accept(timeout=5)
    await b.close()
    with pytest.raises(ConnectionClosed):
        await session.recv(timeout=5)
    await eventually(lambda: a.links() == [], "A to drop the link")
    with pytest.raises(ConnectionClosed):
        await listener.accept()


async def test_unreachable_nodes_are_linked_when_they_appear(make):
    probe = make(id="probe")
    await probe.connect()
    address = probe.address  # a free address: take it, then give it back
    await probe.close()
    await probe.transport.close()

    a = make(id="a", nodes=(address,), reconnect=0.05)
    await a.connect()  # no error: it keeps trying
    assert a.links() == []
    b = make(id="b", address=address)
    await b.connect()
    await eventually(lambda: [link.node for link in a.links()] == ["b"], "the relink")


async def test_close_is_idempotent_and_dial_after_close_fails(make):
    a, _ = await pair(make)
    await a.close()
    await a.close()
    with pytest.raises(ConnectionClosed):
        await a.dial("x")
    assert isinstance(a, Tunnel)
