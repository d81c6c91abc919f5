"""The mucp tunnel (``MICRO_TUNNEL=mucp``, the default): Go Micro's tunnel protocol, simplified.

Every frame is a transport message whose ``Micro-Tunnel`` header says what it is:

==========  ========================================================================
``connect``  dialler -> listener: its id and a nonce
``verify``   listener -> dialler: its id, its nonce, and an HMAC proving it knows the token
``auth``     dialler -> listener: an HMAC proving the dialler knows the token
``ready``    listener -> dialler: the link is up (or ``reject`` with ``Micro-Tunnel-Error``)
``announce`` either way: the channels this side listens on, comma-separated
``open``     a session on ``Micro-Tunnel-Channel`` with id ``Micro-Tunnel-Session``
``accept``   the session is open (or ``refuse``: nobody listens on that channel)
``data``     one session message: msgpack ``[header, body]``, AES-GCM sealed on encrypted links
``eos``      the sender will send nothing more on the session (half-close)
``close``    the sender closed the session
``cast``     one multicast or broadcast message (``Micro-Tunnel-Mode``) on ``Micro-Tunnel-Channel``, sealed
             like ``data``; the first one of a session id opens it at a listener, ``eos`` ends it
``ping``     keepalive, every ``keepalive`` seconds, with the sender's clock in ``Micro-Tunnel-Time``
``pong``     the answer to a ping, echoing ``Micro-Tunnel-Time`` (the sender's round trip is the link delay)
==========  ========================================================================

A link that brings no frame for ``link_timeout`` seconds is closed; its
sessions fail with :class:`~micro.tunnel.LinkLost`, and the node that dialled
the link re-links at once and then with exponential backoff.

The HMACs (SHA-256, keyed by the token) cover both nonces and both ids, so
neither a replayed handshake nor a peer with another token gets a link. The
AES-GCM key of a link is derived from the token and both nonces (HKDF), so
each link has its own; every frame carries a fresh 96-bit nonce.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import logging
import os
import random
import secrets
import uuid
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Final

import msgpack

from ..component import Make, Parts
from ..errors import (
    BadRequest,
    Conflict,
    ConnectionClosed,
    MicroError,
    MissingExtra,
    NoneAvailable,
    NotFound,
    NotSupported,
    Timeout,
    Unauthorized,
    Unavailable,
)
from ..transport._stream import StreamSocket, check_header
from ..transport.base import Message, Socket, Transport
from .base import MODES, Link, LinkLost, Mode, Session, Tunnel, TunnelListener
from .options import TunnelOptions

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["MUCPTunnel"]

logger = logging.getLogger("micro.tunnel")

TYPE: Final = "Micro-Tunnel"
ID: Final = "Micro-Tunnel-Id"
NONCE: Final = "Micro-Tunnel-Nonce"
MAC: Final = "Micro-Tunnel-Mac"
ENCRYPT: Final = "Micro-Tunnel-Encrypt"
CHANNEL: Final = "Micro-Tunnel-Channel"
CHANNELS: Final = "Micro-Tunnel-Channels"
SESSION: Final = "Micro-Tunnel-Session"
ERROR: Final = "Micro-Tunnel-Error"
TIME: Final = "Micro-Tunnel-Time"
MODE: Final = "Micro-Tunnel-Mode"
#: Closed cast sessions a link remembers, so later messages of theirs are dropped rather than reopened.
MUTED: Final = 4096


def _mac(token: str, role: str, dialer_nonce: str, listener_nonce: str, dialer: str, listener: str) -> str:
    text = "|".join((role, dialer_nonce, listener_nonce, dialer, listener)).encode()
    return hmac.new(token.encode(), text, hashlib.sha256).hexdigest()


def _crypto() -> None:
    """Import cryptography, which only encrypted links need (the ``tunnel`` extra), or name the extra."""
    try:
        import cryptography.hazmat.primitives.ciphers.aead  # noqa: F401
    except ModuleNotFoundError as exc:
        raise MissingExtra("tunnel 'mucp' with encrypted links", extra="tunnel", module="cryptography") from exc


def _key(token: str, dialer_nonce: str, listener_nonce: str) -> AESGCM:
    _crypto()
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    salt = (dialer_nonce + listener_nonce).encode()
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"micro tunnel v1").derive(token.encode())
    return AESGCM(derived)


def _pack(message: Message) -> bytes:
    """A session message as the msgpack ``[header, body]`` that ``data`` and ``cast`` frames carry."""
    header = check_header(message.header)
    body = message.body
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise BadRequest(f"message body must be bytes, not {type(body).__name__}")
    return msgpack.packb([header, bytes(body)], use_bin_type=True)  # type: ignore[no-any-return]


def _check_channel(channel: str) -> str:
    if not isinstance(channel, str) or not channel or "," in channel:
        raise BadRequest(f"bad channel {channel!r}: a non-empty name without commas is needed")
    return channel


class _Link:
    """One authenticated transport socket to a peer, and the sessions on it."""

    def __init__(self, tunnel: MUCPTunnel, socket: Socket, *, node: str, outbound: bool, key: AESGCM | None) -> None:
        self.id = str(uuid.uuid4())
        self.tunnel = tunnel
        self.socket = socket
        self.node = node
        self.outbound = outbound
        self.key = key
        self.channels: frozenset[str] = frozenset()
        self.sessions: dict[str, _Session] = {}
        self.pending: dict[str, asyncio.Future[None]] = {}
        self.closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        #: Why the link died under its sessions (they then raise LinkLost); None while it is up.
        self.lost: str | None = None
        now = asyncio.get_running_loop().time()
        #: When the last frame came from the peer (loop time), for the keepalive watchdog.
        self.heard = now
        #: Bytes both ways since the last watchdog tick, and that tick's time, for ``rate``.
        self.bytes = 0
        self.since = now
        self.delay: float | None = None
        self.rate = 0.0
        #: Cast sessions closed here before their dialler ended them, oldest first (bounded).
        self.muted: dict[str, None] = {}
        #: The link's own transport (outbound links), closed with it.
        self.dialer: Transport | None = None

    def info(self) -> Link:
        return Link(
            id=self.id,
            node=self.node,
            remote=self.socket.remote,
            outbound=self.outbound,
            encrypted=self.key is not None,
            channels=self.channels,
            sessions=len(self.sessions),
            delay=self.delay,
            rate=self.rate,
        )

    async def send(self, kind: str, header: Mapping[str, str] | None = None, body: bytes = b"") -> None:
        if self.closed:
            if self.lost is not None:
                raise LinkLost(self.lost)
            raise ConnectionClosed(f"the link to tunnel {self.node} is down")
        self.bytes += len(body)
        await self.socket.send(Message({TYPE: kind, **(header or {})}, body))

    def post(self, kind: str, header: Mapping[str, str]) -> None:
        """Send a control frame without waiting (from code that cannot await)."""
        if self.closed:
            return
        task = asyncio.get_running_loop().create_task(self._quietly(kind, header))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _quietly(self, kind: str, header: Mapping[str, str]) -> None:
        with contextlib.suppress(MicroError):
            await self.send(kind, header)

    def seal(self, payload: bytes) -> bytes:
        if self.key is None:
            return payload
        nonce = os.urandom(12)
        return nonce + self.key.encrypt(nonce, payload, None)

    def unseal(self, data: bytes) -> bytes:
        if self.key is None:
            return data
        if len(data) < 12:
            raise ValueError("sealed data shorter than its nonce")
        try:
            return self.key.decrypt(data[:12], data[12:], None)
        except Exception as exc:  # cryptography's InvalidTag: forged, corrupt, or sealed with another key
            raise ValueError("sealed data fails authentication") from exc

    def mute(self, sid: str) -> None:
        self.muted[sid] = None
        if len(self.muted) > MUTED:
            del self.muted[next(iter(self.muted))]

    def drop(self, reason: str, *, lost: bool = False) -> None:
        """The link is gone: fail its sessions and the dials waiting on it.

        ``lost`` means it died under them (rather than the tunnel closing): they raise :class:`LinkLost`.
        """
        if self.closed:
            return
        self.closed = True
        if lost:
            self.lost = reason
        for session in list(self.sessions.values()):
            session._fail(reason)
        for waiter in self.pending.values():
            if not waiter.done():
                waiter.set_exception(LinkLost(reason) if lost else ConnectionClosed(reason))
        self.pending.clear()
        for task in self._tasks:
            task.cancel()


class _Session(StreamSocket, Session):
    def __init__(self, link: _Link, id: str, channel: str, mode: Mode = "unicast") -> None:
        super().__init__(link.socket.local, link.socket.remote)
        self._link = link
        self._id = id
        self._channel = channel
        self._mode: Mode = mode
        if mode != "unicast":  # a listener's side of a one-way session: nothing of ours will follow
            self._send_closed = f"a {mode} session is one-way, from the dialler to its listeners"
            self._local_done = True

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def id(self) -> str:
        return self._id

    @property
    def channel(self) -> str:
        return self._channel

    @property
    def link(self) -> str:
        return self._link.id

    def _lost(self, exc: ConnectionClosed) -> ConnectionClosed:
        # A session whose link died says so with its own type, so callers can tell it from a peer's close.
        lost = self._link.lost
        if lost is not None and not isinstance(exc, LinkLost) and str(exc) == lost:
            return LinkLost(f"session {self._id} on channel {self._channel!r}: {lost}")
        return exc

    async def send(self, message: Message) -> None:
        if self._mode != "unicast":
            raise NotSupported(f"cannot send on {self!r}: a {self._mode} session is one-way, dialler to listeners")
        try:
            await super().send(message)
        except ConnectionClosed as exc:
            raise self._lost(exc) from None

    async def recv(self, *, timeout: float | None = None) -> Message:
        try:
            return await super().recv(timeout=timeout)
        except ConnectionClosed as exc:
            raise self._lost(exc) from None

    async def _write(self, message: Message | None, end: bool) -> None:
        if message is not None:
            await self._link.send("data", {SESSION: self._id}, self._link.seal(_pack(message)))
        if end:
            await self._link.send("eos", {SESSION: self._id})

    def _finish(self, reset: bool) -> None:
        if self._mode == "unicast":
            self._link.post("close" if reset else "eos", {SESSION: self._id})
        else:  # the dialler of a cast session keeps sending: drop the rest rather than open it again
            self._link.mute(self._id)

    def _release(self) -> None:
        self._link.sessions.pop(self._id, None)

    def __repr__(self) -> str:
        return f"<Session {self._channel} {self._id} via {self._link.node}>"


class _LocalSession(StreamSocket, Session):
    """One end of a unicast session between a dialler and a listener of the same tunnel (no link involved)."""

    def __init__(self, tunnel: MUCPTunnel, id: str, channel: str) -> None:
        super().__init__(tunnel.address, tunnel.address)
        self._tunnel = tunnel
        self._id = id
        self._channel = channel
        self.peer: _LocalSession | None = None

    @property
    def id(self) -> str:
        return self._id

    @property
    def channel(self) -> str:
        return self._channel

    @property
    def link(self) -> str:
        return "local"

    async def _write(self, message: Message | None, end: bool) -> None:
        peer = self.peer
        assert peer is not None
        if message is not None:
            header = check_header(message.header)
            body = message.body
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise BadRequest(f"message body must be bytes, not {type(body).__name__}")
            peer._deliver(Message(dict(header), bytes(body)))  # copies, as a link would
        if end:
            peer._end()

    def _finish(self, reset: bool) -> None:
        if self.peer is not None:
            if reset:
                self.peer._reset()
            else:
                self.peer._end()

    def _release(self) -> None:
        self._tunnel._local.discard(self)

    def __repr__(self) -> str:
        return f"<Session {self._channel} {self._id} local>"


class _CastSession(Session):
    """The dialler's side of a multicast or broadcast session: each message goes to the links chosen at send time."""

    def __init__(self, tunnel: MUCPTunnel, channel: str, mode: Mode) -> None:
        self._tunnel = tunnel
        self._id = str(uuid.uuid4())
        self._channel = channel
        self._mode: Mode = mode
        #: The links sent on, so each hears the end of the session.
        self._reached: dict[str, _Link] = {}
        self._closed = False

    @property
    def id(self) -> str:
        return self._id

    @property
    def channel(self) -> str:
        return self._channel

    @property
    def link(self) -> str:
        return ""

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def local(self) -> str:
        return self._tunnel.address

    @property
    def remote(self) -> str:
        return f"{self._mode}:{self._channel}"

    async def send(self, message: Message) -> None:
        if self._closed:
            raise ConnectionClosed(f"the {self._mode} session on {self._channel!r} is closed")
        payload = _pack(message)
        header = {SESSION: self._id, CHANNEL: self._channel, MODE: self._mode}
        for link in self._tunnel._targets(self._channel, self._mode):
            try:
                await link.send("cast", header, link.seal(payload))
            except ConnectionClosed:
                continue  # that link died: its peer misses this message, the others still get it
            self._reached[link.id] = link

    async def recv(self, *, timeout: float | None = None) -> Message:
        raise NotSupported(f"cannot recv on a {self._mode} session: it is one-way, from the dialler to its listeners")

    async def close_send(self) -> None:
        await self.close()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for link in self._reached.values():
            link.post("eos", {SESSION: self._id})
        self._reached.clear()

    def __repr__(self) -> str:
        return f"<Session {self._mode} {self._channel} {self._id}>"


