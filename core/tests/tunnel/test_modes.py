"""Unicast, multicast and broadcast sessions, with peer tunnels in other processes."""

import asyncio

import micro
import pytest
from micro.errors import BadRequest, ConnectionClosed, NotFound, NotSupported
from micro.transport.base import Message, Transport
from micro.tunnel.mucp import MUCPTunnel
from micro.tunnel.options import TunnelOptions

from .conftest import Peer, until

TOKEN = {"token": "modes"}


async def lines(peer: Peer, count: int) -> list[tuple[str, str]]:
    got = []
    for _ in range(count):
        line = await peer.line(timeout=15)
        got.append((line["channel"], line["body"]))
    return got


async def test_100_concurrent_sessions_over_one_link_have_no_cross_talk(spawn):
    peer = await spawn({"options": TOKEN, "echo": ["echo"]})
    tunnel = MUCPTunnel(TunnelOptions(nodes=(peer.address,), **TOKEN))
    await tunnel.connect()
    try:
        await until(lambda: any("echo" in link.channels for link in tunnel.links()), "the echo channel")

        async def talk(n: int) -> None:
            session = await tunnel.dial("echo", timeout=30)
            for i in range(10):
                body = f"session {n} message {i}".encode()
                await session.send(Message({"n": str(n), "i": str(i)}, body))
                reply = await session.recv(timeout=30)
                assert (reply.header, reply.body) == ({"n": str(n), "i": str(i)}, body)
            await session.close()

        await asyncio.gather(*(talk(n) for n in range(100)))
        assert len(tunnel.links()) == 1  # all of them over the one link
    finally:
        await tunnel.close()


async def test_multicast_and_broadcast_reach_the_right_listeners(spawn):
    first = await spawn({"options": TOKEN, "record": ["news"]})
    second = await spawn({"options": TOKEN, "record": ["news"]})
    third = await spawn({"options": TOKEN, "record": ["other"]})
    peers = (first, second, third)
    tunnel = MUCPTunnel(TunnelOptions(nodes=tuple(p.address for p in peers), **TOKEN))
    await tunnel.connect()
    try:
        await until(
            lambda: (
                sorted(tuple(sorted(link.channels)) for link in tunnel.links()) == [("news",), ("news",), ("other",)]
            ),
            "every peer's announce",
        )
        multicast = await tunnel.dial("news", mode="multicast")
        await multicast.send(Message({}, b"m1"))
        await multicast.send(Message({}, b"m2"))
        broadcast = await tunnel.dial("other", mode="broadcast")
        await broadcast.send(Message({}, b"b-other"))
        news = await tunnel.dial("news", mode="broadcast")
        await news.send(Message({}, b"b-news"))
        for session in (multicast, broadcast, news):
            await session.close()

        # Per link, frames keep their order, so the listeners' first lines show exactly what reached them.
        for peer in (first, second):
            assert await lines(peer, 3) == [("news", "m1"), ("news", "m2"), ("news", "b-news")]
        assert await lines(third, 1) == [("other", "b-other")]

        # A unicast session reaches exactly one of the news listeners: the one its link leads to.
        unicast = await tunnel.dial("news", timeout=10)
        await unicast.send(Message({}, b"u"))
        node = next(link.node for link in tunnel.links() if link.id == unicast.link)
        chosen, other = (first, second) if node == first.id else (second, first)
        assert node == chosen.id
        assert await lines(chosen, 1) == [("news", "u")]
        after = await tunnel.dial("news", mode="multicast")
        await after.send(Message({}, b"after"))
        assert await lines(other, 1) == [("news", "after")]  # "u" never reached it
    finally:
        await tunnel.close()


@pytest.fixture
async def pair():
    made = []

    async def start(**options):
        transport = micro.create("transport", "memory", cls=Transport)
        tunnel = MUCPTunnel(TunnelOptions(address="127.0.0.1:0", **options), transport=transport)
        await tunnel.connect()
        made.append(tunnel)
        return tunnel

    b = await start(id="b")
    a = await start(id="a", nodes=(b.address,))
    yield a, b
    for tunnel in made:
        await tunnel.close()
        await tunnel.transport.close()


async def test_cast_sessions_are_one_way_and_end_at_the_listener(pair):
    a, b = pair
    listener = await b.listen("news")
    await until(lambda: any("news" in link.channels for link in a.links()), "the announce")
    session = await a.dial("news", mode="multicast")
    assert session.mode == "multicast"
    await session.send(Message({"k": "v"}, b"one"))
    accepted = await listener.accept(timeout=5)
    assert accepted.mode == "multicast"
    assert (await accepted.recv(timeout=5)).body == b"one"
    with pytest.raises(NotSupported, match="one-way"):
        await accepted.send(Message({}, b"back"))
    with pytest.raises(NotSupported, match="one-way"):
        await session.recv()
    await session.close()
    with pytest.raises(ConnectionClosed):
        await accepted.recv(timeout=5)
    with pytest.raises(BadRequest, match="mode"):
        await a.dial("news", mode="anycast")  # type: ignore[arg-type]


async def test_a_closed_cast_session_is_not_reopened_by_later_messages(pair):
    a, b = pair
    listener = await b.listen("news")
    await until(lambda: any("news" in link.channels for link in a.links()), "the announce")
    session = await a.dial("news", mode="broadcast")
    await session.send(Message({}, b"one"))
    accepted = await listener.accept(timeout=5)
    await accepted.close()
    await session.send(Message({}, b"two"))
    other = await a.dial("news", mode="broadcast")
    await other.send(Message({}, b"three"))
    fresh = await listener.accept(timeout=5)
    assert fresh.id == other.id
    assert (await fresh.recv(timeout=5)).body == b"three"


async def test_sessions_past_max_sessions_are_refused_naming_the_option():
    transport = micro.create("transport", "memory", cls=Transport)
    b = MUCPTunnel(TunnelOptions(id="b", address="127.0.0.1:0", max_sessions=2), transport=transport)
    await b.connect()
    a = MUCPTunnel(TunnelOptions(id="a", address="127.0.0.1:0", nodes=(b.address,)), transport=transport)
    await a.connect()
    try:
        listener = await b.listen("x")
        await until(lambda: any("x" in link.channels for link in a.links()), "the announce")
        held = [await a.dial("x", timeout=5) for _ in range(2)]
        with pytest.raises(NotFound, match="max_sessions"):
            await a.dial("x", timeout=5)
        cast = await a.dial("x", mode="multicast")
        await cast.send(Message({}, b"dropped"))
        await held[0].close()
        await until(lambda: b.links()[0].sessions < 2, "the close to arrive")
        assert (await a.dial("x", timeout=5)).channel == "x"  # room again
        assert listener.channel == "x"
    finally:
        await a.close()
        await b.close()
        await transport.close()
