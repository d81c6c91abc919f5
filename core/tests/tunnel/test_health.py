"""Keepalives and link health, with the peer tunnel in another process and a proxy that cuts the link."""

import asyncio
import time

import pytest
from micro.errors import InvalidOption
from micro.transport.base import Message
from micro.tunnel import LinkLost
from micro.tunnel.mucp import MUCPTunnel
from micro.tunnel.options import TunnelOptions

from .conftest import until

# Short times so the test is quick; the bound below is what docs/tunnel.md states (link_timeout + keepalive),
# plus slack for a loaded machine.
FAST = {"keepalive": 0.2, "link_timeout": 1.0, "reconnect": 0.1, "reconnect_max": 0.5, "token": "t0ken"}
STATED = FAST["keepalive"] + FAST["link_timeout"]
SLACK = 5.0


async def linked(spawn, proxy):
    peer = await spawn({"options": FAST, "echo": ["echo"]})
    hop = await proxy(peer.address)
    tunnel = MUCPTunnel(TunnelOptions(nodes=(hop.address,), **FAST))
    await tunnel.connect()
    return peer, hop, tunnel


async def roundtrip(tunnel: MUCPTunnel, text: str) -> None:
    session = await tunnel.dial("echo", timeout=10)
    await session.send(Message({}, text.encode()))
    assert (await session.recv(timeout=10)).body == text.encode()
    await session.close()


@pytest.mark.parametrize("how", ["cut", "blackhole"])
async def test_a_dead_link_fails_its_sessions_with_link_lost_then_relinks(spawn, proxy, how):
    _peer, hop, tunnel = await linked(spawn, proxy)
    try:
        session = await tunnel.dial("echo", timeout=10)
        for n in range(5):  # mid-stream
            await session.send(Message({"n": str(n)}, b"x"))
            assert (await session.recv(timeout=10)).header["n"] == str(n)
        receiving = asyncio.ensure_future(session.recv())
        started = time.monotonic()
        getattr(hop, how)()
        with pytest.raises(LinkLost, match="link"):
            await asyncio.wait_for(receiving, STATED + SLACK)
        assert time.monotonic() - started < STATED + SLACK
        with pytest.raises(LinkLost):
            await session.send(Message({}, b"late"))

        # The node that dialled re-links on its own; a new session works without a restart.
        await until(lambda: hop.connections >= 2 and bool(tunnel.links()), "the tunnel to re-link", STATED + 15)
        await roundtrip(tunnel, "after")
    finally:
        await tunnel.close()


async def test_links_report_delay_and_rate(spawn, proxy):
    peer, _hop, tunnel = await linked(spawn, proxy)
    try:
        await until(lambda: bool(tunnel.links()), "a link")
        for n in range(20):
            await roundtrip(tunnel, "x" * 1000 + str(n))
        await until(lambda: tunnel.links()[0].delay is not None, "a keepalive round trip")
        await until(lambda: tunnel.links()[0].rate > 0, "a rate sample")
        link = tunnel.links()[0]
        assert link.delay is not None
        assert 0 <= link.delay < 10
        assert link.node == peer.id
    finally:
        await tunnel.close()


def test_health_options_are_checked():
    with pytest.raises(InvalidOption, match="link_timeout"):
        TunnelOptions(keepalive=5, link_timeout=5)
    with pytest.raises(InvalidOption, match="reconnect_max"):
        TunnelOptions(reconnect=10, reconnect_max=1)
    with pytest.raises(InvalidOption, match="keepalive"):
        TunnelOptions(keepalive=0)
