"""The transport interface: point-to-point, message-oriented streams (Go Micro ``transport/transport.go``).

A :class:`Transport` dials an address and gets a :class:`Socket`, or listens
on one and runs a handler for every socket a peer opens. A socket carries
:class:`Message` values, each a header and a body, in both directions, in
order, until each side half-closes. In Go Micro a client socket is a
connection; here it is a *stream*: the tcp transport multiplexes every socket
dialled to one address over one connection, so dialling per call is cheap.

The rules every transport follows, and the conformance suite checks:

* **Order and integrity.** Messages arrive whole, in the order sent, headers
  and body unchanged (header keys keep their case; treat them
  case-insensitively, as Go Micro's HTTP transport canonicalises them).
* **Size.** A message larger than ``max_message_size`` (header and body
  encoded) is refused by :meth:`Socket.send` with
  :class:`~micro.errors.MessageTooLarge` before anything is sent; the socket
  stays usable.
* **End of stream.** After the peer half-closes (:meth:`Socket.close_send`) or
  closes, :meth:`Socket.recv` returns what was already sent and then raises
  :class:`~micro.errors.ConnectionClosed`, every time it is called.
* **Failure.** A lost connection fails every socket on it with
  :class:`~micro.errors.ConnectionClosed`; nothing waits forever. Dialling an
  address nobody listens on raises :class:`~micro.errors.Unavailable`
  promptly; a dial or receive that exceeds its timeout raises
  :class:`~micro.errors.Timeout`. No ``OSError`` escapes.
* **Idempotence.** :meth:`Socket.close`, :meth:`Listener.close` and
  :meth:`Transport.close` may be called any number of times.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Self

from ..component import Component
from .options import TransportOptions

__all__ = ["Handler", "Listener", "Message", "Socket", "Transport"]


@dataclass(slots=True)
class Message:
    """One transport message (Go Micro ``transport.Message``): string headers and an opaque body."""

    header: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class Socket(abc.ABC):
    """One stream between two peers, full duplex.

    Several tasks may call :meth:`send` concurrently (messages are not
    interleaved) and :meth:`recv` concurrently (each message goes to one of
    them). Cancelling a :meth:`recv` loses no message.
    """

    @property
    @abc.abstractmethod
    def local(self) -> str:
        """This end's address, ``"host:port"``."""

    @property
    @abc.abstractmethod
    def remote(self) -> str:
        """The peer's address, ``"host:port"``."""

    @abc.abstractmethod
    async def send(self, message: Message) -> None:
        """Queue ``message`` for the peer, waiting only while the connection is congested.

        Raises :class:`~micro.errors.MessageTooLarge` (nothing sent, the socket
        stays usable), :class:`~micro.errors.BadRequest` for a header that is
        not ``str -> str``, and :class:`~micro.errors.ConnectionClosed` after
        :meth:`close_send` or :meth:`close`, after the peer closed the socket,
        or when the connection is lost.
        """

    @abc.abstractmethod
    async def recv(self, *, timeout: float | None = None) -> Message:
        """The next message from the peer.

        Raises :class:`~micro.errors.ConnectionClosed` once the peer has
        half-closed or closed and every message it sent has been returned,
        when this socket is closed (which also wakes a pending ``recv``), or
        when the connection is lost; :class:`~micro.errors.Timeout` when no
        message arrives within ``timeout`` seconds (the socket stays usable).
        """

    @abc.abstractmethod
    async def close_send(self) -> None:
        """Half-close: tell the peer that nothing more will be sent; receiving goes on.

        The peer's :meth:`recv` raises :class:`~micro.errors.ConnectionClosed`
        after the last message. Idempotent; does nothing after :meth:`close`.
        """

    async def send_last(self, message: Message) -> None:
        """:meth:`send` then :meth:`close_send`: ``message`` is the last one this side sends.

        Raises as :meth:`send` does (after :class:`~micro.errors.MessageTooLarge`
        nothing was sent and the socket is not half-closed). Transports override
        it to send both in one step (the tcp transport writes one frame); this
        default is the two calls.
        """
        await self.send(message)
        await self.close_send()

    @abc.abstractmethod
    async def close(self) -> None:
        """Close both directions and release the stream. Idempotent; never raises.

        Messages already sent are still delivered; the peer's ``recv`` then
        raises :class:`~micro.errors.ConnectionClosed` and its ``send`` does
        too. Messages that arrive afterwards are dropped.
        """

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.local} -> {self.remote}>"


#: Runs once per socket a peer opens; the transport closes the socket when it returns.
Handler = Callable[[Socket], Awaitable[None]]


class Listener(abc.ABC):
    """Accepts sockets on one address and runs the handler for each, as its own task.

    An exception from the handler is logged (logger ``micro.transport``) and
    only ends that socket; it never stops the listener.
    """

    @property
    @abc.abstractmethod
    def address(self) -> str:
        """The bound address, ``"host:port"``, with the real port when listening on port 0."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop accepting sockets and free the address. Idempotent.

        Sockets already accepted are not interrupted: their handlers run to the
        end, and each connection closes once its last socket has. Use
        :meth:`Transport.close` to cut everything.
        """

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address}>"


