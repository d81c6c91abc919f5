"""The default transport: length-prefixed frames over TCP (or TLS), many sockets per connection.

Every socket dialled to one address shares one connection, kept in a pool
and replaced when it dies; a socket is a *stream* on it, so a client can dial
per call without a handshake. The wire format (also in ``docs/transport.md``):

* The dialer first sends the 8-byte preface ``b"MICRO/1\\n"``.
* Then both sides send frames::

      size      u32  big-endian: the number of bytes after this field (9 + hsize + len(body))
      stream    u32  stream id; 0 is the connection itself
      flags     u8   OPEN 0x01, MSG 0x02, END 0x04, RESET 0x08, ERROR 0x10
      hsize     u32  length of the header
      header    msgpack map str -> str (absent when hsize is 0)
      body      the message body; for RESET and ERROR, a UTF-8 reason

* The dialer numbers its streams 1, 2, 3... in the order it opens them; the
  first frame of a stream has OPEN. MSG marks a frame that carries a message;
  END means the sender will send nothing more on the stream (half-close);
  RESET means the sender closed the stream and drops whatever comes next.
  Flags combine: a one-shot request is a single OPEN|MSG|END frame (an END
  written in the same loop turn as the stream's previous frame joins it).
* A frame whose size exceeds ``9 + max_message_size``, an unknown flag, a bad
  header, a bad preface or a frame for a stream that was never opened is a
  protocol error: the receiver sends ERROR on stream 0 with the reason and
  closes the connection; every socket on it fails with ConnectionClosed.
* Limits (``TransportOptions``; ``docs/transport.md`` has the details): a
  listener answers a connection beyond ``max_connections`` with ERROR and
  closes it; it answers an OPEN beyond ``max_streams`` open streams with a
  RESET whose reason names ``max_streams`` (a dialer waits for a free stream
  instead, so two peers with the same setting never meet that RESET); it
  resets a stream that carries no frame within ``first_message_timeout`` of its
  OPEN; it sends ERROR and closes a connection whose frame (or preface) is not
  complete ``read_timeout`` after its first byte, and one with no stream and no
  traffic for ``idle_timeout``.

Flow control is TCP's: a sender waits, before it queues a message, while the
transport's write buffer is over its high-water mark, so one connection holds
at most about one message more than that; a receiver stops reading the
connection while its sockets hold more than ``max(2 * max_message_size, 8 MiB)``
unread bytes, and reads it at most once per loop turn while they hold 1 MiB. A
listener also stops reading a connection while 4 of its streams wait to write, or
the replies they wait to write hold 1 MiB (the peer sends faster than it reads),
and one that starts a frame while its connections' incomplete frames hold
``max_partial_bytes`` (until they complete).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket as _socket
import ssl
import struct
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar, Final, Protocol, cast

import msgpack

from ..errors import BadRequest, ConnectionClosed, MessageTooLarge, Timeout, Unavailable
from ._ratelog import RateLimitedLog
from ._stream import (
    CLOSED,
    ENDED,
    SEND_CLOSED,
    StreamSocket,
    check_header,
    format_address,
    held_size,
    logger,
    run_handler,
    split_address,
)
from ._stream import RESET as RESET_REASON
from ._tls import client_context, server_context
from .base import Handler, Listener, Message, Socket, Transport
from .options import TransportOptions

__all__ = ["PREFACE", "TCPTransport"]

PREFACE: Final = b"MICRO/1\n"
_HEAD: Final = struct.Struct("!IIBI")
_SIZE: Final = struct.Struct("!I")
_FIXED: Final = 9  # stream id, flags and header size: the part of ``size`` that is not header or body
OPEN: Final = 0x01
MSG: Final = 0x02
END: Final = 0x04
RESET: Final = 0x08
ERROR: Final = 0x10
_KNOWN: Final = OPEN | MSG | END | RESET | ERROR
_ONE_SHOT: Final = OPEN | MSG | END  # a whole request in one frame: what every unary mucp call sends
_MAX_ID: Final = 0xFFFF_FFFF
_BIG: Final = 64 * 1024  # pending output that is flushed at once rather than at the end of the loop turn
# Frames pending in one loop turn that are sent without waiting for its end. With many calls in flight on one
# connection, sending the first replies while later ones are still being produced lets the peer start on them:
# the two processes then work in parallel instead of taking turns (about twice the calls per second with 64
# callers in benchmarks/rpc.py), for one extra write per this many frames.
_BATCH: Final = 8
# Streams of one accepted connection waiting to write before the listener stops reading that connection.
_WRITERS: Final = 4
# Or the messages they wait to write hold this many bytes (one megabyte reply), whichever comes first: a waiting
# writer's caller usually still holds its request, and what it made of it, too (64 concurrent 1 MB calls on
# uvloop: the server peaked at 57 MiB, against 63 MiB with 2 MiB here, the same calls/s within the noise).
_WAITING_BYTES: Final = 1024 * 1024
# Unread bytes over which a connection reads at most once per loop turn. uvloop (libuv) reads a readable socket
# up to 32 times in one turn, so without this one turn could deliver several megabyte messages, and start a
# handler for each, before any of them ran: they would all hold their request and reply at once.
_TURN: Final = 1024 * 1024
_CLOSE_GRACE: Final = 1.0
_LINGER: Final = 5.0  # seconds a closed connection may take to hand its last frames to the peer
_BACKLOG: Final = 100  # what asyncio.create_server uses
# accept() failing for want of file descriptors or memory: wait this long, doubling up to _BACKOFF_MAX, and retry.
_BACKOFF_MIN: Final = 0.05
_BACKOFF_MAX: Final = 1.0
_NO_RESOURCES: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class _TCPSocket(StreamSocket):
    """One stream. A dialled socket has id 0 until its first frame opens the stream."""

    def __init__(self, conn: _Connection, stream_id: int) -> None:
        super().__init__(conn.local, conn.remote)
        self._conn = conn
        self._id = stream_id

    async def _write(self, message: Message | None, end: bool) -> None:
        conn = self._conn
        flags = END if end else 0
        header = body = b""
        if message is not None:
            if message.header:
                header = conn._pack(check_header(message.header))
            body = message.body
            if type(body) is not bytes:
                if not isinstance(body, (bytes, bytearray, memoryview)):
                    raise BadRequest(f"message body must be bytes, not {type(body).__name__}")
                body = bytes(body)  # the frame may wait for the end of the loop turn: the caller may reuse a buffer
            size = len(header) + len(body)
            if size > conn._max:
                raise MessageTooLarge(f"message of {size} bytes exceeds max_message_size {conn._max}")
            flags |= MSG
        # Wait *before* queueing: while the transport is paused its buffer already holds more than the peer
        # takes, and queueing anyway piles every concurrent writer's message up in it. A bare END is not held
        # back: it is a few bytes, and joins the frame before it when written in the same turn.
        waited = False
        while True:
            if message is not None and conn._write_paused:
                await conn._drain(len(header) + len(body))
            elif self._id == 0 and conn._reason is None and len(conn._streams) >= conn._max_streams:
                await conn._wait_for_stream()
            else:
                break
            waited = True
        if waited and message is not None and self._send_closed is not None:
            raise ConnectionClosed(self._send_closed)
        if self._id == 0:
            self._id = conn._allocate(self)
            flags |= OPEN
        conn._write_frame(self._id, flags, header, body)

    def _before_recv(self) -> Awaitable[None] | None:
        if self._id == 0 and self._send_closed is None:
            conn = self._conn
            if conn._reason is None and len(conn._streams) >= conn._max_streams:
                return self._open_later()
            self._open_now()
        return None

    def _open_now(self) -> None:
        try:
            self._id = self._conn._allocate(self)
            self._conn._write_frame(self._id, OPEN, b"", b"")
        except ConnectionClosed as exc:
            self._fail(exc.detail)

    async def _open_later(self) -> None:
        conn = self._conn
        while self._id == 0 and self._send_closed is None:
            if conn._reason is not None or len(conn._streams) < conn._max_streams:
                self._open_now()
                return
            await conn._wait_for_stream()

    def _finish(self, reset: bool) -> None:
        if self._id == 0:
            return  # never opened: the peer has nothing to forget
        with contextlib.suppress(ConnectionClosed):
            self._conn._write_frame(self._id, RESET if reset else END, b"", b"")

    def _release(self) -> None:
        if self._id:
            self._conn._forget(self._id)

    def _deliver(self, message: Message) -> None:
        if not self._closed:
            super()._deliver(message)
            self._conn._hold(held_size(message))

    def _consumed(self, message: Message) -> None:
        self._conn._unhold(held_size(message))


class _Unary:
    """A one-shot call's stream on a dialled connection (:meth:`TCPTransport._exchange`): no socket object.

    The request left as one OPEN|MSG|END frame; the first message the peer
    sends resolves :attr:`reply` straight from ``data_received``. An END or
    RESET before it, or the connection going, fails it with
    :class:`~micro.errors.ConnectionClosed` carrying the reason a socket's
    ``recv`` would have raised.
    """

    __slots__ = ("ended", "reply")

    def __init__(self, reply: asyncio.Future[Message]) -> None:
        self.reply = reply
        #: The peer ended or reset the stream (or the connection went): it is forgotten, nothing more to send.
        self.ended = False

    def _deliver(self, message: Message) -> None:
        if not self.reply.done():
            self.reply.set_result(message)

    def _end(self, reason: str = ENDED) -> None:
        self.ended = True
        if not self.reply.done():
            self.reply.set_exception(ConnectionClosed(reason))

    def _reset(self, reason: str = RESET_REASON) -> None:
        self._end(reason)

    def _fail(self, reason: str) -> None:
        self._end(reason)


class _OneShot(Socket):
    """The server's side of a one-shot request (an OPEN|MSG|END frame) served through the listener's
    ``one_shot`` hook: the request is already read, so this only carries the reply.

    :meth:`send_last` writes the reply as one MSG|END frame; :meth:`close`
    without a reply ends the stream with a bare END, as a socket's close would.
    A RESET from the caller (it gave up) makes sending fail with
    :class:`~micro.errors.ConnectionClosed`.
    """

    __slots__ = ("_conn", "_done", "_id")

    def __init__(self, conn: _Connection, stream_id: int) -> None:
        self._conn = conn
        self._id = stream_id
        #: Why nothing more may be sent (the reply went, the caller reset, the connection went); ``None`` before.
        self._done: str | None = None

    @property
    def local(self) -> str:
        return self._conn.local

    @property
    def remote(self) -> str:
        return self._conn.remote

    # -- called by the connection ----------------------------------------------------------------

    def _deliver(self, message: Message) -> None:
        pass  # the caller already ended its side; a frame after that is dropped (a socket would never read it)

    def _end(self, reason: str = ENDED) -> None:
        pass

    def _reset(self, reason: str = RESET_REASON) -> None:
        if self._done is None:
            self._done = reason
            self._conn._forget(self._id)

    def _fail(self, reason: str) -> None:
        if self._done is None:
            self._done = reason

    # -- the Socket interface --------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        await self.send_last(message)  # a one-shot call has one reply

    async def send_last(self, message: Message) -> None:
        if self._done is not None:
            raise ConnectionClosed(self._done)
        conn = self._conn
        header = conn._pack(check_header(message.header)) if message.header else b""
        body = message.body
        if type(body) is not bytes:
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise BadRequest(f"message body must be bytes, not {type(body).__name__}")
            body = bytes(body)
        size = len(header) + len(body)
        if size > conn._max:
            raise MessageTooLarge(f"message of {size} bytes exceeds max_message_size {conn._max}")
        if conn._write_paused:
            await conn._drain(size)  # raises ConnectionClosed if the connection goes meanwhile
            if self._done is not None:
                raise ConnectionClosed(self._done)
        self._done = SEND_CLOSED
        try:
            conn._write_frame(self._id, MSG | END, header, body)
        finally:
            conn._forget(self._id)  # after the write: forgetting the last stream of a draining connection closes it

    async def recv(self, *, timeout: float | None = None) -> Message:
        raise ConnectionClosed(ENDED)  # the one request was handed over with the stream

    async def close_send(self) -> None:
        self._finish()

    async def close(self) -> None:
        self._finish()

    def _finish(self) -> None:
        if self._done is None:
            self._done = CLOSED
            with contextlib.suppress(ConnectionClosed):
                self._conn._write_frame(self._id, END, b"", b"")
            self._conn._forget(self._id)

    def __repr__(self) -> str:
        return f"<one-shot stream {self._id} from {self.remote}>"


class _Connection(asyncio.Protocol):
    """One TCP connection, either side; frames in, frames out, streams demultiplexed."""

    def __init__(self, owner: TCPTransport, listener: _TCPListener | None, address: str) -> None:
        self._owner = owner
        self._listener = listener
        self._is_server = listener is not None
        self.address = address
        self.local = self.remote = address
        self._max = owner.options.max_message_size
        self._max_frame = self._max + _FIXED
        self._high = max(2 * self._max, 8 * 1024 * 1024)
        self._low = self._high // 4
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        # A large frame is kept as the chunks it arrived in and joined once into its body, rather than grown in
        # _buf and copied out of it: (stream id, flags, header) and the body bytes still to come.
        self._big: tuple[int, int, bytes] | None = None
        self._big_parts: list[bytes | memoryview] = []
        self._big_left = 0
        self._expect_preface = self._is_server
        self._streams: dict[int, _TCPSocket | _Unary | _OneShot] = {}
        self._next_id = 1
        self._last_id = 0
        self._held = 0
        self._held_over = False  # unread messages over _high: reading stops until they are down to _low
        self._budget_wait = False  # waiting for the listener's max_partial_bytes: reading stops meanwhile
        self._writers_over = False  # _WRITERS streams of a listener wait to write: reading stops meanwhile
        self._turn_over = False  # _TURN unread bytes arrived in this loop turn: reading stops until the next one
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._waiting_bytes = 0  # what the writers in _drain_waiters wait to write
        options = owner.options
        self._max_streams = options.max_streams
        self._stream_waiters: list[asyncio.Future[None]] = []
        # Streams the peer opened with a bare OPEN, by when; they must carry a frame within first_message_timeout.
        self._bare: dict[int, float] = {}
        self._first_timeout = options.first_message_timeout
        # A dialer has its calls' own deadlines, and cutting its connection would fail every call on it.
        self._read_timeout = options.read_timeout if self._is_server else float("inf")
        # A dialer gives up its idle pooled connection first, so a listener never closes one under a live dialer.
        self._idle_limit = options.idle_timeout if self._is_server else options.idle_timeout / 2
        self._active = True  # traffic since the last look of the transport's sweep
        self._idle_since = 0.0
        # When the incomplete frame at the start of _buf began to arrive (None while _buf holds none).
        self._partial_since: float | None = None
        self._reserved = 0  # bytes of the listener's max_partial_bytes this connection's incomplete frame holds
        self._budget_need = 0
        self._draining = False
        self._reason: str | None = None
        self._packer = msgpack.Packer(use_bin_type=True)
        self._out: list[bytes | bytearray | memoryview] = []
        self._out_size = 0
        self._out_frames = 0
        # The last frame still in _out, as (index of its head in _out, stream id, flags, header size, size),
        # so that an END written right after it joins it instead of costing a frame of its own.
        self._last: tuple[int, int, int, int, int] | None = None
        #: The listener handler's hook for one-shot requests (see :class:`OneShotHandler`), or ``None``.
        self._one_shot: OneShot | None = listener._one_shot if listener is not None else None
        self._loop = asyncio.get_running_loop()
        self._idle_since = self._loop.time()
        self.lost: asyncio.Future[None] = self._loop.create_future()

    @property
    def usable(self) -> bool:
        return self._reason is None and self._next_id <= _MAX_ID

    @property
    def incomplete(self) -> int:
        """Bytes held of the incomplete frame being read (in ``_buf``, or the chunks of a large message)."""
        if self._big is None:
            return len(self._buf)
        return 13 + len(self._big[2]) + sum(len(part) for part in self._big_parts)

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports do not subclass asyncio.Transport.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        raw = transport.get_extra_info("socket")
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.setsockopt(_socket.SOL_SOCKET, _socket.SO_KEEPALIVE, 1)
                # asyncio sets it only when the socket says proto IPPROTO_TCP; frames must not wait for ACKs.
                raw.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
        self.local = format_address(transport.get_extra_info("sockname"))
        self.remote = format_address(transport.get_extra_info("peername"))
        self._owner._connections.add(self)
        self._owner._watch()
        if self._listener is None:
            transport.write(PREFACE)
        else:
            self._listener._connections.add(self)
            if self._listener._closed:
                self.drain()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            self._shutdown(f"the connection to {self.remote} was closed by the peer")
        else:
            self._shutdown(f"the connection to {self.remote} was lost: {exc}")
        self._owner._connections.discard(self)
        if not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake_writers()

    def data_received(self, data: bytes) -> None:
        if self._reason is not None:
            return
        self._active = True
        buf = self._buf
        if self._expect_preface:
            buf += data
            if len(buf) < len(PREFACE):
                if not PREFACE.startswith(buf):
                    self._protocol_error("bad preface: not a micro transport client")
                elif self._partial_since is None:
                    self._partial_since = self._loop.time()
                return
            if not buf.startswith(PREFACE):
                self._protocol_error("bad preface: not a micro transport client")
                return
            self._expect_preface = False
            self._partial_since = None
            del buf[: len(PREFACE)]
            if not buf:
                return
            data = bytes(buf)
            buf.clear()
        rest: bytes | memoryview = data
        if self._big is not None:
            collected = self._collect(data)
            if collected is None:
                return
            rest = collected
        if buf:
            buf += rest
            used = self._parse(buf)
            if used:
                del buf[:used]
        else:
            used = self._parse(rest)
            if used < len(rest) and self._reason is None:
                buf += memoryview(rest)[used:]
        if buf and self._reason is None:
            if used or self._partial_since is None:
                self._partial_since = self._loop.time()  # a new frame began: its read_timeout starts now
            if self._listener is not None:
                self._listener._reserve(self, _SIZE.unpack_from(buf)[0] + 4 if len(buf) >= 4 else len(buf))
            if len(buf) >= 13 and self._reason is None:
                self._start_big(buf)
        elif self._partial_since is not None:
            self._partial_since = None
            if self._reserved and self._listener is not None:
                self._listener._reserve(self, 0)

    def _start_big(self, buf: bytearray) -> None:
        """Keep the incomplete frame at the start of ``buf`` as chunks if it is a large message."""
        size, stream_id, flags, hsize = _HEAD.unpack_from(buf)
        left = size + 4 - len(buf)
        start = 13 + hsize
        # Only a message (whatever else is wrong with the frame is found by _parse once it is complete).
        if left < _BIG or flags & ~_KNOWN or flags & (MSG | RESET | ERROR) != MSG or start > len(buf):
            return
        if hsize > size - _FIXED:
            return
        self._big = (stream_id, flags, bytes(buf[13:start]))
        self._big_parts = [bytes(buf[start:])]
        self._big_left = left
        buf.clear()

    def _collect(self, data: bytes) -> bytes | memoryview | None:
        """Add ``data`` to the large frame; once complete, handle it and return what follows it (``None``: nothing)."""
        left = self._big_left
        parts = self._big_parts
        if len(data) < left:
            parts.append(data)
            self._big_left = left - len(data)
            return None
        rest: bytes | memoryview | None = None
        if len(data) == left:
            parts.append(data)
        else:
            view = memoryview(data)
            parts.append(view[:left])
            rest = view[left:]
        big = self._big
        assert big is not None
        self._big = None
        self._big_parts = []
        self._big_left = 0
        self._partial_since = None
        if self._reserved and self._listener is not None:
            self._listener._reserve(self, 0)
        stream_id, flags, header = big
        with memoryview(header) as view:
            self._frame(stream_id, flags, view, 0, len(header), len(header), b"".join(parts))
        return None if self._reason is not None else rest

    # -- frames in -------------------------------------------------------------------------------

    def _parse(self, data: bytes | bytearray | memoryview) -> int:
        """Handle every complete frame at the start of ``data``; return how many bytes they took."""
        pos = 0
        total = len(data)
        with memoryview(data) as view:
            while total - pos >= 4 and self._reason is None:
                (size,) = _SIZE.unpack_from(data, pos)
                if size > self._max_frame:
                    self._protocol_error(
                        f"frame of {size - _FIXED} bytes exceeds max_message_size {self._max}"
                        if size >= _FIXED
                        else f"frame size {size} is too small"
                    )
                    break
                if size < _FIXED:
                    self._protocol_error(f"frame size {size} is too small")
                    break
                end = pos + 4 + size
                if end > total:
                    break
                _, stream_id, flags, hsize = _HEAD.unpack_from(data, pos)
                start = pos + 13
                if hsize > size - _FIXED:
                    self._protocol_error(f"header size {hsize} exceeds frame size {size}")
                    break
                self._frame(stream_id, flags, view, start, start + hsize, end)
                pos = end
        return pos

    def _frame(
        self,
        stream_id: int,
        flags: int,
        view: memoryview,
        start: int,
        body: int,
        end: int,
        payload: bytes | None = None,
    ) -> None:
        """Handle one frame: its header is ``view[start:body]``, its body ``view[body:end]`` or ``payload``."""
        if flags & ~_KNOWN:
            self._protocol_error(f"unknown flags {flags:#04x}")
            return
        stream = self._streams.get(stream_id)
        if stream is None:
            if stream_id == 0:
                if flags == ERROR:
                    reason = bytes(view[body:end]).decode("utf-8", "replace")
                    self.close(f"{self.remote} closed the connection: {reason}")
                else:
                    self._protocol_error("stream 0 carries only ERROR frames")
                return
            if flags & OPEN:
                if not self._is_server:
                    self._protocol_error("a listener may not open streams")
                    return
                if stream_id <= self._last_id:
                    self._protocol_error(f"stream {stream_id} opened out of order")
                    return
                self._last_id = stream_id
                if self._draining:
                    with contextlib.suppress(ConnectionClosed):
                        self._write_frame(stream_id, RESET, b"", b"the listener is closed")
                    return
                if len(self._streams) >= self._max_streams:
                    self._refuse_stream(stream_id)
                    return
                if (
                    flags == _ONE_SHOT
                    and self._one_shot is not None
                    and self._serve_one_shot(stream_id, view, start, body, end, payload)
                ):
                    return
                stream = self._accept(stream_id)
                if not flags & (MSG | END | RESET):
                    self._bare[stream_id] = self._loop.time()
            else:
                opened = self._last_id if self._is_server else self._next_id - 1
                if stream_id > opened:
                    self._protocol_error(f"frame for stream {stream_id}, which was never opened")
                return  # the stream is closed here: drop what was in flight
        elif flags & OPEN:
            self._protocol_error(f"stream {stream_id} opened twice")
            return
        elif self._bare:
            self._bare.pop(stream_id, None)
        if flags & ERROR:
            self._protocol_error("ERROR frames belong to stream 0")
            return
        if flags & MSG:
            header: dict[str, str] = {}
            if body > start:
                unpacked = self._unpack(view[start:body])
                if unpacked is None:
                    return
                header = unpacked
            stream._deliver(Message(header, bytes(view[body:end]) if payload is None else payload))
        elif end > start and not flags & RESET:
            self._protocol_error("payload in a frame without MSG")
            return
        if flags & RESET:
            reason = bytes(view[body:end]).decode("utf-8", "replace") if end > body else ""
            stream._reset(f"{RESET_REASON}: {reason}" if reason else RESET_REASON)
        elif flags & END:
            stream._end()

    def _serve_one_shot(
        self, stream_id: int, view: memoryview, start: int, body: int, end: int, payload: bytes | None
    ) -> bool:
        """Offer a one-shot request (OPEN|MSG|END) to the listener's ``one_shot`` hook; whether it took it.

        Taken, the request needs no socket object, inbox or reader: the hook
        gets the header and body and a :class:`_OneShot` to reply through. A
        malformed header is the same protocol error as on the socket path.
        """
        header: dict[str, str] = {}
        if body > start:
            unpacked = self._unpack(view[start:body])
            if unpacked is None:
                return True  # the connection is closed: nothing more to do with the frame
            header = unpacked
        reply = _OneShot(self, stream_id)
        self._streams[stream_id] = reply
        assert self._one_shot is not None
        try:
            taken = self._one_shot(reply, header, bytes(view[body:end]) if payload is None else payload)
        except Exception:  # the hook's own bug: serve the call the ordinary way
            logger.exception("one-shot hook failed for stream %d from %s", stream_id, self.remote)
            taken = False
        if not taken:
            del self._streams[stream_id]
        return taken

    def _unpack(self, data: memoryview) -> dict[str, str] | None:
        try:
            header = msgpack.unpackb(data, raw=False)
        except Exception:  # msgpack raises a handful of unrelated types for bad input
            header = None
        if type(header) is dict:
            for key, value in header.items():
                if type(key) is not str or type(value) is not str:
                    break
            else:
                return header
        self._protocol_error("malformed message header")
        return None

    def _accept(self, stream_id: int) -> _TCPSocket:
        stream = _TCPSocket(self, stream_id)
        self._streams[stream_id] = stream
        assert self._listener is not None
        self._listener._accept(stream)
        return stream

    def _refuse_stream(self, stream_id: int) -> None:
        reason = f"too many streams on the connection (max_streams {self._max_streams})"
        if self._write_paused:
            # The peer opens stream after stream and does not read the refusals: they would pile up here.
            self._owner._log.event(
                "max_streams unread", logging.WARNING, f"closed the connection with {self.remote}: {reason}, unread"
            )
            self._protocol_error(f"{reason}, and the refusals are not read")
            return
        self._owner._log.event(
            "max_streams", logging.WARNING, f"refused a stream from {self.remote}: {reason}; sent RESET"
        )
        with contextlib.suppress(ConnectionClosed):
            self._write_frame(stream_id, RESET, b"", reason.encode())

    # -- frames out ------------------------------------------------------------------------------

    def _pack(self, header: dict[str, str]) -> bytes:
        packed: bytes = self._packer.pack(header)
        return packed

    def _allocate(self, stream: _TCPSocket | _Unary) -> int:
        if self._reason is not None:
            raise ConnectionClosed(self._reason)
        stream_id = self._next_id
        if stream_id > _MAX_ID:
            raise ConnectionClosed("the connection has used every stream id; dial again")
        self._next_id = stream_id + 1
        self._streams[stream_id] = stream
        return stream_id

    def _write_frame(self, stream_id: int, flags: int, header: bytes, body: bytes | bytearray | memoryview) -> None:
        if self._reason is not None:
            raise ConnectionClosed(self._reason)
        if self._bare:
            self._bare.pop(stream_id, None)  # the handler answers: the stream is in use, whatever the peer sends
        # Frames written in one turn of the event loop leave in one write (one system call), up to _BATCH of
        # them: a reply and the close that follows it, or the messages of many concurrent streams.
        out = self._out
        last = self._last
        if flags == END and last is not None and last[1] == stream_id:
            # A reply followed by the end of its stream (or a one-shot request) leaves as one MSG|END frame.
            index, _, last_flags, hsize, size = last
            out[index] = _HEAD.pack(size, stream_id, last_flags | END, hsize)
            self._last = None
            return
        if not out:
            self._loop.call_soon(self._flush)
        size = _FIXED + len(header) + len(body)
        self._last = (len(out), stream_id, flags, len(header), size)
        out.append(_HEAD.pack(size, stream_id, flags, len(header)))
        if header:
            out.append(header)
        if body:
            out.append(body)
        self._out_size += 13 + len(header) + len(body)
        self._out_frames += 1
        if self._out_size >= _BIG or self._out_frames >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        out = self._out
        if not out:
            return
        size = self._out_size
        self._last = None
        self._out_size = 0
        self._out_frames = 0
        transport = self._transport
        if transport is None or transport.is_closing():
            out.clear()
            return
        if len(out) == 1:
            transport.write(out[0])
        elif size < _BIG:
            transport.write(b"".join(out))
        else:
            # A big body is written as it is, not copied into one buffer with the frames around it; the
            # small pieces between big ones still leave together.
            start = 0
            for index, part in enumerate(out):
                if len(part) >= _BIG:
                    if index > start:
                        transport.write(b"".join(out[start:index]))
                    transport.write(part)
                    start = index + 1
            if start < len(out):
                transport.write(b"".join(out[start:]))
        out.clear()

    async def _drain(self, size: int = 0) -> None:
        """Wait until the transport takes more output (for a message of ``size`` bytes); raises ConnectionClosed
        if the connection goes."""
        self._waiting_bytes += size
        try:
            while self._write_paused and self._reason is None:
                waiter = self._loop.create_future()
                self._drain_waiters.append(waiter)
                if (
                    self._is_server
                    and not self._writers_over
                    and (len(self._drain_waiters) >= _WRITERS or self._waiting_bytes >= _WAITING_BYTES)
                ):
                    # The peer sends requests faster than it takes the replies: every request read now would
                    # hold its reply (and whatever the handler made) until the peer catches up.
                    self._writers_over = True
                    self._update_reading()
                await waiter
        finally:
            self._waiting_bytes -= size
        if self._reason is not None:
            raise ConnectionClosed(self._reason)

    def _wake_writers(self) -> None:
        if self._writers_over:
            self._writers_over = False
            self._update_reading()
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait_for_stream(self) -> None:
        """Wait until a stream of this connection is forgotten (or the connection goes)."""
        waiter = self._loop.create_future()
        self._stream_waiters.append(waiter)
        await waiter

    def _wake_openers(self) -> None:
        # Every waiter wakes and checks again: a cancelled waiter then cannot swallow the free stream.
        waiters, self._stream_waiters = self._stream_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- flow control on the read side -----------------------------------------------------------

    def _hold(self, size: int) -> None:
        self._held += size
        if self._held > self._high and not self._held_over:
            self._held_over = True
            self._update_reading()
        if self._held >= _TURN and not self._turn_over:
            self._turn_over = True
            self._update_reading()
            # After the tasks this message woke (they were scheduled first), so they take it before we read on.
            self._loop.call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._turn_over = False
        self._update_reading()

    def _unhold(self, size: int) -> None:
        self._held -= size
        if self._held_over and self._held <= self._low:
            self._held_over = False
            self._update_reading()

    def _set_budget_wait(self, waiting: bool) -> None:
        self._budget_wait = waiting
        self._update_reading()

    def _update_reading(self) -> None:
        pause = self._held_over or self._budget_wait or self._writers_over or self._turn_over
        if pause == self._reading_paused or self._reason is not None or self._transport is None:
            return
        self._reading_paused = pause
        if pause:
            self._transport.pause_reading()
        else:
            self._transport.resume_reading()
            if self._partial_since is not None:
                self._partial_since = self._loop.time()  # read_timeout counts from when it reads again

    # -- timeouts (called by the transport's sweep) ----------------------------------------------

    def _check(self, now: float) -> None:
        if self._reason is not None:
            return
        log = self._owner._log
        since = self._partial_since
        if since is not None and not self._reading_paused and now - since >= self._read_timeout:
            what = "the preface" if self._expect_preface else "a frame"
            problem = f"{what} was not complete within read_timeout={self._read_timeout:g}s of its first byte"
            log.event("read_timeout", logging.WARNING, f"closed the connection with {self.remote}: {problem}")
            self._protocol_error(problem)
            return
        if self._bare:
            expired = [sid for sid, opened in self._bare.items() if now - opened >= self._first_timeout]
            for stream_id in expired:
                self._expire(stream_id)
        if self._active or self._streams:
            self._active = False
            self._idle_since = now
        elif now - self._idle_since >= self._idle_limit:
            if self._is_server:
                problem = f"idle for idle_timeout={self._idle_limit:g}s"
                log.event("idle_timeout", logging.DEBUG, f"closed the connection with {self.remote}: {problem}")
                self._protocol_error(problem, protocol=False)
            else:
                self.close(f"the connection to {self.remote} was idle for idle_timeout/2={self._idle_limit:g}s")

    def _expire(self, stream_id: int) -> None:
        self._bare.pop(stream_id, None)
        stream = self._streams.get(stream_id)
        if stream is None:
            return
        reason = f"no frame within first_message_timeout={self._first_timeout:g}s of the OPEN"
        self._owner._log.event("first_message_timeout", logging.WARNING, f"reset a stream from {self.remote}: {reason}")
        with contextlib.suppress(ConnectionClosed):
            self._write_frame(stream_id, RESET, b"", reason.encode())
        stream._reset(f"stream reset: {reason}")

    # -- ending ----------------------------------------------------------------------------------

    def _forget(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)
        if self._bare:
            self._bare.pop(stream_id, None)
        if self._stream_waiters:
            self._wake_openers()
        if self._draining and not self._streams:
            self.close("the listener is closed")

    def drain(self) -> None:
        """Refuse new streams, and close once the open ones are done."""
        self._draining = True
        if not self._streams:
            self.close("the listener is closed")

    def _protocol_error(self, problem: str, *, protocol: bool = True) -> None:
        """Send ERROR with ``problem`` on stream 0 and close (``protocol=False``: a limit, not a bad peer)."""
        if self._reason is not None:
            return
        if self._transport is not None and not self._transport.is_closing():
            with contextlib.suppress(ConnectionClosed):
                self._write_frame(0, ERROR, b"", problem.encode())
        what = "protocol error on" if protocol else "closed"
        self.close(f"{what} the connection with {self.remote}: {problem}")

    def close(self, reason: str) -> None:
        """Close the connection (after flushing what is written) and fail its sockets with ``reason``."""
        if self._reason is None and self._transport is not None:
            self._flush()
            self._transport.close()
            if self._transport.get_write_buffer_size():
                # close() waits for the peer to take what is left; one that never does must not keep the socket.
                self._loop.call_later(_LINGER, self._abort_unless_lost)
        self._shutdown(reason)

    def _abort_unless_lost(self) -> None:
        if not self.lost.done():
            self.abort()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def _shutdown(self, reason: str) -> None:
        if self._reason is not None:
            return
        self._reason = reason
        streams = list(self._streams.values())
        self._streams.clear()
        for stream in streams:
            stream._fail(reason)
        self._bare.clear()
        self._buf = bytearray()  # an incomplete frame is dropped now, not when the protocol object goes
        self._big = None
        self._big_parts = []
        self._big_left = 0
        self._out.clear()
        self._last = None
        self._out_size = self._out_frames = 0
        self._wake_writers()
        self._wake_openers()
        self._owner._forget(self)
        if self._listener is not None:
            self._listener._connections.discard(self)
            self._listener._release(self)


async def _accept(loop: asyncio.AbstractEventLoop, sock: _socket.socket) -> _socket.socket:
    """The next connection on the listening ``sock``, accepted in this coroutine.

    Not ``loop.sock_accept``: that accepts in the loop's read callback and hands the socket over through a
    future, so a caller cancelled between the two (the listener closing) drops a connection that was already
    accepted, and its socket is only closed, with a ``ResourceWarning``, when it is garbage collected. Here
    a cancellation can only come while waiting for the socket to be readable, before anything is accepted.
    """
    fd = sock.fileno()
    while True:
        try:
            client, _ = sock.accept()
            return client
        except (BlockingIOError, InterruptedError):
            pass
        readable = loop.create_future()
        loop.add_reader(fd, _wake, readable)
        try:
            await readable
        finally:
            loop.remove_reader(fd)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _TCPListener(Listener):
    """Accepts connections itself (not through ``loop.create_server``) to enforce ``max_connections`` and to
    back off, with one log line per interval, when the process runs out of file descriptors."""

    def __init__(self, owner: TCPTransport, handler: Handler, address: str) -> None:
        self._owner = owner
        self._handler = handler
        self._configured = address
        self._sock: _socket.socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._address = ""
        self._connections: set[_Connection] = set()
        self._handshakes = 0
        self._closed = False
        options = owner.options
        self._max_connections = options.max_connections
        self._max_partial = options.max_partial_bytes
        self._partial = 0  # bytes reserved by the incomplete frames of this listener's connections
        self._budget_waiters: deque[_Connection] = deque()
        hook = getattr(handler, "one_shot", None)
        self._one_shot: OneShot | None = hook if callable(hook) else None

    @property
    def address(self) -> str:
        return self._address

    def _accept(self, socket: Socket) -> None:
        task = asyncio.get_running_loop().create_task(run_handler(self._handler, socket))
        self._owner._tasks.add(task)
        task.add_done_callback(self._owner._tasks.discard)

    # -- accepting connections -------------------------------------------------------------------

    def _connection(self) -> _Connection:
        return _Connection(self._owner, self, self._configured)

    async def _serve(self, sock: _socket.socket, tls: ssl.SSLContext | None) -> None:
        loop = asyncio.get_running_loop()
        log = self._owner._log
        backoff = _BACKOFF_MIN
        while True:
            try:
                client = await _accept(loop, sock)
            except OSError as exc:
                if exc.errno in _NO_RESOURCES:
                    # asyncio's own accept loop logs a traceback per failed accept here, many per second.
                    log.event(
                        "accept",
                        logging.ERROR,
                        f"{self._address}: cannot accept connections: {exc.strerror or exc}; "
                        f"retrying in {backoff:g}s, up to every {_BACKOFF_MAX:g}s",
                    )
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX)
                elif exc.errno not in (errno.ECONNABORTED, errno.EPROTO, errno.EAGAIN):
                    log.event("accept error", logging.ERROR, f"{self._address}: accept failed: {exc}")
                    await asyncio.sleep(_BACKOFF_MIN)
                continue
            backoff = _BACKOFF_MIN
            try:
                client.setblocking(False)
                if len(self._connections) + self._handshakes >= self._max_connections:
                    self._refuse(client, tls is None)
                elif tls is None:
                    await loop.connect_accepted_socket(self._connection, client)
                else:
                    self._handshakes += 1
                    task = loop.create_task(self._handshake(client, tls))
                    self._owner._tasks.add(task)
                    task.add_done_callback(self._owner._tasks.discard)
            except OSError:  # the peer is already gone
                client.close()
            except Exception as exc:  # whatever one connection does, the listener goes on accepting
                client.close()
                log.event("accept error", logging.ERROR, f"{self._address}: cannot set up a connection: {exc!r}")

    async def _handshake(self, client: _socket.socket, tls: ssl.SSLContext) -> None:
        try:
            await asyncio.get_running_loop().connect_accepted_socket(
                self._connection, client, ssl=tls, ssl_handshake_timeout=self._owner.options.read_timeout
            )
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            self._owner._log.event("tls", logging.DEBUG, f"{self._address}: TLS handshake failed: {exc}")
            client.close()
        finally:
            self._handshakes -= 1

    def _refuse(self, client: _socket.socket, plain: bool) -> None:
        problem = f"too many connections to {self._address} (max_connections {self._max_connections})"
        self._owner._log.event("max_connections", logging.WARNING, f"refused a connection: {problem}")
        with contextlib.suppress(OSError):
            if plain:  # a TLS peer could not read a plaintext frame: it sees the connection closed
                with contextlib.suppress(BlockingIOError):
                    client.recv(len(PREFACE))  # unread input would turn the close into a reset
                reason = problem.encode()
                client.send(_HEAD.pack(_FIXED + len(reason), 0, ERROR, 0) + reason)
        client.close()

    # -- the budget for incomplete frames --------------------------------------------------------

    def _reserve(self, conn: _Connection, need: int) -> None:
        """Set what ``conn``'s incomplete frame holds of ``max_partial_bytes``; over it, ``conn`` stops reading.

        A connection that holds part of the budget can always finish its frame, so the budget never
        deadlocks; one waiting connection gets its share as soon as others finish (or time out).
        """
        delta = need - conn._reserved
        if conn._budget_wait:
            conn._budget_need = need
            return
        if delta <= 0 or conn._reason is not None or self._fits(conn, need):
            self._partial += delta
            conn._reserved = need
            if delta < 0 and self._budget_waiters:
                self._grant()
            return
        conn._budget_need = need
        self._budget_waiters.append(conn)
        self._owner._log.event(
            "max_partial_bytes",
            logging.INFO,
            f"{self._address}: incomplete frames hold {self._partial} bytes (max_partial_bytes "
            f"{self._max_partial}); {conn.remote} waits before sending more",
        )
        conn._set_budget_wait(True)

    def _fits(self, conn: _Connection, need: int) -> bool:
        others = self._partial - conn._reserved
        return others == 0 or others + need <= self._max_partial  # one frame always fits, whatever its size

    def _grant(self) -> None:
        waiters = self._budget_waiters
        while waiters:
            conn = waiters[0]
            if conn._reason is not None:
                waiters.popleft()
                continue
            if not self._fits(conn, conn._budget_need):
                return
            waiters.popleft()
            self._partial += conn._budget_need - conn._reserved
            conn._reserved = conn._budget_need
            conn._set_budget_wait(False)

    def _release(self, conn: _Connection) -> None:
        """``conn`` is gone: give back its part of the budget."""
        if conn._reserved:
            self._partial -= conn._reserved
            conn._reserved = 0
        if self._budget_waiters:
            self._grant()

    # -- closing ---------------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._sock is not None:
            self._sock.close()
        for conn in list(self._connections):
            conn.drain()
        self._owner._listeners.discard(self)


#: ``one_shot(reply, header, body) -> taken``: see :class:`OneShotHandler`.
OneShot = Callable[[Socket, dict[str, str], bytes], bool]


class OneShotHandler(Protocol):
    """A listener handler that can also take a whole request that came in one frame (OPEN|MSG|END).

    The tcp listener calls :meth:`one_shot` from the connection's read
    callback, before it would make a socket for the stream: the handler
    returns ``True`` if it took the request (it then starts its work without
    blocking and replies through ``reply``, whose ``send_last`` writes one
    MSG|END frame; ``close`` without a reply ends the stream), or ``False`` to
    have it served the ordinary way, through ``__call__`` with a socket whose
    first ``recv`` returns the same message. It must not raise.
    """

    def __call__(self, socket: Socket, /) -> Awaitable[None]: ...

    def one_shot(self, reply: Socket, header: dict[str, str], body: bytes, /) -> bool: ...


@dataclass(eq=False)
class _Pending:
    task: asyncio.Task[_Connection]
    waiters: int = 0


class TCPTransport(Transport):
    """Multiplexed TCP, with TLS when ``options.tls`` is set. See the module docstring for the wire format."""

    options_type: ClassVar[type[TransportOptions]] = TransportOptions
    #: The name it is registered by, also when built without the plugin manager: servers register it as the
    #: node's ``transport`` and clients compare it (:func:`micro.selector.filter_protocol`).
    name = "tcp"
    capabilities: ClassVar[frozenset[str]] = frozenset({"tls"})

    def __init__(self, options: TransportOptions | None = None) -> None:
        super().__init__(options)
        self._pool: dict[str, _Connection] = {}
        self._connecting: dict[str, _Pending] = {}
        self._connections: set[_Connection] = set()
        self._listeners: set[_TCPListener] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._client_tls: ssl.SSLContext | None = None
        self._server_tls: ssl.SSLContext | None = None
        self._log = RateLimitedLog(logger)
        self._sweeper: asyncio.TimerHandle | None = None
        options = self.options
        shortest = min(options.idle_timeout / 2, options.first_message_timeout, options.read_timeout)
        #: How often the timeouts are checked: a quarter of the shortest, at most once a second.
        self._tick = min(max(shortest / 4, 0.01), 1.0)

    # -- dialling --------------------------------------------------------------------------------

    async def _dial(self, address: str, timeout: float | None) -> Socket:
        conn = self._pool.get(address)
        if conn is None or not conn.usable:
            conn = await self._connect(address, self.options.dial_timeout if timeout is None else timeout)
        conn._active = True  # the socket opens its stream later: the idle sweep must not close it meanwhile
        return _TCPSocket(conn, 0)

    async def _exchange(self, address: str, message: Message, timeout: float | None) -> Message:
        """:meth:`~micro.transport.Transport.exchange` without a socket object: the client's unary call.

        The request leaves as one OPEN|MSG|END frame (in the loop turn's write
        with the other frames of that turn); the reply is the first message the
        peer sends on the stream, handed over from the connection's read
        callback. ``timeout`` bounds connecting, as for :meth:`dial`. Raises
        what :meth:`dial`, ``send_last`` and ``recv`` of a dialled socket
        would: :class:`~micro.errors.ConnectionClosed` when the stream or the
        connection ends first. Cancelled (the caller's deadline), it resets the
        stream, as closing the socket would.
        """
        header, body = message.header, message.body
        conn = self._pool.get(address)
        if conn is None or not conn.usable:
            conn = await self._connect(address, self.options.dial_timeout if timeout is None else timeout)
        conn._active = True
        packed = conn._pack(check_header(header)) if header else b""
        size = len(packed) + len(body)
        if size > conn._max:
            raise MessageTooLarge(f"message of {size} bytes exceeds max_message_size {conn._max}")
        # Back-pressure and the stream limit, as a socket's first write waits for them.
        while conn._write_paused or (conn._reason is None and len(conn._streams) >= conn._max_streams):
            if conn._write_paused:
                await conn._drain(size)
            else:
                await conn._wait_for_stream()
        unary = _Unary(conn._loop.create_future())
        stream_id = conn._allocate(unary)  # ConnectionClosed if the connection went meanwhile
        try:
            conn._write_frame(stream_id, _ONE_SHOT, packed, body)
            return await unary.reply
        finally:
            if not unary.ended and conn._reason is None:
                # The reply came before the peer's END, or the caller gave up: close the stream as a socket would.
                with contextlib.suppress(ConnectionClosed):
                    conn._write_frame(stream_id, RESET, b"", b"")
            conn._forget(stream_id)

    async def _connect(self, address: str, timeout: float) -> _Connection:
        host, port = split_address(address)
        tls = self._client_context() if self.options.tls else None
        pending = self._connecting.get(address)
        if pending is None:
            task = asyncio.get_running_loop().create_task(self._open(address, host or "127.0.0.1", port, tls))
            pending = self._connecting[address] = _Pending(task)
            task.add_done_callback(lambda done: self._connected(address, pending))
        pending.waiters += 1
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(pending.task)
        except TimeoutError:
            raise Timeout(f"cannot connect to {address} within {timeout:g}s") from None
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if pending.task.cancelled() and current is not None and not current.cancelling():
                raise ConnectionClosed(f"the transport was closed while connecting to {address}") from None
            raise
        finally:
            pending.waiters -= 1
            if not pending.waiters and not pending.task.done():
                # Nobody waits for it any more; the next dial starts afresh rather than join a dying attempt.
                if self._connecting.get(address) is pending:
                    del self._connecting[address]
                pending.task.cancel()

    def _connected(self, address: str, pending: _Pending) -> None:
        if self._connecting.get(address) is pending:
            del self._connecting[address]
        if not pending.task.cancelled():
            pending.task.exception()  # retrieved, so a failure nobody awaited is not logged as lost

    async def _open(self, address: str, host: str, port: int, tls: ssl.SSLContext | None) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                lambda: _Connection(self, None, address), host, port, ssl=tls, server_hostname=host if tls else None
            )
        except OSError as exc:  # refused, unreachable, unknown host, TLS handshake or verification failure
            raise Unavailable(f"cannot connect to {address}: {exc.strerror or exc}") from exc
        if conn.usable:
            self._pool[address] = conn
        return conn

    # -- listening -------------------------------------------------------------------------------

    async def _listen(self, address: str | None, handler: Handler) -> Listener:
        address = address or self.options.address
        host, port = split_address(address)
        tls = self._server_context() if self.options.tls else None
        loop = asyncio.get_running_loop()
        listener = _TCPListener(self, handler, address)
        try:
            bind = await self._bind_host(loop, host or "0.0.0.0", port)
            sock = self._listening_socket(bind, port)
        except OSError as exc:
            raise Unavailable(f"cannot listen on {address}: {exc.strerror or exc}") from exc
        listener._sock = sock
        listener._address = format_address(sock.getsockname())
        listener._task = loop.create_task(listener._serve(sock, tls))
        self._listeners.add(listener)
        return listener

    @staticmethod
    def _listening_socket(host: str, port: int) -> _socket.socket:
        family = _socket.AF_INET6 if ":" in host else _socket.AF_INET
        sock = _socket.socket(family, _socket.SOCK_STREAM, _socket.IPPROTO_TCP)
        try:
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_REUSEADDR, 1)
            if family == _socket.AF_INET6:
                sock.setsockopt(_socket.IPPROTO_IPV6, _socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
            sock.listen(_BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    @staticmethod
    async def _bind_host(loop: asyncio.AbstractEventLoop, host: str, port: int) -> str:
        # A name can resolve to several addresses; with port 0 each would get its own port, so bind the first.
        try:
            ipaddress.ip_address(host)
        except ValueError:
            infos = await loop.getaddrinfo(host, port, type=_socket.SOCK_STREAM, flags=_socket.AI_PASSIVE)
            return str(infos[0][4][0])
        return host

    # -- TLS -------------------------------------------------------------------------------------

    def _client_context(self) -> ssl.SSLContext:
        if self._client_tls is None:
            self._client_tls = client_context(self.options)
        return self._client_tls

    def _server_context(self) -> ssl.SSLContext:
        if self._server_tls is None:
            self._server_tls = server_context(self.options)
        return self._server_tls

    # -- closing ---------------------------------------------------------------------------------

    def _forget(self, conn: _Connection) -> None:
        if self._pool.get(conn.address) is conn:
            del self._pool[conn.address]

    def _watch(self) -> None:
        """Make sure the sweep that enforces the timeouts runs while there are connections."""
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(self._tick, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        if not self._connections:
            return
        now = asyncio.get_running_loop().time()
        for conn in list(self._connections):
            conn._check(now)
        self._watch()

    async def _close(self) -> None:
        for listener in list(self._listeners):
            await listener.close()
        for pending in list(self._connecting.values()):
            pending.task.cancel()
        conns = list(self._connections)
        self._connections.clear()
        for conn in conns:
            conn.close("the transport is closed")
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        # Wait until the sockets are really closed, so nothing is left for the garbage collector to warn about.
        lost = [conn.lost for conn in conns if not conn.lost.done()]
        if lost:
            _, late = await asyncio.wait(lost, timeout=_CLOSE_GRACE)
            if late:
                for conn in conns:
                    if not conn.lost.done():
                        conn.abort()
                await asyncio.wait(late, timeout=_CLOSE_GRACE)

    def __repr__(self) -> str:
        return f"<TCPTransport {len(self._pool)} connections, {len(self._listeners)} listeners>"
