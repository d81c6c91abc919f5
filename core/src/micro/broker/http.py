"""``http``: Go Micro's point-to-point HTTP broker, the default; pub/sub between processes with no server.

Every broker runs a small HTTP server (``address``, default ``127.0.0.1:0``).
Each subscription registers one node in the registry as service
``micro.http.broker``, with node metadata ``{"broker": "http", "topic": <topic>}``
and version = the queue name, or ``ff.http.broadcast`` for a broadcast
subscriber. ``publish`` finds the nodes of its topic through a cache that
follows the registry (a watch, so no registry round trip per publish) and
POSTs the message to one random node of each queue version and to every node
of the broadcast version.

**Wire format.** ``POST http://<node address>/?id=<node id>`` with
``Content-Type: application/json`` and the body
``{"topic": "<topic>", "header": {"k": "v", ...}, "body": "<base64>"}``
(keys are read case-insensitively, and a missing ``topic`` is taken from the
``Micro-Topic`` header, as Go Micro sends it). Replies:

* ``204``: delivered and acked, or dropped by ``nack(requeue=False)``;
* ``400`` malformed request, ``404`` unknown path or node id, ``405`` not a POST,
  ``413`` body over ``max_message_size``: the publisher drops the message;
* ``500``: the handler failed or asked for redelivery: the publisher redelivers;
* ``503``: the subscriber is going away: the publisher retries elsewhere or later.

**Delivery.** ``publish`` returns once the message is queued for each target
node (it waits while a node's ``outbox_size`` queue is full); one task per
node POSTs its queue in order, so a subscriber sees one publisher's messages in
publish order. A failed delivery goes to a bounded per-topic inbox
(``inbox_size``; the oldest entry is dropped when full) that is retried on the
next publish to the topic and every ``retry_interval``, up to
``max_redeliveries`` times; a message for a queue group is then sent to any
live member. A node that fails (connection error, timeout, 5xx other than 500)
is skipped for a backoff that doubles with each consecutive failure (0.5s up to
30s), so a dead node never holds up delivery to live ones. Delivery is
at-least-once within those bounds: a handler slower than ``request_timeout``
may see its message again.

**Flush and close.** :meth:`HTTPBroker.flush` waits until every message
published so far is delivered or has definitively failed; ``close`` does that
for at most ``close_timeout``, then drops what is left with a warning.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import ipaddress
import logging
import math
import random
import time
import uuid
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, ClassVar

import aiohttp
import orjson
from aiohttp import web

from ..component import Make, Parts
from ..errors import (
    BackendUnavailable,
    BadRequest,
    ConnectionClosed,
    InvalidOption,
    MessageTooLarge,
    MicroError,
    NotFound,
    NotSupported,
    RPCError,
    ServiceNotFound,
    Timeout,
    Unavailable,
)
from ..registry import Node, Registry, Result, Service, Watcher
from .base import (
    Broker,
    Event,
    Handler,
    Message,
    Outcome,
    Subscriber,
    check_publish,
    check_subscribe,
    check_topic,
    dispatch,
)
from .options import BrokerOptions, SubscribeOptions

__all__ = ["BROADCAST_VERSION", "SERVICE", "HTTPBroker", "HTTPBrokerOptions", "decode", "encode"]

logger = logging.getLogger("micro.broker")

#: The registry service every http-broker subscriber registers a node of.
SERVICE = "micro.http.broker"
#: The version broadcast subscribers register under; queue subscribers use the queue name.
BROADCAST_VERSION = "ff.http.broadcast"
_PATH = "/"
_ERROR_ID = "micro.broker.http"
_BACKOFF_BASE = 0.5
_BACKOFF_MAX = 30.0
# Without a working watch the node cache is read again when it is older than this.
_STALE_AFTER = 1.0
# Room for the JSON envelope and the headers around a base64 body.
_ENVELOPE_ALLOWANCE = 64 * 1024


def split_address(text: str) -> tuple[str, int]:
    """``("host", port)`` from ``"host:port"`` or ``"[v6]:port"``; raises ``ValueError``."""
    host, sep, port_text = text.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected host:port, got {text!r}")
    return host or "127.0.0.1", int(port_text)


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _number(value: Any, option: str, *, low: float, strict: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidOption(f"must be a number, got {value!r}", option=option)
    if value < low or (strict and value == low):
        raise InvalidOption(f"must be {'>' if strict else '>='} {low}, got {value!r}", option=option)


@dataclass(frozen=True, kw_only=True, slots=True)
class HTTPBrokerOptions(BrokerOptions):
    """Settings of the ``http`` broker (``MICRO_BROKER_<FIELD>``)."""

    #: Where the subscriber endpoint listens (the first entry is used).
    address: tuple[str, ...] = ("127.0.0.1:0",)
    #: ``host:port`` put in the registry, if not the bound address (needed when binding ``0.0.0.0``).
    advertise: str | None = None
    #: Seconds one POST to a subscriber may take.
    request_timeout: float = 5.0
    #: Lifetime of the registered subscriber nodes, refreshed every ``register_interval``; 0: no expiry.
    register_ttl: float = 60.0
    register_interval: float = 30.0
    #: Failed deliveries kept per topic for retrying.
    inbox_size: int = 64
    #: Messages queued per subscriber node before ``publish`` waits.
    outbox_size: int = 1024
    #: Seconds between retries of the inbox.
    retry_interval: float = 1.0
    #: Times one message is retried (after a failed POST or a requeue) before it is dropped.
    max_redeliveries: int = 3
    #: Seconds a running handler may take to finish when its subscriber is removed; also how long
    #: ``close()`` waits for queued deliveries, and ``flush()``'s default timeout.
    close_timeout: float = 5.0

    def __post_init__(self) -> None:
        BrokerOptions.__post_init__(self)
        if not self.address:
            raise InvalidOption("needs an address to listen on, such as 127.0.0.1:0", option="address")
        for option, value in (("address", self.address[0]), ("advertise", self.advertise)):
            if value is not None:
                try:
                    split_address(value)
                except ValueError as exc:
                    raise InvalidOption(str(exc), option=option) from None
        _number(self.request_timeout, "request_timeout", low=0, strict=True)
        _number(self.register_ttl, "register_ttl", low=0)
        _number(self.register_interval, "register_interval", low=0, strict=True)
        _number(self.retry_interval, "retry_interval", low=0, strict=True)
        _number(self.close_timeout, "close_timeout", low=0)
        if self.register_ttl and self.register_interval >= self.register_ttl:
            raise InvalidOption("must be shorter than register_ttl", option="register_interval")
        for option, low in (("inbox_size", 1), ("outbox_size", 1), ("max_redeliveries", 0)):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidOption(f"must be an integer >= {low}, got {value!r}", option=option)


# -- wire format -------------------------------------------------------------------------------


def encode(topic: str, message: Message) -> bytes:
    """The JSON body of a delivery POST (see the module docstring)."""
    return orjson.dumps(
        {"topic": topic, "header": dict(message.header), "body": base64.b64encode(message.body).decode("ascii")}
    )


def decode(data: bytes, max_message_size: int) -> tuple[str, Message]:
    """``(topic, message)`` from a delivery POST body.

    :raises BadRequest: not JSON, not an object, or a field of the wrong type.
    :raises MessageTooLarge: the decoded body exceeds ``max_message_size``.
    """
    try:
        raw = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"body is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise BadRequest(f"body must be a JSON object, not {type(raw).__name__}")
    fields = {str(k).lower(): v for k, v in raw.items()}
    header = fields.get("header") or {}
    if not isinstance(header, dict) or not all(isinstance(v, str) for v in header.values()):
        raise BadRequest("header must be an object of strings")
    body = fields.get("body") or ""
    if not isinstance(body, str):
        raise BadRequest("body must be a base64 string")
    try:
        payload = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("body is not valid base64") from None
    if len(payload) > max_message_size:
        raise MessageTooLarge(f"message body is {len(payload)} bytes; max_message_size is {max_message_size}")
    message = Message(payload, header)
    topic = fields.get("topic", message.header.get("Micro-Topic"))
    return check_topic(topic), message


def _reply(error: MicroError | None = None) -> web.Response:
    """``204``, or ``error`` as Go Micro's JSON error, with its code as the status."""
    if error is None:
        return web.Response(status=204)
    body = error.to_dict() | {"id": _ERROR_ID}
    return web.Response(status=error.code, body=orjson.dumps(body), content_type="application/json")


