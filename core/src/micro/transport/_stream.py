"""What the tcp and memory transports share: a queue-backed socket, address parsing, header checks."""

from __future__ import annotations

import abc
import asyncio
import ipaddress
import logging
from collections import deque
from collections.abc import Awaitable, Mapping
from typing import Final

from ..errors import BadRequest, ConnectionClosed, Timeout
from .base import Handler, Message, Socket

__all__ = ["StreamSocket", "check_header", "format_address", "held_size", "run_handler", "split_address"]

logger = logging.getLogger("micro.transport")

#: Why recv/send stop, in the words the errors use.
ENDED: Final = "the peer ended the stream"
RESET: Final = "the peer closed the stream"
CLOSED: Final = "the socket is closed"
SEND_CLOSED: Final = "the send side of the socket is closed"


#: What a held message costs beyond its bytes, for a transport's read-side flow control: its Python objects
#: (the message, its header dict) and, per header entry, the two strings and the dict slot. Measured with
#: tracemalloc: a decoded message with a 5-entry header (131 bytes encoded) and a 1-byte body holds ~550 bytes;
#: a header of many tiny entries holds ~20 times its encoded size.
_MESSAGE_COST: Final = 256
_ENTRY_COST: Final = 128


def held_size(message: Message) -> int:
    """What ``message`` counts for against a transport's limit of unread bytes: not its body alone.

    Counting only the body let a stream of small (or empty-bodied) messages fill memory before reading
    stopped: 8 MiB of 1-byte bodies is millions of messages of ~550 bytes each.
    """
    header = message.header
    size = len(message.body) + _MESSAGE_COST
    if header:
        size += _ENTRY_COST * len(header) + sum(map(len, header)) + sum(map(len, header.values()))
    return size


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"``, ``"[::1]:port"`` or ``":port"`` as ``(host, port)``; :class:`BadRequest` otherwise."""
    if not isinstance(address, str):
        raise BadRequest(f"address must be a str, not {type(address).__name__}")
    host, sep, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        sep = ""  # an IPv6 literal without brackets is ambiguous
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise BadRequest(f"invalid address {address!r}: expected host:port, [ipv6]:port or :port")
    return host, int(port_text)


def format_address(sockname: object) -> str:
    """``"host:port"`` (``"[v6]:port"``) for a socket address tuple as ``getsockname`` returns it."""
    if isinstance(sockname, tuple) and len(sockname) >= 2:
        host, port = str(sockname[0]), sockname[1]
        try:
            if ipaddress.ip_address(host.partition("%")[0]).version == 6:
                return f"[{host}]:{port}"
        except ValueError:
            pass
        return f"{host}:{port}"
    return str(sockname)


def check_header(header: Mapping[str, str]) -> dict[str, str]:
    """``header`` as a plain dict after checking it is ``str -> str``; :class:`BadRequest` naming the bad entry."""
    for key, value in header.items():
        if (type(key) is not str or type(value) is not str) and not (isinstance(key, str) and isinstance(value, str)):
            raise BadRequest(
                f"message header must map str to str; got {type(key).__name__} {key!r} -> "
                f"{type(value).__name__} {value!r:.40}"
            )
    return header if type(header) is dict else dict(header)


def _expire(waiter: asyncio.Future[None], timeout: float) -> None:
    if not waiter.done():
        waiter.set_exception(Timeout(f"no message received within {timeout:g}s"))


