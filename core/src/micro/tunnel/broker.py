"""The tunnel broker (``MICRO_BROKER=tunnel``): publish and subscribe across a tunnel's links.

Every broker on a tunnel listens on the channel ``micro.broker``. ``publish`` delivers to this process's
subscribers and sends the message, with its topic, on one long-lived multicast session to every linked
peer that listens there; each peer delivers it to its own subscribers. Delivery in a process goes
through an in-process :class:`~micro.broker.memory.MemoryBroker`, so slow subscribers apply
back-pressure as there. Messages reach peers linked directly (one hop), in order per publisher and
link; a message sent while a link is down is not replayed. No queue groups or acknowledgements
across nodes: the broker declares no capabilities.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from ..broker.base import Broker, Handler, Message, Subscriber
from ..broker.memory import MemoryBroker
from ..broker.options import BrokerOptions, SubscribeOptions
from ..component import Make
from ..errors import ConnectionClosed, MicroError
from ..transport.base import Message as Frame
from . import shared
from .base import LinkLost, Session, Tunnel, TunnelListener

__all__ = ["CHANNEL", "TunnelBroker"]

logger = logging.getLogger("micro.tunnel")

#: The tunnel channel broker messages travel on.
CHANNEL: Final = "micro.broker"
TOPIC: Final = "Micro-Broker-Topic"


def _mucp(**options: Any) -> Tunnel:
    from .mucp import MUCPTunnel
    from .options import TunnelOptions

    return MUCPTunnel(TunnelOptions(**options))


@dataclass
class _Hub:
    """What every tunnel broker on one tunnel shares: local delivery, the listener, the outgoing session."""

    tunnel: Tunnel
    local: MemoryBroker
    listener: TunnelListener
    users: int = 0
    session: Session | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def send(self, topic: str, message: Message) -> None:
        async with self.lock:  # one session, one message at a time, so each peer sees them in order
            if self.session is None:
                self.session = await self.tunnel.dial(CHANNEL, mode="multicast")
            await self.session.send(Frame({**message.header, TOPIC: topic}, message.body))

    async def serve(self) -> None:
        async for session in self.listener:
            task = asyncio.get_running_loop().create_task(self._receive(session))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _receive(self, session: Session) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                frame = await session.recv()
                header = dict(frame.header)
                topic = header.pop(TOPIC, "")
                try:
                    await self.local.publish(topic, Message(frame.body, header))
                except MicroError as exc:  # a bad topic from a peer, or we are closing
                    logger.warning("tunnel broker: dropping a message from %s: %s", session.remote, exc)


#: Hubs by tunnel (identity).
_HUBS: dict[int, _Hub] = {}


class TunnelBroker(Broker):
    """A :class:`~micro.broker.Broker` over a tunnel: see the module docstring.

    :param tunnel: the tunnel to use (connected here if needed, never closed here); when omitted, one built
        with ``make`` (the built-in ``mucp`` tunnel without it) from ``MICRO_TUNNEL_*``, shared with the
        process's tunnel transports and other tunnel brokers of the same settings.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self, options: BrokerOptions | None = None, *, tunnel: Tunnel | None = None, make: Make | None = None
    ) -> None:
        super().__init__(options)
        self._given = tunnel
        self._make = make
        self._hub: _Hub | None = None

    @property
    def address(self) -> str:
        return self._hub.tunnel.address if self._hub is not None else ""

    async def _start(self) -> None:
        if self._given is not None:
            await self._given.connect()
            tunnel = self._given
        else:
            tunnel = await shared.acquire(self._make(Tunnel) if self._make is not None else _mucp())
        hub = _HUBS.get(id(tunnel))
        if hub is None:
            local = MemoryBroker()
            await local.start()
            hub = _Hub(tunnel, local, await tunnel.listen(CHANNEL))
            _HUBS[id(tunnel)] = hub
            task = asyncio.get_running_loop().create_task(hub.serve())
            hub.tasks.add(task)
        hub.users += 1
        self._hub = hub

    async def _close(self) -> None:
        # The base has unsubscribed this broker's subscriptions already.
        hub, self._hub = self._hub, None
        if hub is None:
            return
        hub.users -= 1
        if hub.users == 0:
            _HUBS.pop(id(hub.tunnel), None)
            await hub.listener.close()
            if hub.session is not None:
                await hub.session.close()
            for task in list(hub.tasks):
                task.cancel()
            await asyncio.gather(*hub.tasks, return_exceptions=True)
            await hub.local.close()
        if hub.tunnel is not self._given:
            await shared.release(hub.tunnel)

    async def _publish(self, topic: str, message: Message) -> None:
        hub = self._hub
        assert hub is not None
        await hub.local.publish(topic, message)
        with contextlib.suppress(LinkLost):
            await hub.send(topic, message)  # a link that died while sending: its peer misses this one

    async def _subscribe(self, topic: str, handler: Handler, options: SubscribeOptions) -> Subscriber:
        hub = self._hub
        assert hub is not None
        subscriber = await hub.local.subscribe(topic, handler, auto_ack=options.auto_ack)
        # This broker keeps the books of it (and unsubscribes it on close), not the shared in-process one.
        hub.local._subscriptions.discard(subscriber)
        return subscriber
