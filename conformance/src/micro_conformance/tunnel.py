"""The tunnel contract (:class:`micro.tunnel.Tunnel`): cases U01-U14.

Each case links instances of the implementation under test on loopback: one
made with no nodes accepts links, others are made with ``nodes`` set to its
address. Capabilities: ``encrypt`` (links can encrypt session payloads, and say
so in :attr:`~micro.tunnel.Link.encrypted`) and ``multicast`` (``dial`` takes
``mode="multicast"`` and ``"broadcast"``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from micro.errors import (
    BadRequest,
    Conflict,
    ConnectionClosed,
    NotFound,
    NotSupported,
    Timeout,
    Unauthorized,
    Unavailable,
)
from micro.transport import Message
from micro.tunnel import LinkLost, Session, Tunnel

from .base import Contract, requires

__all__ = ["TunnelContract"]


class TunnelContract(Contract[Tunnel]):
    """The behaviour every :class:`~micro.tunnel.Tunnel` shares; see :mod:`micro.tunnel.base`."""

    interface = "tunnel"
    known_capabilities = frozenset({"encrypt", "multicast"})
    #: Short keepalives, so that delay is measured and dead links are noticed within a case.
    options = {"address": "127.0.0.1:0", "keepalive": 0.2, "link_timeout": 2.0, "reconnect": 0.1}

    @pytest.fixture
    def tunnel(self, subject: Tunnel) -> Tunnel:
        return subject

    async def linked(self, hub: Tunnel, **options: Any) -> Tunnel:
        """Another instance that links to ``hub``, once the link is up at both ends."""
        other = await self.another(nodes=(hub.address,), **options)
        await self.eventually(
            lambda: bool(other.links()) and any(link.node == other.id for link in hub.links()), "a link"
        )
        return other

    async def announced(self, tunnel: Tunnel, channel: str, count: int = 1) -> None:
        await self.eventually(
            lambda: sum(channel in link.channels for link in tunnel.links()) >= count, f"{channel!r} announced"
        )

    async def session(self, tunnel: Tunnel, channel: str) -> Session:
        session = await tunnel.dial(channel, timeout=self.timeout)
        self.later(session.close)
        return session

    # -- links -----------------------------------------------------------------------------

    async def test_u01_connect_binds_a_real_address_and_close_repeats(self, tunnel: Tunnel) -> None:
        """After connect, address has a real port and links() is empty without nodes; connect and close repeat."""
        host, _, port = tunnel.address.rpartition(":")
        assert host and port.isdigit() and int(port) > 0, f"tunnel address {tunnel.address!r}"
        assert tunnel.links() == []
        await tunnel.connect()
        other = await self.make()
        await other.connect()
        await other.close()
        await other.close()

    async def test_u02_linked_tunnels_see_each_other(self, tunnel: Tunnel) -> None:
        """A tunnel with nodes links to them: both ends list the link with the other's id, one outbound."""
        other = await self.linked(tunnel)
        (mine,) = other.links()
        (theirs,) = [link for link in tunnel.links() if link.node == other.id]
        assert mine.node == tunnel.id
        assert (mine.outbound, theirs.outbound) == (True, False)
        assert mine.id and mine.remote

    async def test_u03_unicast_round_trip_both_ways(self, tunnel: Tunnel) -> None:
        """dial reaches the listener on the channel; both ends share the id; header and body arrive intact."""
        listener = await tunnel.listen(self.names("c"))
        self.later(listener.close)
        other = await self.linked(tunnel)
        await self.announced(other, listener.channel)
        session = await self.session(other, listener.channel)
        accepted = await listener.accept(timeout=self.timeout)
        self.later(accepted.close)
        assert (accepted.id, accepted.channel) == (session.id, listener.channel)
        sent = Message({"X-Unicode": "grüße", "empty": ""}, bytes(range(256)))
        await session.send(sent)
        got = await accepted.recv(timeout=self.timeout)
        assert (got.header, got.body) == (sent.header, sent.body)
        await accepted.send(Message({"reply": "1"}, b"back"))
        assert (await session.recv(timeout=self.timeout)).body == b"back"

    async def test_u04_dialling_a_channel_nobody_listens_on_fails(self, tunnel: Tunnel) -> None:
        """dial of a channel no linked peer listens on raises Unavailable (NoneAvailable) within its timeout."""
        other = await self.linked(tunnel)
        with pytest.raises(Unavailable):
            await other.dial(self.names("nobody"), timeout=0.5)

    async def test_u05_bad_channels_and_double_listen(self, tunnel: Tunnel) -> None:
        """An empty channel or one with a comma is BadRequest; listening twice on a channel is Conflict."""
        for channel in ("", "a,b"):
            with pytest.raises(BadRequest):
                await tunnel.listen(channel)
            with pytest.raises(BadRequest):
                await tunnel.dial(channel, timeout=0.5)
        listener = await tunnel.listen(self.names("c"))
        self.later(listener.close)
        with pytest.raises(Conflict):
            await tunnel.listen(listener.channel)

    async def test_u06_concurrent_sessions_stay_separate(self, tunnel: Tunnel) -> None:
        """Twenty sessions used at once over one link each get only their own replies."""
        listener = await tunnel.listen(self.names("echo"))
        self.later(listener.close)
        tasks: set[asyncio.Task[None]] = set()

        async def echo(session: Session) -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await session.send(await session.recv())

        async def serve() -> None:
            async for session in listener:
                tasks.add(asyncio.ensure_future(echo(session)))

        server = asyncio.ensure_future(serve())
        self.later(lambda: _cancel(server, *tasks))
        other = await self.linked(tunnel)
        await self.announced(other, listener.channel)

        async def talk(n: int) -> list[bytes]:
            session = await self.session(other, listener.channel)
            replies = []
            for i in range(10):
                await session.send(Message({"n": str(n)}, f"{n}:{i}".encode()))
                replies.append((await session.recv(timeout=self.timeout)).body)
            return replies

        results = await asyncio.gather(*(talk(n) for n in range(20)))
        for n, replies in enumerate(results):
            assert replies == [f"{n}:{i}".encode() for i in range(10)]

    async def test_u07_half_close_and_close(self, tunnel: Tunnel) -> None:
        """close_send ends the peer's stream after the last message and it can still reply; close ends both."""
        listener = await tunnel.listen(self.names("c"))
        self.later(listener.close)
        other = await self.linked(tunnel)
        await self.announced(other, listener.channel)
        session = await self.session(other, listener.channel)
        accepted = await listener.accept(timeout=self.timeout)
        await session.send(Message({}, b"last"))
        await session.close_send()
        assert (await accepted.recv(timeout=self.timeout)).body == b"last"
        with pytest.raises(ConnectionClosed):
            await accepted.recv(timeout=self.timeout)
        await accepted.send(Message({}, b"reply"))
        assert (await session.recv(timeout=self.timeout)).body == b"reply"
        await accepted.close()
        with pytest.raises(ConnectionClosed):
            await session.recv(timeout=self.timeout)

    async def test_u08_a_closed_listener_is_no_longer_dialled(self, tunnel: Tunnel) -> None:
        """After the listener closes, its channel is withdrawn: dial raises Unavailable or NotFound."""
        listener = await tunnel.listen(self.names("c"))
        other = await self.linked(tunnel)
        await self.announced(other, listener.channel)
        await listener.close()
        await listener.close()
        await self.eventually(
            lambda: not any(listener.channel in link.channels for link in other.links()), "a withdrawal"
        )
        with pytest.raises((Unavailable, NotFound)):
            await other.dial(listener.channel, timeout=0.5)

    async def test_u09_a_wrong_token_is_refused(self, tunnel: Tunnel) -> None:
        """A tunnel with another token cannot link: connect raises Unauthorized, and no link appears."""
        wrong = await self.make(nodes=(tunnel.address,), token=self.names("wrong-token"))
        with pytest.raises(Unauthorized):
            await wrong.connect()
        self.later(wrong.close)
        assert tunnel.links() == []

    async def test_u10_a_lost_link_fails_its_sessions_with_link_lost(self, tunnel: Tunnel) -> None:
        """When the peer goes, a session on its link raises LinkLost (a ConnectionClosed); re-linking serves again."""
        listener = await tunnel.listen(self.names("c"))
        self.later(listener.close)
        other = await self.linked(tunnel)
        await self.announced(other, listener.channel)
        session = await self.session(other, listener.channel)
        await listener.accept(timeout=self.timeout)
        await tunnel.close()
        with pytest.raises(LinkLost):
            await session.recv(timeout=self.timeout + 5)

    async def test_u11_links_report_delay(self, tunnel: Tunnel) -> None:
        """After a few keepalives a link reports its delay, a small non-negative number of seconds."""
        other = await self.linked(tunnel)
        await self.eventually(lambda: other.links()[0].delay is not None, "a measured delay")
        delay = other.links()[0].delay
        assert delay is not None
        assert 0 <= delay < self.timeout

    @requires("encrypt")
    async def test_u12_links_are_encrypted_when_asked(self, tunnel: Tunnel) -> None:
        """With encrypt on (the default), both ends report the link as encrypted."""
        other = await self.linked(tunnel, encrypt=True)
        assert all(link.encrypted for link in other.links())

    @requires("multicast")
    async def test_u13_multicast_reaches_every_listener_and_no_one_else(self, tunnel: Tunnel) -> None:
        """A multicast message reaches each linked peer listening on the channel, not the others; it is one-way."""
        channel = self.names("news")
        peers = [await self.linked(tunnel) for _ in range(3)]
        listeners = [await peer.listen(channel) for peer in peers[:2]]
        for listener in listeners:
            self.later(listener.close)
        other = await peers[2].listen(self.names("other"))
        self.later(other.close)
        await self.announced(tunnel, channel, 2)
        cast = await tunnel.dial(channel, mode="multicast")
        self.later(cast.close)
        await cast.send(Message({"k": "v"}, b"to all"))
        for listener in listeners:
            accepted = await listener.accept(timeout=self.timeout)
            assert accepted.mode == "multicast"
            got = await accepted.recv(timeout=self.timeout)
            assert (got.header, got.body) == ({"k": "v"}, b"to all")
            with pytest.raises(NotSupported):
                await accepted.send(Message({}, b"back"))
        with pytest.raises(NotSupported):
            await cast.recv(timeout=0.1)
        with pytest.raises(Timeout):  # nothing came for a peer that does not listen on the channel
            await other.accept(timeout=self.quiet_period)

    @requires("multicast")
    async def test_u14_broadcast_reaches_every_linked_listener(self, tunnel: Tunnel) -> None:
        """A broadcast message reaches the listener on the channel at every linked peer."""
        channel = self.names("all")
        peers = [await self.linked(tunnel) for _ in range(2)]
        listeners = [await peer.listen(channel) for peer in peers]
        for listener in listeners:
            self.later(listener.close)
        await self.announced(tunnel, channel, 2)
        cast = await tunnel.dial(channel, mode="broadcast")
        self.later(cast.close)
        await cast.send(Message({}, b"everyone"))
        for listener in listeners:
            accepted = await listener.accept(timeout=self.timeout)
            assert (await accepted.recv(timeout=self.timeout)).body == b"everyone"


async def _cancel(*tasks: asyncio.Future[Any]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
