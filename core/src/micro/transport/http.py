"""The http transport: every socket is one HTTP/1.1 POST whose two bodies carry frames, for where only HTTP passes.

In the spirit of Go Micro's http transport (``transport/http_transport.go``),
which sends each message as an HTTP request to ``POST /``: here a socket is
one long-lived exchange, so streams and half-close work as on the tcp
transport. Connections are pooled by aiohttp's client (keep-alive), and
``dial`` returns as soon as the request head is out, so dialling per call
costs no round trip of its own on an open connection.
The wire format (also in ``docs/transport.md``):

* The dialer sends ``POST /micro/transport`` with ``Content-Type:
  application/x-micro-transport`` and a chunked body that starts with the
  8-byte preface ``b"MHTTP/1\\n"``. The listener answers ``200`` with a chunked
  body once the preface has arrived; a request it will not serve gets a plain
  HTTP error with a one-line reason and ``Connection: close`` (``404`` other
  path, ``405`` not a POST, ``415`` other content type, ``400`` bad preface,
  ``408`` preface not in within ``read_timeout``, ``503`` listener closed or
  ``max_connections`` reached) before any frame is sent. The dialler raises
  :class:`~micro.errors.Unavailable` with that reason from ``dial`` when the
  answer is already in, else fails the socket with it (``ConnectionClosed``).
* Then each body is a sequence of frames, the dialer's in the request, the
  listener's in the response::

      size      u32  big-endian: the number of bytes after this field (5 + hsize + len(body))
      flags     u8   MSG 0x02, END 0x04, RESET 0x08
      hsize     u32  length of the header
      header    msgpack map str -> str (absent when hsize is 0)
      body      the message body; for RESET, a UTF-8 reason

  MSG carries a message; END means the sender sends nothing more (half-close),
  and its body ends right after; RESET means the sender closed the socket and
  drops whatever comes next. A frame over ``5 + max_message_size`` bytes, an
  unknown flag, a bad header or bytes after END is a protocol error: the
  listener answers it with a RESET naming the problem and closes the
  connection; a dialer fails the socket and drops the connection.

Limits on a listener (``TransportOptions``): ``max_connections`` open
connections (one more gets ``503``), ``idle_timeout`` for a connection with no
request (aiohttp's keep-alive timeout, which also bounds an unfinished request
head), ``read_timeout`` for a TLS handshake, the preface and every frame once
its first byte is in, ``first_message_timeout`` for the first frame after the
preface, ``max_message_size`` per frame and ``max_partial_bytes`` for the
incomplete frames of all its connections together (past it, a connection waits
unread). HTTP request lines and header fields are limited to 8190 bytes by
aiohttp (``400`` beyond). ``max_streams`` does not apply: HTTP/1.1 carries one
socket per connection at a time, so ``max_connections`` bounds the sockets.

Flow control: a reader stops reading its body while its socket holds more than
``max(2 * max_message_size, 8 MiB)`` unread bytes; a sender waits while
aiohttp's write buffer is full (the dialer queues at most ``_QUEUE`` frames).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
from collections import deque
from typing import Any, ClassVar, Final

import aiohttp
import msgpack
from aiohttp import web

from ..errors import BadRequest, ConnectionClosed, MessageTooLarge, Timeout, Unavailable
from ._ratelog import PeerErrorLogger, RateLimitedLog
from ._stream import StreamSocket, check_header, format_address, held_size, logger, run_handler, split_address
from ._tls import client_context, server_context
from .base import Handler, Listener, Message, Socket, Transport
from .options import TransportOptions
from .tcp import TCPTransport

__all__ = ["CONTENT_TYPE", "PATH", "PREFACE", "HTTPTransport"]

PATH: Final = "/micro/transport"
CONTENT_TYPE: Final = "application/x-micro-transport"
PREFACE: Final = b"MHTTP/1\n"
_HEAD: Final = struct.Struct("!IBI")
_SIZE: Final = struct.Struct("!I")
_FIXED: Final = 5  # flags and header size: the part of ``size`` that is not header or body
MSG: Final = 0x02
END: Final = 0x04
RESET: Final = 0x08
_KNOWN: Final = MSG | END | RESET
#: Frames a dialled socket queues for aiohttp's body writer before ``send`` waits.
_QUEUE: Final = 16
#: Seconds a closed socket may take to hand its last frames to aiohttp before its connection is dropped.
_LINGER: Final = 5.0
#: Bytes of a reason read from an HTTP error answer.
_REASON_LIMIT: Final = 1024


class _ProtocolError(Exception):
    """The peer broke the wire format; the reason goes back in a RESET (listener) or fails the socket."""


def _encode(message: Message, max_size: int) -> bytes:
    header = b""
    if message.header:
        header = msgpack.packb(check_header(message.header))
    body = message.body
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise BadRequest(f"message body must be bytes, not {type(body).__name__}")
    size = len(header) + len(body)
    if size > max_size:
        raise MessageTooLarge(f"message of {size} bytes exceeds max_message_size {max_size}")
    # One bytes object: the frame may wait in a queue, and the caller may reuse its buffer meanwhile.
    return b"".join((_HEAD.pack(_FIXED + size, MSG, len(header)), header, body))


def _control(flags: int, reason: str = "") -> bytes:
    body = reason.encode()
    return _HEAD.pack(_FIXED + len(body), flags, 0) + body


def _decode(frame: bytes) -> tuple[int, Message | None, str]:
    """``(flags, message, reason)`` of one frame without its size field; :class:`_ProtocolError` if malformed."""
    if len(frame) < _FIXED:
        raise _ProtocolError(f"frame of {len(frame)} bytes is shorter than its fixed part")
    flags, hsize = frame[0], _SIZE.unpack_from(frame, 1)[0]
    if flags & ~_KNOWN or not flags:
        raise _ProtocolError(f"unknown frame flags 0x{flags:02x}")
    if hsize > len(frame) - _FIXED:
        raise _ProtocolError("header size runs past the end of the frame")
    body = frame[_FIXED + hsize :]
    if flags & RESET:
        return flags, None, body.decode(errors="replace")
    message = None
    if flags & MSG:
        header: Any = {}
        if hsize:
            try:
                header = msgpack.unpackb(frame[_FIXED : _FIXED + hsize], raw=False)
            except Exception:  # msgpack raises a handful of unrelated types for bad input
                header = None
            if type(header) is not dict or not all(type(k) is str and type(v) is str for k, v in header.items()):
                raise _ProtocolError("malformed message header")
        message = Message(header, body)
    elif hsize or body:
        raise _ProtocolError("END frame with a payload")
    return flags, message, ""


class _Budget:
    """Bytes of incomplete frames one listener holds (``max_partial_bytes``); one frame always fits."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def reserve(self, size: int) -> None:
        while self.used and self.used + size > self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        self.used += size

    def release(self, size: int) -> None:
        self.used -= size
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)


