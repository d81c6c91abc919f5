"""The tunnel interface: named channels multiplexed over links between nodes (Go Micro ``tunnel``).

A :class:`Tunnel` links to other tunnels over a transport and carries many
*sessions* over each link. A session belongs to a *channel*, a name both
ends agree on: one node calls :meth:`Tunnel.listen` on a channel and accepts
sessions, another calls :meth:`Tunnel.dial` with that channel and gets a
session to a node that listens on it. A :class:`Session` is a transport
:class:`~micro.transport.base.Socket`, with the same ordering, half-close and
error rules, so anything written for a transport socket works over a tunnel.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import ClassVar, Literal, Self

from ..component import Component
from ..errors import ConnectionClosed
from ..transport.base import Socket
from .options import TunnelOptions

__all__ = ["MODES", "Link", "LinkLost", "Mode", "Session", "Tunnel", "TunnelListener"]

#: How a session reaches listeners (Go Micro's ``tunnel.Mode``):
#:
#: ``unicast``
#:     one peer that listens on the channel; a two-way conversation.
#: ``multicast``
#:     every peer that announced a listener on the channel, as each message is sent; one-way, dialler to listeners.
#: ``broadcast``
#:     every linked peer, announced or not (a peer delivers it to its listener on the channel, or drops it);
#:     one-way, dialler to listeners.
Mode = Literal["unicast", "multicast", "broadcast"]
MODES: tuple[Mode, ...] = ("unicast", "multicast", "broadcast")


class LinkLost(ConnectionClosed):
    """The link under a session died (its socket closed, or no frame within ``link_timeout``).

    Raised by a session's ``send`` and ``recv`` once its link is gone; dial again for a new session,
    which uses another link or the same peer once it is re-linked.
    """


@dataclass(frozen=True, slots=True)
class Link:
    """A snapshot of one authenticated link to a peer tunnel."""

    #: This link's id (unique within the tunnel).
    id: str
    #: The peer tunnel's id.
    node: str
    #: The peer's transport address.
    remote: str
    #: Whether this tunnel dialled the link (else the peer did).
    outbound: bool
    #: Whether session payloads on it are encrypted.
    encrypted: bool
    #: The channels the peer listens on, as it last announced them.
    channels: frozenset[str]
    #: Sessions open on the link.
    sessions: int
    #: The last keepalive round trip, in seconds (smoothed); ``None`` until the first pong.
    delay: float | None = None
    #: Bytes per second carried both ways, averaged over the last keepalive intervals.
    rate: float = 0.0


class Session(Socket, abc.ABC):
    """One conversation on a channel, over one link: a transport socket with an id."""

    @property
    @abc.abstractmethod
    def id(self) -> str:
        """The session id, the same at both ends."""

    @property
    @abc.abstractmethod
    def channel(self) -> str:
        """The channel it was dialled on."""

    @property
    @abc.abstractmethod
    def link(self) -> str:
        """The id of the link that carries it (``""`` for the dialler's side of a multicast or broadcast)."""

    @property
    def mode(self) -> Mode:
        """How it was dialled. Multicast and broadcast sessions are one-way: the dialler's side cannot
        ``recv`` and a listener's side cannot ``send`` (both raise :class:`~micro.errors.NotSupported`)."""
        return "unicast"


class TunnelListener(abc.ABC):
    """Sessions dialled to one channel of this tunnel, in the order they were opened.

    ``async for session in listener`` accepts until the listener is closed.
    """

    @property
    @abc.abstractmethod
    def channel(self) -> str:
        """The channel listened on."""

    @abc.abstractmethod
    async def accept(self, *, timeout: float | None = None) -> Session:
        """The next session a peer opened.

        Raises :class:`~micro.errors.ConnectionClosed` once the listener (or
        the tunnel) is closed, and :class:`~micro.errors.Timeout` when none
        comes within ``timeout`` seconds.
        """

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop accepting: peers are told the channel is gone, and dials to it are refused.

        Sessions already accepted stay open. Idempotent.
        """

    def __aiter__(self) -> AsyncIterator[Session]:
        return self._sessions()

    async def _sessions(self) -> AsyncIterator[Session]:
        from ..errors import ConnectionClosed

        while True:
            try:
                yield await self.accept()
            except ConnectionClosed:
                return

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class Tunnel(Component, abc.ABC):
    """Links to peers and carries sessions on named channels over them.

    :meth:`connect` (also :meth:`start`) listens for links and links to the
    configured nodes; :meth:`close` ends every link, listener and session.
    Both are idempotent.
    """

    options: TunnelOptions
    interface: ClassVar[str] = "tunnel"
    options_type: ClassVar[type[TunnelOptions]] = TunnelOptions

    @property
    @abc.abstractmethod
    def id(self) -> str:
        """This node's id, as peers see it."""

    @property
    @abc.abstractmethod
    def address(self) -> str:
        """Where this tunnel accepts links (the bound address once connected)."""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Accept links at :attr:`address` and link to every configured node.

        Nodes that cannot be reached are retried in the background.

        :raises ~micro.errors.Unauthorized: a node's tunnel does not share our token.
        :raises ~micro.errors.Unavailable: the address cannot be bound.
        """

    async def start(self) -> None:
        await self.connect()

    @abc.abstractmethod
    def links(self) -> list[Link]:
        """The links that are up now."""

    def reachable(self, channel: str) -> bool:
        """Whether a unicast :meth:`dial` of ``channel`` would find a listener now (here or on a linked peer)."""
        return any(channel in link.channels for link in self.links())

    @abc.abstractmethod
    async def dial(
        self, channel: str, *, link: str | None = None, timeout: float | None = None, mode: Mode = "unicast"
    ) -> Session:
        """A session on ``channel`` to a peer that listens on it (``mode="unicast"``, the default).

        With ``mode="multicast"`` or ``"broadcast"`` (see :data:`Mode`) it returns at once: each message sent
        goes to every peer listening on the channel at that moment (multicast), or to every linked peer
        (broadcast); a message nobody listens for is dropped. ``link`` and ``timeout`` apply to unicast only.

        A channel this tunnel listens on itself is served locally (loopback), without a link.

        :param link: use this link (an id from :meth:`links`, or the peer's node id)
            instead of any link whose peer announced ``channel``.
        :param timeout: seconds to find a peer and have it accept (``options.dial_timeout`` by default).
        :raises ~micro.errors.NoneAvailable: no linked peer listens on ``channel`` in time.
        :raises ~micro.errors.NotFound: the chosen link is unknown, or its peer refused (no listener there).
        :raises ~micro.errors.Timeout: the peer did not answer in time.
        :raises ~micro.errors.BadRequest: an empty channel name or one with a comma, or an unknown mode.
        """

    @abc.abstractmethod
    async def listen(self, channel: str) -> TunnelListener:
        """Accept sessions that peers dial on ``channel``, and announce it to them.

        :raises ~micro.errors.Conflict: this tunnel already listens on ``channel``.
        :raises ~micro.errors.BadRequest: an empty channel name or one with a comma.
        """