# -- publishing side ---------------------------------------------------------------------------


class _Delivery:
    """One message on its way to one node (broadcast) or to one queue version."""

    __slots__ = ("attempts", "node_id", "payload", "seq", "topic", "version")

    def __init__(self, seq: int, topic: str, payload: bytes, version: str, node_id: str | None) -> None:
        #: Increases with each accepted delivery; :meth:`HTTPBroker.flush` waits for those up to its own.
        self.seq = seq
        self.topic = topic
        self.payload = payload
        self.version = version
        #: The node a broadcast delivery is for; ``None`` lets a queue delivery go to any member.
        self.node_id = node_id
        self.attempts = 0


class _Health:
    __slots__ = ("down_until", "failures")

    def __init__(self) -> None:
        self.failures = 0
        self.down_until = 0.0

    def up(self, now: float) -> bool:
        return now >= self.down_until

    def failed(self, now: float) -> None:
        self.failures += 1
        self.down_until = now + min(_BACKOFF_BASE * 2 ** (self.failures - 1), _BACKOFF_MAX)


class _Sender:
    """The ordered queue of deliveries to one node, and the task that POSTs them."""

    def __init__(self, broker: HTTPBroker, node: Node) -> None:
        self.node = node
        self.health = _Health()
        self.queue: asyncio.Queue[_Delivery] = asyncio.Queue(broker.options.outbox_size)
        #: The delivery being POSTed, taken off ``queue`` but not yet settled or kept for a retry.
        self.current: _Delivery | None = None
        self.stopping = False
        self.task = broker._spawn(self._run(broker), f"send:{node.id}")

    def stop(self) -> list[_Delivery]:
        """End the task and return what was still queued.

        A POST in progress is let finish, so that its reply still decides the
        delivery's fate (the node may be handling it right now).
        """
        self.stopping = True
        if self.current is None:
            self.task.cancel()
        left = []
        while not self.queue.empty():
            left.append(self.queue.get_nowait())
        return left

    async def _run(self, broker: HTTPBroker) -> None:
        while not self.stopping:
            delivery = self.current = await self.queue.get()
            try:
                await broker._post(self, delivery)
            except Exception:  # a bug must not silently end delivery to this node
                logger.exception("http broker: delivery to node %s failed unexpectedly", self.node.id)
                broker._settle(delivery)
            finally:
                self.current = None