class _Reader:
    """Reads frames from one body (aiohttp's ``StreamReader``) into a socket."""

    def __init__(
        self,
        content: aiohttp.StreamReader,
        socket: _HTTPSocket,
        options: TransportOptions,
        budget: _Budget | None,
        eof_timeout: float | None,
    ) -> None:
        self._content = content
        self._eof_timeout = eof_timeout
        self._socket = socket
        self._max_frame = _FIXED + options.max_message_size
        self._read_timeout = options.read_timeout
        self._budget = budget
        self._buffer = bytearray()

    async def _more(self, timeout: float | None) -> bool:
        """Append what arrives next to the buffer; ``False`` at the end of the body."""
        if timeout is None or self._content.is_eof():  # at the end nothing is waited for: no timer needed
            chunk = await self._content.readany()
        else:
            try:
                async with asyncio.timeout(timeout):
                    chunk = await self._content.readany()
            except TimeoutError:
                raise _ProtocolError(f"frame not complete within read_timeout ({timeout:g}s)") from None
        if not chunk:
            return False
        self._buffer += chunk
        return True

    async def frame(self, first_timeout: float | None = None) -> bytes | None:
        """The next frame without its size field, or ``None`` at the end of the body between frames.

        Waiting for a frame to start is not bounded (a socket may be quiet), except by
        ``first_timeout``; once it has started, the rest must come within ``read_timeout``.
        """
        buffer = self._buffer
        if not buffer:
            if first_timeout is None:
                more = await self._more(None)
            else:
                try:
                    async with asyncio.timeout(first_timeout):
                        more = await self._more(None)
                except TimeoutError:
                    raise _ProtocolError(
                        f"no frame within first_message_timeout ({first_timeout:g}s) of the preface"
                    ) from None
            if not more:
                return None
        while len(buffer) < 4:
            if not await self._more(self._read_timeout):
                raise _ProtocolError("the body ended inside a frame")
        size = _SIZE.unpack_from(buffer)[0]
        if size > self._max_frame:
            raise _ProtocolError(f"frame of {size} bytes exceeds max_message_size {self._max_frame - _FIXED}")
        need = 4 + size
        if len(buffer) < need:
            budget = self._budget
            if budget is not None:
                await budget.reserve(size)
            try:
                while len(buffer) < need:
                    if not await self._more(self._read_timeout):
                        raise _ProtocolError("the body ended inside a frame")
            finally:
                if budget is not None:
                    budget.release(size)
        frame = bytes(buffer[4:need])
        del buffer[:need]
        return frame

    async def run(self, first_timeout: float | None = None) -> bool:
        """Deliver frames until the peer's END and the end of the body (``True``) or its RESET (``False``).

        Raises :class:`_ProtocolError`, or a connection error, for anything else.
        """
        socket = self._socket
        timeout = first_timeout
        while True:
            frame = await self.frame(timeout)
            timeout = None
            if frame is None:
                raise ConnectionResetError("the body ended without END or RESET")
            flags, message, reason = _decode(frame)
            if message is not None:
                socket._deliver(message)
                if socket._unread > socket._high:
                    await socket._drained()
            if flags & RESET:
                socket._reset(f"the peer closed the stream ({reason})" if reason else "the peer closed the stream")
                return False
            if flags & END:
                socket._end()
                # The body ends right after END: a dialler ends it at once, a listener when its socket is done.
                if self._buffer or await self._more(self._eof_timeout):
                    raise _ProtocolError("data after END")
                return True


