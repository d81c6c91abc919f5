"""The NATS transport (``MICRO_TRANSPORT=nats``): sockets over NATS subjects, so a service opens no port.

Go Micro's ``transport/nats`` in micro's contract (:mod:`micro.transport.base`). A listener
subscribes to a subject instead of binding a port, and a dialler reaches it through the NATS
server; both ends only connect *out* to NATS.

**Addresses** keep the ``host:port`` shape every transport (and the registry, the selector and
``micro call --address``) uses, as the tunnel transport's do, but name a subject, not a socket:

* ``listen(":0")`` (any address with port 0, which is what a server listens on by default) picks
  a name no other process has, ``<transport id>:<n>``, where the transport id is ``nats-`` and 12
  random hex digits. That is the address the server registers; it means nothing outside NATS.
* ``listen("orders:7")`` listens on exactly that name (``host`` is any text without whitespace,
  ``*`` or ``>``), and fails with :class:`~micro.errors.Unavailable` when some process already
  listens on it (checked with a request: two listens racing on one name can both succeed).
* The listener's subject is ``<subject_prefix>.l.<host>.<port>``; every socket has an inbox
  ``<subject_prefix>.i.<transport id>.<n>``, all of one transport's behind one wildcard
  subscription.

**Wire format.** Each NATS message of a socket is ``flags u8 | seq u32 | data``. ``seq`` counts the
messages each direction of a socket carries (from 0): a gap (the NATS server or the driver dropped
one, as it does to a slow consumer) resets the socket instead of handing out a stream with a hole.
A transport message is ``hsize u32 | msgpack header | body``, split into as many NATS messages as
the server's ``max_payload`` needs (all but the last carry ``MORE``), so ``max_message_size`` and
not ``max_payload`` bounds what a socket carries. Flags: ``OPEN`` (a dialler's first message,
sent to the listener's subject), ``MSG``, ``END`` (half-close), ``RESET`` (close; data is the
reason, ``REFUSED`` with it when the listener is closed), ``MORE``, and ``PING``/``PONG``
(keepalive; no ``seq``). A dialler sends every message to the listener's subject with its inbox as
the reply subject (``<inbox>.o`` for the OPEN), which is how the listener tells its sockets apart;
the listener sends to that inbox with its own socket's inbox as the reply subject. A socket's frames
queue and leave after the loop turn that wrote them, in order, and an END (or a close) written in
the same turn joins the message before it: a unary call is one ``OPEN|MSG|END`` and one
``MSG|END``, two NATS messages.

**Failure.** The NATS server answers a message sent to a subject nobody subscribes to with a "no
responders" status on its reply subject: a dial (which first asks the listener, unless this transport
heard from it within the last second) to a name nobody listens on fails with
:class:`~micro.errors.Unavailable` at once, as does the first ``recv`` of a socket whose OPEN found
nobody (the listener never saw it, so a retry is safe); a socket whose peer went after that fails with
:class:`~micro.errors.ConnectionClosed` on its next message. A closing listener drains its subscription
(NATS has its UNSUB before the listener stops answering), so a socket opened as it closes is refused
rather than left unanswered. A dialled socket that has heard nothing at all a second after its OPEN
pings its peer (core NATS may still drop a message: the OPEN is then known to nobody, and the ping's
answer, a RESET or "no responders", fails the socket with :class:`~micro.errors.ConnectionClosed`, which
a client may retry). After that, a socket that has heard nothing from its peer for ``keepalive`` seconds
pings it: a peer process that died (SIGKILL included: the NATS server drops its subscriptions when its
connection goes) is noticed within about two ``keepalive`` periods, and a peer that does not answer
three pings in a row is given up. Either way the socket fails with
:class:`~micro.errors.ConnectionClosed`; nothing waits forever.

**Limits** (``NatsTransportOptions``; ``docs/transport.md``): ``max_message_size`` (also what a
receiver reassembles: more resets the socket), ``max_connections`` (distinct dialling transports a
listener serves at once), ``max_streams`` (sockets one dialling transport may have open on one
listener; one more is reset with a reason naming the limit), ``idle_timeout`` (a socket that carries
no message for that long is reset, on either side), ``first_message_timeout`` (an accepted socket
opened with no message), ``read_timeout`` (a message split over several NATS messages must be
complete this long after its first part) and ``max_partial_bytes`` (incomplete messages one
transport buffers). There is no back-pressure between the two ends beyond NATS's own: a receiver
whose unread messages pass ``max(2 * max_message_size, 8 MiB)`` resets the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
import struct
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

import msgpack
from micro.errors import BadRequest, ConnectionClosed, InvalidOption, MessageTooLarge, Timeout, Unavailable
from micro.transport import Handler, Listener, Message, Socket, Transport, TransportOptions
from micro.transport._stream import StreamSocket, check_header, run_handler, split_address

from ._client import connect, subscribed
from .options import _seconds, check_subject, display_address, server_urls

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

__all__ = ["NatsTransport", "NatsTransportOptions"]

logger = logging.getLogger("micro.transport.nats")

OPEN: Final = 0x01
MSG: Final = 0x02
END: Final = 0x04
RESET: Final = 0x08
REFUSED: Final = 0x10
MORE: Final = 0x20
PING: Final = 0x40
PONG: Final = 0x80
_HEAD: Final = struct.Struct("!BI")
_HSIZE: Final = struct.Struct("!I")
_SEQ_MOD: Final = 1 << 32
#: Bytes of a NATS message that are not ours: the server counts only the payload against max_payload,
#: but leave room so a server that also counts a header block never refuses a full chunk.
_SLACK: Final = 64
#: Seconds a dial trusts that a listener it heard from is still there, instead of asking it again.
_FRESH: Final = 1.0
#: Pings in a row a socket sends without an answer before it gives its peer up.
_MISSED: Final = 3
#: Seconds a dialled socket waits for a first word from its peer before it pings it (not ``keepalive``): NATS
#: may drop the OPEN unanswered (core NATS delivers at most once; one was seen lost right after the listener
#: unsubscribed), and then only a ping finds out that nobody has the stream.
_FIRST_ANSWER: Final = 1.0
#: Bytes a socket queues for its flusher before ``send`` waits for it.
_OUT_HIGH: Final = 1024 * 1024
#: Suffix of the reply subject of a dialled socket's first message.
_OPENING: Final = ".o"
# A listen name: no whitespace and no wildcards; dots are fine (they only add subject tokens).
_HOST: Final = re.compile(r"[^\s*>]+")


@dataclass(frozen=True, kw_only=True, slots=True)
class NatsTransportOptions(TransportOptions):
    """The ``nats`` transport (``MICRO_TRANSPORT=nats``); see :mod:`micro_nats.transport`.

    ``address`` is still the default *listen* address (``":0"``: a fresh name); the NATS servers
    are ``servers`` (``MICRO_TRANSPORT_SERVERS``). ``tls`` and its files do not apply: use a
    ``tls://`` server URL, which the NATS connection then uses.
    """

    #: NATS servers of one cluster (``nats://[user:password@]host:4222``, ``tls://...`` or host:port);
    #: empty means ``nats://127.0.0.1:4222``.
    servers: tuple[str, ...] = ()
    #: Seconds to open the connection to NATS.
    connect_timeout: float = 5.0
    #: Subjects this transport uses start with it: permissions for ``<subject_prefix>.>`` are all it needs.
    subject_prefix: str = "micro.transport"
    #: Seconds a socket that hears nothing from its peer waits before it checks the peer is still there.
    keepalive: float = 5.0

    def __post_init__(self) -> None:
        TransportOptions.__post_init__(self)
        server_urls(self.servers)
        _seconds(self.connect_timeout, "connect_timeout", 0, strict=True)
        _seconds(self.keepalive, "keepalive", 0.05)
        check_subject(self.subject_prefix, "subject_prefix")
        if self.tls:
            raise InvalidOption(
                "the nats transport's connection is the NATS client's: give a tls:// server in `servers`", option="tls"
            )


def _subject_for(address: str) -> tuple[str, int]:
    """``(host, port)`` of a listen or dial address; :class:`BadRequest` when it cannot name a subject."""
    host, port = split_address(address)
    if host and not (_HOST.fullmatch(host) and all(host.split("."))):
        raise BadRequest(f"invalid address {address!r}: the name before ':' must be dot-separated text without spaces")
    return host, port


class _NatsSocket(StreamSocket):
    """One end of a stream. ``_to`` is where our messages go; ``_inbox`` is where the peer's arrive."""

    def __init__(self, owner: NatsTransport, local: str, remote: str, inbox: str, to: str, *, dialled: bool) -> None:
        super().__init__(local, remote)
        self._owner = owner
        self._inbox_subject = inbox
        self._to = to
        self._dialled = dialled
        self._listener: _NatsListener | None = None
        #: The peer's key at the listener (a dialled socket's inbox); ``None`` for a dialled socket.
        self._key: str | None = None
        self._opened = not dialled  # a dialled socket's first message carries OPEN
        self._send_seq = 0
        self._recv_seq = 0
        #: Frames waiting for the flusher (``[flags, data]``), their bytes, the flusher, and who waits for it.
        self._out: list[list[Any]] = []
        self._out_bytes = 0
        self._flusher: asyncio.Task[None] | None = None
        self._waiting: asyncio.Future[None] | None = None
        self._partial = bytearray()
        self._partial_since = 0.0
        self._unread = 0
        now = time.monotonic()
        #: Last message either way (idle_timeout), and last thing heard from the peer (keepalive).
        self._active = now
        self._heard = now
        self._missed = 0
        #: A dialled socket has heard from its peer since its OPEN (anything: a reply, a PONG, a RESET).
        self._answered = False
        self._refused: str | None = None
        #: A message (not just the OPEN) has arrived; an accepted socket waits first_message_timeout for one.
        self._got_message = False

    # -- sending --------------------------------------------------------------------------------

    def _encode(self, message: Message) -> bytes:
        header = check_header(message.header)
        body = message.body
        if type(body) is not bytes:
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise BadRequest(f"message body must be bytes, not {type(body).__name__}")
            body = bytes(body)
        packed = msgpack.packb(header) if header else b""
        size = len(packed) + len(body)
        limit = self._owner.options.max_message_size
        if size > limit:
            raise MessageTooLarge(f"message of {size} bytes exceeds max_message_size {limit}")
        return _HSIZE.pack(len(packed)) + packed + body

    async def _write(self, message: Message | None, end: bool) -> None:
        data = self._encode(message) if message is not None else None
        nc = self._owner._nc
        if nc is None or nc.is_closed:
            raise ConnectionClosed("the transport is closed")
        if message is not None and self._closed:
            raise ConnectionClosed(self._send_closed or "the socket is closed")
        self._active = time.monotonic()
        if data is None:
            self._queue_end(END, b"")
            return
        chunk = self._owner._chunk
        base = self._opening() | MSG
        parts = [data[i : i + chunk] for i in range(0, len(data), chunk)]
        last = len(parts) - 1
        for index, part in enumerate(parts):  # queued in one go: concurrent senders never interleave parts
            flags = base if index == 0 else MSG
            if index < last:
                flags |= MORE
            elif end:
                flags |= END
            self._queue(flags, part)
        # Back-pressure: NATS's own (the driver's buffer) reaches us through the flusher; wait while it lags.
        while self._out_bytes > _OUT_HIGH and self._flusher is not None:
            await self._drained()

    def _opening(self) -> int:
        """OPEN for a dialled socket's first frame, 0 after it."""
        if self._opened:
            return 0
        self._opened = True
        self._heard = time.monotonic()  # the first-answer ping counts from here, so it follows the OPEN
        return OPEN

    def _queue(self, flags: int, data: bytes) -> None:
        """Queue a frame; the queue leaves at the end of this loop turn, so an END joins the frame before it."""
        self._out.append([flags, data])
        self._out_bytes += len(data)
        if self._flusher is None:
            self._flusher = self._owner._spawn(self._flush())

    def _queue_end(self, flags: int, data: bytes) -> None:
        """Queue END (or RESET): joined to the last queued message frame when there is one."""
        out = self._out
        if flags == END and out and not out[-1][0] & (END | RESET | MORE):
            out[-1][0] |= END
        else:
            self._queue(self._opening() | flags, data)

    async def _flush(self) -> None:
        """Publish the queue in order (one flusher per socket at a time), until it stays empty."""
        try:
            # A task's first step runs after the current loop turn: whatever that turn queued (an END
            # after the message, more messages) leaves with it.
            while self._out:
                batch, self._out = self._out, []
                for flags, data in batch:
                    self._out_bytes -= len(data)
                    await self._publish(flags, data)
        except ConnectionClosed:
            self._out.clear()
            self._out_bytes = 0
        finally:
            self._flusher = None
            waiter, self._waiting = self._waiting, None
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    async def _drained(self) -> None:
        if self._waiting is None:
            self._waiting = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._waiting)

    async def _publish(self, flags: int, data: bytes) -> None:
        nc = self._owner._nc
        if nc is None:
            raise ConnectionClosed("the transport is closed")
        seq = self._send_seq
        self._send_seq = (seq + 1) % _SEQ_MOD
        # The OPEN names a reply subject of its own: a "no responders" for it means the listener never
        # saw this socket (refused: Unavailable, safe to retry), one for a later message that it is gone.
        reply = self._inbox_subject + _OPENING if flags & OPEN else self._inbox_subject
        try:
            await nc.publish(self._to, _HEAD.pack(flags, seq) + data, reply=reply)
        except Exception as exc:  # the driver's: closed, reconnect buffer full
            self._fail(f"cannot send through NATS: {exc or type(exc).__name__}")
            raise ConnectionClosed(f"cannot send through NATS: {exc or type(exc).__name__}") from exc

    def _before_recv(self) -> None:
        # A dialled socket read before anything was sent: open the stream now so the handler starts.
        if not self._opened and self._send_closed is None:
            self._queue(self._opening(), b"")
        return None

    def _finish(self, reset: bool) -> None:
        if not self._opened:
            return  # the peer never heard of this socket
        if reset:
            self._queue_end(RESET, b"the peer closed the stream")
        else:
            self._queue_end(END, b"")

    def _release(self) -> None:
        self._owner._forget(self)

    # -- receiving ------------------------------------------------------------------------------

    async def recv(self, *, timeout: float | None = None) -> Message:
        try:
            return await super().recv(timeout=timeout)
        except ConnectionClosed:
            if self._refused is not None and not self._inbox:
                raise Unavailable(self._refused) from None
            raise

    def _consumed(self, message: Message) -> None:
        self._unread -= len(message.body)

    def _arrived(self, flags: int, seq: int, data: bytes) -> None:
        """A message of ours from the peer, in NATS order."""
        now = time.monotonic()
        self._heard = now
        self._missed = 0
        if flags & RESET:
            # Also out of turn: a listener that no longer knows the stream answers with seq 0.
            reason = bytes(data).decode("utf-8", "replace") or "the peer closed the stream"
            if flags & REFUSED:
                self._refused = reason
            self._drop_partial()
            self._reset(reason)
            return
        if seq != self._recv_seq:
            self._abort(f"messages of the stream were lost in NATS (expected #{self._recv_seq}, got #{seq})")
            return
        self._recv_seq = (seq + 1) % _SEQ_MOD
        if flags & MSG:
            self._active = now
            self._got_message = True
            owner = self._owner
            if flags & MORE or self._partial:
                if not self._partial:
                    self._partial_since = now
                self._partial += data
                owner._partial_bytes += len(data)
                if len(self._partial) > owner.options.max_message_size + _HSIZE.size:
                    self._abort(f"a message exceeds max_message_size {owner.options.max_message_size}")
                    return
                if owner._partial_bytes > owner.options.max_partial_bytes:
                    self._abort(f"incomplete messages exceed max_partial_bytes {owner.options.max_partial_bytes}")
                    return
                if flags & MORE:
                    return
                data = bytes(self._partial)
                owner._partial_bytes -= len(self._partial)
                self._partial.clear()
            message = _decode(data)
            if message is None:
                self._abort("a malformed message arrived")
                return
            self._unread += len(message.body)
            self._deliver(message)
            if self._unread > owner._overrun:
                self._abort(f"the reader fell more than {owner._overrun} bytes behind (no back-pressure over NATS)")
                return
        if flags & END:
            self._end()

    def _abort(self, reason: str) -> None:
        """Reset the stream on both sides for ``reason`` (a broken stream is never delivered on)."""
        self._drop_partial()
        if self._opened and not self._local_done:
            self._queue_end(RESET, reason.encode())
        self._fail(reason)

    def _drop_partial(self) -> None:
        if self._partial:
            self._owner._partial_bytes -= len(self._partial)
            self._partial.clear()

    def _fail(self, reason: str) -> None:
        self._drop_partial()
        super()._fail(reason)

    def _vanished(self, opening: bool) -> None:
        """NATS said nobody subscribes to the peer's subject; ``opening``: when our OPEN was sent."""
        if opening:
            self._refused = f"nothing listens on {self._remote} (nats transport: no responders)"
        self._fail(f"the peer is gone ({self._remote} has no subscriber in NATS)")

    def _deliver(self, message: Message) -> None:
        if not self._closed:
            super()._deliver(message)


