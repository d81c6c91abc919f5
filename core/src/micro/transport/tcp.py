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

Flow control is TCP's: a sender waits while the kernel and the transport
buffers are full, and a receiver stops reading the connection while its
sockets hold more than ``max(2 * max_message_size, 8 MiB)`` unread bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket as _socket
import ssl
import struct
from dataclasses import dataclass
from typing import ClassVar, Final, cast

import msgpack

from ..errors import BadRequest, ConnectionClosed, InvalidOption, MessageTooLarge, Timeout, Unavailable
from ._stream import RESET as RESET_REASON
from ._stream import StreamSocket, check_header, format_address, run_handler, split_address
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
_MAX_ID: Final = 0xFFFF_FFFF
_BIG: Final = 64 * 1024  # pending output that is flushed at once rather than at the end of the loop turn
# Frames pending in one loop turn that are sent without waiting for its end. With many calls in flight on one
# connection, sending the first replies while later ones are still being produced lets the peer start on them:
# the two processes then work in parallel instead of taking turns (about twice the calls per second with 64
# callers in benchmarks/rpc.py), for one extra write per this many frames.
_BATCH: Final = 8
_CLOSE_GRACE: Final = 1.0


class _TCPSocket(StreamSocket):
    """One stream. A dialled socket has id 0 until its first frame opens the stream."""

    def __init__(self, conn: _Connection, stream_id: int) -> None:
        super().__init__(conn.local, conn.remote)
        self._conn = conn
        self._id = stream_id

    def _open(self) -> int:
        self._id = self._conn._allocate(self)
        return OPEN

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
        if self._id == 0:
            flags |= self._open()
        conn._write_frame(self._id, flags, header, body)
        if conn._write_paused:
            await conn._drain()

    def _before_recv(self) -> None:
        if self._id == 0 and self._send_closed is None:
            try:
                self._open()
                self._conn._write_frame(self._id, OPEN, b"", b"")
            except ConnectionClosed as exc:
                self._fail(exc.detail)

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
            self._conn._hold(len(message.body))

    def _consumed(self, message: Message) -> None:
        self._conn._unhold(len(message.body))


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
        self._expect_preface = self._is_server
        self._streams: dict[int, _TCPSocket] = {}
        self._next_id = 1
        self._last_id = 0
        self._held = 0
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._draining = False
        self._reason: str | None = None
        self._packer = msgpack.Packer(use_bin_type=True)
        self._out: list[bytes | bytearray | memoryview] = []
        self._out_size = 0
        self._out_frames = 0
        # The last frame still in _out, as (index of its head in _out, stream id, flags, header size, size),
        # so that an END written right after it joins it instead of costing a frame of its own.
        self._last: tuple[int, int, int, int, int] | None = None
        self._loop = asyncio.get_running_loop()
        self.lost: asyncio.Future[None] = self._loop.create_future()

    @property
    def usable(self) -> bool:
        return self._reason is None and self._next_id <= _MAX_ID

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports do not subclass asyncio.Transport.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        raw = transport.get_extra_info("socket")
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.setsockopt(_socket.SOL_SOCKET, _socket.SO_KEEPALIVE, 1)
        self.local = format_address(transport.get_extra_info("sockname"))
        self.remote = format_address(transport.get_extra_info("peername"))
        self._owner._connections.add(self)
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
        buf = self._buf
        if self._expect_preface:
            buf += data
            if len(buf) < len(PREFACE):
                if not PREFACE.startswith(buf):
                    self._protocol_error("bad preface: not a micro transport client")
                return
            if not buf.startswith(PREFACE):
                self._protocol_error("bad preface: not a micro transport client")
                return
            self._expect_preface = False
            del buf[: len(PREFACE)]
            if not buf:
                return
            data = bytes(buf)
            buf.clear()
        if buf:
            buf += data
            used = self._parse(buf)
            if used:
                del buf[:used]
        else:
            used = self._parse(data)
            if used < len(data) and self._reason is None:
                buf += memoryview(data)[used:]

    # -- frames in -------------------------------------------------------------------------------

    def _parse(self, data: bytes | bytearray) -> int:
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

    def _frame(self, stream_id: int, flags: int, view: memoryview, start: int, body: int, end: int) -> None:
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
                stream = self._accept(stream_id)
            else:
                opened = self._last_id if self._is_server else self._next_id - 1
                if stream_id > opened:
                    self._protocol_error(f"frame for stream {stream_id}, which was never opened")
                return  # the stream is closed here: drop what was in flight
        elif flags & OPEN:
            self._protocol_error(f"stream {stream_id} opened twice")
            return
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
            stream._deliver(Message(header, bytes(view[body:end])))
        elif end > start and not flags & RESET:
            self._protocol_error("payload in a frame without MSG")
            return
        if flags & RESET:
            reason = bytes(view[body:end]).decode("utf-8", "replace") if end > body else ""
            stream._reset(f"{RESET_REASON}: {reason}" if reason else RESET_REASON)
        elif flags & END:
            stream._end()

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

    # -- frames out ------------------------------------------------------------------------------

    def _pack(self, header: dict[str, str]) -> bytes:
        packed: bytes = self._packer.pack(header)
        return packed

    def _allocate(self, stream: _TCPSocket) -> int:
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
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        self._last = None
        self._out_size = 0
        self._out_frames = 0
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(data)

    async def _drain(self) -> None:
        if not self._write_paused or self._reason is not None:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(waiter)
        await waiter
        if self._reason is not None:
            raise ConnectionClosed(self._reason)

    def _wake_writers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- flow control on the read side -----------------------------------------------------------

    def _hold(self, size: int) -> None:
        self._held += size
        if self._held > self._high and not self._reading_paused and self._transport is not None:
            self._reading_paused = True
            self._transport.pause_reading()

    def _unhold(self, size: int) -> None:
        self._held -= size
        if self._reading_paused and self._held <= self._low and self._reason is None and self._transport is not None:
            self._reading_paused = False
            self._transport.resume_reading()

    # -- ending ----------------------------------------------------------------------------------

    def _forget(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)
        if self._draining and not self._streams:
            self.close("the listener is closed")

    def drain(self) -> None:
        """Refuse new streams, and close once the open ones are done."""
        self._draining = True
        if not self._streams:
            self.close("the listener is closed")

    def _protocol_error(self, problem: str) -> None:
        if self._reason is not None:
            return
        if self._transport is not None and not self._transport.is_closing():
            with contextlib.suppress(ConnectionClosed):
                self._write_frame(0, ERROR, b"", problem.encode())
        self.close(f"protocol error on the connection with {self.remote}: {problem}")

    def close(self, reason: str) -> None:
        """Close the connection (after flushing what is written) and fail its sockets with ``reason``."""
        if self._reason is None and self._transport is not None:
            self._flush()
            self._transport.close()
        self._shutdown(reason)

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
        self._wake_writers()
        self._owner._forget(self)
        if self._listener is not None:
            self._listener._connections.discard(self)


