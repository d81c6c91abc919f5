"""The ``prometheus`` stats: labelled call, error, latency and broker metrics on a Prometheus endpoint.

:class:`PrometheusStats` is a :class:`micro.debug.Stats` (it still counts for
``micro debug stats``) whose :meth:`~PrometheusStats.middleware` measures, for service ``service``:

==========================================  =========  ====================================================
metric                                      type       labels
==========================================  =========  ====================================================
``micro_server_requests_total``             counter    ``service``, ``endpoint``
``micro_server_errors_total``               counter    ``service``, ``endpoint``, ``code``
``micro_server_request_duration_seconds``   histogram  ``service``, ``endpoint``
``micro_client_requests_total``             counter    ``service`` (called), ``endpoint`` (one per attempt)
``micro_client_errors_total``               counter    ``service``, ``endpoint``, ``code``
``micro_client_request_duration_seconds``   histogram  ``service``, ``endpoint``
``micro_broker_published_total``            counter    ``service``, ``topic``
``micro_broker_publish_errors_total``       counter    ``service``, ``topic``
``micro_broker_consumed_total``             counter    ``service``, ``topic``, ``subscriber``
``micro_broker_consume_errors_total``       counter    ``service``, ``topic``, ``subscriber``
``micro_broker_lag_seconds``                histogram  ``service``, ``topic``: consume time minus publish time
==========================================  =========  ====================================================

and the process collectors (``process_*``, ``python_gc_*``, ``python_info``), all in a registry of
its own (:attr:`PrometheusStats.registry`), served over HTTP at ``address`` (``/metrics``).

Label values are bounded: a server's wrappers only see calls routed to an endpoint it registered
(a call to an unknown endpoint is refused with 404 before them), and on every side at most
``max_labels`` distinct label sets are created per metric family; past that, a new one is counted
under ``endpoint="other"`` (``topic="other"``). ``code`` is an HTTP-style status (100-599).

The publish time travels in the ``Micro-Publish-Time`` message header (seconds since the epoch,
set by the publishing service's wrapper); a message without one, or with one that is not a finite
number, is counted but not timed, and a publish time in the future (clock skew) counts as no lag.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Final

from micro.debug.middleware import Middleware
from micro.debug.stats import MemoryStats, StatsOptions
from micro.errors import InvalidOption, MicroError
from prometheus_client import CollectorRegistry, Counter, GCCollector, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.exposition import choose_encoder

if TYPE_CHECKING:
    from micro.client.base import CallFunc, PublishFunc, Request, Response
    from micro.client.base import Publication as OutgoingMessage
    from micro.server.base import HandlerFunc, Message, SubscriberFunc
    from micro.server.base import Request as ServerRequest

__all__ = ["PUBLISH_TIME_HEADER", "PrometheusStats", "PrometheusStatsOptions"]

#: The header a publishing service stamps its messages with (seconds since the epoch, as text).
PUBLISH_TIME_HEADER: Final = "Micro-Publish-Time"
#: The label value new label sets are counted under once ``max_labels`` is reached.
OTHER: Final = "other"
#: Lag buckets, seconds: from a local hop to a backlog of minutes.
LAG_BUCKETS: Final = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, math.inf)
#: The longest request head (request line and headers) the endpoint reads.
MAX_HEAD: Final = 8192

_log = logging.getLogger("micro.prometheus")


def _split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` -> ``(host, port)``; raises ``ValueError``."""
    host, colon, port = address.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"not host:port: {address!r}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True, kw_only=True, slots=True)
class PrometheusStatsOptions(StatsOptions):
    """Options of the ``prometheus`` stats (``MICRO_STATS_<OPTION>``)."""

    #: Where the metrics endpoint listens (``MICRO_STATS_ADDRESS``), ``host:port``; port 0 picks a free one
    #: (see :attr:`PrometheusStats.address`); empty: no endpoint (serve :attr:`PrometheusStats.registry` yourself).
    address: str = "127.0.0.1:9464"
    #: Scrapes served at once; a connection past this is closed unanswered.
    max_connections: int = 16
    #: Seconds a scraper has to send its request head (at most 8 KiB), and to read the response.
    timeout: float = 10.0
    #: Distinct label sets per metric family before new ones are counted as ``other``.
    max_labels: int = 1000

    def __post_init__(self) -> None:
        StatsOptions.__post_init__(self)
        if self.address:
            try:
                _split_address(self.address)
            except ValueError as exc:
                raise InvalidOption(str(exc), option="address") from None
        if not 1 <= self.max_connections <= 10_000:
            raise InvalidOption(f"must be from 1 to 10000, got {self.max_connections}", option="max_connections")
        if not 0 < self.timeout < math.inf:
            raise InvalidOption(f"must be a positive number of seconds, got {self.timeout}", option="timeout")
        if self.max_labels < 1:
            raise InvalidOption(f"must be at least 1, got {self.max_labels}", option="max_labels")