class StreamSocket(Socket, abc.ABC):
    """A socket whose incoming messages are queued by its transport.

    The transport calls :meth:`_deliver` for each message, and :meth:`_end`,
    :meth:`_reset` or :meth:`_fail` when the peer half-closes, closes, or the
    connection goes. Subclasses send through :meth:`_write` and tell the peer
    about a close through :meth:`_finish`.
    """

    def __init__(self, local: str, remote: str) -> None:
        self._local = local
        self._remote = remote
        self._inbox: deque[Message] = deque()
        self._waiters: list[asyncio.Future[None]] = []
        #: Why recv stops once the inbox is empty; ``None`` while the peer may still send.
        self._eof: str | None = None
        #: Why send is refused; ``None`` while sending is allowed.
        self._send_closed: str | None = None
        #: We sent our end (END or RESET), so no frame of ours follows.
        self._local_done = False
        #: The peer sent its end, or the connection is gone, so no frame of theirs follows.
        self._remote_done = False
        self._closed = False
        self._released = False

    @property
    def local(self) -> str:
        return self._local

    @property
    def remote(self) -> str:
        return self._remote

    # -- what subclasses provide -----------------------------------------------------------------

    @abc.abstractmethod
    async def _write(self, message: Message | None, end: bool) -> None:
        """Send ``message`` (if any), then the end of our side if ``end``; raises like :meth:`send`."""

    @abc.abstractmethod
    def _finish(self, reset: bool) -> None:
        """Tell the peer, without waiting, that this side is done: closed (``reset``) or just ended."""

    def _release(self) -> None:
        """Forget the stream: no frame for it can arrive any more. Called once."""

    def _before_recv(self) -> Awaitable[None] | None:
        """Called when :meth:`recv` is about to wait (the tcp socket opens its stream here).

        Returns something to await first when that cannot be done at once (no stream free on the
        connection); :meth:`recv`'s ``timeout`` covers that wait too.
        """
        return None

    def _consumed(self, message: Message) -> None:
        """Called for each message :meth:`recv` hands out, for flow control."""

    # -- called by the transport -----------------------------------------------------------------

    def _deliver(self, message: Message) -> None:
        if self._closed:
            return
        self._inbox.append(message)
        if self._waiters:
            self._wake()

    def _end(self, reason: str = ENDED) -> None:
        if self._eof is None:
            self._eof = reason
        self._remote_done = True
        self._wake()
        self._check_done()

    def _reset(self, reason: str = RESET) -> None:
        """The peer closed the stream: it drops whatever we send, so our side is done too."""
        if self._send_closed is None:
            self._send_closed = reason
        self._local_done = True
        self._end(reason)

    def _fail(self, reason: str) -> None:
        """The connection is gone: both directions end now, nothing is sent any more."""
        self._reset(reason)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _check_done(self) -> None:
        if self._local_done and self._remote_done and not self._released:
            self._released = True
            self._release()

    # -- the Socket interface --------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        if self._send_closed is not None:
            raise ConnectionClosed(self._send_closed)
        await self._write(message, False)

    async def send_last(self, message: Message) -> None:
        # One _write for the message and the end (one MSG|END frame on tcp) instead of a send and a close_send.
        if self._send_closed is not None:
            raise ConnectionClosed(self._send_closed)
        await self._write(message, True)
        if self._send_closed is None:
            self._send_closed = SEND_CLOSED
        self._local_done = True
        self._check_done()

    async def recv(self, *, timeout: float | None = None) -> Message:
        inbox = self._inbox
        if inbox:
            message = inbox.popleft()
            self._consumed(message)
            return message
        if self._eof is not None:
            raise ConnectionClosed(self._eof)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        pending = self._before_recv()
        if pending is not None:
            if deadline is None:
                await pending
            else:
                try:
                    async with asyncio.timeout_at(deadline):
                        await pending
                except TimeoutError:
                    raise Timeout(f"no message received within {timeout:g}s") from None
        while not inbox:
            if self._eof is not None:
                raise ConnectionClosed(self._eof)
            waiter = loop.create_future()
            self._waiters.append(waiter)
            handle = None
            if deadline is not None:
                assert timeout is not None
                handle = loop.call_at(deadline, _expire, waiter, timeout)
            try:
                await waiter
            finally:
                if handle is not None:
                    handle.cancel()
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        message = inbox.popleft()
        self._consumed(message)
        return message

    async def close_send(self) -> None:
        if self._send_closed is not None:
            return
        self._send_closed = SEND_CLOSED
        self._local_done = True
        try:
            await self._write(None, True)
        except ConnectionClosed:
            pass  # the connection is gone: the peer learns the stream ended anyway
        self._check_done()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._eof is None:
            self._eof = CLOSED
        if self._send_closed is None:
            self._send_closed = CLOSED
        while self._inbox:
            self._consumed(self._inbox.popleft())
        self._wake()
        if not self._remote_done:
            self._finish(reset=True)
        elif not self._local_done:
            self._finish(reset=False)
        self._local_done = self._remote_done = True
        self._check_done()


async def run_handler(handler: Handler, socket: Socket) -> None:
    """Run ``handler`` for ``socket``, log what it raises, and close the socket whatever happens."""
    try:
        await handler(socket)
    except Exception:
        logger.exception("transport handler failed for %r", socket)
    finally:
        await socket.close()