def _decode(data: bytes) -> Message | None:
    if len(data) < _HSIZE.size:
        return None
    (hsize,) = _HSIZE.unpack_from(data)
    if hsize > len(data) - _HSIZE.size:
        return None
    header: dict[str, str] = {}
    if hsize:
        try:
            header = msgpack.unpackb(data[4 : 4 + hsize])
        except Exception:
            return None
        if not isinstance(header, dict) or not all(type(k) is str and type(v) is str for k, v in header.items()):
            return None
    return Message(header, data[4 + hsize :])


class _NatsListener(Listener):
    def __init__(self, owner: NatsTransport, address: str, subject: str, handler: Handler) -> None:
        self._owner = owner
        self._address = address
        self._subject = subject
        self._handler = handler
        self._sub: Subscription | None = None
        self._closed = False
        #: Accepted sockets by the dialler's inbox subject.
        self._sockets: dict[str, _NatsSocket] = {}
        #: Open sockets per dialling transport (its id), for max_connections and max_streams.
        self._peers: dict[str, int] = {}

    @property
    def address(self) -> str:
        return self._address

    async def _received(self, msg: Msg) -> None:
        data = msg.data
        if len(data) < _HEAD.size or not msg.reply:
            return  # not ours: nothing to answer to
        flags, seq = _HEAD.unpack_from(data)
        owner = self._owner
        key = msg.reply
        if flags & OPEN:
            key = key.removesuffix(_OPENING)
        if flags & PING:
            if key.startswith(owner._inbox_root):  # an accepted socket's keepalive
                socket = self._sockets.get(key)
                if socket is None:
                    await owner._answer(key, RESET, b"the stream is closed")
                else:
                    socket._heard = time.monotonic()
                    await owner._answer(key, PONG, b"")
            elif self._closed:  # a dial's or a listen's probe
                await owner._answer(key, RESET | REFUSED, f"nothing listens on {self._address} any more".encode())
            else:
                await owner._answer(key, PONG, b"")
            return
        socket = self._sockets.get(key)
        if socket is None:
            if not flags & OPEN:
                if not flags & RESET:
                    await owner._answer(key, RESET, b"the stream is closed", seq=0)
                return
            refusal = self._refusal(key)
            if refusal is not None:
                flags_out = RESET | (REFUSED if self._closed else 0)
                await owner._answer(key, flags_out, refusal.encode(), seq=0)
                return
            socket = self._accept(key)
        socket._arrived(flags & ~OPEN, seq, data[_HEAD.size :])

    def _refusal(self, key: str) -> str | None:
        if self._closed:
            return f"nothing listens on {self._address} any more (the listener is closed)"
        peer = _peer_of(key, self._owner._inbox_root)
        if peer is None:
            return "the reply subject is not a nats transport inbox"
        options = self._owner.options
        count = self._peers.get(peer, 0)
        if count == 0 and len(self._peers) >= options.max_connections:
            return f"the listener serves max_connections={options.max_connections} dialling transports already"
        if count >= options.max_streams:
            return f"max_streams={options.max_streams} sockets from one transport are open already"
        return None

    def _accept(self, key: str) -> _NatsSocket:
        owner = self._owner
        peer = _peer_of(key, owner._inbox_root)
        assert peer is not None
        remote = key.removeprefix(owner._inbox_root).replace(".", ":", 1)
        socket = owner._new_socket(self._address, remote, to=key, dialled=False)
        socket._listener = self
        socket._key = key
        self._sockets[key] = socket
        self._peers[peer] = self._peers.get(peer, 0) + 1
        owner._spawn(run_handler(self._handler, socket), handler=True)
        return socket

    def _forget(self, socket: _NatsSocket) -> None:
        key = socket._key
        if key is None or self._sockets.get(key) is not socket:
            return
        del self._sockets[key]
        peer = _peer_of(key, self._owner._inbox_root)
        if peer is not None:
            left = self._peers.get(peer, 1) - 1
            if left:
                self._peers[peer] = left
            else:
                self._peers.pop(peer, None)
        if self._closed and not self._sockets:
            self._owner._spawn(self._unsubscribe())

    async def _unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            # Drained, not just unsubscribed: the driver forgets a subscription at once but tells the NATS
            # server later, and a dialler's OPEN routed to it in between would be dropped unanswered (the
            # dialler waits out its deadline). Draining keeps the subscription until the server has the
            # UNSUB, so each such OPEN is refused here, and every later one gets NATS's "no responders".
            try:
                async with asyncio.timeout(self._owner.options.connect_timeout):
                    await sub.drain()  # type: ignore[no-untyped-call]  # nats-py leaves it unannotated
            except Exception:  # the connection is closing or gone: nothing will reach us anyway
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        self._owner._listeners.pop(self._subject, None)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Accepted sockets still send to the listener's subject: it stays subscribed (refusing new
        # sockets) until the last of them is done.
        if not self._sockets:
            await self._unsubscribe()