class _HTTPSocket(StreamSocket):
    """What both ends share: unread-byte flow control and the single final frame."""

    def __init__(self, local: str, remote: str, options: TransportOptions) -> None:
        super().__init__(local, remote)
        self._max = options.max_message_size
        self._high = max(2 * options.max_message_size, 8 * 1024 * 1024)
        self._unread = 0
        self._room: asyncio.Future[None] | None = None
        #: The task that writes our last frame (END or RESET) after a close; awaited by the owner.
        self._closing: asyncio.Task[None] | None = None

    def _deliver(self, message: Message) -> None:
        if not self._closed:
            self._unread += held_size(message)
        super()._deliver(message)

    def _consumed(self, message: Message) -> None:
        self._unread -= held_size(message)
        if self._room is not None and self._unread <= self._high // 2:
            room, self._room = self._room, None
            if not room.done():
                room.set_result(None)

    async def _drained(self) -> None:
        if self._room is None:
            self._room = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._room)

    def _release(self) -> None:
        room, self._room = self._room, None
        if room is not None and not room.done():
            room.set_result(None)

    def _finish(self, reset: bool) -> None:
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._last(reset))

    async def _last(self, reset: bool) -> None:
        """Write the final frame (RESET or END) after whatever is already being sent."""


class _ServerSocket(_HTTPSocket):
    """The listener's end: writes frames into the streamed response, which ``_handle`` ends once all is done."""

    def __init__(self, local: str, remote: str, options: TransportOptions, response: web.StreamResponse) -> None:
        super().__init__(local, remote, options)
        self._response = response
        self._lock = asyncio.Lock()

    async def _send(self, data: bytes) -> None:
        async with self._lock:
            try:
                await self._response.write(data)
            except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
                # aiohttp raises ConnectionResetError, or RuntimeError once the response is finished.
                self._fail("the connection was lost")
                raise ConnectionClosed(f"the connection was lost: {exc}") from None

    async def _write(self, message: Message | None, end: bool) -> None:
        data = b"" if message is None else _encode(message, self._max)
        if end:
            data += _control(END)
        elif self._send_closed is not None:
            raise ConnectionClosed(self._send_closed)
        await self._send(data)

    async def _last(self, reset: bool) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._send(_control(RESET, "closed") if reset else _control(END))

    async def _send_reset(self, reason: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._send(_control(RESET, reason))


class _ClientSocket(_HTTPSocket):
    """The dialer's end: frames go through a queue that aiohttp's body writer empties."""

    def __init__(self, local: str, remote: str, options: TransportOptions) -> None:
        super().__init__(local, remote, options)
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(_QUEUE)
        self._body_done = asyncio.Event()
        self._response: aiohttp.ClientResponse | None = None
        self._opening: asyncio.Task[aiohttp.ClientResponse] | None = None
        self._reader: asyncio.Task[None] | None = None

    async def body(self) -> Any:
        """The request body: the preface, then each queued frame, joined when several are waiting."""
        try:
            yield PREFACE
            queue = self._queue
            while True:
                item = await queue.get()
                if item is None:
                    return
                if queue.empty():
                    yield item
                    continue
                parts = [item]
                while not queue.empty():
                    more = queue.get_nowait()
                    if more is None:
                        yield b"".join(parts)
                        return
                    parts.append(more)
                yield b"".join(parts)
        finally:
            self._body_done.set()
            # aiohttp stopped writing (the connection went): wake senders waiting for room; they fail from now on.
            while not self._queue.empty():
                self._queue.get_nowait()

    async def _put(self, item: bytes | None) -> None:
        if self._body_done.is_set():
            raise ConnectionClosed("the connection was lost")
        await self._queue.put(item)

    async def _write(self, message: Message | None, end: bool) -> None:
        if message is not None:
            await self._put(_encode(message, self._max))
        if end:
            await self._put(_control(END))
            await self._put(None)

    def _reset(self, reason: str = "the peer closed the stream") -> None:
        already = self._send_closed is not None
        super()._reset(reason)
        if not already and self._closing is None:
            # The peer drops whatever we send: end the request body so the connection is freed.
            self._closing = asyncio.get_running_loop().create_task(self._end_body())

    async def _end_body(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._put(None)

    async def _last(self, reset: bool) -> None:
        try:
            async with asyncio.timeout(_LINGER):
                with contextlib.suppress(ConnectionClosed):
                    await self._put(_control(RESET, "closed") if reset else _control(END))
                    await self._put(None)
                await self._body_done.wait()
        except TimeoutError:
            pass
        finally:
            if reset:
                self._drop()

    def _drop(self) -> None:
        """Stop reading and close the connection (what is left of the response is of no use)."""
        reader = self._reader
        if reader is not None and not reader.done() and reader is not asyncio.current_task():
            reader.cancel()
        if self._opening is not None and not self._opening.done():
            self._opening.cancel()
        if self._response is not None:
            self._response.close()

    async def read(self, opening: asyncio.Task[aiohttp.ClientResponse], options: TransportOptions) -> None:
        """Wait for the listener's answer, then read the response into the socket.

        After a clean end aiohttp gives the connection back to the pool; otherwise it is closed.
        """
        self._opening = opening
        try:
            response = await opening
        except asyncio.CancelledError:
            self._fail("the transport is closed")
            raise
        except Exception as exc:  # aiohttp.ClientError, OSError: no connection, or it went before the answer
            self._fail(f"cannot connect to {self.remote}: {exc}")
            self._end_queue()
            return
        self._response = response
        if response.status != 200:
            try:
                async with asyncio.timeout(options.read_timeout):
                    reason = (await response.content.read(_REASON_LIMIT)).decode(errors="replace").strip()
            except (TimeoutError, aiohttp.ClientError, OSError):
                reason = ""
            response.close()
            self._fail(f"{self.remote} refused the socket: HTTP {response.status} {reason or response.reason}")
            self._end_queue()
            return
        connection = response.connection
        if connection is not None and connection.transport is not None:
            self._local = format_address(connection.transport.get_extra_info("sockname"))
        clean = False
        try:
            clean = await _Reader(response.content, self, options, None, None).run()
        except _ProtocolError as exc:
            self._fail(f"protocol error from {self.remote}: {exc}")
        except asyncio.CancelledError:
            self._fail("the transport is closed")
            raise
        except Exception as exc:  # aiohttp.ClientError, OSError: the connection is gone
            self._fail(f"the connection to {self.remote} was lost: {exc}")
        finally:
            if not clean:
                response.close()
            self._end_queue()

    def _end_queue(self) -> None:
        if not self._body_done.is_set():
            with contextlib.suppress(asyncio.QueueFull):
                self._queue.put_nowait(None)


async def _headers_sent(session: aiohttp.ClientSession, context: Any, params: Any) -> None:
    """aiohttp's trace hook: the POST's head is out on a connection, so ``dial`` may return."""
    sent = context.trace_request_ctx
    if isinstance(sent, asyncio.Future) and not sent.done():
        sent.set_result(None)


class _Refuse(asyncio.Protocol):
    """Answers a connection the listener has no room for (``max_connections``) with ``503`` and closes it."""

    def __init__(self, reason: str) -> None:
        self._reason = reason.encode()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(self._reason), self._reason)
        )
        # Closing at once with the request unread would reset the connection and lose the answer.
        asyncio.get_running_loop().call_later(1.0, transport.abort)

    def data_received(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.close()


class _Stream(web.StreamResponse):
    """The listener's answer: its head leaves with the first frame, one write instead of two (the dialler
    does not wait for it)."""

    _send_headers_immediately = False


def _refusal(status: int, reason: str) -> web.Response:
    response = web.Response(status=status, text=reason + "\n", headers={"Connection": "close"})
    response.force_close()
    return response


class _HTTPListener(Listener):
    def __init__(self, owner: HTTPTransport, handler: Handler) -> None:
        self._owner = owner
        self._handler = handler
        self._address = ""
        self._closed = False
        options = owner.options
        self._budget = _Budget(options.max_partial_bytes)
        # keepalive_timeout also closes a connection that never completes a request head (aiohttp arms it on
        # connect). A body left unread (a refused or reset request) is not drained: the connection closes.
        self._web = web.Server(
            self._handle,
            access_log=None,
            keepalive_timeout=options.idle_timeout,
            lingering_time=0,
            # A request aiohttp cannot parse is a rate-limited line, not an ERROR with a traceback per request.
            logger=PeerErrorLogger(owner._log, "http transport"),
        )
        self._server: asyncio.Server | None = None
        self._sockets: set[_ServerSocket] = set()
        #: Connections with a socket in progress (the others are idle between requests).
        self._busy: set[Any] = set()
        #: Connections accepted whose protocol aiohttp has not counted yet (see _connection).
        self._arriving = 0

    @property
    def address(self) -> str:
        return self._address

    def _connection(self) -> asyncio.BaseProtocol:
        limit = self._owner.options.max_connections
        # aiohttp counts a connection in connection_made, on a later turn of the loop than this: the connections
        # accepted in one batch are all made first. Those on their way count too, or a burst overshoots the limit
        # by up to a batch (1,108 open of 1,024 measured).
        if len(self._web.connections) + self._arriving < limit:
            self._arriving += 1
            asyncio.get_running_loop().call_soon(self._arrived)  # runs just before the connection's connection_made
            return self._web()
        problem = f"too many connections to {self._address} (max_connections {limit})"
        self._owner._log.event("max_connections", logging.WARNING, f"refused a connection: {problem}")
        return _Refuse(problem)

    def _arrived(self) -> None:
        self._arriving -= 1

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        """One socket: check the request, answer 200, then read frames while the handler runs."""
        if self._closed:
            return _refusal(503, f"the listener at {self._address} is closed")
        if request.method != "POST":
            return _refusal(405, f"method {request.method} not allowed; use POST")
        if request.path != PATH:
            return _refusal(404, f"no such path {request.path!r}; sockets are opened at {PATH}")
        if request.content_type != CONTENT_TYPE:
            return _refusal(415, f"content type must be {CONTENT_TYPE}, not {request.content_type!r}")
        options = self._owner.options
        try:
            async with asyncio.timeout(options.read_timeout):
                preface = await request.content.readexactly(len(PREFACE))
        except TimeoutError:
            return _refusal(408, f"preface not received within read_timeout ({options.read_timeout:g}s)")
        except asyncio.IncompleteReadError:
            return _refusal(400, "the body ended before the preface")
        except (ConnectionError, aiohttp.ClientError):
            return _refusal(400, "the connection was lost")
        if preface != PREFACE:
            return _refusal(400, f"bad preface: a micro http transport stream starts with {PREFACE!r}")
        response = _Stream(
            status=200, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        socket = _ServerSocket(self._address, format_address(peer), options, response)
        owner = self._owner
        self._sockets.add(socket)
        owner._sockets.add(socket)
        connection = request.protocol
        self._busy.add(connection)
        loop = asyncio.get_running_loop()
        task = loop.create_task(run_handler(self._handler, socket))
        owner._tasks.add(task)
        task.add_done_callback(owner._tasks.discard)
        reader = loop.create_task(
            _Reader(request.content, socket, options, self._budget, options.read_timeout).run(
                options.first_message_timeout
            )
        )
        clean: bool | None = None
        try:
            await asyncio.wait((reader, task), return_when=asyncio.FIRST_COMPLETED)
            if reader.done():
                clean = self._read_ended(reader, socket)
            with contextlib.suppress(asyncio.CancelledError):
                # The handler's end closes the socket, which writes our last frame.
                await asyncio.shield(task)
            if socket._closing is not None:
                await socket._closing
            if clean is None:
                if not reader.done() and socket._remote_done:
                    # The peer's END is in and the end of its body is on its way (a dialler sends both at
                    # once): wait for it, or the connection could not be kept alive for the next socket.
                    await asyncio.wait((reader,), timeout=options.read_timeout)
                if reader.done():
                    clean = self._read_ended(reader, socket)
                else:
                    # We closed the socket first: what the peer still sends is of no use, nor is the connection.
                    reader.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reader
        except asyncio.CancelledError:
            reader.cancel()
            socket._fail("the transport is closed")
            response.force_close()
            raise
        finally:
            self._sockets.discard(socket)
            owner._sockets.discard(socket)
            self._busy.discard(connection)
        if not clean or self._closed:
            response.force_close()
        return response

    def _read_ended(self, reader: asyncio.Task[bool], socket: _ServerSocket) -> bool:
        """Whether the request body ended cleanly (END, then its end); fails the socket when it did not."""
        if reader.cancelled():
            return False
        exc = reader.exception()
        if exc is None:
            return reader.result()
        if isinstance(exc, _ProtocolError):
            self._owner._log.event(
                "protocol", logging.INFO, f"{self._address}: protocol error from {socket.remote}: {exc}"
            )
            if socket._send_closed is None and socket._closing is None:
                socket._closing = asyncio.get_running_loop().create_task(socket._send_reset(f"protocol error: {exc}"))
            socket._reset(f"protocol error from {socket.remote}: {exc}")
        else:
            socket._fail(f"the connection was lost: {exc}")
        return False

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self._web.connections):
            if conn in self._busy:
                conn.close()  # aiohttp closes it once the running socket is done
            else:
                # An idle keep-alive connection: aiohttp's close() would only make it ignore the next
                # request (it has no task running to close it), and a dialler reusing it would wait forever.
                conn.force_close()
        self._owner._listeners.discard(self)

    def _abort(self) -> None:
        for socket in list(self._sockets):
            socket._fail("the transport is closed")
        for conn in list(self._web.connections):
            conn.force_close()


class HTTPTransport(Transport):
    """Sockets as streaming HTTP/1.1 POSTs, with TLS (https) when ``options.tls`` is set. See the module docstring."""

    options_type: ClassVar[type[TransportOptions]] = TransportOptions
    #: The name it is registered by, also when built without the plugin manager: servers register it as the
    #: node's ``transport`` and clients compare it (:func:`micro.selector.filter_protocol`).
    name = "http"
    capabilities: ClassVar[frozenset[str]] = frozenset({"tls"})

    def __init__(self, options: TransportOptions | None = None) -> None:
        super().__init__(options)
        self._session: aiohttp.ClientSession | None = None
        self._listeners: set[_HTTPListener] = set()
        self._sockets: set[_HTTPSocket] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._client_tls: ssl.SSLContext | None = None
        self._server_tls: ssl.SSLContext | None = None
        self._log = RateLimitedLog(logger)

    # -- dialling --------------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            options = self.options
            tls: ssl.SSLContext | bool = self._client_context() if options.tls else False
            trace = aiohttp.TraceConfig()
            trace.on_request_headers_sent.append(_headers_sent)
            self._session = aiohttp.ClientSession(
                trace_configs=[trace],
                # No total: a socket lives as long as its users want; dial bounds the connect and answer.
                timeout=aiohttp.ClientTimeout(total=None, connect=None, sock_read=None),
                connector=aiohttp.TCPConnector(
                    limit=0,
                    ssl=tls,
                    # Idle connections go well before a listener's idle_timeout would close them under us.
                    keepalive_timeout=min(15.0, options.idle_timeout / 2),
                ),
                auto_decompress=False,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def _dial(self, address: str, timeout: float | None) -> Socket:
        """Open the POST and return once its head is out on a connection (the answer is read in the background).

        Not waiting for the listener's ``200`` saves a round trip per socket: the first message
        follows the head at once. A listener that refuses the socket (``503``...) fails it instead:
        its ``recv`` and ``send`` raise :class:`~micro.errors.ConnectionClosed` with the reason.
        """
        host, port = split_address(address)
        host = host or "127.0.0.1"
        scheme = "https" if self.options.tls else "http"
        url = f"{scheme}://[{host}]:{port}{PATH}" if ":" in host else f"{scheme}://{host}:{port}{PATH}"
        timeout = self.options.dial_timeout if timeout is None else timeout
        session = self._client()
        loop = asyncio.get_running_loop()
        for attempt in (1, 2):
            socket = _ClientSocket("", address, self.options)
            sent: asyncio.Future[None] = loop.create_future()
            post = loop.create_task(
                session.post(
                    url,
                    data=socket.body(),
                    headers={"Content-Type": CONTENT_TYPE},
                    chunked=True,
                    trace_request_ctx=sent,
                )
            )
            try:
                async with asyncio.timeout(timeout):
                    await asyncio.wait((post, sent), return_when=asyncio.FIRST_COMPLETED)
            except TimeoutError:
                post.cancel()
                raise Timeout(f"cannot connect to {address} within {timeout:g}s") from None
            except asyncio.CancelledError:
                post.cancel()
                raise
            finally:
                sent.cancel()
            if post.done() and not post.cancelled() and post.exception() is not None:
                exc = post.exception()
                stale = isinstance(exc, aiohttp.ServerDisconnectedError) or (
                    isinstance(exc, aiohttp.ClientOSError) and not isinstance(exc, aiohttp.ClientConnectorError)
                )
                if stale and attempt == 1:
                    continue  # a pooled connection the server closed while idle: once more, on a fresh one
                raise Unavailable(f"cannot connect to {address}: {exc}") from exc
            break
        self._sockets.add(socket)
        reader = loop.create_task(socket.read(post, self.options))
        socket._reader = reader
        self._tasks.add(reader)
        reader.add_done_callback(self._tasks.discard)
        reader.add_done_callback(lambda _: self._sockets.discard(socket) if socket._released else None)
        if post.done() and not post.cancelled() and post.result().status != 200:
            # Refused already (a refusal can come at once): say so here rather than on the first recv.
            await asyncio.wait((reader,), timeout=timeout)
            reason = socket._eof or f"{address} refused the socket: HTTP {post.result().status}"
            await socket.close()
            raise Unavailable(reason)
        return socket

    # -- listening -------------------------------------------------------------------------------

    async def _listen(self, address: str | None, handler: Handler) -> Listener:
        address = address or self.options.address
        host, port = split_address(address)
        tls = self._server_context() if self.options.tls else None
        loop = asyncio.get_running_loop()
        try:
            bind = await TCPTransport._bind_host(loop, host or "0.0.0.0", port)
            sock = TCPTransport._listening_socket(bind, port)
        except OSError as exc:
            raise Unavailable(f"cannot listen on {address}: {exc.strerror or exc}") from exc
        listener = _HTTPListener(self, handler)
        listener._address = format_address(sock.getsockname())
        try:
            listener._server = await loop.create_server(
                listener._connection,
                sock=sock,
                ssl=tls,
                ssl_handshake_timeout=self.options.read_timeout if tls is not None else None,
            )
        except OSError as exc:
            sock.close()
            raise Unavailable(f"cannot listen on {address}: {exc.strerror or exc}") from exc
        self._listeners.add(listener)
        return listener

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

    async def _close(self) -> None:
        listeners = list(self._listeners)
        for listener in listeners:
            await listener.close()
            listener._abort()
        for socket in list(self._sockets):
            socket._fail("the transport is closed")
            if isinstance(socket, _ClientSocket):
                socket._drop()
        self._sockets.clear()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        session, self._session = self._session, None
        if session is not None:
            await session.close()
        for listener in listeners:
            await listener._web.shutdown(0.1)

    def __repr__(self) -> str:
        return f"<HTTPTransport {len(self._sockets)} sockets, {len(self._listeners)} listeners>"