def _code(exc: BaseException) -> str:
    """The ``code`` label of a failure: a micro error's status (100-599), else 500."""
    code = exc.code if isinstance(exc, MicroError) else 500
    return str(code) if isinstance(code, int) and 100 <= code <= 599 else "500"


class _Bounded:
    """Label sets seen so far, at most ``limit``; later new ones map to ``other``. Thread-safe."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[tuple[str, ...]] = set()
        self._lock = threading.Lock()

    def __call__(self, labels: tuple[str, ...], other: tuple[str, ...]) -> tuple[str, ...]:
        if labels in self._seen:
            return labels
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(labels)
                return labels
        return other


class _Metrics:
    """Every metric family, in one registry, with each family's label bound."""

    def __init__(self, registry: CollectorRegistry, limit: int) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...]) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def histogram(name: str, doc: str, labels: tuple[str, ...], **buckets: Any) -> Histogram:
            return Histogram(name, doc, labels, registry=registry, **buckets)

        call = ("service", "endpoint")
        self.server_requests = counter("micro_server_requests", "Calls served.", call)
        self.server_errors = counter("micro_server_errors", "Calls served that failed.", (*call, "code"))
        self.server_duration = histogram("micro_server_request_duration_seconds", "Time to serve a call.", call)
        self.client_requests = counter("micro_client_requests", "Call attempts made.", call)
        self.client_errors = counter("micro_client_errors", "Call attempts that failed.", (*call, "code"))
        self.client_duration = histogram("micro_client_request_duration_seconds", "Time of a call attempt.", call)
        topic = ("service", "topic")
        self.published = counter("micro_broker_published", "Messages published.", topic)
        self.publish_errors = counter("micro_broker_publish_errors", "Publishes that failed.", topic)
        consumer = (*topic, "subscriber")
        self.consumed = counter("micro_broker_consumed", "Messages handled by a subscriber.", consumer)
        self.consume_errors = counter("micro_broker_consume_errors", "Messages a subscriber failed on.", consumer)
        self.lag = histogram("micro_broker_lag_seconds", "Consume time minus publish time.", topic, buckets=LAG_BUCKETS)
        self.server_labels = _Bounded(limit)
        self.client_labels = _Bounded(limit)
        self.publish_labels = _Bounded(limit)
        self.consume_labels = _Bounded(limit)