class Transport(Component, abc.ABC):
    """Dials and listens; one instance serves any number of both.

    :meth:`Component.close` closes every listener and every connection the
    transport made, failing their sockets with
    :class:`~micro.errors.ConnectionClosed` and cancelling running handlers.

    The lifecycle is :class:`~micro.component.Component`'s one rule: a transport
    starts on first use (:attr:`starts_on_use`, as Go Micro's transports need no
    ``Connect``); after :meth:`close`, :meth:`dial` and :meth:`listen` raise
    :class:`~micro.errors.ConnectionClosed` until :meth:`start` is called again.
    The public methods apply the rule, then call the hooks a transport implements:
    ``_dial(address, timeout)``, ``_listen(address, handler)``, and ``_start``/``_close``;
    ``_exchange(address, message, timeout)`` (:meth:`exchange`) has a default on sockets.
    """

    interface: ClassVar[str] = "transport"
    options_type: ClassVar[type[TransportOptions]] = TransportOptions
    options: TransportOptions

    #: Optional behaviours this implementation has:
    #:
    #: ``"tls"``: with ``options.tls`` set, every connection is TLS, as
    #: :class:`~micro.transport.TransportOptions` describes.
    capabilities: ClassVar[frozenset[str]] = frozenset()

    starts_on_use: ClassVar[bool] = True

    def __init__(self, options: TransportOptions | None = None) -> None:
        super().__init__(options)

    def dial(self, address: str, *, timeout: float | None = None) -> Coroutine[Any, Any, Socket]:
        """A new socket to the listener at ``address`` (``"host:port"``).

        ``timeout`` bounds connecting (``options.dial_timeout`` when ``None``);
        a transport that multiplexes reuses an open connection and returns at
        once. Raises :class:`~micro.errors.Unavailable` when nothing accepts
        at ``address``, :class:`~micro.errors.Timeout` when connecting takes
        longer than ``timeout``, :class:`~micro.errors.BadRequest` for an
        address that is not ``host:port``.
        """
        # Not async: a started transport hands back the hook's coroutine itself, so a dial (once per
        # call on the client's hot path) costs no extra coroutine for the lifecycle check.
        if self._component_state != "started":
            return self._dial_opening(address, timeout)
        return self._dial(address, timeout)

    async def _dial_opening(self, address: str, timeout: float | None) -> Socket:
        await self._open_for_use()
        return await self._dial(address, timeout)

    def exchange(self, address: str, message: Message, *, timeout: float | None = None) -> Coroutine[Any, Any, Message]:
        """One request and its reply: ``message`` as the last (and only) message of a new socket to ``address``,
        and the first message the peer sends back on it.

        What :meth:`dial`, :meth:`Socket.send_last`, :meth:`Socket.recv` and :meth:`Socket.close` do one after
        the other (a client's unary call), and it raises as they would: what :meth:`dial` raises,
        :class:`~micro.errors.MessageTooLarge` before anything is sent, and
        :class:`~micro.errors.ConnectionClosed` when the peer ends or resets the socket without answering or
        the connection is lost. ``timeout`` bounds connecting, as for :meth:`dial`; the wait for the reply is
        the caller's to bound (cancel the call: the socket is then closed, as :meth:`Socket.close` would).
        Whatever the peer sends after its first message is dropped.
        """
        # Not async, as dial: a started transport hands back the hook's coroutine (once per unary call).
        if self._component_state != "started":
            return self._exchange_opening(address, message, timeout)
        return self._exchange(address, message, timeout)

    async def _exchange_opening(self, address: str, message: Message, timeout: float | None) -> Message:
        await self._open_for_use()
        return await self._exchange(address, message, timeout)

    async def _exchange(self, address: str, message: Message, timeout: float | None) -> Message:
        """Hook of :meth:`exchange`, on a started transport. This default runs the steps on a socket; a
        transport with a cheaper path for one request and its reply overrides it (tcp: one frame each way,
        no socket object)."""
        socket = await self.dial(address, timeout=timeout)
        try:
            await socket.send_last(message)
            return await socket.recv()
        finally:
            await socket.close()

    async def listen(self, address: str | None, handler: Handler) -> Listener:
        """Accept sockets at ``address`` (``options.address`` when ``None``) and run ``handler`` for each.

        Port 0 picks a free port: read it from :attr:`Listener.address`.
        Raises :class:`~micro.errors.Unavailable` when the address cannot be
        bound (in use, not local), :class:`~micro.errors.BadRequest` for an
        address that is not ``host:port``, and
        :class:`~micro.errors.InvalidOption` for unusable TLS settings.
        """
        if self._component_state != "started":
            await self._open_for_use()
        return await self._listen(address, handler)

    # Not abstract, so that a transport written before the hooks (overriding dial and listen) still builds.
    async def _dial(self, address: str, timeout: float | None) -> Socket:
        """Hook of :meth:`dial`, on a started transport: ``timeout`` as given (``None``: the option)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither _dial nor dial")

    async def _listen(self, address: str | None, handler: Handler) -> Listener:
        """Hook of :meth:`listen`, on a started transport: ``address`` as given (``None``: the option)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither _listen nor listen")
