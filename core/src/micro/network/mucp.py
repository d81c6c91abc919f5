"""The mucp network (``MICRO_NETWORK=mucp``, the default): route adverts over a tunnel channel.

Every ``interval`` seconds each node sends every linked peer, on the tunnel
channel ``micro.network``, one JSON advert with its full table::

    {"network": "micro", "node": "<id>", "address": "<tunnel address>",
     "routes": [{"service", "version", "address", "node", "metric"}, ...]}

The table is the services of the node's own registry (metric 1) plus the
routes it learned, each one hop further, except those learned from the peer
being told (split horizon), so routes spread along chains of nodes without
echoing back. A receiver keeps a route until three adverts are missed, and
drops at once a route its gateway stopped advertising. Routes of 16 hops or
more are dropped, which ends any loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Coroutine
from typing import Any, ClassVar, Final

from ..component import Make, Parts
from ..errors import ConnectionClosed, MicroError, NotFound, Timeout
from ..registry.base import Registry
from ..transport.base import Message
from ..tunnel.base import Session, Tunnel, TunnelListener
from .base import Network, Peer, Route
from .options import NetworkOptions

__all__ = ["CHANNEL", "MUCPNetwork"]

logger = logging.getLogger("micro.network")

#: The tunnel channel adverts travel on.
CHANNEL: Final = "micro.network"
_MAX_METRIC: Final = 16
_MISSED: Final = 3

_Key = tuple[str, str, str, str]  # service, version, address, node


def _mucp_tunnel(**options: Any) -> Tunnel:
    from ..tunnel.mucp import MUCPTunnel
    from ..tunnel.options import TunnelOptions

    return MUCPTunnel(TunnelOptions(**options))


def _local() -> Registry:
    from ..registry.local import LocalRegistry

    return LocalRegistry()


class MUCPNetwork(Network):
    """A network node that learns routes from its peers' adverts.

    :param tunnel: the tunnel to peers; when omitted, one built with ``make`` (see
        :class:`~micro.component.Make`; the built-in ``mucp`` tunnel without it) with this node's id,
        address, nodes and token, connected and closed with the network. One that is passed in is
        connected if needed, and never closed here.
    :param registry: where local services are read; when omitted, one built with ``make`` (the built-in
        ``local`` registry without it), started and closed with the network.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        options: NetworkOptions | None = None,
        *,
        tunnel: Tunnel | None = None,
        registry: Registry | None = None,
        make: Make | None = None,
    ) -> None:
        super().__init__(options)
        self._id = tunnel.id if tunnel is not None else (self.options.id or str(uuid.uuid4()))
        self._tunnel = tunnel
        self._owns_tunnel = tunnel is None
        self._registry = registry
        self._owns_registry = registry is None
        self._parts = Parts(make)
        self._listener: TunnelListener | None = None
        self._sessions: dict[str, Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._learned: dict[_Key, tuple[Route, float]] = {}
        self._peers: dict[str, tuple[Peer, float]] = {}

    @property
    def id(self) -> str:
        return self._id

    @property
    def address(self) -> str:
        return self.tunnel.address

    @property
    def tunnel(self) -> Tunnel:
        if self._tunnel is None:
            self._tunnel = self._parts.make(
                Tunnel,
                _mucp_tunnel,
                id=self._id,
                address=self.options.address,
                nodes=self.options.nodes,
                token=self.options.token,
            )
        return self._tunnel

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = self._parts.make(Registry, _local)
        return self._registry

    def __repr__(self) -> str:
        return f"<MUCPNetwork {self.options.name}/{self._id}>"

    # -- lifecycle -------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._listener is not None:
            return
        if self._owns_registry:
            await self.registry.start()
        try:
            await self.tunnel.connect()
            self._listener = await self.tunnel.listen(CHANNEL)
        except BaseException:
            await self._release()
            raise
        self._spawn(self._accept(self._listener))
        self._spawn(self._advertise())

    async def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await listener.close()
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
        self._learned.clear()
        self._peers.clear()
        await self._release()

    async def _release(self) -> None:
        if self._owns_tunnel and self._tunnel is not None:
            await self._tunnel.close()
        if self._owns_registry and self._registry is not None:
            await self._registry.close()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- sending ---------------------------------------------------------------------------------

    async def _advertise(self) -> None:
        while True:
            try:
                await self._advertise_once()
            except MicroError as exc:  # the registry may be briefly unavailable: try again next round
                logger.warning("network %s: advert failed: %s", self._id, exc)
            await asyncio.sleep(self.options.interval)

    async def _advertise_once(self) -> None:
        local = await self._local_routes()
        links = {link.id: link for link in self.tunnel.links()}
        for link_id in list(self._sessions):
            if link_id not in links:
                await self._sessions.pop(link_id).close()
        learned = self._fresh()
        for link in links.values():
            routes = local + [r for r in learned if r.gateway != link.node and r.metric + 1 < _MAX_METRIC]
            advert = {
                "network": self.options.name,
                "node": self._id,
                "address": self.tunnel.address,
                "routes": [
                    {
                        "service": r.service,
                        "version": r.version,
                        "address": r.address,
                        "node": r.node,
                        "metric": r.metric,
                    }
                    for r in routes
                ],
            }
            body = json.dumps(advert, separators=(",", ":")).encode()
            session = self._sessions.get(link.id)
            try:
                if session is None:
                    session = await self.tunnel.dial(CHANNEL, link=link.id, timeout=self.options.interval)
                    self._sessions[link.id] = session
                await session.send(Message({"Content-Type": "application/json"}, body))
            except (ConnectionClosed, NotFound, Timeout) as exc:
                logger.debug("network %s: cannot advertise to %s: %s", self._id, link.node, exc)
                if (dropped := self._sessions.pop(link.id, None)) is not None:
                    await dropped.close()

    async def _local_routes(self) -> list[Route]:
        routes: list[Route] = []
        names = sorted({service.name for service in await self.registry.list_services()})
        for name in names:
            try:
                versions = await self.registry.get_service(name)
            except NotFound:
                continue  # deregistered in between
            for service in versions:
                for node in service.nodes:
                    routes.append(Route(name, service.version, node.address, self._id, "", self.options.name, 1))
        return routes

    # -- receiving -------------------------------------------------------------------------------

    async def _accept(self, listener: TunnelListener) -> None:
        async for session in listener:
            self._spawn(self._receive(session))

    async def _receive(self, session: Session) -> None:
        try:
            while True:
                message = await session.recv(timeout=self.options.interval * _MISSED)
                self._learn(message.body)
        except (ConnectionClosed, Timeout):
            pass
        finally:
            await session.close()

    def _learn(self, body: bytes) -> None:
        try:
            advert = json.loads(body)
            network, sender, address = str(advert["network"]), str(advert["node"]), str(advert["address"])
            entries = [
                (str(r["service"]), str(r["version"]), str(r["address"]), str(r["node"]), int(r["metric"]))
                for r in advert["routes"]
            ]
        except (ValueError, TypeError, KeyError) as exc:
            logger.warning("network %s: ignoring a malformed advert: %r", self._id, exc)
            return
        if network != self.options.name or sender == self._id:
            return
        expires = time.monotonic() + self.options.interval * _MISSED
        self._peers[sender] = (Peer(sender, address), expires)
        advertised: set[_Key] = set()
        for service, version, route_address, node, metric in entries:
            if node == self._id or metric + 1 >= _MAX_METRIC:
                continue  # our own route coming back, or a loop
            key = (service, version, route_address, node)
            advertised.add(key)
            current = self._learned.get(key)
            if current is None or current[0].gateway == sender or metric + 1 <= current[0].metric:
                route = Route(service, version, route_address, node, sender, network, metric + 1)
                self._learned[key] = (route, expires)
        for key, (route, _) in list(self._learned.items()):
            if route.gateway == sender and key not in advertised:
                del self._learned[key]  # withdrawn: the advert is the sender's whole table

    def _fresh(self) -> list[Route]:
        now = time.monotonic()
        for key, (_, expires) in list(self._learned.items()):
            if expires < now:
                del self._learned[key]
        return [route for route, _ in self._learned.values()]

    # -- the interface ---------------------------------------------------------------------------

    def nodes(self) -> list[Peer]:
        now = time.monotonic()
        return sorted((peer for peer, expires in self._peers.values() if expires >= now), key=lambda p: p.id)

    async def routes(self, *, service: str | None = None) -> list[Route]:
        local = await self._local_routes() if self._listener is not None else []
        learned = sorted(self._fresh(), key=lambda r: (r.service, r.metric, r.address, r.node))
        found = local + learned
        if service is not None:
            found = [route for route in found if route.service == service]
        return found
