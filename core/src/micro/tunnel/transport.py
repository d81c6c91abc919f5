"""The tunnel transport (``MICRO_TRANSPORT=tunnel``): sockets are tunnel sessions, addresses are channels.

``listen(address)`` listens on the channel named by the address, and ``dial(address)`` opens a unicast
session on it, through whichever link's peer announced it (or locally, when this process listens on it).
A listener on port 0 gets the address ``<tunnel id>:<n>``, unique across the tunnel's network, which a
server registers like any other; a client whose tunnel is linked to that node (in either direction)
reaches it. So a service with one outbound link to a peer can be called from that peer's side.

The tunnel comes from ``MICRO_TUNNEL_*`` (or is handed in); the transport and the tunnel broker of a
process share one tunnel per setting (see :mod:`micro.tunnel.shared`).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from typing import Any, ClassVar, Final

from ..component import Make
from ..errors import Conflict, ConnectionClosed, MessageTooLarge, NoneAvailable, Unavailable
from ..transport._stream import run_handler, split_address
from ..transport.base import Handler, Listener, Message, Socket, Transport
from ..transport.options import TransportOptions
from . import shared
from .base import Session, Tunnel, TunnelListener

__all__ = ["ANNOUNCE_WAIT", "TunnelTransport"]

logger = logging.getLogger("micro.tunnel")

#: Seconds ``dial`` waits for some node to announce an address before it fails with ``NoneAvailable``
#: (at most the dial's own timeout): long enough for a peer's announce to cross a fresh link.
ANNOUNCE_WAIT: Final = 1.0


def _mucp(**options: Any) -> Tunnel:
    from .mucp import MUCPTunnel
    from .options import TunnelOptions

    return MUCPTunnel(TunnelOptions(**options))


def _size(message: Message) -> int:
    return len(message.body) + sum(len(k.encode()) + len(v.encode()) for k, v in message.header.items())


class _Socket(Socket):
    """A session with the transport's message size limit, tracked so that closing the transport closes it."""

    def __init__(self, owner: TunnelTransport, session: Session, local: str, remote: str) -> None:
        self._owner = owner
        self._session = session
        self._local = local
        self._remote = remote

    @property
    def local(self) -> str:
        return self._local

    @property
    def remote(self) -> str:
        return self._remote

    async def send(self, message: Message) -> None:
        limit = self._owner.options.max_message_size
        if isinstance(message.header, dict) and isinstance(message.body, (bytes, bytearray, memoryview)):
            try:
                size = _size(message)
            except (AttributeError, TypeError):
                size = 0  # a bad header: the session's own check names it
            if size > limit:
                raise MessageTooLarge(f"message is {size} bytes; max_message_size is {limit}")
        await self._session.send(message)

    async def recv(self, *, timeout: float | None = None) -> Message:
        return await self._session.recv(timeout=timeout)

    async def close_send(self) -> None:
        await self._session.close_send()

    async def close(self) -> None:
        self._owner._sockets.discard(self)
        await self._session.close()


class _Listener(Listener):
    def __init__(self, owner: TunnelTransport, address: str, listener: TunnelListener, handler: Handler) -> None:
        self._owner = owner
        self._address = address
        self._listener = listener
        self._handler = handler
        self._tasks: set[asyncio.Task[None]] = set()
        self._accepting = asyncio.get_running_loop().create_task(self._accept())

    @property
    def address(self) -> str:
        return self._address

    async def _accept(self) -> None:
        async for session in self._listener:
            socket = self._owner._track(session, self._address, self._owner._caller(session))
            task = asyncio.get_running_loop().create_task(run_handler(self._handler, socket))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._accepting.done():
            return
        await self._listener.close()
        self._accepting.cancel()
        self._owner._listeners.discard(self)

    async def _abort(self) -> None:
        await self.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class TunnelTransport(Transport):
    """A :class:`~micro.transport.Transport` over a tunnel: see the module docstring.

    :param tunnel: the tunnel to use (connected here if needed, never closed here); when omitted, one built
        with ``make`` (the built-in ``mucp`` tunnel without it) from ``MICRO_TUNNEL_*``, shared with the
        process's other tunnel transports and brokers of the same settings.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: Carried by a tunnel: a tunnel must not run its own links over it (see MUCPTunnel.transport).
    over_tunnel: ClassVar[bool] = True

    def __init__(
        self, options: TransportOptions | None = None, *, tunnel: Tunnel | None = None, make: Make | None = None
    ) -> None:
        super().__init__(options)
        self._given = tunnel
        self._make = make
        self._tunnel: Tunnel | None = None
        self._sockets: set[_Socket] = set()
        self._listeners: set[_Listener] = set()
        self._ports = itertools.count(random.randint(1, 20000))

    @property
    def tunnel(self) -> Tunnel | None:
        """The tunnel in use once started."""
        return self._tunnel

    async def _start(self) -> None:
        if self._given is not None:
            await self._given.connect()
            self._tunnel = self._given
        else:
            self._tunnel = await shared.acquire(self._make(Tunnel) if self._make is not None else _mucp())

    async def _close(self) -> None:
        for listener in list(self._listeners):
            await listener._abort()
        self._listeners.clear()
        for socket in list(self._sockets):
            await socket.close()
        self._sockets.clear()
        tunnel, self._tunnel = self._tunnel, None
        if tunnel is not None and tunnel is not self._given:
            await shared.release(tunnel)

    async def _started(self) -> Tunnel:
        if self._tunnel is None:
            await self.start()
        assert self._tunnel is not None
        return self._tunnel

    def _caller(self, session: Session) -> str:
        """The dialling end's name, as it sees itself: its node (the authenticated peer, or us) and the session."""
        tunnel = self._tunnel
        assert tunnel is not None
        node = next((link.node for link in tunnel.links() if link.id == session.link), tunnel.id)
        return f"{node}:{session.id}"

    def _track(self, session: Session, local: str, remote: str) -> _Socket:
        socket = _Socket(self, session, local, remote)
        self._sockets.add(socket)
        return socket

    async def _dial(self, address: str, timeout: float | None) -> Socket:
        split_address(address)
        tunnel = await self._started()
        seconds = self.options.dial_timeout if timeout is None else timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        wait = loop.time() + min(seconds, ANNOUNCE_WAIT)
        while not tunnel.reachable(address):
            if loop.time() >= wait:
                raise NoneAvailable(
                    f"nothing listens on {address} in this tunnel's network (waited {ANNOUNCE_WAIT:g}s)"
                )
            await asyncio.sleep(0.02)
        session = await tunnel.dial(address, timeout=max(0.0, deadline - loop.time()))
        return self._track(session, f"{tunnel.id}:{session.id}", address)

    async def _listen(self, address: str | None, handler: Handler) -> Listener:
        address = self.options.address if address is None else address
        _, port = split_address(address)
        tunnel = await self._started()
        for _ in range(100):  # port 0: a free name; another transport on a shared tunnel may hold one
            wanted = f"{tunnel.id}:{next(self._ports)}" if port == 0 else address
            try:
                inner = await tunnel.listen(wanted)
                break
            except Conflict:
                if port != 0:
                    raise Unavailable(f"{address} is already listened on in this tunnel") from None
            except ConnectionClosed as exc:
                raise Unavailable(f"cannot listen on {address}: {exc}") from exc
        else:
            raise Unavailable(f"no free port for {address} in this tunnel")
        address = wanted
        listener = _Listener(self, address, inner, handler)
        self._listeners.add(listener)
        return listener
