"""The in-process transport: sockets are pairs of queues, addresses live in a process-wide table.

It follows the same contract as the tcp transport (ordering, half-close,
``max_message_size``, errors), so tests and single-process deployments can
swap one for the other. Addresses look like tcp ones: ``listen("127.0.0.1:0")``
picks a free port in the table; ``""``, ``0.0.0.0``, ``::`` and ``localhost``
all mean ``127.0.0.1``. A listener serves dialers on its own event loop only.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import ClassVar, Final

from ..errors import BadRequest, ConnectionClosed, MessageTooLarge, Unavailable
from ._stream import ENDED, RESET, StreamSocket, check_header, run_handler, split_address
from .base import Handler, Listener, Message, Socket, Transport
from .options import TransportOptions

__all__ = ["MemoryTransport"]

_LISTENERS: Final[dict[str, _MemoryListener]] = {}
_PORTS: Final = itertools.count(49152)
_CLIENTS: Final = itertools.count(1)
_LOCAL_HOSTS: Final = frozenset({"", "0.0.0.0", "::", "localhost", "127.0.0.1"})
#: Messages queued for a reader before its writers wait; memory has no kernel buffer to push back.
_QUEUE_LIMIT: Final = 1024


def _key(address: str) -> tuple[str, int]:
    host, port = split_address(address)
    return ("127.0.0.1" if host in _LOCAL_HOSTS else host), port


class _MemorySocket(StreamSocket):
    def __init__(self, owner: MemoryTransport, local: str, remote: str) -> None:
        super().__init__(local, remote)
        self._owner = owner
        self._max = owner.options.max_message_size
        self._peer: _MemorySocket = self
        self._space: asyncio.Future[None] | None = None

    async def _write(self, message: Message | None, end: bool) -> None:
        peer = self._peer
        if message is not None:
            header = check_header(message.header)
            body = message.body
            if type(body) is not bytes:
                if not isinstance(body, (bytes, bytearray, memoryview)):
                    raise BadRequest(f"message body must be bytes, not {type(body).__name__}")
                body = bytes(body)
            size = len(body) + sum(len(k.encode()) + len(v.encode()) for k, v in header.items())
            if size > self._max:
                raise MessageTooLarge(f"message of {size} bytes exceeds max_message_size {self._max}")
            while len(peer._inbox) >= _QUEUE_LIMIT and self._send_closed is None:
                await peer._wait_for_space()
            if self._send_closed is not None:
                raise ConnectionClosed(self._send_closed)
            peer._deliver(Message(dict(header), body))
        if end:
            peer._end(ENDED)

    async def _wait_for_space(self) -> None:
        if self._space is None:
            self._space = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._space)

    def _signal_space(self) -> None:
        space, self._space = self._space, None
        if space is not None and not space.done():
            space.set_result(None)

    def _consumed(self, message: Message) -> None:
        if self._space is not None and len(self._inbox) < _QUEUE_LIMIT // 2:
            self._signal_space()

    def _finish(self, reset: bool) -> None:
        if reset:
            self._peer._reset(RESET)
        else:
            self._peer._end(ENDED)

    def _release(self) -> None:
        self._signal_space()
        self._peer._signal_space()
        self._owner._sockets.discard(self)


class _MemoryListener(Listener):
    def __init__(self, owner: MemoryTransport, address: str, handler: Handler) -> None:
        self._owner = owner
        self._address = address
        self._handler = handler
        self._loop = asyncio.get_running_loop()
        self._closed = False

    @property
    def address(self) -> str:
        return self._address

    def _accept(self, socket: Socket) -> None:
        task = self._loop.create_task(run_handler(self._handler, socket))
        self._owner._tasks.add(task)
        task.add_done_callback(self._owner._tasks.discard)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if _LISTENERS.get(self._address) is self:
            del _LISTENERS[self._address]
        self._owner._listeners.discard(self)


class MemoryTransport(Transport):
    """Transport between tasks of one process; nothing touches the network."""

    options_type: ClassVar[type[TransportOptions]] = TransportOptions
    #: Nothing optional: there is no network, hence no TLS.
    #: The name it is registered by, also when built without the plugin manager: servers register it as the
    #: node's ``transport`` and clients compare it (:func:`micro.selector.filter_protocol`).
    name = "memory"
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: TransportOptions | None = None) -> None:
        super().__init__(options)
        self._local = f"memory-{next(_CLIENTS)}:0"
        self._listeners: set[_MemoryListener] = set()
        self._sockets: set[_MemorySocket] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def _dial(self, address: str, timeout: float | None) -> Socket:
        host, port = _key(address)
        key = f"{host}:{port}"
        listener = _LISTENERS.get(key)
        if listener is not None and listener._loop is not asyncio.get_running_loop():
            listener = None  # left behind by another event loop: it can never answer
        if listener is None:
            raise Unavailable(f"cannot connect to {address}: nothing listens there (memory transport)")
        client = _MemorySocket(self, self._local, key)
        server = _MemorySocket(listener._owner, key, self._local)
        client._peer, server._peer = server, client
        self._sockets.add(client)
        listener._owner._sockets.add(server)
        listener._accept(server)
        return client

    async def _listen(self, address: str | None, handler: Handler) -> Listener:
        host, port = _key(address or self.options.address)
        if port == 0:
            port = next(_PORTS)
            while f"{host}:{port}" in _LISTENERS:
                port = next(_PORTS)
        key = f"{host}:{port}"
        existing = _LISTENERS.get(key)
        if existing is not None and existing._loop is asyncio.get_running_loop():
            raise Unavailable(f"cannot listen on {key}: address already in use (memory transport)")
        listener = _MemoryListener(self, key, handler)
        _LISTENERS[key] = listener
        self._listeners.add(listener)
        return listener

    async def _close(self) -> None:
        for listener in list(self._listeners):
            await listener.close()
        for socket in list(self._sockets):
            socket._fail("the transport is closed")
            socket._peer._fail("the connection was closed by the peer's transport")
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
