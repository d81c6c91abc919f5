"""``http``: Go Micro's point-to-point HTTP broker, the default; pub/sub between processes with no server.

Every broker runs a small HTTP server (``address``, default ``127.0.0.1:0``).
Each subscription registers one node in the registry as service
``micro.http.broker``, with node metadata ``{"broker": "http", "topic": <topic>}``
and version = the queue name, or ``ff.http.broadcast`` for a broadcast
subscriber. ``publish`` finds the nodes of its topic through a cache that
follows the registry (a watch, so no registry round trip per publish) and
POSTs the message to one random node of each queue version and to every node
of the broadcast version.

**Wire format.** ``POST http://<node address>/?id=<node id>`` (``https`` with
``tls``) with ``Content-Type: application/json``, a ``Micro-Broker-Proof``
header (an HMAC under the broker secret, see :mod:`micro.broker._proof`) and
the body ``{"topic": "<topic>", "header": {"k": "v", ...}, "body": "<base64>"}``
(keys are read case-insensitively, and a missing ``topic`` is taken from the
``Micro-Topic`` header, as Go Micro sends it). The endpoint checks the path,
the method, the proof's head (before reading the body), the node id, the
announced size, then reads the body (``read_timeout``) and checks it against
the proof. Replies:

* ``204``: delivered and acked, or dropped by ``nack(requeue=False)``;
* ``400`` malformed request, ``401`` no valid proof, ``404`` unknown path or
  node id, ``405`` not a POST, ``408`` body not read within ``read_timeout``,
  ``413`` body over ``max_message_size``: the publisher drops the message;
* ``500``: the handler failed or asked for redelivery: the publisher redelivers;
* ``503``: the subscriber is going away: the publisher retries elsewhere or later.

**Delivery.** ``publish`` queues the message at once for each target node
with room, then waits while a node's ``outbox_size`` queue is full
(back-pressure), and returns once it is queued for all. A full node that took
nothing from its queue for ``stall_timeout`` is not waited for: the message
goes to the retry inbox, so a stalled node holds up neither publish nor the
other nodes. One task per node POSTs its
queue in order (at most ``max_concurrent_posts`` POSTs at once in all), so a
subscriber sees one publisher's messages in publish order. A failed delivery
goes to a bounded per-topic inbox (``inbox_size``; the oldest entry is dropped
when full) that is retried on the next publish to the topic and every
``retry_interval``, up to ``max_redeliveries`` times; a message for a queue
group is then sent to any live member. A node that fails (connection error, timeout, 5xx other than 500)
is skipped for a backoff that doubles with each consecutive failure (0.5s up to
30s), so a dead node never holds up delivery to live ones. Delivery is
at-least-once within those bounds: a handler slower than ``request_timeout``
may see its message again.

**Security and limits.** See docs/broker.md: deliveries are signed with the
user's local secret or ``secret``; ``tls``; ``max_connections``,
``read_timeout`` and ``idle_timeout`` on the endpoint; node ids and addresses
stay out of log lines (:func:`node_tag`).

**Flush and close.** :meth:`HTTPBroker.flush` waits until every message
published so far is delivered or has definitively failed; ``close`` does that
for at most ``close_timeout``, then drops what is left with a warning.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import ipaddress
import logging
import math
import random
import ssl
import time
import uuid
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final

import orjson

from ..component import Make, Parts
from ..errors import (
    BackendUnavailable,
    BadRequest,
    InvalidOption,
    MessageTooLarge,
    MicroError,
    NotFound,
    RPCError,
    Timeout,
    Unauthorized,
    Unavailable,
)
from ..registry import Node, Registry, Service
from ..registry.cache import RegistryCache
from ..registry.heartbeat import Heartbeat
from ..transport._ratelog import PeerErrorLogger, RateLimitedLog
from . import _proof
from .base import (
    Broker,
    Event,
    Handler,
    Message,
    Outcome,
    Subscriber,
    check_topic,
    dispatch,
)
from .options import BrokerOptions, SubscribeOptions

if TYPE_CHECKING:
    import aiohttp
    from aiohttp import web
    from yarl import URL

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
# With a watch, the node cache is read again this often anyway, in case the watch missed a change.
_REREAD_AFTER = 60.0
# Room for the JSON envelope and the headers around a base64 body.
_ENVELOPE_ALLOWANCE = 64 * 1024
# Nonces of accepted deliveries remembered per broker for replay protection (see _proof.Replays): about
# 10 MB at most. Past it, proofs signed before the last one forgotten are refused; at this size that
# one is still older than request_timeout's worth of traffic at far more deliveries/s than one endpoint takes.
_REPLAY_LIMIT = 1 << 16


def _import_aiohttp() -> None:
    """Bind ``aiohttp``, ``web`` and ``URL`` here: on first start, not on import.

    A service builds its broker whether or not it subscribes or publishes, and this
    broker starts only when it does; aiohttp (~50 modules, several MiB) is then loaded
    by the services that use it rather than by every one.
    """
    if "web" in globals():
        return
    import aiohttp
    from aiohttp import web
    from yarl import URL

    globals().update(aiohttp=aiohttp, web=web, URL=URL)


def node_tag(node_id: str) -> str:
    """What logs say instead of a node id: a short hash, enough to tell nodes apart, useless to reach one.

    Node ids and addresses stay out of log lines, which ``Debug.logs`` hands to callers.
    """
    return "#" + hashlib.sha256(node_id.encode()).hexdigest()[:10]


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
    #: The shared secret deliveries are signed with (HMAC-SHA256), at least 16 characters; ``None``: the
    #: user's local secret, which every process of the user on this machine shares. Brokers of different
    #: users or hosts need the same one.
    secret: str | None = field(default=None, repr=False)
    #: Seconds a signed delivery stays valid on either side of its signing time (allows for clock skew).
    auth_window: float = 30.0
    #: Serve the subscriber endpoint over TLS, and publish over TLS only, verifying the subscriber.
    tls: bool = False
    #: PEM certificate chain of the subscriber endpoint (needed with ``tls``).
    cert_file: str | None = None
    #: PEM private key for ``cert_file`` (if not in ``cert_file``).
    key_file: str | None = None
    #: PEM CA bundle that verifies subscribers' certificates when publishing; the system store if unset.
    ca_file: str | None = None
    #: Connections the subscriber endpoint keeps open at once; more are closed as they arrive.
    max_connections: int = 512
    #: Seconds the endpoint gives a client for a TLS handshake and for one request body.
    read_timeout: float = 10.0
    #: Seconds the endpoint keeps a connection with no request (or an unfinished request head) open.
    idle_timeout: float = 60.0
    #: POSTs in flight at once across all subscriber nodes when publishing.
    max_concurrent_posts: int = 128
    #: Seconds ``publish`` waits for room in a full outbox while its node takes nothing from it; past that
    #: the node counts as stalled and its messages go to the retry inbox instead of holding up the others.
    stall_timeout: float = 1.0

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
        for option in ("auth_window", "read_timeout", "idle_timeout", "stall_timeout"):
            _number(getattr(self, option), option, low=0, strict=True)
        if self.register_ttl and self.register_interval >= self.register_ttl:
            raise InvalidOption("must be shorter than register_ttl", option="register_interval")
        for option, low in (
            ("inbox_size", 1),
            ("outbox_size", 1),
            ("max_redeliveries", 0),
            ("max_connections", 1),
            ("max_concurrent_posts", 1),
        ):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InvalidOption(f"must be an integer >= {low}, got {value!r}", option=option)
        if self.secret is not None and (not isinstance(self.secret, str) or len(self.secret.encode()) < 16):
            # The value is not repeated: it is a secret.
            raise InvalidOption("must be a string of at least 16 characters", option="secret")
        if self.tls and not self.cert_file:
            raise InvalidOption("tls is set but cert_file is not: every http broker listens", option="cert_file")
        if self.key_file and not self.cert_file:
            raise InvalidOption("key_file is set but cert_file is not", option="cert_file")


# -- wire format -------------------------------------------------------------------------------

#: Delivery bodies from this size on are copied out of orjson's buffer (see :func:`encode`).
_FIT: Final = 64 * 1024


def encode(topic: str, message: Message) -> bytes:
    """The JSON body of a delivery POST (see the module docstring)."""
    data = orjson.dumps(
        {"topic": topic, "header": dict(message.header), "body": base64.b64encode(message.body).decode("ascii")}
    )
    # orjson hands back its over-allocated working buffer (several times the output), and a delivery is held
    # until every subscriber has it: a large one is copied to its own size, as the json codec does.
    return data if len(data) < _FIT else bytes(memoryview(data))


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


def _reply(error: MicroError | None = None, close: bool = False) -> web.Response:
    """``204``, or ``error`` as Go Micro's JSON error, with its code as the status.

    ``close``: end the connection after the reply, for a request whose body was not read (rather
    than read and discard a body nobody vouched for).
    """
    if error is None:
        return web.Response(status=204)
    body = error.to_dict() | {"id": _ERROR_ID}
    response = web.Response(status=error.code, body=orjson.dumps(body), content_type="application/json")
    if close:
        response.force_close()
    return response


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
        self.health = _Health()
        self.queue: asyncio.Queue[_Delivery] = asyncio.Queue(broker.options.outbox_size)
        #: The delivery being POSTed, taken off ``queue`` but not yet settled or kept for a retry.
        self.current: _Delivery | None = None
        self.stopping = False
        #: When the task last took a delivery off ``queue`` (made room): how a stalled node is told apart.
        self.progress = time.monotonic()
        #: Whether the current stall was logged already.
        self.stalled = False
        self.tag = node_tag(node.id)
        self._scheme = "https" if broker.options.tls else "http"
        self.node = node
        self.task = broker._spawn(self._run(broker), f"send:{self.tag}")

    @property
    def node(self) -> Node:
        return self._node

    @node.setter
    def node(self, node: Node) -> None:
        self._node = node
        # Built once per node rather than per POST: the URL is the same for every delivery.
        self.url = URL(f"{self._scheme}://{node.address}{_PATH}").with_query(id=node.id)

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

    def serving(self) -> bool:
        return not self.stopping

    def full(self, now: float, stall_timeout: float) -> tuple[bool, bool]:
        """``(full, stalled)``: whether the outbox has no room, and whether it has had none for too long."""
        if not self.queue.full():
            return False, False
        return True, now - self.progress >= stall_timeout

    async def _run(self, broker: HTTPBroker) -> None:
        while not self.stopping:
            delivery = self.current = await self.queue.get()
            self.progress = time.monotonic()
            self.stalled = False
            try:
                await broker._post(self, delivery)
            except Exception:  # a bug must not silently end delivery to this node
                logger.exception("http broker: delivery to node %s failed unexpectedly", self.tag)
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
        self._close_timeout = broker.options.close_timeout
        self._lock = asyncio.Lock()
        self._running: asyncio.Task[Any] | None = None

    def service(self) -> Service:
        return Service(
            name=SERVICE, version=self.version, nodes=[Node(self.node.id, self.node.address, self.node.metadata)]
        )

    async def deliver(self, message: Message) -> Outcome | None:
        """Run the handler (one message at a time, in arrival order); ``None`` if unsubscribed meanwhile."""
        async with self._lock:
            if self._stopping:
                return None
            self._running = asyncio.current_task()
            try:
                return await dispatch(self._handler, Event(self.topic, message), auto_ack=self.options.auto_ack)
            finally:
                self._running = None

    async def _stop_delivery(self) -> None:
        await self._broker._remove(self)

    async def unsubscribe(self) -> None:
        # Deliveries run in the server's request tasks, not in a task of the subscriber's own, so
        # this waits for the handler (the lock) rather than for the base's subscription task.
        if self._stopping:
            return
        self._stopping = True
        if self._listed_in is not None:
            self._listed_in.discard(self)
        await self._stop_delivery()
        running = self._running
        if running is None or running is asyncio.current_task():
            return
        try:
            async with asyncio.timeout(self._close_timeout):
                async with self._lock:
                    pass
        except TimeoutError:
            logger.warning("cancelling a broker handler for topic %r that did not finish in time", self.topic)
            running.cancel()


def _local() -> Registry:
    from ..registry.local import LocalRegistry

    return LocalRegistry()


class _Refuse(asyncio.Protocol):
    """Closes a connection the endpoint has no room for (``max_connections``)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]


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
        # Set once close() has ended the subscriptions: the retry loop stops resending then.
        self._torn_down = False
        self._max_request = self.options.max_message_size * 4 // 3 + _ENVELOPE_ALLOWANCE
        self._bound: str | None = None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._session: aiohttp.ClientSession | None = None
        self._secret: bytes | None = None
        self._replays = _proof.Replays(self.options.auth_window, _REPLAY_LIMIT)
        self._posts = asyncio.Semaphore(self.options.max_concurrent_posts)
        self._refused_connections = 0
        #: Connections accepted whose protocol aiohttp has not counted yet (see _connection).
        self._arriving = 0
        self._peer_errors = RateLimitedLog(logger)
        self._tasks: set[asyncio.Task[None]] = set()
        # Local subscriptions, by node id.
        self._subscribers: dict[str, _HTTPSubscriber] = {}
        # What the registry says (the shared cache, following the broker's service), and the index built from it.
        self._nodes = RegistryCache(
            self.registry,
            ttl=_REREAD_AFTER,
            poll=_STALE_AFTER,
            service=SERVICE,
            keep_empty=True,
            on_change=self._on_change,
            label="http broker",
        )
        self._routes: dict[str, dict[str, list[Node]]] = {}
        # A node per subscription, renewed every register_interval (the helper the server uses too).
        # A ttl of 0 means no expiry; a registry that cannot expire nodes gets none.
        self._registrations = Heartbeat(
            self.registry,
            ttl=self.options.register_ttl if "ttl" in self.registry.capabilities else None,
            interval=self.options.register_interval if self.options.register_ttl else None,
            label="http broker",
        )
        self._senders: dict[str, _Sender] = {}
        self._inbox: dict[str, deque[_Delivery]] = {}
        # Per topic, the lock of a retry of its inbox in progress and how many want it (see _retry_inbox).
        self._retrying: dict[str, tuple[asyncio.Lock, list[int]]] = {}
        # Accepted deliveries not yet settled, by seq; seqs only grow, so the first key is the oldest.
        self._seq = 0
        self._pending: dict[int, _Delivery] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def address(self) -> str:
        """The address subscribers are reached at once started; the configured one before."""
        return self._bound or self.options.advertise or self.options.address[0]

    # -- lifecycle ------------------------------------------------------------------------------

    async def _start(self) -> None:
        """Listen for deliveries and start following the registry.

        :raises BackendUnavailable: the address cannot be bound, or the user's
            local secret is unsafe (:class:`micro._private.UnsafePath`).
        :raises InvalidOption: with ``tls``, ``cert_file``, ``key_file`` or
            ``ca_file`` cannot be loaded.
        """
        options = self.options
        _import_aiohttp()
        self._secret = await self._load_secret()
        server_tls, client_tls = self._tls_contexts() if options.tls else (None, None)
        host, port = split_address(options.address[0])
        app = web.Application(client_max_size=self._max_request)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # keepalive_timeout also closes a connection that never completes a request head (aiohttp
        # arms it on connect), so a slow or silent client holds a connection for idle_timeout at most.
        runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=options.close_timeout,
            keepalive_timeout=options.idle_timeout,
            # A body left unread (a refused request) is not read and discarded: the connection closes.
            lingering_time=0,
            # A request aiohttp cannot parse is a rate-limited line, not an ERROR with a traceback per request.
            logger=PeerErrorLogger(self._peer_errors, "http broker"),
        )
        await runner.setup()
        # Set before listening: a connection can arrive while create_server finishes starting.
        self._runner = runner
        try:
            self._listener = await asyncio.get_running_loop().create_server(
                self._connection,
                host,
                port,
                ssl=server_tls,
                ssl_handshake_timeout=options.read_timeout if server_tls else None,
            )
        except OSError as exc:
            self._runner = None
            await runner.cleanup()
            raise BackendUnavailable(f"http broker cannot listen on {host}:{port}: {exc}") from exc
        bound_host, bound_port = self._listener.sockets[0].getsockname()[:2]
        if self.options.advertise:
            self._bound = self.options.advertise
        else:
            if ipaddress.ip_address(bound_host).is_unspecified:
                bound_host = "127.0.0.1"
            self._bound = join_address(bound_host, bound_port)
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=options.request_timeout),
            # One connection per node at a time (its sender POSTs in order); _posts bounds them together.
            # Idle connections are dropped well before a subscriber's idle_timeout would close them (a
            # POST on a connection the server just closed fails, and counts against the node).
            connector=aiohttp.TCPConnector(
                limit=0,
                ssl=client_tls if client_tls is not None else True,
                keepalive_timeout=min(15.0, options.idle_timeout / 2),
            ),
        )
        self._torn_down = False
        if self._owns_registry:
            with contextlib.suppress(MicroError):
                await self.registry.start()
        self._nodes.follow()
        try:
            await self._nodes.get(SERVICE)  # after opening the watch, so that no change falls in between
        except MicroError as exc:
            logger.warning("http broker: %s; will read the registry again on publish", exc)
        self._spawn(self._retry_loop(), "retry")

    async def _drain_published(self) -> None:
        """Deliver what is queued, for at most ``close_timeout``, before the subscriptions end.

        As :meth:`flush` does, so this broker's own subscribers get it too; what is left after
        that is dropped by :meth:`_close` with a warning that says how many deliveries were dropped.
        """
        with contextlib.suppress(Timeout):
            await self.flush(self.options.close_timeout)

    async def _close(self) -> None:
        """End the tasks, drop what is still queued, stop the server (the base has unsubscribed everything)."""
        self._torn_down = True
        await self._registrations.close()  # stops the renewals; the subscriptions deregistered themselves
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
        await self._nodes.close()
        self._routes.clear()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self._runner is not None:
            await self._runner.cleanup()  # closes the open connections too
            self._runner = None
        if listener is not None:
            await listener.wait_closed()
        if self._session is not None:
            await self._session.close()
            self._session = None
        self._bound = None
        if self._owns_registry:
            await self.registry.close()

    async def _load_secret(self) -> bytes:
        """The configured ``secret``, else the user's local secret (read from a private file once per start)."""
        if self.options.secret is not None:
            return self.options.secret.encode()
        from .._private import local_secret

        # A file read (and, the first time, a write): off the event loop.
        return await asyncio.to_thread(local_secret)

    def _tls_contexts(self) -> tuple[ssl.SSLContext, ssl.SSLContext]:
        """``(server, client)`` TLS contexts from ``cert_file``/``key_file`` and ``ca_file``."""
        options = self.options
        try:
            server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server.minimum_version = ssl.TLSVersion.TLSv1_2
            server.load_cert_chain(options.cert_file or "", options.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidOption(f"cannot load the certificate or its key: {exc}", option="cert_file") from exc
        try:
            client = ssl.create_default_context(cafile=options.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidOption(f"cannot load the CA bundle: {exc}", option="ca_file") from exc
        client.minimum_version = ssl.TLSVersion.TLSv1_2
        return server, client

    def _connection(self) -> asyncio.BaseProtocol:
        """A protocol for a new connection to the endpoint: aiohttp's, or one that closes it when full."""
        assert self._runner is not None
        assert self._runner.server is not None
        server = self._runner.server
        # aiohttp counts a connection in connection_made, on a later turn of the loop than this: the connections
        # accepted in one batch are all made first. Those on their way count too, or a burst overshoots the limit
        # by up to a batch (604 open of 512 measured).
        if len(server.connections) + self._arriving < self.options.max_connections:
            self._arriving += 1
            asyncio.get_running_loop().call_soon(self._arrived)  # runs just before the connection's connection_made
            return server()
        self._refused_connections += 1
        if self._refused_connections == 1 or self._refused_connections % 1000 == 0:
            logger.warning(
                "http broker: %d connections to the subscriber endpoint refused so far: max_connections (%d) reached",
                self._refused_connections,
                self.options.max_connections,
            )
        return _Refuse()

    def _arrived(self) -> None:
        self._arriving -= 1

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=f"micro.broker.http:{what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- the node cache -------------------------------------------------------------------------

    def _on_change(self, name: str) -> None:
        self._reindex()

    def _reindex(self) -> None:
        # Our own subscribers are always known, whatever the registry said last.
        entry = self._nodes.peek(SERVICE)
        versions = {s.version: list(s.nodes) for s in entry.services} if entry is not None else {}
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
            self._requeue(self._senders.pop(node_id).stop())

    def _requeue(self, deliveries: list[_Delivery]) -> None:
        """What was queued for a node that is gone: a queue group's go back to the group, a broadcast's end."""
        for delivery in deliveries:
            if delivery.node_id is None:
                self._keep(delivery)
            else:
                self._settle(delivery)

    async def _lookup(self, topic: str) -> dict[str, list[Node]]:
        entry = self._nodes.peek(SERVICE)
        if entry is None or entry.expires <= time.monotonic():
            try:
                await self._nodes.get(SERVICE)  # serves the nodes seen last if the registry fails
            except MicroError as exc:
                raise BackendUnavailable(f"cannot read {SERVICE!r} from the registry: {exc}") from exc
        return self._routes.get(topic, {})

    # -- publishing -----------------------------------------------------------------------------

    async def _publish(self, topic: str, message: Message) -> None:
        routes = await self._lookup(topic)
        if self._inbox.get(topic) or topic in self._retrying:
            await self._retry_inbox(topic)
        payload = encode(topic, message)
        # Every target with room gets the message at once; only then are full outboxes waited for. One
        # after the other is as quick as side by side (they all drain meanwhile, and a stalled node's wait
        # ends stall_timeout after its last progress, whoever waits), without a task per wait.
        waits: list[tuple[_Sender, _Delivery]] = []
        for version, nodes in routes.items():
            for node_id in [n.id for n in nodes] if version == BROADCAST_VERSION else [None]:
                delivery = self._accept(topic, payload, version, node_id)
                if (full := self._place(delivery)) is not None:
                    waits.append((full, delivery))
        for index, (sender, delivery) in enumerate(waits):
            try:
                await self._wait_for_room(sender, delivery)
            except asyncio.CancelledError:
                for _, unplaced in waits[index + 1 :]:
                    self._keep(unplaced)  # accepted, so delivered later like any delivery not yet routed
                raise

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
        """Queue ``delivery`` for a live node, or keep it in the inbox until one is up (see :meth:`_place`)."""
        full = self._place(delivery)
        if full is not None:
            await self._wait_for_room(full, delivery)

    def _place(self, delivery: _Delivery) -> _Sender | None:
        """Queue ``delivery`` for a live node with room now, or keep it in the inbox; or the node to wait for.

        A queue delivery goes to a random live member with room. When every
        live candidate's outbox is full, the caller waits for room in the
        returned one (:meth:`_wait_for_room`: back-pressure), unless that node
        has taken nothing from its outbox for ``stall_timeout``: a stalled
        node's deliveries go to the retry inbox at once, so it cannot hold up
        the other nodes.
        """
        nodes = self._routes.get(delivery.topic, {}).get(delivery.version, [])
        if delivery.node_id is not None:
            nodes = [n for n in nodes if n.id == delivery.node_id]
        if not nodes:  # the broadcast subscriber, or the whole queue group, is gone: nobody to deliver to
            self._settle(delivery)
            return None
        now = time.monotonic()
        stall_timeout = self.options.stall_timeout
        free: list[Node] = []
        full: list[_Sender] = []
        for node in nodes:
            sender = self._senders.get(node.id)
            if sender is None:
                free.append(node)
            elif sender.health.up(now):
                is_full, stalled = sender.full(now, stall_timeout)
                if not is_full:
                    free.append(node)
                elif stalled:
                    self._note_stall(sender, delivery.topic)
                else:
                    full.append(sender)
        if free:
            self._sender(random.choice(free)).queue.put_nowait(delivery)
            return None
        if not full:
            self._keep(delivery)
            return None
        return random.choice(full)

    async def _wait_for_room(self, sender: _Sender, delivery: _Delivery) -> None:
        """Put ``delivery`` on ``sender``'s full outbox once there is room, or keep it if the node stalls."""
        try:
            while True:
                remaining = sender.progress + self.options.stall_timeout - time.monotonic()
                if remaining <= 0 or sender.stopping:
                    if remaining <= 0:
                        self._note_stall(sender, delivery.topic)
                    self._keep(delivery)
                    return
                try:
                    async with asyncio.timeout(remaining):
                        await sender.queue.put(delivery)
                except TimeoutError:
                    continue  # look again: the node may have taken something meanwhile
                if not sender.serving():  # the node went away while we waited: nobody serves that outbox now
                    self._requeue(sender.stop())
                return
        except asyncio.CancelledError:
            # The publish was cancelled while waiting (a cancelled Queue.put puts nothing): what it had
            # accepted is still delivered, or given up on, like any other delivery.
            self._keep(delivery)
            raise

    def _note_stall(self, sender: _Sender, topic: str) -> None:
        if not sender.stalled:
            sender.stalled = True
            logger.warning(
                "http broker: subscriber node %s of topic %r took nothing from its full outbox for "
                "stall_timeout (%ss); keeping its messages in the retry inbox meanwhile",
                sender.tag,
                topic,
                self.options.stall_timeout,
            )

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
        """Route ``topic``'s retry inbox again, oldest first.

        One retry per topic at a time, and :meth:`publish` waits for one in
        progress before it routes its own message, so that a message kept in
        the inbox (its node was failing or stalled) is not overtaken by a
        later one on the way to the same node.
        """
        entry = self._retrying.get(topic)
        if entry is None:
            entry = self._retrying[topic] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                inbox = self._inbox.pop(topic, None)
                try:
                    while inbox:
                        await self._route(inbox[0])
                        inbox.popleft()
                finally:
                    # Cancelled while waiting for room in an outbox: what was not routed stays pending.
                    while inbox:
                        self._keep(inbox.popleft())
        finally:
            users[0] -= 1
            if not users[0]:
                del self._retrying[topic]

    async def _retry_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.retry_interval)
            for topic in list(self._inbox):
                if not self._torn_down:
                    await self._retry_inbox(topic)

    async def _post(self, sender: _Sender, delivery: _Delivery) -> None:
        """POST one delivery to ``sender``'s node and decide its fate from the reply."""
        node, health = sender.node, sender.health
        session, secret = self._session, self._secret
        if not health.up(time.monotonic()) or session is None or secret is None:
            self._keep(delivery)  # skipped, not tried: it does not count as an attempt
            return
        try:
            # The wait for a slot is not part of request_timeout: that is the node's time, not ours.
            async with self._posts:
                headers = {
                    "Content-Type": "application/json",
                    _proof.HEADER: _proof.sign(secret, node.id, delivery.payload),
                }
                async with session.post(sender.url, data=delivery.payload, headers=headers) as response:
                    status = response.status
                    await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            health.failed(time.monotonic())
            logger.info("http broker: subscriber node %s failed (%s)", sender.tag, type(exc).__name__)
            self._retry(delivery)
            return
        if status < 300:
            health.failures = 0
            self._settle(delivery)
        elif status == 500:  # the handler asked for redelivery: the node itself is fine
            health.failures = 0
            self._retry(delivery)
        elif status == 404:
            logger.info("http broker: subscriber node %s is gone", sender.tag)
            self._forget(node.id)
            if delivery.node_id is None:
                self._retry(delivery)
            else:
                self._settle(delivery)
        elif status >= 500:
            health.failed(time.monotonic())
            self._retry(delivery)
        else:
            hint = " (it does not accept this broker's proof: is the secret the same?)" if status in (401, 403) else ""
            logger.warning(
                "http broker: subscriber node %s refused a message on %r with %d%s",
                sender.tag,
                delivery.topic,
                status,
                hint,
            )
            self._settle(delivery)

    def _forget(self, node_id: str) -> None:
        self._nodes.drop_node(SERVICE, node_id)
        self._reindex()

    # -- subscribing ----------------------------------------------------------------------------

    async def _subscribe(self, topic: str, handler: Handler, options: SubscribeOptions) -> Subscriber:
        """Register a node for ``topic`` in the registry and deliver what is POSTed to it.

        :raises BackendUnavailable: the registry cannot be reached.
        """
        node = Node(
            id=f"{SERVICE}-{uuid.uuid4().hex}",
            address=self.address,
            metadata={"broker": "http", "topic": topic, "secure": "true" if self.options.tls else "false"},
        )
        subscriber = _HTTPSubscriber(self, topic, options, handler, node)
        try:
            await self._registrations.add(node.id, subscriber.service)
        except Unavailable:
            raise
        except MicroError as exc:
            raise BackendUnavailable(f"cannot register the subscriber in the registry: {exc}") from exc
        self._subscribers[node.id] = subscriber
        self._reindex()
        return subscriber

    async def _remove(self, subscriber: _HTTPSubscriber) -> None:
        if self._subscribers.pop(subscriber.node.id, None) is None:
            return
        self._forget(subscriber.node.id)
        await self._registrations.remove(subscriber.node.id)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """One delivery POST: checked in the order of the module docstring, the proof before the body is read."""
        if request.path != _PATH:
            return _reply(NotFound(f"no such path {request.path!r}; deliveries go to {_PATH}"))
        if request.method != "POST":
            return _reply(RPCError(f"method {request.method} not allowed; use POST", code=405))
        node_id = request.query.get("id", "")
        secret = self._secret
        if secret is None:
            return _reply(Unavailable("the broker is not started"), close=True)
        length = request.content_length
        try:
            proof = _proof.verify_head(
                secret, request.headers.get(_proof.HEADER), node_id, length, self.options.auth_window
            )
            self._replays.admit(proof)
        except Unauthorized as exc:
            return _reply(exc, close=True)
        subscriber = self._subscribers.get(node_id)
        if subscriber is None:
            return _reply(NotFound("no such subscriber here"), close=True)
        if length is not None and length > self._max_request:
            return _reply(MessageTooLarge(f"request body of {length} bytes exceeds {self._max_request}"), close=True)
        try:
            if request.content.is_eof():  # the usual small body came with the head: no timer needed
                raw = await request.read()
            else:
                async with asyncio.timeout(self.options.read_timeout):
                    raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _reply(MessageTooLarge(f"request body exceeds {self._max_request} bytes"), close=True)
        except TimeoutError:
            timeout = self.options.read_timeout
            return _reply(Timeout(f"request body not read within read_timeout ({timeout}s)"), close=True)
        try:
            _proof.verify_body(secret, proof, raw)
        except Unauthorized as exc:
            return _reply(exc)
        try:
            topic, message = decode(raw, self.options.max_message_size)
        except (BadRequest, MessageTooLarge) as exc:
            return _reply(exc)
        if topic != subscriber.topic:
            return _reply(BadRequest(f"this subscriber is for topic {subscriber.topic!r}, not {topic!r}"))
        outcome = await subscriber.deliver(message)
        if outcome is None:
            return _reply(Unavailable("the subscriber is going away"))
        if outcome == "requeue":
            return _reply(MicroError("the handler asked for the message again"))
        return _reply()