class PrometheusStats(MemoryStats):
    """Prometheus metrics of a service's calls and messages, served over HTTP (see the module docstring).

    It is also a :class:`~micro.debug.stats.MemoryStats`: ``micro debug stats`` keeps working.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset()
    options_type: ClassVar[type[StatsOptions]] = PrometheusStatsOptions
    options: PrometheusStatsOptions

    def __init__(self, options: StatsOptions | None = None) -> None:
        super().__init__(options)
        #: Every metric this stats exposes (its own registry: two services in one process do not collide).
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self._metrics = _Metrics(self.registry, self.options.max_labels)
        self._server: asyncio.Server | None = None
        self._active = 0
        self._address = ""

    @property
    def address(self) -> str:
        """``host:port`` the endpoint listens on while started (the port chosen for port 0); else ``""``."""
        return self._address

    def exposition(self, accept: str = "") -> tuple[bytes, str]:
        """The metrics in the format ``accept`` asks for (Prometheus text, or OpenMetrics), and its content type.

        For serving them from an HTTP server of your own (``MICRO_STATS_ADDRESS=`` empty).
        """
        try:
            encoder, content_type = choose_encoder(accept)
        except (TypeError, ValueError):  # prometheus_client trips on some malformed headers ("version=abc")
            encoder, content_type = choose_encoder("")
        return encoder(self.registry), content_type

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the snapshots and, unless ``address`` is empty, the endpoint (idempotent).

        :raises ~micro.errors.ConfigError: the address cannot be bound (in use, not local...).
        """
        await super().start()
        if self._server is not None or not self.options.address:
            return
        host, port = _split_address(self.options.address)
        try:
            server = await asyncio.start_server(self._serve, host, port, limit=MAX_HEAD)
        except OSError as exc:
            await super().close()
            raise InvalidOption(f"cannot listen on {self.options.address}: {exc}", option="address") from None
        self._server = server
        bound = server.sockets[0].getsockname()
        self._address = f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"
        _log.info("metrics on http://%s/metrics", self._address)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
            self._address = ""
        await super().close()

    # -- the endpoint -----------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._active >= self.options.max_connections:
            writer.close()
            return
        self._active += 1
        try:
            async with asyncio.timeout(self.options.timeout):
                head = await reader.readuntil(b"\r\n\r\n")
                status, content_type, body = self._answer(head)
                method = head.split(b" ", 1)[0]
                writer.write(
                    f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                    "Connection: close\r\n\r\n".encode()
                )
                if method != b"HEAD":
                    writer.write(body)
                await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass  # a slow, oversized or vanished scraper: drop it
        finally:
            self._active -= 1
            writer.close()

    def _answer(self, head: bytes) -> tuple[str, str, bytes]:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            return "400 Bad Request", "text/plain", b"bad request\n"
        method, target, _ = parts
        if method not in ("GET", "HEAD"):
            return "405 Method Not Allowed", "text/plain", b"only GET\n"
        if target.split("?", 1)[0] not in ("/metrics", "/"):
            return "404 Not Found", "text/plain", b"metrics are at /metrics\n"
        accept = next((line.split(":", 1)[1].strip() for line in lines[1:] if line.lower().startswith("accept:")), "")
        try:
            body, content_type = self.exposition(accept)
        except Exception:  # a collector that fails must not take the listener down; the log says why
            _log.exception("metrics exposition failed")
            return "500 Internal Server Error", "text/plain", b"metrics unavailable\n"
        return "200 OK", content_type, body

    # -- the middleware ---------------------------------------------------------------------------

    def middleware(self, service: str) -> Middleware:
        """Wrappers that measure service ``service``'s calls served and made, and messages published and handled.

        The server wrapper also calls :meth:`record`, so ``micro debug stats`` counts as with ``memory``.
        """
        metrics, record = self._metrics, self.record
        clock: Callable[[], float] = time.perf_counter
        # The label children of each endpoint, looked up once: .labels() on every call costs more than the count.
        served: dict[str, _Children] = {}
        called: dict[tuple[str, str], _Children] = {}

        def handler_wrapper(next: HandlerFunc) -> HandlerFunc:
            async def handler(request: ServerRequest) -> Any:
                children = served.get(request.endpoint)
                if children is None:
                    labels = metrics.server_labels((service, request.endpoint), (service, OTHER))
                    children = served.setdefault(
                        request.endpoint, _children(metrics.server_requests, metrics.server_duration, labels)
                    )
                started = clock()
                try:
                    result = await next(request)
                except Exception as exc:
                    metrics.server_errors.labels(*children[2], _code(exc)).inc()
                    record(exc)
                    raise
                else:
                    record(None)
                    return result
                finally:
                    children[0].inc()
                    children[1].observe(clock() - started)

            return handler

        def call_wrapper(next: CallFunc) -> CallFunc:
            async def call(request: Request) -> Response:
                key = (request.service, request.endpoint)
                children = called.get(key)
                if children is None:
                    labels = metrics.client_labels(key, (request.service, OTHER))
                    children = called.setdefault(
                        key, _children(metrics.client_requests, metrics.client_duration, labels)
                    )
                started = clock()
                try:
                    return await next(request)
                except Exception as exc:
                    metrics.client_errors.labels(*children[2], _code(exc)).inc()
                    raise
                finally:
                    children[0].inc()
                    children[1].observe(clock() - started)

            return call

        def publish_wrapper(next: PublishFunc) -> PublishFunc:
            async def publish(publication: OutgoingMessage) -> None:
                (_, topic) = metrics.publish_labels((service, publication.topic), (service, OTHER))
                publication.header[PUBLISH_TIME_HEADER] = repr(time.time())
                try:
                    await next(publication)
                except Exception:
                    metrics.publish_errors.labels(service, topic).inc()
                    raise
                metrics.published.labels(service, topic).inc()

            return publish

        def subscriber_wrapper(next: SubscriberFunc) -> SubscriberFunc:
            async def subscriber(message: Message) -> None:
                labels = metrics.consume_labels((service, message.topic, message.subscriber), (service, OTHER, OTHER))
                lag = _lag(message.header.get(PUBLISH_TIME_HEADER))
                if lag is not None:
                    metrics.lag.labels(*labels[:2]).observe(lag)
                try:
                    await next(message)
                except Exception:
                    metrics.consume_errors.labels(*labels).inc()
                    raise
                finally:
                    metrics.consumed.labels(*labels).inc()

            return subscriber

        return Middleware(
            handler=(handler_wrapper,),
            call=(call_wrapper,),
            subscriber=(subscriber_wrapper,),
            publish=(publish_wrapper,),
        )


_Children = tuple[Any, Any, tuple[str, ...]]


def _children(requests: Counter, duration: Histogram, labels: tuple[str, ...]) -> _Children:
    """The request counter and duration histogram of ``labels``, and the labels (for the error counter)."""
    return requests.labels(*labels), duration.labels(*labels), labels


def _lag(stamp: str | None) -> float | None:
    """Seconds since the publish time ``stamp`` (0 if it is in the future), or ``None`` if there is none."""
    if not stamp or len(stamp) > 32:
        return None
    try:
        published = float(stamp)
    except ValueError:
        return None
    if not math.isfinite(published):
        return None
    return max(0.0, time.time() - published)