class _Listener(TunnelListener):
    def __init__(self, tunnel: MUCPTunnel, channel: str) -> None:
        self._tunnel = tunnel
        self._channel = channel
        self._queue: asyncio.Queue[Session | None] = asyncio.Queue()
        self._closed = False

    @property
    def channel(self) -> str:
        return self._channel

    def offer(self, session: Session) -> bool:
        if self._closed:
            return False
        self._queue.put_nowait(session)
        return True

    async def accept(self, *, timeout: float | None = None) -> Session:
        if self._closed and self._queue.empty():
            raise ConnectionClosed(f"the listener on channel {self._channel!r} is closed")
        try:
            async with asyncio.timeout(timeout):
                session = await self._queue.get()
        except TimeoutError:
            raise Timeout(f"no session on channel {self._channel!r} within {timeout:g}s") from None
        if session is None:
            self._queue.put_nowait(None)  # wake every other accept too
            raise ConnectionClosed(f"the listener on channel {self._channel!r} is closed")
        return session

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put_nowait(None)
        await self._tunnel._unlisten(self)

    def __repr__(self) -> str:
        return f"<TunnelListener {self._channel}>"


def _tcp() -> Transport:
    from ..transport.tcp import TCPTransport

    return TCPTransport()


class MUCPTunnel(Tunnel):
    """Links to peer tunnels over a transport and multiplexes channel sessions over them.

    :param transport: the transport for links; when omitted, one built with ``make`` (see
        :class:`~micro.component.Make`), or the built-in ``tcp`` transport without it, started and closed
        with the tunnel (one that is passed in is only used).
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({"encrypt", "multicast"})

    def __init__(
        self, options: TunnelOptions | None = None, *, transport: Transport | None = None, make: Make | None = None
    ) -> None:
        super().__init__(options)
        self._id = self.options.id or str(uuid.uuid4())
        self._owns_transport = transport is None
        self._transport = transport
        self._parts = Parts(make)
        self._server: Any = None
        self._links: dict[str, _Link] = {}
        self._outbound: dict[str, _Link] = {}
        self._listeners: dict[str, _Listener] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed: asyncio.Event | None = None
        self._rejected: set[str] = set()
        self._relinking = False
        #: Unicast sessions between our own dialler and listener, failed when the tunnel closes.
        self._local: set[_LocalSession] = set()
        #: Set when an outbound link drops, to wake the re-linker at once.
        self._dropped: asyncio.Event | None = None

    @property
    def id(self) -> str:
        return self._id

    @property
    def address(self) -> str:
        return str(self._server.address) if self._server is not None else self.options.address

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            made = self._parts.make(Transport, _tcp)
            # With MICRO_TRANSPORT=tunnel the wiring would hand the tunnel a transport over itself; its links
            # need a real one, so they use the built-in tcp transport then. Asked of the class rather than
            # with isinstance, so that this module does not import the tunnel transport that imports it.
            self._transport = _tcp() if getattr(type(made), "over_tunnel", False) else made
        return self._transport

    def __repr__(self) -> str:
        return f"<MUCPTunnel {self._id} at {self.address}>"

    # -- lifecycle -------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._server is not None:
            return
        if self.options.encrypt:
            _crypto()  # fail at start, not on the first link
        self._changed = asyncio.Event()
        self._dropped = asyncio.Event()
        if self._owns_transport:
            await self.transport.start()
        self._server = await self.transport.listen(self.options.address, self._serve)
        for node in self.options.nodes:
            try:
                await self._link_to(node)
            except (Unavailable, Timeout) as exc:
                logger.warning(
                    "tunnel %s: cannot link to %s yet (%s); retrying in %gs, backing off to %gs",
                    self._id,
                    node,
                    exc,
                    self.options.reconnect,
                    self.options.reconnect_max,
                )
            except BaseException:  # a wrong token or a bad address: a configuration error, so fail now
                await self.close()
                raise
        if self.options.nodes:
            self._relinking = True
            self._spawn(self._relink())

    def add_nodes(self, *addresses: str) -> None:
        """Also link to ``addresses``, kept linked like the configured ``nodes`` (a network's resolver finds them).

        Addresses already known are ignored. Before :meth:`connect` they simply join the nodes it links to.
        """
        new = tuple(dict.fromkeys(a for a in addresses if a and a not in self.options.nodes))
        if not new:
            return
        self.options = dataclasses.replace(self.options, nodes=self.options.nodes + new)
        if self._server is None:
            return
        if not self._relinking:
            self._relinking = True
            self._spawn(self._relink())
        elif self._dropped is not None:
            self._dropped.set()  # the relink loop looks at its nodes again now

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._relinking = False
        for task in list(self._tasks):
            task.cancel()
        for listener in list(self._listeners.values()):
            listener._closed = True
            listener._queue.put_nowait(None)
        self._listeners.clear()
        await server.close()
        for link in list(self._links.values()):
            link.drop("the tunnel is closed")
            await link.socket.close()
            if link.dialer is not None:
                await link.dialer.close()
        self._links.clear()
        self._outbound.clear()
        for local in list(self._local):
            local._fail("the tunnel is closed")
        self._local.clear()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._owns_transport and self._transport is not None:
            await self._transport.close()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _notify(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = asyncio.Event()

    # -- links -----------------------------------------------------------------------------------

    def _dialer(self) -> Transport:
        """A transport of the same kind and options as ours, for one outbound link.

        A pooling transport (tcp) shares one connection per address: a link declared dead by the keepalive
        would leave its silent connection in the pool and the next link would reuse it. Each link dials
        through its own instance instead, closed with the link, so a dead link's connection goes with it.
        """
        transport = self.transport
        try:
            return type(transport)(transport.options)
        except TypeError:  # a transport that needs more than its options: share it
            return transport

    async def _link_to(self, address: str) -> None:
        timeout = self.options.dial_timeout
        dialer = self._dialer()
        if dialer is not self.transport:
            await dialer.start()
        try:
            socket = await dialer.dial(address, timeout=timeout)
        except BaseException:
            if dialer is not self.transport:
                await dialer.close()
            raise
        try:
            mine = secrets.token_hex(16)
            await socket.send(
                Message({TYPE: "connect", ID: self._id, NONCE: mine, ENCRYPT: "1" if self.options.encrypt else "0"})
            )
            verify = (await socket.recv(timeout=timeout)).header
            if verify.get(TYPE) == "reject":
                raise Unauthorized(f"tunnel at {address} refused the link: {verify.get(ERROR, 'no reason given')}")
            peer, theirs = verify.get(ID, ""), verify.get(NONCE, "")
            if verify.get(TYPE) != "verify" or not peer or not theirs:
                raise Unavailable(f"{address} does not speak the tunnel protocol")
            proof = _mac(self.options.token, "listener", mine, theirs, self._id, peer)
            if not hmac.compare_digest(proof, verify.get(MAC, "")):
                raise Unauthorized(f"tunnel at {address} failed authentication: it does not have our token")
            await socket.send(
                Message({TYPE: "auth", MAC: _mac(self.options.token, "dialer", mine, theirs, self._id, peer)})
            )
            ready = (await socket.recv(timeout=timeout)).header
            if ready.get(TYPE) != "ready":
                raise Unauthorized(f"tunnel at {address} refused the link: {ready.get(ERROR, 'no reason given')}")
        except BaseException:
            await socket.close()
            if dialer is not self.transport:
                await dialer.close()
            raise
        encrypted = self.options.encrypt or verify.get(ENCRYPT) == "1"
        link = _Link(
            self, socket, node=peer, outbound=True, key=_key(self.options.token, mine, theirs) if encrypted else None
        )
        if dialer is not self.transport:
            link.dialer = dialer
        self._links[link.id] = link
        self._outbound[address] = link
        self._spawn(self._run(link))
        logger.info("tunnel %s: linked to %s at %s", self._id, peer, address)

    async def _serve(self, socket: Socket) -> None:
        """The transport handler: the listener's side of the handshake, then the link's life."""
        timeout = self.options.dial_timeout
        try:
            hello = (await socket.recv(timeout=timeout)).header
            peer, theirs = hello.get(ID, ""), hello.get(NONCE, "")
            if hello.get(TYPE) != "connect" or not peer or not theirs:
                return
            mine = secrets.token_hex(16)
            await socket.send(
                Message(
                    {
                        TYPE: "verify",
                        ID: self._id,
                        NONCE: mine,
                        MAC: _mac(self.options.token, "listener", theirs, mine, peer, self._id),
                        ENCRYPT: "1" if self.options.encrypt else "0",
                    }
                )
            )
            auth = (await socket.recv(timeout=timeout)).header
            proof = _mac(self.options.token, "dialer", theirs, mine, peer, self._id)
            if auth.get(TYPE) != "auth" or not hmac.compare_digest(proof, auth.get(MAC, "")):
                logger.warning("tunnel %s: rejected a link from %s (%s): bad token", self._id, peer, socket.remote)
                await socket.send(Message({TYPE: "reject", ERROR: "authentication failed: the tokens differ"}))
                return
            await socket.send(Message({TYPE: "ready"}))
        except (ConnectionClosed, Timeout):
            return  # the dialler gave up, e.g. because we failed its check of our token
        encrypted = self.options.encrypt or hello.get(ENCRYPT) == "1"
        link = _Link(
            self, socket, node=peer, outbound=False, key=_key(self.options.token, theirs, mine) if encrypted else None
        )
        self._links[link.id] = link
        await self._run(link)

    async def _run(self, link: _Link) -> None:
        """Serve a registered link until it closes, then forget it."""
        reason = "the link closed"
        lost = False
        watchdog = asyncio.get_running_loop().create_task(self._watch(link))
        loop = asyncio.get_running_loop()
        try:
            await self._announce(link)
            self._notify()
            while True:
                message = await link.socket.recv()
                link.heard = loop.time()
                link.bytes += len(message.body)
                await self._dispatch(link, message)
        except ConnectionClosed as exc:
            lost = self._server is not None  # not our own close()
            reason = link.lost or f"the link to tunnel {link.node} was lost: {exc}"
        finally:
            watchdog.cancel()
            self._links.pop(link.id, None)
            for address, outbound in list(self._outbound.items()):
                if outbound is link:
                    del self._outbound[address]
                    if self._dropped is not None:
                        self._dropped.set()
            link.drop(reason, lost=lost)
            await link.socket.close()
            if link.dialer is not None:
                await link.dialer.close()
            self._notify()
            if lost:
                logger.warning("tunnel %s: %s", self._id, reason)

    async def _watch(self, link: _Link) -> None:
        """Ping the peer every ``keepalive`` seconds; close the link when it has been silent too long."""
        loop = asyncio.get_running_loop()
        keepalive, limit = self.options.keepalive, self.options.link_timeout
        while not link.closed:
            await asyncio.sleep(keepalive)
            now = loop.time()
            silent = now - link.heard
            if silent > limit:
                # Closing the socket ends the recv in _run, which fails the sessions with this reason.
                link.lost = (
                    f"the link to tunnel {link.node} is dead: nothing heard for {silent:.1f}s "
                    f"(link_timeout is {limit:g}s)"
                )
                await link.socket.close()
                return
            elapsed = now - link.since
            if elapsed > 0:
                sample = link.bytes / elapsed
                link.rate = sample if link.rate == 0.0 else 0.5 * link.rate + 0.5 * sample
            link.bytes, link.since = 0, now
            link.post("ping", {TIME: repr(now)})

    async def _relink(self) -> None:
        """Keep every configured node linked: at once after a drop, then with exponential backoff and jitter."""
        loop = asyncio.get_running_loop()
        first, most = self.options.reconnect, self.options.reconnect_max
        wait = dict.fromkeys(self.options.nodes, first)
        due = dict.fromkeys(self.options.nodes, loop.time() + first)
        linked = {node for node in self.options.nodes if node in self._outbound}
        dropped = self._dropped
        assert dropped is not None
        while True:
            now = loop.time()
            for node in self.options.nodes:
                if node not in wait:  # added by add_nodes(): try it now
                    wait[node], due[node] = first, now
                if node in self._outbound:
                    linked.add(node)
                    continue
                if node in linked:  # it just dropped: try again now, and back off from there
                    linked.discard(node)
                    wait[node], due[node] = first, now
                if now < due[node]:
                    continue
                try:
                    await self._link_to(node)
                    self._rejected.discard(node)
                    linked.add(node)
                    continue
                except Unauthorized as exc:
                    if node not in self._rejected:  # say it once, not on every attempt
                        logger.error("tunnel %s: %s", self._id, exc)
                        self._rejected.add(node)
                except (Unavailable, Timeout) as exc:
                    logger.debug("tunnel %s: cannot link to %s: %s", self._id, node, exc)
                due[node] = loop.time() + wait[node] * random.uniform(0.8, 1.2)
                wait[node] = min(wait[node] * 2, most)
            waiting = [due[node] for node in self.options.nodes if node not in self._outbound]
            dropped.clear()
            pause = max(0.0, min(waiting) - loop.time()) if waiting else None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await dropped.wait()

    def links(self) -> list[Link]:
        return [link.info() for link in self._links.values() if not link.closed]

    def reachable(self, channel: str) -> bool:
        return channel in self._listeners or any(
            channel in link.channels for link in self._links.values() if not link.closed
        )

    # -- frames ----------------------------------------------------------------------------------

    async def _announce(self, link: _Link) -> None:
        await link.send("announce", {CHANNELS: ",".join(sorted(self._listeners))})

    async def _announce_all(self) -> None:
        for link in list(self._links.values()):
            with contextlib.suppress(MicroError):
                await self._announce(link)

    async def _dispatch(self, link: _Link, message: Message) -> None:
        header = message.header
        kind = header.get(TYPE)
        sid = header.get(SESSION, "")
        if kind == "data":
            session = link.sessions.get(sid)
            if session is None:
                return  # closed here already: the peer's close is on its way
            try:
                inner, body = msgpack.unpackb(link.unseal(message.body), raw=False)
                inner = check_header(inner)
            except (ValueError, TypeError, BadRequest, msgpack.UnpackException) as exc:
                logger.warning("tunnel %s: dropping a bad frame from %s: %r", self._id, link.node, exc)
                session._fail("the peer sent a frame that does not decrypt or decode")
                link.post("close", {SESSION: sid})
                return
            session._deliver(Message(inner, bytes(body)))
        elif kind == "cast":
            session = link.sessions.get(sid)
            if session is None:
                if sid in link.muted:
                    return
                channel, mode = header.get(CHANNEL, ""), header.get(MODE, "")
                listener = self._listeners.get(channel)
                if listener is None or not sid or mode not in ("multicast", "broadcast"):
                    return  # nobody here listens: a broadcast reaches every node, and is dropped where unheard
                if len(link.sessions) >= self.options.max_sessions:
                    logger.warning(
                        "tunnel %s: dropping a %s session from %s: max_sessions (%d) reached",
                        self._id,
                        mode,
                        link.node,
                        self.options.max_sessions,
                    )
                    link.mute(sid)
                    return
                session = _Session(link, sid, channel, "multicast" if mode == "multicast" else "broadcast")
                link.sessions[sid] = session
                if not listener.offer(session):
                    link.sessions.pop(sid, None)
                    return
            try:
                inner, body = msgpack.unpackb(link.unseal(message.body), raw=False)
                inner = check_header(inner)
            except (ValueError, TypeError, BadRequest, msgpack.UnpackException) as exc:
                logger.warning("tunnel %s: dropping a bad frame from %s: %r", self._id, link.node, exc)
                session._fail("the peer sent a frame that does not decrypt or decode")
                return
            session._deliver(Message(inner, bytes(body)))
        elif kind == "eos":
            if (session := link.sessions.get(sid)) is not None:
                session._end()
        elif kind == "close":
            if (session := link.sessions.get(sid)) is not None:
                session._reset()
        elif kind == "open":
            channel = header.get(CHANNEL, "")
            listener = self._listeners.get(channel)
            if listener is None or not sid or sid in link.sessions:
                await link.send("refuse", {SESSION: sid, ERROR: f"tunnel {self._id} does not listen on {channel!r}"})
                return
            if len(link.sessions) >= self.options.max_sessions:
                limit = self.options.max_sessions
                error = f"tunnel {self._id} has {limit} sessions open on this link (max_sessions is {limit})"
                await link.send("refuse", {SESSION: sid, ERROR: error})
                return
            session = _Session(link, sid, channel)
            link.sessions[sid] = session
            await link.send("accept", {SESSION: sid})
            if not listener.offer(session):
                session._reset("the listener closed")
                link.post("close", {SESSION: sid})
        elif kind in ("accept", "refuse"):
            waiter = link.pending.pop(sid, None)
            if waiter is not None and not waiter.done():
                if kind == "accept":
                    waiter.set_result(None)
                else:
                    waiter.set_exception(NotFound(header.get(ERROR, "the peer refused the session")))
        elif kind == "ping":
            link.post("pong", {TIME: header.get(TIME, "")})
        elif kind == "pong":
            with contextlib.suppress(ValueError):
                rtt = asyncio.get_running_loop().time() - float(header.get(TIME, ""))
                if 0 <= rtt < 3600:
                    link.delay = rtt if link.delay is None else 0.75 * link.delay + 0.25 * rtt
        elif kind == "announce":
            text = header.get(CHANNELS, "")
            link.channels = frozenset(c for c in text.split(",") if c)
            self._notify()
        else:
            logger.debug("tunnel %s: ignoring a %r frame from %s", self._id, kind, link.node)

    # -- channels --------------------------------------------------------------------------------

    async def listen(self, channel: str) -> TunnelListener:
        _check_channel(channel)
        if channel in self._listeners:
            raise Conflict(f"tunnel {self._id} already listens on channel {channel!r}")
        listener = _Listener(self, channel)
        self._listeners[channel] = listener
        await self._announce_all()
        return listener

    async def _unlisten(self, listener: _Listener) -> None:
        if self._listeners.get(listener.channel) is listener:
            del self._listeners[listener.channel]
            await self._announce_all()

    def _choose(self, channel: str, link: str | None) -> _Link | None:
        live = [item for item in self._links.values() if not item.closed]
        if link is not None:
            chosen = next((item for item in live if link in (item.id, item.node)), None)
            if chosen is None:
                raise NotFound(f"tunnel {self._id} has no link {link!r}")
            return chosen
        candidates = [item for item in live if channel in item.channels]
        return random.choice(candidates) if candidates else None

    def _loopback(self, listener: _Listener) -> Session:
        """A session to our own listener on the channel: cheaper than any link, so preferred (as Go Micro does)."""
        sid = str(uuid.uuid4())
        mine, theirs = _LocalSession(self, sid, listener.channel), _LocalSession(self, sid, listener.channel)
        mine.peer, theirs.peer = theirs, mine
        if not listener.offer(theirs):
            raise NotFound(f"tunnel {self._id} does not listen on {listener.channel!r}")
        self._local.update((mine, theirs))
        return mine

    def _targets(self, channel: str, mode: Mode) -> list[_Link]:
        live = [link for link in self._links.values() if not link.closed]
        if mode == "broadcast":
            return live
        return [link for link in live if channel in link.channels]

    async def dial(
        self, channel: str, *, link: str | None = None, timeout: float | None = None, mode: Mode = "unicast"
    ) -> Session:
        _check_channel(channel)
        if mode not in MODES:
            raise BadRequest(f"bad tunnel mode {mode!r}: one of {', '.join(MODES)} is needed")
        if self._server is None:
            raise ConnectionClosed("the tunnel is not connected")
        if mode != "unicast":
            return _CastSession(self, channel, mode)
        if link is None and (here := self._listeners.get(channel)) is not None:
            return self._loopback(here)
        seconds = self.options.dial_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        chosen = self._choose(channel, link)
        while chosen is None:
            changed = self._changed
            assert changed is not None
            try:
                async with asyncio.timeout_at(deadline):
                    await changed.wait()
            except TimeoutError:
                raise NoneAvailable(f"no linked tunnel listens on channel {channel!r} (waited {seconds:g}s)") from None
            chosen = self._choose(channel, link)
        sid = str(uuid.uuid4())
        session = _Session(chosen, sid, channel)
        chosen.sessions[sid] = session  # before "open" goes out, so no early frame is lost
        waiter: asyncio.Future[None] = loop.create_future()
        chosen.pending[sid] = waiter
        try:
            await chosen.send("open", {SESSION: sid, CHANNEL: channel})
            async with asyncio.timeout_at(deadline):
                await waiter
        except TimeoutError:
            chosen.sessions.pop(sid, None)
            chosen.post("close", {SESSION: sid})
            raise Timeout(f"tunnel {chosen.node} did not accept a session on {channel!r} within {seconds:g}s") from None
        except BaseException:
            chosen.sessions.pop(sid, None)
            chosen.pending.pop(sid, None)
            raise
        return session