# -- subscribing side --------------------------------------------------------------------------


class _HTTPSubscriber(Subscriber):
    def __init__(self, broker: HTTPBroker, topic: str, options: SubscribeOptions, handler: Handler, node: Node) -> None:
        super().__init__(topic, options)
        self._broker = broker
        self._handler = handler
        self.node = node
        self.version = options.queue if options.queue is not None else BROADCAST_VERSION
        self.stopping = False
        self._lock = asyncio.Lock()
        self._running: asyncio.Task[Any] | None = None

    def service(self) -> Service:
        return Service(
            name=SERVICE, version=self.version, nodes=[Node(self.node.id, self.node.address, self.node.metadata)]
        )

    async def deliver(self, message: Message) -> Outcome | None:
        """Run the handler (one message at a time, in arrival order); ``None`` if unsubscribed meanwhile."""
        async with self._lock:
            if self.stopping:
                return None
            self._running = asyncio.current_task()
            try:
                return await dispatch(self._handler, Event(self.topic, message), auto_ack=self.options.auto_ack)
            finally:
                self._running = None

    async def unsubscribe(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        await self._broker._remove(self)
        running = self._running
        if running is None or running is asyncio.current_task():
            return
        try:
            async with asyncio.timeout(self._broker.options.close_timeout):
                async with self._lock:
                    pass
        except TimeoutError:
            logger.warning("cancelling a broker handler for topic %r that did not finish in time", self.topic)
            running.cancel()


def _local() -> Registry:
    from ..registry.local import LocalRegistry

    return LocalRegistry()


class HTTPBroker(Broker):
    """Publish/subscribe over HTTP between processes, found through a registry. See the module docstring.

    :param registry: where subscribers register and publishers look them up;
        when omitted, one built with ``make`` (see :class:`~micro.component.Make`), or
        the built-in ``local`` registry (shared by every process of the user) without
        it, which the broker then starts and closes.
    """

    options_type: ClassVar[type[BrokerOptions]] = HTTPBrokerOptions
    options: HTTPBrokerOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"queue", "ack", "nack", "ordered", "cross-process"})

    def __init__(
        self, options: HTTPBrokerOptions | None = None, *, registry: Registry | None = None, make: Make | None = None
    ) -> None:
        super().__init__(options)
        self._owns_registry = registry is None
        self.registry = registry if registry is not None else Parts(make).make(Registry, _local)
        self._state = "new"
        self._lifecycle = asyncio.Lock()
        self._max_request = self.options.max_message_size * 4 // 3 + _ENVELOPE_ALLOWANCE
        self._bound: str | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Local subscriptions, by node id.
        self._subscribers: dict[str, _HTTPSubscriber] = {}
        # What the registry says: version -> service (all topics), and the index built from it.
        self._versions: dict[str, Service] = {}
        self._routes: dict[str, dict[str, list[Node]]] = {}
        self._watching = False
        self._refreshed = -math.inf
        self._senders: dict[str, _Sender] = {}
        self._inbox: dict[str, deque[_Delivery]] = {}
        # Accepted deliveries not yet settled, by seq; seqs only grow, so the first key is the oldest.
        self._seq = 0
        self._pending: dict[int, _Delivery] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def address(self) -> str:
        """The address subscribers are reached at once started; the configured one before."""
        return self._bound or self.options.advertise or self.options.address[0]

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen for deliveries and start following the registry. Idempotent.

        :raises BackendUnavailable: the address cannot be bound.
        """
        async with self._lifecycle:
            if self._state == "started":
                return
            host, port = split_address(self.options.address[0])
            app = web.Application(client_max_size=self._max_request)
            app.router.add_route("*", "/{tail:.*}", self._handle)
            runner = web.AppRunner(
                app, access_log=None, handle_signals=False, shutdown_timeout=self.options.close_timeout
            )
            await runner.setup()
            try:
                site = web.TCPSite(runner, host, port)
                await site.start()
            except OSError as exc:
                await runner.cleanup()
                raise BackendUnavailable(f"http broker cannot listen on {host}:{port}: {exc}") from exc
            self._runner = runner
            bound_host, bound_port = runner.addresses[0][:2]
            if self.options.advertise:
                self._bound = self.options.advertise
            else:
                if ipaddress.ip_address(bound_host).is_unspecified:
                    bound_host = "127.0.0.1"
                self._bound = join_address(bound_host, bound_port)
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.options.request_timeout),
                connector=aiohttp.TCPConnector(limit=0),
            )
            self._state = "started"
            if self._owns_registry:
                with contextlib.suppress(MicroError):
                    await self.registry.start()
            watcher = self._open_watcher()
            try:
                await self._refresh()  # after opening the watch, so that no change falls in between
                self._watching = watcher is not None
            except BackendUnavailable as exc:
                logger.warning("http broker: %s; will read the registry again on publish", exc)
            if watcher is not None:
                self._spawn(self._follow(watcher), "watch")
            self._spawn(self._retry_loop(), "retry")
            if self.options.register_ttl:
                self._spawn(self._keepalive(), "keepalive")

    async def close(self) -> None:
        """Deliver what is queued, unsubscribe everything (deregistering the nodes) and stop the server.

        Waits at most ``close_timeout`` for the messages already accepted by
        :meth:`publish` (as :meth:`flush` does, so this broker's own
        subscribers get them too), then drops what is left with a warning
        that says how many deliveries were dropped. ``publish`` and
        ``subscribe`` raise :class:`~micro.errors.ConnectionClosed` from the
        moment ``close`` begins. Idempotent.
        """
        async with self._lifecycle:
            if self._state != "started":
                self._state = "closed"
                return
            self._state = "closing"
            try:
                with contextlib.suppress(Timeout):
                    await self.flush(self.options.close_timeout)
            finally:
                await self._teardown()

    async def _teardown(self) -> None:
        """Unsubscribe everything, end the tasks, drop what is still queued, stop the server."""
        subscribers = list(self._subscribers.values())
        if subscribers:
            await asyncio.gather(*(s.unsubscribe() for s in subscribers))
        self._state = "closed"
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._tasks.clear()
        if self._pending:
            logger.warning(
                "http broker: closed with %d deliveries still queued after close_timeout (%ss); dropped them",
                len(self._pending),
                self.options.close_timeout,
            )
            for delivery in list(self._pending.values()):
                self._settle(delivery)
        self._senders.clear()
        self._inbox.clear()
        self._versions.clear()
        self._routes.clear()
        self._watching = False
        self._refreshed = -math.inf
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._bound = None
        if self._owns_registry:
            await self.registry.close()

    async def _ensure_started(self) -> None:
        if self._state in ("closing", "closed"):
            raise ConnectionClosed("the http broker is closed; start() it again to use it")
        if self._state == "new":
            await self.start()

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=f"micro.broker.http:{what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- the node cache -------------------------------------------------------------------------

    def _open_watcher(self) -> Watcher | None:
        """A watch of the broker's service, or ``None`` if the registry cannot watch (then publish polls)."""
        try:
            return self.registry.watch(SERVICE)
        except NotSupported:
            return None
        except MicroError as exc:
            logger.warning("http broker: cannot watch the registry (%s); reading it on publish instead", exc)
            return None

    async def _refresh(self) -> None:
        try:
            services = await self.registry.get_service(SERVICE)
        except ServiceNotFound:
            services = []
        except MicroError as exc:
            raise BackendUnavailable(f"cannot read {SERVICE!r} from the registry: {exc}") from exc
        self._versions = {s.version: s for s in services}
        self._refreshed = time.monotonic()
        self._reindex()

    async def _follow(self, watcher: Watcher | None) -> None:
        """Apply registry changes to the cache; open the watch again, with a backoff, when it ends."""
        backoff = 0.1
        while watcher is not None:
            try:
                if not self._watching:
                    await self._refresh()
                    self._watching = True
                async for result in watcher:
                    self._apply(result)
                    backoff = 0.1
            except MicroError as exc:
                logger.warning("http broker: registry watch failed: %s", exc)
            finally:
                self._watching = False
                await watcher.stop()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
            watcher = self._open_watcher()

    def _apply(self, result: Result) -> None:
        service = result.service
        if result.action == "delete":
            self._versions.pop(service.version, None)
        else:
            self._versions[service.version] = service
        self._reindex()

    def _reindex(self) -> None:
        # Our own subscribers are always known, whatever the registry said last.
        versions = {v: list(s.nodes) for v, s in self._versions.items()}
        for sub in self._subscribers.values():
            nodes = versions.setdefault(sub.version, [])
            if all(n.id != sub.node.id for n in nodes):
                nodes.append(sub.node)
        routes: dict[str, dict[str, list[Node]]] = {}
        for version, nodes in versions.items():
            for node in nodes:
                topic = node.metadata.get("topic")
                if topic and node.metadata.get("broker", "http") == "http":
                    routes.setdefault(topic, {}).setdefault(version, []).append(node)
        self._routes = routes
        live = {n.id: n for by_version in routes.values() for nodes in by_version.values() for n in nodes}
        for node_id in list(self._senders):
            if node_id in live:
                self._senders[node_id].node = live[node_id]
                continue
            # What was queued for a queue group goes back to the group; a gone broadcast node gets nothing.
            for delivery in self._senders.pop(node_id).stop():
                if delivery.node_id is None:
                    self._keep(delivery)
                else:
                    self._settle(delivery)

    async def _lookup(self, topic: str) -> dict[str, list[Node]]:
        if not self._watching and time.monotonic() - self._refreshed > _STALE_AFTER:
            try:
                await self._refresh()
            except BackendUnavailable:
                if self._refreshed == -math.inf:
                    raise
                logger.warning("http broker: registry unavailable; using the nodes seen last")
        return self._routes.get(topic, {})

    # -- publishing -----------------------------------------------------------------------------

    async def publish(self, topic: str, message: Message) -> None:
        topic, message = check_publish(self, topic, message)
        await self._ensure_started()
        routes = await self._lookup(topic)
        if self._inbox.get(topic):
            await self._retry_inbox(topic)
        payload = encode(topic, message)
        for version, nodes in routes.items():
            if version == BROADCAST_VERSION:
                for node in nodes:
                    await self._route(self._accept(topic, payload, version, node.id))
            else:
                await self._route(self._accept(topic, payload, version, None))

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every message accepted by :meth:`publish` so far is delivered or has definitively failed.

        A delivery has definitively failed when the subscriber refused it (a
        4xx reply), when its subscriber (or whole queue group) is gone, or
        when its ``max_redeliveries`` retries are used up; those are logged,
        not raised. Messages published while ``flush`` waits are not waited
        for. Returns at once on a broker that holds nothing (never started,
        or closed).

        :param timeout: seconds to wait at most; default ``close_timeout``.
        :raises Timeout: deliveries were still queued or being retried when
            ``timeout`` passed; they stay queued.
        :raises BadRequest: ``timeout`` is not a number >= 0.
        """
        if timeout is None:
            timeout = self.options.close_timeout
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0:
            raise BadRequest(f"timeout must be a number of seconds >= 0, got {timeout!r}")
        target = self._seq
        if self._oldest_pending() > target:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((target, waiter))
        try:
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            left = sum(1 for seq in self._pending if seq <= target)
            raise Timeout(f"{left} deliveries still queued after {timeout}s", id=_ERROR_ID) from None
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove((target, waiter))

    def _accept(self, topic: str, payload: bytes, version: str, node_id: str | None) -> _Delivery:
        self._seq += 1
        delivery = self._pending[self._seq] = _Delivery(self._seq, topic, payload, version, node_id)
        return delivery

    def _oldest_pending(self) -> float:
        return next(iter(self._pending), math.inf)

    def _settle(self, delivery: _Delivery) -> None:
        """``delivery`` is done with (delivered or given up on): wake the flushes it held up."""
        if self._pending.pop(delivery.seq, None) is None or not self._waiters:
            return
        oldest = self._oldest_pending()
        for target, waiter in self._waiters:
            if target < oldest and not waiter.done():
                waiter.set_result(None)

    def _sender(self, node: Node) -> _Sender:
        sender = self._senders.get(node.id)
        if sender is None:
            sender = self._senders[node.id] = _Sender(self, node)
        return sender

    async def _route(self, delivery: _Delivery) -> None:
        """Queue ``delivery`` for a live node, or keep it in the inbox until one is up."""
        nodes = self._routes.get(delivery.topic, {}).get(delivery.version, [])
        if delivery.node_id is not None:
            nodes = [n for n in nodes if n.id == delivery.node_id]
        if not nodes:  # the broadcast subscriber, or the whole queue group, is gone: nobody to deliver to
            self._settle(delivery)
            return
        now = time.monotonic()
        live = [n for n in nodes if n.id not in self._senders or self._senders[n.id].health.up(now)]
        if not live:
            self._keep(delivery)
            return
        await self._sender(random.choice(live)).queue.put(delivery)

    def _keep(self, delivery: _Delivery) -> None:
        inbox = self._inbox.setdefault(delivery.topic, deque())
        if len(inbox) >= self.options.inbox_size:
            self._settle(inbox.popleft())
            logger.warning("http broker: inbox for topic %r is full; dropped its oldest message", delivery.topic)
        inbox.append(delivery)

    def _retry(self, delivery: _Delivery) -> None:
        delivery.attempts += 1
        if delivery.attempts > self.options.max_redeliveries:
            logger.warning(
                "http broker: dropping a message on topic %r after %d attempts", delivery.topic, delivery.attempts
            )
            self._settle(delivery)
        else:
            self._keep(delivery)

    async def _retry_inbox(self, topic: str) -> None:
        inbox = self._inbox.pop(topic, None)
        try:
            while inbox:
                await self._route(inbox[0])
                inbox.popleft()
        finally:
            # Cancelled while waiting for room in an outbox: what was not routed stays pending.
            while inbox:
                self._keep(inbox.popleft())

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.retry_interval)
            for topic in list(self._inbox):
                if self._state != "closed":
                    await self._retry_inbox(topic)

    async def _post(self, sender: _Sender, delivery: _Delivery) -> None:
        """POST one delivery to ``sender``'s node and decide its fate from the reply."""
        node, health = sender.node, sender.health
        if not health.up(time.monotonic()) or self._session is None:
            self._keep(delivery)  # skipped, not tried: it does not count as an attempt
            return
        try:
            async with self._session.post(
                f"http://{node.address}{_PATH}",
                params={"id": node.id},
                data=delivery.payload,
                headers={"Content-Type": "application/json"},
            ) as response:
                status = response.status
                await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            health.failed(time.monotonic())
            logger.info("http broker: node %s at %s failed (%s)", node.id, node.address, type(exc).__name__)
            self._retry(delivery)
            return
        if status < 300:
            health.failures = 0
            self._settle(delivery)
        elif status == 500:  # the handler asked for redelivery: the node itself is fine
            health.failures = 0
            self._retry(delivery)
        elif status == 404:
            logger.info("http broker: node %s no longer has the subscriber", node.id)
            self._forget(node.id)
            if delivery.node_id is None:
                self._retry(delivery)
            else:
                self._settle(delivery)
        elif status >= 500:
            health.failed(time.monotonic())
            self._retry(delivery)
        else:
            logger.warning("http broker: node %s refused a message on %r with %d", node.id, delivery.topic, status)
            self._settle(delivery)

    def _forget(self, node_id: str) -> None:
        for service in self._versions.values():
            service.nodes = [n for n in service.nodes if n.id != node_id]
        self._reindex()

    # -- subscribing ----------------------------------------------------------------------------

    async def subscribe(
        self, topic: str, handler: Handler, *, queue: str | None = None, auto_ack: bool = True
    ) -> Subscriber:
        """Register a node for ``topic`` in the registry and deliver what is POSTed to it.

        :raises BackendUnavailable: the registry cannot be reached.
        """
        topic, options = check_subscribe(self, topic, handler, queue, auto_ack)
        await self._ensure_started()
        node = Node(
            id=f"{SERVICE}-{uuid.uuid4().hex}",
            address=self.address,
            metadata={"broker": "http", "topic": topic, "secure": "false"},
        )
        subscriber = _HTTPSubscriber(self, topic, options, handler, node)
        await self._register(subscriber)
        self._subscribers[node.id] = subscriber
        self._reindex()
        return subscriber

    async def _register(self, subscriber: _HTTPSubscriber) -> None:
        # A ttl of 0 means no expiry; a registry that cannot expire nodes gets none.
        ttl = self.options.register_ttl if "ttl" in self.registry.capabilities else None
        try:
            await self.registry.register(subscriber.service(), ttl=ttl)
        except Unavailable:
            raise
        except MicroError as exc:
            raise BackendUnavailable(f"cannot register the subscriber in the registry: {exc}") from exc

    async def _remove(self, subscriber: _HTTPSubscriber) -> None:
        if self._subscribers.pop(subscriber.node.id, None) is None:
            return
        self._forget(subscriber.node.id)
        try:
            await self.registry.deregister(subscriber.service())
        except MicroError as exc:
            logger.warning("http broker: cannot deregister subscriber %s: %s", subscriber.node.id, exc)

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(self.options.register_interval)
            for subscriber in list(self._subscribers.values()):
                try:
                    await self._register(subscriber)
                except MicroError as exc:
                    logger.warning("http broker: cannot refresh subscriber %s: %s", subscriber.node.id, exc)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path != _PATH:
            return _reply(NotFound(f"no such path {request.path!r}; deliveries go to {_PATH}"))
        if request.method != "POST":
            return _reply(RPCError(f"method {request.method} not allowed; use POST", code=405))
        subscriber = self._subscribers.get(request.query.get("id", ""))
        if subscriber is None:
            return _reply(NotFound(f"no subscriber {request.query.get('id', '')!r} here"))
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _reply(MessageTooLarge(f"request body exceeds {self._max_request} bytes"))
        try:
            topic, message = decode(raw, self.options.max_message_size)
        except (BadRequest, MessageTooLarge) as exc:
            return _reply(exc)
        if topic != subscriber.topic:
            return _reply(BadRequest(f"subscriber {subscriber.node.id!r} is for topic {subscriber.topic!r}"))
        outcome = await subscriber.deliver(message)
        if outcome is None:
            return _reply(Unavailable("the subscriber is going away"))
        if outcome == "requeue":
            return _reply(MicroError("the handler asked for the message again"))
        return _reply()