def _peer_of(key: str, root: str) -> str | None:
    """The dialling transport's id in an inbox subject ``<root><id>.<n>``."""
    if not key.startswith(root):
        return None
    peer, dot, _ = key[len(root) :].partition(".")
    return peer if dot and peer else None


class NatsTransport(Transport):
    """Transport over NATS subjects; see :mod:`micro_nats.transport`."""

    options_type: ClassVar[type[TransportOptions]] = NatsTransportOptions
    options: NatsTransportOptions
    #: TLS is the NATS connection's (a ``tls://`` server), not the transport's.
    capabilities: ClassVar[frozenset[str]] = frozenset()
    starts_on_use: ClassVar[bool] = True

    def __init__(self, options: NatsTransportOptions | None = None) -> None:
        super().__init__(options)
        self._urls = server_urls(self.options.servers)
        self._where = f"nats at {display_address(self._urls)} (MICRO_TRANSPORT_SERVERS)"
        self._id = f"nats-{uuid.uuid4().hex[:12]}"
        prefix = self.options.subject_prefix
        self._listen_root = f"{prefix}.l."
        self._inbox_root = f"{prefix}.i."
        self._my_inbox = f"{self._inbox_root}{self._id}."
        self._nc: Client | None = None
        self._inbox_sub: Subscription | None = None
        self._sockets: dict[str, _NatsSocket] = {}
        self._listeners: dict[str, _NatsListener] = {}
        self._ids = itertools.count(1)
        self._ports = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._alive: dict[str, float] = {}
        self._ticker: asyncio.Task[None] | None = None
        self._chunk = 1024 * 1024 - _HEAD.size - _SLACK
        self._partial_bytes = 0
        self._overrun = max(2 * self.options.max_message_size, 8 * 1024 * 1024)

    # -- lifecycle ------------------------------------------------------------------------------

    async def _start(self) -> None:
        nc = await connect(
            self._urls, where=self._where, connect_timeout=self.options.connect_timeout, role="transport", logger=logger
        )
        try:
            self._inbox_sub = await nc.subscribe(f"{self._my_inbox}>", cb=self._inbox_received)
            await subscribed(nc, self.options.connect_timeout)
        except Exception as exc:
            await nc.close()
            raise Unavailable(f"{self._where}: cannot subscribe: {exc}") from exc
        self._nc = nc
        self._chunk = max(1024, nc.max_payload - _HEAD.size - _SLACK)
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _close(self) -> None:
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
        for listener in list(self._listeners.values()):
            listener._closed = True
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        # Tell every peer its socket is gone, then let the messages leave before the connection does.
        for socket in list(self._sockets.values()):
            if socket._opened and not socket._local_done:
                with contextlib.suppress(Exception):
                    await socket._publish(RESET, b"the peer's transport was closed")
            socket._fail("the transport is closed")
        if handlers:
            await asyncio.gather(*handlers, return_exceptions=True)
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.flush(timeout=1)
            with contextlib.suppress(Exception):
                await nc.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._sockets.clear()
        self._listeners.clear()
        self._alive.clear()
        self._inbox_sub = None

    def _spawn(self, coro: Any, *, handler: bool = False) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        bucket = self._handlers if handler else self._tasks
        bucket.add(task)
        task.add_done_callback(bucket.discard)
        return task

    def _client(self) -> Client:
        nc = self._nc
        if nc is None or nc.is_closed:
            raise ConnectionClosed("the nats transport is closed")
        return nc

    # -- sockets --------------------------------------------------------------------------------

    def _new_socket(self, local: str, remote: str, *, to: str, dialled: bool) -> _NatsSocket:
        n = next(self._ids)
        inbox = f"{self._my_inbox}{n}"
        if dialled:
            local = f"{self._id}:{n}"
        socket = _NatsSocket(self, local, remote, inbox, to, dialled=dialled)
        self._sockets[str(n)] = socket
        return socket

    def _forget(self, socket: _NatsSocket) -> None:
        n = socket._inbox_subject[len(self._my_inbox) :]
        if self._sockets.get(n) is socket:
            del self._sockets[n]
        if socket._listener is not None:
            socket._listener._forget(socket)

    async def _answer(self, to: str, flags: int, data: bytes, *, seq: int = 0) -> None:
        nc = self._nc
        if nc is None:
            return
        with contextlib.suppress(Exception):
            await nc.publish(to, _HEAD.pack(flags, seq) + data)

    async def _inbox_received(self, msg: Msg) -> None:
        n, _, tag = msg.subject[len(self._my_inbox) :].partition(".")
        socket = self._sockets.get(n)
        if socket is None:
            # A socket that is gone: tell the peer, unless this is a status or its own RESET.
            data = msg.data
            if msg.reply and not msg.headers and len(data) >= _HEAD.size and not data[0] & (RESET | PONG):
                await self._answer(msg.reply, RESET, b"the stream is closed")
            return
        socket._answered = True
        headers = msg.headers
        if headers and headers.get("Status") == "503":
            socket._vanished(opening=tag == _OPENING[1:])
            return
        data = msg.data
        if len(data) < _HEAD.size:
            return
        flags, seq = _HEAD.unpack_from(data)
        if flags & PONG:
            socket._heard = time.monotonic()
            socket._missed = 0
            return
        if flags & PING:
            socket._heard = time.monotonic()
            if msg.reply:
                await self._answer(msg.reply, PONG, b"")
            return
        if socket._dialled:
            self._alive[socket._remote] = time.monotonic()
        socket._arrived(flags, seq, data[_HEAD.size :])

    async def _tick(self) -> None:
        """Keepalive, idle and incomplete-message checks for every socket, a few times per ``keepalive``."""
        options = self.options
        period = (
            min(
                options.keepalive,
                options.idle_timeout,
                options.read_timeout,
                options.first_message_timeout,
                _FIRST_ANSWER,
            )
            / 2
        )
        while True:
            await asyncio.sleep(max(period, 0.02))
            now = time.monotonic()
            for key in [k for k, at in self._alive.items() if now - at > _FRESH]:
                del self._alive[key]
            for socket in list(self._sockets.values()):
                if socket._local_done and socket._remote_done:
                    continue
                if now - socket._active > options.idle_timeout:
                    socket._abort(f"no message for idle_timeout={options.idle_timeout:g}s")
                elif (
                    not socket._dialled
                    and not socket._got_message
                    and socket._eof is None
                    and now - socket._active > options.first_message_timeout
                ):
                    socket._abort(f"no message within first_message_timeout={options.first_message_timeout:g}s")
                elif socket._partial and now - socket._partial_since > options.read_timeout:
                    socket._abort(f"a message was not complete within read_timeout={options.read_timeout:g}s")
                elif (
                    socket._opened
                    and not socket._remote_done
                    and now - socket._heard
                    > (options.keepalive if socket._answered or not socket._dialled else _FIRST_ANSWER)
                ):
                    if socket._missed >= _MISSED:
                        socket._abort(f"the peer did not answer {_MISSED} keepalive pings")
                    else:
                        socket._missed += 1
                        socket._heard = now  # wait a full period for this ping's answer
                        self._spawn(self._ping(socket))

    async def _ping(self, socket: _NatsSocket) -> None:
        nc = self._nc
        if nc is None:
            return
        with contextlib.suppress(Exception):
            await nc.publish(socket._to, _HEAD.pack(PING, 0 if socket._dialled else 1), reply=socket._inbox_subject)

    # -- the Transport interface ----------------------------------------------------------------

    # The hooks of Transport.dial and Transport.listen: the base starts the transport on first use and
    # refuses after close() until start() again (conformance T26).
    async def _dial(self, address: str, timeout: float | None) -> Socket:
        host, port = _subject_for(address)
        if not host or port == 0:
            raise BadRequest(f"invalid address {address!r}: a nats transport address is name:port with a port above 0")
        nc = self._client()
        subject = f"{self._listen_root}{host}.{port}"
        seconds = self.options.dial_timeout if timeout is None else timeout
        if time.monotonic() - self._alive.get(address, 0.0) > _FRESH:
            await self._probe(nc, subject, address, seconds)
        return self._new_socket("", address, to=subject, dialled=True)

    async def _probe(self, nc: Client, subject: str, address: str, seconds: float) -> None:
        """Ask the listener at ``subject`` whether it is there; :class:`Unavailable` or :class:`Timeout` if not."""
        import nats.errors

        try:
            reply = await nc.request(subject, _HEAD.pack(PING, 0), timeout=max(seconds, 0.001))
        except nats.errors.NoRespondersError:
            raise Unavailable(f"nothing listens on {address} (nats transport: no responders)") from None
        except nats.errors.TimeoutError:
            raise Timeout(f"{address} did not answer within {seconds:g}s (nats transport)") from None
        except nats.errors.Error as exc:
            raise Unavailable(f"cannot reach {address}: {self._where}: {exc}") from exc
        if len(reply.data) >= 1 and reply.data[0] & RESET:
            raise Unavailable(reply.data[_HEAD.size :].decode("utf-8", "replace") or f"{address} refused the socket")
        self._alive[address] = time.monotonic()

    async def _listen(self, address: str | None, handler: Handler) -> Listener:
        address = self.options.address if address is None else address
        host, port = _subject_for(address)
        if port != 0 and not host:
            raise BadRequest(f"invalid address {address!r}: listening on a port needs a name before it (name:port)")
        nc = self._client()
        if port == 0:
            address = f"{self._id}:{next(self._ports)}"
            host, port = self._id, int(address.rpartition(":")[2])
        subject = f"{self._listen_root}{host}.{port}"
        if subject in self._listeners:
            raise Unavailable(f"cannot listen on {address}: this transport listens there already")
        if host != self._id:  # a name of our own making is unique; any other may be taken
            try:
                await self._probe(nc, subject, address, min(self.options.dial_timeout, 1.0))
            except (Unavailable, Timeout):
                pass  # nobody answers there: free
            else:
                raise Unavailable(f"cannot listen on {address}: another process listens there (nats transport)")
        listener = _NatsListener(self, address, subject, handler)
        try:
            listener._sub = await nc.subscribe(subject, cb=listener._received)
            await subscribed(nc, self.options.dial_timeout)
        except Exception as exc:
            raise Unavailable(f"cannot listen on {address}: {self._where}: {exc}") from exc
        self._listeners[subject] = listener
        return listener
