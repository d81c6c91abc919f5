"""The mucp network (``MICRO_NETWORK=mucp``, the default): route adverts, a router and a proxy over a tunnel.

**Routes.** Every ``interval`` seconds, and at once after a change, each node
sends every linked peer, on the tunnel channel ``micro.network``, one JSON
advert with its whole table::

    {"network": "micro", "node": "<id>", "address": "<tunnel address>", "peers": ["<id>", ...],
     "routes": [{"service", "version", "address", "node", "metric", "delay"}, ...],
     "graph": {"<node>": {"peers": [...], "metric": 1}, ...}}

The table is the services of the node's own registry (metric 1) plus the best
route it learned to each other service node, one hop further, except those
learned from the peer being told (split horizon). See
:mod:`micro.network.router` for the metrics, the best choice and when routes
are withdrawn.

**Proxy.** The node serves mucp calls at ``proxy_address`` (for local clients,
``MICRO_PROXY=<that address>``) and on the tunnel channel
``micro.network.proxy`` (for peers). A call is read from its first message's
``Micro-Service``: a service in the node's own registry is dialled directly,
otherwise the call goes over the tunnel to the gateway of the best route,
which does the same. Messages are then copied both ways unchanged, so unary
calls and streams work alike. No route: ``ServiceNotFound``.

**Pub/sub.** A client with ``MICRO_PROXY`` publishes by calling
``micro.network`` ``Network.Publish`` on its node. The node publishes the
message to its own broker and floods it to its peers on the tunnel channel
``micro.network.publish``; each node publishes it to its broker once (by the
message's ``Micro-Id``) and passes it on.

**Control.** The service ``micro.network`` at the proxy answers
``Network.Nodes``, ``Network.Routes``, ``Network.Services`` and
``Network.Graph`` (JSON), which ``micro network ...`` calls.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import random
import time
import uuid
from collections.abc import Coroutine, Mapping
from typing import Any, ClassVar, Final

from .. import _mucp
from ..broker.base import Broker
from ..broker.base import Message as BrokerMessage
from ..component import Make, Parts
from ..errors import (
    BadRequest,
    ConnectionClosed,
    MicroError,
    NoneAvailable,
    NotFound,
    ServiceNotFound,
    Timeout,
    Unavailable,
)
from ..registry.base import Node, Registry, Service
from ..transport.base import Listener, Message, Socket, Transport
from ..tunnel.base import Session, Tunnel, TunnelListener
from .base import Network, Peer, Route
from .options import NetworkOptions
from .resolver import resolve
from .router import MAX_METRIC, Advertised, Table

__all__ = ["CHANNEL", "HOPS", "PROXY_CHANNEL", "PUBLISH_CHANNEL", "SERVICE", "MUCPNetwork"]

logger = logging.getLogger("micro.network")

#: The tunnel channel adverts travel on.
CHANNEL: Final = "micro.network"
#: The tunnel channel peers forward calls on.
PROXY_CHANNEL: Final = "micro.network.proxy"
#: The tunnel channel published messages are flooded on.
PUBLISH_CHANNEL: Final = "micro.network.publish"
#: The service a node registers (at its proxy address) and answers control calls as.
SERVICE: Final = "micro.network"
#: The header counting the nodes a call or a message has passed through (removed before the service sees it).
HOPS: Final = "Micro-Network-Hops"
#: The status of the error a call with no route gets: clients raise it as ``ServiceNotFound``.
NO_ROUTE_STATUS: Final = "Service Not Found"

_MISSED: Final = 3
#: Message ids remembered to publish each flooded message once.
_SEEN: Final = 16384
#: How often links are checked, at most: a lost link withdraws its routes this soon.
_WATCH: Final = 0.25
_JSON: Final = {_mucp.CONTENT_TYPE: "application/json"}
# Dropped from a message before it leaves the node: proofs of a local caller mean nothing elsewhere.
_STRIP: Final = frozenset((_mucp.LOCAL_PROOF.lower(), HOPS.lower()))


def _mucp_tunnel(**options: Any) -> Tunnel:
    from ..tunnel.mucp import MUCPTunnel
    from ..tunnel.options import TunnelOptions

    return MUCPTunnel(TunnelOptions(**options))


def _local() -> Registry:
    from ..registry.local import LocalRegistry

    return LocalRegistry()


def _tcp() -> Transport:
    from ..transport.tcp import TCPTransport

    return TCPTransport()


def _http(registry: Registry) -> Broker:
    from ..broker.http import HTTPBroker

    return HTTPBroker(registry=registry)


def _error(error: MicroError) -> Message:
    wire = error.to_dict()
    if isinstance(error, ServiceNotFound):
        wire["status"] = NO_ROUTE_STATUS  # so the client raises ServiceNotFound, not only NotFound
    return Message({_mucp.ERROR: json.dumps(wire, separators=(",", ":"))}, b"")


def _hops(header: Mapping[str, str]) -> int:
    text = header.get(HOPS)  # only nodes set it, spelled so (any other spelling is dropped on the way)
    if text is None:
        return 0
    if not (text.isascii() and text.isdigit() and len(text) <= 3):
        raise BadRequest(f"bad {HOPS} header {text[:20]!r}")
    return int(text)


def _forwarded(header: Mapping[str, str], hops: int | None) -> dict[str, str]:
    """``header`` without what must not leave the node, with ``hops`` (``None``: no hop count, for a service)."""
    out = dict(header)
    for key in header:
        if key.lower() in _STRIP:
            del out[key]
    if hops is not None:
        out[HOPS] = str(hops)
    return out


def _patience(header: Mapping[str, str], slack: float) -> float | None:
    """How long to wait for a unary call's answer: the caller's ``Timeout`` and ``slack``; no limit without one."""
    text = _mucp.header(header, _mucp.TIMEOUT)
    if text is None:
        return None
    try:
        return _mucp.decode_timeout(text) + slack
    except BadRequest:
        return None  # the service refuses it, and answers at once


class MUCPNetwork(Network):
    """A network node: it learns routes from its peers' adverts and forwards calls along them.

    :param tunnel: the tunnel to peers; when omitted, one built with ``make`` (see
        :class:`~micro.component.Make`; the built-in ``mucp`` tunnel without it) with this node's id,
        address, nodes and token, connected and closed with the network. One that is passed in is
        connected if needed, and never closed here.
    :param registry: where local services are read and the node registers itself; when omitted, one
        built with ``make`` (the built-in ``local`` registry without it), started and closed with the network.
    :param transport: serves the proxy at ``proxy_address`` and dials local services (``make``'s, else ``tcp``).
    :param broker: where messages published through the network are delivered on this node (``make``'s,
        else ``http`` over ``registry``); started on first use.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({"proxy", "publish"})

    def __init__(
        self,
        options: NetworkOptions | None = None,
        *,
        tunnel: Tunnel | None = None,
        registry: Registry | None = None,
        transport: Transport | None = None,
        broker: Broker | None = None,
        make: Make | None = None,
    ) -> None:
        super().__init__(options)
        self._id = tunnel.id if tunnel is not None else (self.options.id or str(uuid.uuid4()))
        self._tunnel = tunnel
        self._owns_tunnel = tunnel is None
        self._registry = registry
        self._owns_registry = registry is None
        self._transport = transport
        self._owns_transport = transport is None
        self._broker = broker
        self._parts = Parts(make)
        self._listeners: list[TunnelListener] = []
        self._proxy: Listener | None = None
        self._sessions: dict[str, Session] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._table = Table(self._id, self.options.name, ttl=self.options.interval * _MISSED)
        self._peers: dict[str, tuple[Peer, float]] = {}
        #: gateway -> (expiry, node -> (peers, metric)): the topology, learned like routes.
        self._graphs: dict[str, tuple[float, dict[str, tuple[tuple[str, ...], int]]]] = {}
        self._local: list[Route] = []
        self._changed = asyncio.Event()
        self._calls = 0
        self._serving: set[asyncio.Task[Any]] = set()
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._flood: Session | None = None
        self._registered: Service | None = None
        self._connected = False

    @property
    def id(self) -> str:
        return self._id

    @property
    def address(self) -> str:
        return self.tunnel.address

    @property
    def proxy_address(self) -> str:
        return self._proxy.address if self._proxy is not None else ""

    @property
    def tunnel(self) -> Tunnel:
        if self._tunnel is None:
            self._tunnel = self._parts.make(
                Tunnel,
                _mucp_tunnel,
                id=self._id,
                address=self.options.address,
                # dns: the nodes are names, and the tunnel gets the addresses they resolve to instead
                nodes=() if self.options.resolver == "dns" else self.options.nodes,
                token=self.options.token,
            )
        return self._tunnel

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = self._parts.make(Registry, _local)
        return self._registry

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = self._parts.make(Transport, _tcp)
        return self._transport

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            registry = self.registry
            self._broker = self._parts.make(Broker, lambda: _http(registry))
        return self._broker

    def __repr__(self) -> str:
        return f"<MUCPNetwork {self.options.name}/{self._id}>"

    # -- lifecycle -------------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._connected:
            return
        self._connected = True
        self._changed = asyncio.Event()
        try:
            if self._owns_registry:
                await self.registry.start()
            if self._owns_transport:
                await self.transport.start()
            await self._resolve()
            await self.tunnel.connect()
            for channel, serve in (
                (CHANNEL, self._receive),
                (PROXY_CHANNEL, self._serve_peer),
                (PUBLISH_CHANNEL, self._receive_published),
            ):
                listener = await self.tunnel.listen(channel)
                self._listeners.append(listener)
                self._spawn(self._accept(listener, serve))
            self._proxy = await self.transport.listen(self.options.proxy_address, self._serve_local)
            self._local = await self._local_routes()
        except BaseException:
            await self.close()
            raise
        self._spawn(self._locals())
        self._spawn(self._advertise())
        self._spawn(self._watch())
        if self.options.resolver != "static":
            self._spawn(self._resolving())

    async def close(self) -> None:
        if not self._connected:
            return
        self._connected = False
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._registered is not None:
            with contextlib.suppress(MicroError):
                await self.registry.deregister(self._registered)
            self._registered = None
        for call in list(self._serving):
            call.cancel()
        if self._proxy is not None:
            await self._proxy.close()
            self._proxy = None
        for listener in self._listeners:
            await listener.close()
        self._listeners.clear()
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
        if self._flood is not None:
            await self._flood.close()
            self._flood = None
        self._table.clear()
        self._graphs.clear()
        self._peers.clear()
        self._local = []
        await self._release()

    async def _release(self) -> None:
        owned = await self._parts.close()  # what this node built: made afresh on the next connect
        if any(self._tunnel is c for c in owned):
            self._tunnel = None
        if any(self._registry is c for c in owned):
            self._registry = None
        if any(self._transport is c for c in owned):
            self._transport = None
        if any(self._broker is c for c in owned):
            self._broker = None

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.error("network %s: %s failed", self._id, task.get_coro(), exc_info=error)

    async def _accept(self, listener: TunnelListener, serve: Any) -> None:
        async for session in listener:
            self._spawn(serve(session))

    # -- adverts ---------------------------------------------------------------------------------

    async def _advertise(self) -> None:
        while True:
            self._changed.clear()
            try:
                await self._advertise_once()
            except MicroError as exc:  # the registry may be briefly unavailable: try again next round
                logger.warning("network %s: advert failed: %s", self._id, exc)
            except Exception:  # a bug must not silence the node: its routes would expire everywhere
                logger.exception("network %s: advert failed", self._id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.options.interval)
            await asyncio.sleep(min(0.05, self.options.interval))  # a burst of changes makes one advert

    async def _watch(self) -> None:
        """Withdraw at once the routes of a gateway whose link is gone (the tunnel noticed it), and those of a
        gateway silent for three intervals. The one place routes expire: time the loop was stalled is first
        added to every expiry, so that adverts queued meanwhile are read before anything is declared missing."""
        tick = min(_WATCH, self.options.interval)
        last = time.monotonic()
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            if (stalled := now - last - tick) > tick:
                self._table.postpone(stalled)
                logger.debug("network %s: the loop stalled %.2fs; route expiry postponed", self._id, stalled)
            last = now
            changed = self._table.expire()
            if changed:
                logger.info("network %s: routes of silent gateways expired", self._id)
            linked = {link.node for link in self.tunnel.links()}
            for gateway in self._table.gateways():
                if gateway not in linked and self._table.withdraw(gateway):
                    logger.info("network %s: the link to %s is gone; its routes are withdrawn", self._id, gateway)
                    changed = True
            for gateway in list(self._graphs):
                if gateway not in linked:
                    del self._graphs[gateway]
                    changed = True
            if changed:
                self._changed.set()

    async def _resolve(self) -> None:
        """Hand the peers the resolver finds to the tunnel (which keeps them linked)."""
        if self.options.resolver == "static":
            return
        peers = await resolve(
            self.options.resolver,
            self.options.nodes,
            registry=self.registry,
            service=SERVICE,
            network=self.options.name,
            own_id=self._id,
        )
        add = getattr(self.tunnel, "add_nodes", None)
        own = self.tunnel.address if self._connected and self._listeners else None
        peers = [peer for peer in peers if peer != own]
        if add is None:
            logger.warning("network %s: tunnel %r cannot take resolved peers %s", self._id, self.tunnel, peers)
            return
        add(*peers)

    async def _resolving(self) -> None:
        while True:
            await asyncio.sleep(self.options.resolve_interval)
            try:
                await self._resolve()
            except MicroError as exc:
                logger.warning("network %s: resolving peers failed: %s", self._id, exc)

    async def _register(self) -> None:
        if not self.options.register or self._proxy is None:
            return
        service = Service(
            name=SERVICE,
            version=self.options.name,
            nodes=[
                Node(
                    id=self._id,
                    address=self._proxy.address,
                    metadata={"network": self.options.name, "tunnel": self.tunnel.address},
                )
            ],
        )
        await self.registry.register(service, ttl=self._register_ttl())
        self._registered = service

    async def _locals(self) -> None:
        """Read the registry every ``interval`` (and keep this node registered), apart from the adverts: a slow
        registry (a file under load, a remote server) must never hold back the adverts that keep routes alive."""
        registered_at = -math.inf
        while True:
            try:
                local = await self._local_routes()
                if [(r.service, r.address) for r in local] != [(r.service, r.address) for r in self._local]:
                    logger.info("network %s: local services now %s", self._id, sorted({r.service for r in local}))
                    self._local = local
                    self._changed.set()
                if time.monotonic() - registered_at >= self._register_ttl() / 3:
                    await self._register()
                    registered_at = time.monotonic()
            except MicroError as exc:  # the registry may be briefly unavailable: try again next round
                logger.warning("network %s: reading the registry failed: %s", self._id, exc)
            except Exception:
                logger.exception("network %s: reading the registry failed", self._id)
            await asyncio.sleep(self.options.interval)

    def _register_ttl(self) -> float:
        return max(30.0, self.options.interval * _MISSED)

    async def _advertise_once(self) -> None:
        links = {link.id: link for link in self.tunnel.links()}
        for link_id in list(self._sessions):
            if link_id not in links:
                await self._sessions.pop(link_id).close()
        graph = self._graph_entries()
        peers = sorted({link.node for link in links.values()})
        for link in links.values():
            routes = self._local + self._table.advert(link.node)
            advert = {
                "network": self.options.name,
                "node": self._id,
                "address": self.tunnel.address,
                "peers": peers,
                "routes": [
                    {
                        "service": r.service,
                        "version": r.version,
                        "address": r.address,
                        "node": r.node,
                        "metric": r.metric,
                        "delay": round(r.delay, 6),
                    }
                    for r in routes
                ],
                "graph": {
                    node: {"peers": list(node_peers), "metric": metric}
                    for node, (node_peers, metric, gateway) in graph.items()
                    if gateway != link.node and metric + 1 < MAX_METRIC
                },
            }
            body = json.dumps(advert, separators=(",", ":")).encode()
            session = self._sessions.get(link.id)
            try:
                if session is None:
                    session = await self.tunnel.dial(CHANNEL, link=link.id, timeout=self.options.interval)
                    self._sessions[link.id] = session
                await session.send(Message(dict(_JSON), body))
            except (ConnectionClosed, NotFound, Timeout, NoneAvailable) as exc:
                logger.debug("network %s: cannot advertise to %s: %s", self._id, link.node, exc)
                if (dropped := self._sessions.pop(link.id, None)) is not None:
                    await dropped.close()

    async def _local_routes(self) -> list[Route]:
        routes: list[Route] = []
        names = sorted({service.name for service in await self.registry.list_services()} - {SERVICE})
        for name in names:
            try:
                versions = await self.registry.get_service(name)
            except NotFound:
                continue  # deregistered in between
            for service in versions:
                for node in service.nodes:
                    routes.append(Route(name, service.version, node.address, self._id, "", self.options.name, 1))
        return routes

    async def _receive(self, session: Session) -> None:
        try:
            while True:
                message = await session.recv(timeout=self.options.interval * _MISSED)
                if self._learn(message.body, session.link):
                    self._changed.set()
        except (ConnectionClosed, Timeout):
            pass
        finally:
            await session.close()

    def _learn(self, body: bytes, link_id: str) -> bool:
        """Take in one advert; whether the table changed."""
        try:
            advert = json.loads(body)
            network, sender, address = str(advert["network"]), str(advert["node"]), str(advert["address"])
            entries = [
                Advertised(
                    str(r["service"]),
                    str(r["version"]),
                    str(r["address"]),
                    str(r["node"]),
                    int(r["metric"]),
                    float(r.get("delay", 0.0)),
                )
                for r in advert["routes"]
            ]
            peers = tuple(str(p) for p in advert.get("peers", ()))
            graph = {
                str(node): (tuple(str(p) for p in entry["peers"]), int(entry["metric"]))
                for node, entry in dict(advert.get("graph", {})).items()
            }
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            logger.warning("network %s: ignoring a malformed advert: %r", self._id, exc)
            return False
        if network != self.options.name or sender == self._id:
            return False
        expires = time.monotonic() + self.options.interval * _MISSED
        self._peers[sender] = (Peer(sender, address), expires)
        link = next((info for info in self.tunnel.links() if info.id == link_id), None)
        delay = link.delay if link is not None and link.delay is not None else 0.0
        graph[sender] = (peers, 0)
        self._graphs[sender] = (
            expires,
            {node: (node_peers, metric + 1) for node, (node_peers, metric) in graph.items() if node != self._id},
        )
        changed = self._table.process(sender, entries, link=link_id, delay=delay)
        if changed:
            logger.info(
                "network %s: routes via %s now %s",
                self._id,
                sender,
                sorted({f"{r.service}@{r.node}" for r in self._table.routes() if r.gateway == sender}),
            )
        return changed

    def _graph_entries(self) -> dict[str, tuple[tuple[str, ...], int, str]]:
        """Each node known: its peers, hops from here and the gateway it was learned from (``""``: this node)."""
        now = time.monotonic()
        for gateway, (expires, _) in list(self._graphs.items()):
            if expires < now:
                del self._graphs[gateway]
        found: dict[str, tuple[tuple[str, ...], int, str]] = {
            self._id: (tuple(sorted({link.node for link in self.tunnel.links()})), 0, "")
        }
        for gateway, (_, entries) in self._graphs.items():
            for node, (node_peers, metric) in entries.items():
                current = found.get(node)
                if current is None or metric < current[1]:
                    found[node] = (node_peers, metric, gateway)
        return found

    # -- the interface ---------------------------------------------------------------------------

    def nodes(self) -> list[Peer]:
        now = time.monotonic()
        linked = {link.node for link in self.tunnel.links()} if self._connected else set()
        return sorted(
            (peer for peer, expires in self._peers.values() if expires >= now and peer.id in linked),
            key=lambda p: p.id,
        )

    async def routes(self, *, service: str | None = None) -> list[Route]:
        local = await self._local_routes() if self._connected else []
        found = local + self._table.routes(service)
        if service is not None:
            found = [route for route in found if route.service == service]
        return found

    def lookup(self, service: str) -> list[Route]:
        """The routes a call to ``service`` would take now, best first (local ones, then the table's)."""
        local = [route for route in self._local if route.service == service]
        return local + sorted(self._table.routes(service), key=lambda r: (r.metric, r.delay, r.gateway))

    def graph(self) -> dict[str, Any]:
        """The network as this node sees it: every known node with its peers and its distance in hops."""
        return {
            node: {"peers": list(peers), "hops": metric}
            for node, (peers, metric, _) in sorted(self._graph_entries().items())
        }

    # -- the proxy -------------------------------------------------------------------------------

    async def _serve_local(self, socket: Socket) -> None:
        await self._serve(socket, from_peer=False)

    async def _serve_peer(self, session: Session) -> None:
        await self._serve(session, from_peer=True)

    async def _serve(self, downstream: Socket, *, from_peer: bool) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._serving.add(task)  # close() cancels calls in flight rather than wait for them
        try:
            if self._calls >= self.options.max_calls:
                with contextlib.suppress(MicroError):
                    await downstream.send(
                        _error(Unavailable(f"network node {self._id} is busy (max_calls)", id=SERVICE))
                    )
                return
            self._calls += 1
            try:
                try:
                    first = await downstream.recv(timeout=self.options.dial_timeout)
                except (ConnectionClosed, Timeout):
                    return
                try:
                    await self._forward(downstream, first, from_peer=from_peer)
                except MicroError as exc:
                    with contextlib.suppress(MicroError):
                        await downstream.send(_error(exc))
            finally:
                self._calls -= 1
        finally:
            if task is not None:
                self._serving.discard(task)
            await downstream.close()

    async def _forward(self, downstream: Socket, first: Message, *, from_peer: bool) -> None:
        header = first.header
        service = _mucp.header(header, _mucp.SERVICE) or ""
        if service == SERVICE and not from_peer:
            await self._control(downstream, first)
            return
        if not service:
            raise BadRequest(f"a call to the network needs a {_mucp.SERVICE} header", id=SERVICE)
        hops = _hops(header)
        if hops + 1 >= MAX_METRIC:
            raise ServiceNotFound(f"service {service!r}: too many hops ({hops})", id=SERVICE)
        upstream = await self._upstream(service, header, hops)
        try:
            await upstream[0].send(Message(upstream[1], first.body))
            if _mucp.header(header, _mucp.STREAM) is None:
                # A unary call: the request is whole; wait for the one response, no longer than the caller will.
                await upstream[0].close_send()
                response = await upstream[0].recv(timeout=_patience(header, self.options.dial_timeout))
                await downstream.send(response)
                return
            await self._pipe(downstream, upstream[0])
        finally:
            await upstream[0].close()

    async def _upstream(self, service: str, header: Mapping[str, str], hops: int) -> tuple[Socket, dict[str, str]]:
        """A socket to the next stop for ``service`` and the headers to send it; ``ServiceNotFound`` if none."""
        local = [route for route in self._local if route.service == service]
        if len(local) > 1:
            random.shuffle(local)
        failure: MicroError | None = None
        for route in local:
            try:
                socket = await self.transport.dial(route.address, timeout=self.options.dial_timeout)
            except (Unavailable, Timeout) as exc:
                failure = exc
                continue
            return socket, _forwarded(header, None)
        for route in sorted(self._table.routes(service), key=lambda r: (r.metric, r.delay, r.gateway)):
            try:
                session = await self.tunnel.dial(PROXY_CHANNEL, link=route.gateway, timeout=self.options.dial_timeout)
            except (NotFound, Unavailable, Timeout) as exc:
                failure = exc
                continue
            return session, _forwarded(header, hops + 1)
        if failure is not None:
            raise Unavailable(f"service {service!r}: no route answered ({failure})", id=SERVICE)
        raise ServiceNotFound(
            f"service {service!r} not found in network {self.options.name!r} (node {self._id} has no route)", id=SERVICE
        )

    async def _pipe(self, downstream: Socket, upstream: Socket) -> None:
        """Copy a stream's messages both ways until both ends are done.

        A caller that closes its side after its end-of-stream message (``Micro-Error: EOS``) half-closed it:
        the answers keep coming. One that stops without it went away, so the call upstream is abandoned too.
        """

        async def copy(source: Socket, target: Socket) -> bool:
            ended = False
            try:
                while True:
                    message = await source.recv()
                    ended = bool(message.header) and _mucp.header(message.header, _mucp.ERROR) is not None
                    await target.send(message)
            except ConnectionClosed:
                pass
            with contextlib.suppress(ConnectionClosed):
                await target.close_send()
            return ended

        back = asyncio.get_running_loop().create_task(copy(upstream, downstream))
        try:
            if await copy(downstream, upstream):
                await back
        finally:
            back.cancel()
            with contextlib.suppress(asyncio.CancelledError, MicroError):
                await back

    # -- control calls ---------------------------------------------------------------------------

    async def _control(self, downstream: Socket, first: Message) -> None:
        endpoint = _mucp.header(first.header, _mucp.ENDPOINT) or _mucp.header(first.header, _mucp.METHOD) or ""
        if endpoint == "Network.Publish":
            await self._publish_from(first)
            await downstream.send(Message(dict(_JSON), b"{}"))
            return
        try:
            request = json.loads(first.body) if first.body.strip() else {}
        except ValueError:
            raise BadRequest(f"{endpoint}: the request must be JSON", id=SERVICE) from None
        if not isinstance(request, dict):
            request = {}
        if endpoint == "Network.Nodes":
            result: Any = {
                "node": {"id": self._id, "address": self.address, "proxy": self.proxy_address},
                "nodes": [{"id": p.id, "address": p.address} for p in self.nodes()],
            }
        elif endpoint == "Network.Routes":
            wanted = request.get("service")
            result = {"routes": [r.to_dict() for r in await self.routes(service=wanted if wanted else None)]}
        elif endpoint == "Network.Services":
            result = {"services": sorted({r.service for r in await self.routes()})}
        elif endpoint == "Network.Graph":
            result = {"node": self._id, "graph": self.graph()}
        else:
            raise NotFound(f"{SERVICE} has no endpoint {endpoint!r}", id=SERVICE)
        await downstream.send(Message(dict(_JSON), json.dumps(result, separators=(",", ":")).encode()))

    # -- pub/sub ---------------------------------------------------------------------------------

    async def _publish_from(self, first: Message) -> None:
        topic = _mucp.header(first.header, _mucp.TOPIC)
        if not topic:
            raise BadRequest(f"Network.Publish needs a {_mucp.TOPIC} header", id=SERVICE)
        header = {
            k: v
            for k, v in first.header.items()
            if k.lower() not in _STRIP
            and k.lower() not in (_mucp.SERVICE.lower(), _mucp.ENDPOINT.lower(), _mucp.METHOD.lower(), "timeout")
        }
        if _mucp.header(header, _mucp.ID) is None:
            header[_mucp.ID] = str(uuid.uuid4())
        await self.publish(topic, first.body, header)

    async def publish(self, topic: str, body: bytes, header: Mapping[str, str]) -> None:
        """Deliver a message to this node's broker and flood it to every node of the network.

        ``header`` must carry a ``Micro-Id`` (each node delivers a message id once).
        """
        message_id = _mucp.header(header, _mucp.ID) or str(uuid.uuid4())
        self._remember(message_id)
        await self._deliver(topic, body, header)
        await self._flood_out(topic, body, header, 1)

    def _remember(self, message_id: str) -> bool:
        """Note ``message_id``; whether it was new."""
        if message_id in self._seen:
            return False
        self._seen[message_id] = None
        if len(self._seen) > _SEEN:
            self._seen.popitem(last=False)
        return True

    async def _deliver(self, topic: str, body: bytes, header: Mapping[str, str]) -> None:
        clean = {k: v for k, v in header.items() if k.lower() not in _STRIP}
        clean[_mucp.TOPIC] = topic
        await self.broker.publish(topic, BrokerMessage(body, clean))

    async def _flood_out(self, topic: str, body: bytes, header: Mapping[str, str], hops: int) -> None:
        if hops >= MAX_METRIC:
            return
        if self._flood is None:
            self._flood = await self.tunnel.dial(PUBLISH_CHANNEL, mode="broadcast")
        out = _forwarded(header, hops)
        out[_mucp.TOPIC] = topic
        try:
            await self._flood.send(Message(out, body))
        except ConnectionClosed as exc:
            logger.debug("network %s: flooding %s failed: %s", self._id, topic, exc)
            self._flood = None

    async def _receive_published(self, session: Session) -> None:
        try:
            while True:
                message = await session.recv()
                header = message.header
                topic = _mucp.header(header, _mucp.TOPIC)
                message_id = _mucp.header(header, _mucp.ID)
                try:
                    hops = _hops(header)
                except BadRequest:
                    continue
                if not topic or not message_id or not self._remember(message_id):
                    continue
                try:
                    await self._deliver(topic, message.body, header)
                except MicroError as exc:
                    logger.warning("network %s: delivering %s failed: %s", self._id, topic, exc)
                await self._flood_out(topic, message.body, header, hops + 1)
        except ConnectionClosed:
            pass
        finally:
            await session.close()