class _TCPListener(Listener):
    def __init__(self, owner: TCPTransport, handler: Handler) -> None:
        self._owner = owner
        self._handler = handler
        self._server: asyncio.Server | None = None
        self._address = ""
        self._connections: set[_Connection] = set()
        self._closed = False

    @property
    def address(self) -> str:
        return self._address

    def _accept(self, socket: Socket) -> None:
        task = asyncio.get_running_loop().create_task(run_handler(self._handler, socket))
        self._owner._tasks.add(task)
        task.add_done_callback(self._owner._tasks.discard)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        for conn in list(self._connections):
            conn.drain()
        self._owner._listeners.discard(self)


@dataclass(eq=False)
class _Pending:
    task: asyncio.Task[_Connection]
    waiters: int = 0


class TCPTransport(Transport):
    """Multiplexed TCP, with TLS when ``options.tls`` is set. See the module docstring for the wire format."""

    options_type: ClassVar[type[TransportOptions]] = TransportOptions
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

    # -- dialling --------------------------------------------------------------------------------

    async def dial(self, address: str, *, timeout: float | None = None) -> Socket:
        conn = self._pool.get(address)
        if conn is None or not conn.usable:
            conn = await self._connect(address, self.options.dial_timeout if timeout is None else timeout)
        return _TCPSocket(conn, 0)

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

    async def listen(self, address: str | None, handler: Handler) -> Listener:
        address = address or self.options.address
        host, port = split_address(address)
        tls = self._server_context() if self.options.tls else None
        loop = asyncio.get_running_loop()
        listener = _TCPListener(self, handler)
        try:
            bind = await self._bind_host(loop, host or "0.0.0.0", port)
            listener._server = await loop.create_server(
                lambda: _Connection(self, listener, address), bind, port, ssl=tls
            )
        except OSError as exc:
            raise Unavailable(f"cannot listen on {address}: {exc.strerror or exc}") from exc
        listener._address = format_address(listener._server.sockets[0].getsockname())
        self._listeners.add(listener)
        return listener

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
            options = self.options
            try:
                context = ssl.create_default_context(cafile=options.ca_file)
                if options.insecure:
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                if options.cert_file:
                    context.load_cert_chain(options.cert_file, options.key_file)
            except (OSError, ValueError) as exc:
                raise InvalidOption(f"cannot load the TLS files: {exc}", option="ca_file") from exc
            self._client_tls = context
        return self._client_tls

    def _server_context(self) -> ssl.SSLContext:
        if self._server_tls is None:
            options = self.options
            if not options.cert_file:
                raise InvalidOption("a TLS listener needs cert_file and key_file", option="cert_file")
            try:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.load_cert_chain(options.cert_file, options.key_file)
                if options.ca_file:
                    context.load_verify_locations(options.ca_file)
                    context.verify_mode = ssl.CERT_REQUIRED
            except (OSError, ValueError) as exc:
                raise InvalidOption(f"cannot load the TLS files: {exc}", option="cert_file") from exc
            self._server_tls = context
        return self._server_tls

    # -- closing ---------------------------------------------------------------------------------

    def _forget(self, conn: _Connection) -> None:
        if self._pool.get(conn.address) is conn:
            del self._pool[conn.address]

    async def close(self) -> None:
        for listener in list(self._listeners):
            await listener.close()
        for pending in list(self._connecting.values()):
            pending.task.cancel()
        conns = list(self._connections)
        self._connections.clear()
        for conn in conns:
            conn.close("the transport is closed")
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
