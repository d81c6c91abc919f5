"""The ``opentelemetry`` tracer: micro's calls and messages as OpenTelemetry spans.

:class:`OpenTelemetryTracer` is a :class:`micro.debug.Tracer` whose
:meth:`~OpenTelemetryTracer.middleware` puts four wrappers on a service:

==============  ===========  =====================================================================
wrapper         span kind    trace context
==============  ===========  =====================================================================
handler         ``SERVER``   extracted from the request metadata (``traceparent``, ``tracestate``)
call (attempt)  ``CLIENT``   injected into the outgoing metadata
publish         ``PRODUCER`` injected into the message headers
subscriber      ``CONSUMER`` extracted from the message headers
==============  ===========  =====================================================================

While a handler or subscriber runs, its span is the current OpenTelemetry span, so
a call or publish made there (and any span the user's code starts, with this
tracer or with the OpenTelemetry API) is its child. Propagation goes through the
global propagator (W3C trace context and baggage unless ``OTEL_PROPAGATORS`` says
otherwise); the propagator parses what a caller sends and ignores a malformed header. micro's own
``Micro-Trace-Id``/``Micro-Span-Id`` go along (the same ids in hex) and are read when no
``traceparent`` came, so services on the built-in tracer share the trace.

Which provider records the spans, in order: the ``provider=`` given; the global
SDK provider if the process set one (``opentelemetry-instrument``, or the
application's own set-up); else one this tracer builds from the standard variables
with the SDK's own configuration code (resource from ``OTEL_SERVICE_NAME`` and
``OTEL_RESOURCE_ATTRIBUTES``, the service's name when neither names it; sampler from
``OTEL_TRACES_SAMPLER``/``OTEL_TRACES_SAMPLER_ARG``, or ``parentbased_traceidratio``
at ``MICRO_TRACER_SAMPLE`` when unset; exporters from ``OTEL_TRACES_EXPORTER``, each
reading its own ``OTEL_EXPORTER_*`` variables), and shuts down on :meth:`close`.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final

from micro._redact import redact
from micro.debug.middleware import Middleware
from micro.debug.trace import (
    SPAN_ID_HEADER,
    TRACE_ID_HEADER,
    Span,
    SpanContext,
    SpanType,
    Tracer,
    TracerOptions,
    current_span,
    extract,
    keep,
)
from micro.errors import ConfigError, MicroError
from micro.metadata import Metadata
from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry import trace as otel_trace
from opentelemetry.propagators.textmap import Getter, Setter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode

if TYPE_CHECKING:
    from micro.client.base import CallFunc, PublishFunc, Request, Response
    from micro.client.base import Publication as OutgoingMessage
    from micro.server.base import HandlerFunc, Message, SubscriberFunc
    from micro.server.base import Request as ServerRequest

__all__ = ["OpenTelemetryTracer", "OpenTelemetryTracerOptions"]

#: The instrumentation scope every span is created under.
SCOPE: Final = "micro_opentelemetry"
#: ``rpc.system`` and ``messaging.system`` of micro's own protocol.
SYSTEM: Final = "micro"


@dataclass(frozen=True, kw_only=True, slots=True)
class OpenTelemetryTracerOptions(TracerOptions):
    """Options of the ``opentelemetry`` tracer (``MICRO_TRACER_<OPTION>``).

    ``size`` is how many finished spans of this tracer ``micro debug trace`` can read back;
    ``sample`` is the ratio of new traces sampled when this tracer builds its provider and
    ``OTEL_TRACES_SAMPLER`` is unset (the SDK's sampler otherwise); ``slow`` is not used
    (a head sampler decides before the call: keep slow or failed calls with a tail-sampling collector).
    """


class _Carrier(Getter[Mapping[str, str]], Setter[MutableMapping[str, str]]):
    """Reads and writes trace headers in micro metadata (case-insensitive keys) or a plain mapping."""

    def get(self, carrier: Mapping[str, str], key: str) -> list[str] | None:
        value = carrier.get(key)
        if value is None and not isinstance(carrier, Metadata):  # Metadata already matches keys case-insensitively
            folded = key.lower()
            value = next((v for k, v in carrier.items() if k.lower() == folded), None)
        return None if value is None else [value]

    def keys(self, carrier: Mapping[str, str]) -> list[str]:
        return list(carrier)

    def set(self, carrier: MutableMapping[str, str], key: str, value: str) -> None:
        carrier[key] = value


_carrier: Final = _Carrier()

_KINDS: Final = {SpanType.INBOUND: SpanKind.SERVER, SpanType.OUTBOUND: SpanKind.CLIENT}
_TYPES: Final = {SpanKind.SERVER: SpanType.INBOUND, SpanKind.CONSUMER: SpanType.INBOUND}


def _split(endpoint: str) -> tuple[str, str]:
    """``"Greeter.hello"`` -> ``("Greeter", "hello")``: ``rpc.service`` and ``rpc.method``."""
    service, dot, method = endpoint.rpartition(".")
    return (service, method) if dot else (endpoint, endpoint)


def _fail(span: otel_trace.Span, exc: BaseException) -> None:
    """Mark ``span`` failed: ``error.type``, and a status whose text is masked of credentials.

    A micro error's text is what the caller sees anyway; another exception's text may hold
    anything (a query, a path), so only its class is exported.
    """
    if isinstance(exc, MicroError):
        span.set_attribute("error.type", type(exc).__name__)
        span.set_attribute("rpc.micro.status_code", int(exc.code))
        span.set_status(Status(StatusCode.ERROR, redact(f"{type(exc).__name__}: {exc}")))
    else:
        span.set_attribute("error.type", type(exc).__qualname__)
        span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))


def _extract(carrier: Mapping[str, str], rate: float) -> otel_context.Context:
    """The parent context a call or message carries: W3C trace context (through the global propagator), else
    micro's own ``Micro-Trace-Id``/``Micro-Span-Id`` when they are W3C-shaped (a caller on the built-in tracer),
    sampled as the built-in tracer decides (:func:`~micro.debug.trace.keep` at ``rate``), so both record the
    same traces."""
    context = propagate.extract(carrier, getter=_carrier)
    if otel_trace.get_current_span(context).get_span_context().is_valid:
        return context
    received = extract(carrier)
    if received is not None:
        return _hex_context(received, keep(received.trace_id, rate)) or context
    return context


def _inject(carrier: MutableMapping[str, str], span: otel_trace.Span, context: otel_context.Context) -> None:
    """Put ``span``'s context into ``carrier``: W3C trace context, and micro's own headers for services on the
    built-in tracer (which then record under the same trace id)."""
    propagate.inject(carrier, context=context, setter=_carrier)
    ids = span.get_span_context()
    if ids.is_valid:
        carrier[TRACE_ID_HEADER] = f"{ids.trace_id:032x}"
        carrier[SPAN_ID_HEADER] = f"{ids.span_id:016x}"


def _hex_context(context: SpanContext, sampled: bool) -> otel_context.Context | None:
    """An OpenTelemetry parent for a core :class:`SpanContext` (ids from ``Micro-Trace-Id``), if hex-shaped."""
    try:
        trace_id = int(context.trace_id, 16) if len(context.trace_id) == 32 else 0
        span_id = int(context.span_id, 16) if len(context.span_id) == 16 else 0
    except ValueError:
        return None
    if not trace_id or not span_id:
        return None
    flags = otel_trace.TraceFlags(otel_trace.TraceFlags.SAMPLED if sampled else otel_trace.TraceFlags.DEFAULT)
    remote = otel_trace.SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)
    return otel_trace.set_span_in_context(otel_trace.NonRecordingSpan(remote))


@dataclass(kw_only=True, slots=True, eq=False)
class _BridgedSpan(Span):
    """A core span backed by an OpenTelemetry span: entering it makes both current."""

    otel: otel_trace.Span | None = field(default=None, repr=False)
    _otel_tokens: list[object] = field(default_factory=list, repr=False)

    def __enter__(self) -> _BridgedSpan:
        Span.__enter__(self)
        if self.otel is not None:
            self._otel_tokens.append(otel_context.attach(otel_trace.set_span_in_context(self.otel)))
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any) -> None:
        if self._otel_tokens:
            otel_context.detach(self._otel_tokens.pop())  # type: ignore[arg-type]
        if exc is not None and self.otel is not None:
            _fail(self.otel, exc)
        Span.__exit__(self, exc_type, exc, tb)


def _core_span(span: ReadableSpan) -> Span | None:
    """A finished SDK span as a core :class:`Span`, for ``Debug.trace``."""
    context = span.context
    if context is None or span.start_time is None or span.end_time is None:
        return None
    metadata = {key: str(value) for key, value in (span.attributes or {}).items()}
    if span.status.status_code is StatusCode.ERROR:
        metadata["error"] = span.status.description or "error"
    core = Span(
        trace_id=f"{context.trace_id:032x}",
        name=span.name,
        id=f"{context.span_id:016x}",
        parent=None if span.parent is None else f"{span.parent.span_id:016x}",
        started=span.start_time / 1e9,
        duration=(span.end_time - span.start_time) / 1e9,
        metadata=metadata,
        type=_TYPES.get(span.kind, SpanType.OUTBOUND if span.kind is not SpanKind.INTERNAL else SpanType.INTERNAL),
    )
    core.end()
    return core


class OpenTelemetryTracer(Tracer):
    """Records micro's calls and messages as OpenTelemetry spans (see the module docstring).

    :param provider: the SDK provider to record with; by default the global SDK provider
        if the process set one, else one built from the ``OTEL_*`` variables at first use.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset()
    options_type: ClassVar[type[TracerOptions]] = OpenTelemetryTracerOptions

    def __init__(
        self, options: TracerOptions | None = None, *, provider: otel_trace.TracerProvider | None = None
    ) -> None:
        super().__init__(options)
        self._given = provider
        self._provider: otel_trace.TracerProvider | None = provider
        self._owned: SDKTracerProvider | None = None
        self._tracer: otel_trace.Tracer | None = None
        self._service = ""
        self._lock = threading.Lock()
        # Recorded spans as they finished; SDK spans are converted to core spans only when read.
        self._spans: collections.deque[Span | ReadableSpan] = collections.deque(maxlen=self.options.size)

    # -- the provider -----------------------------------------------------------------------------

    @property
    def provider(self) -> otel_trace.TracerProvider:
        """The provider spans are recorded with (resolved, and built if need be, on first use)."""
        self._resolve()
        assert self._provider is not None
        return self._provider

    def _resolve(self) -> otel_trace.Tracer:
        tracer = self._tracer
        if tracer is not None:
            return tracer
        with self._lock:
            if self._tracer is None:
                if self._provider is None:
                    current = otel_trace.get_tracer_provider()
                    if isinstance(current, SDKTracerProvider):
                        self._provider = current
                    else:
                        self._owned = self._provider = _build_provider(self._service, self.options.sample)
                from . import __name__ as package

                self._tracer = self._provider.get_tracer(package, _version())
            return self._tracer

    async def _start(self) -> None:
        self._resolve()  # a bad OTEL_* setting fails here, at start-up, not on the first call

    async def _close(self) -> None:
        """Shut down a provider this tracer built (exporting what is buffered); one given or global stays."""
        owned, self._owned = self._owned, None
        if owned is not None:
            self._tracer = None
            self._provider = self._given
            await asyncio.to_thread(owned.shutdown)  # flushes the batch processors: blocking I/O

    # -- the Tracer interface ---------------------------------------------------------------------

    def start_span(
        self,
        name: str,
        *,
        metadata: Mapping[str, str] | None = None,
        parent: Span | SpanContext | None = None,
        type: SpanType = SpanType.INTERNAL,
    ) -> Span:
        """A core span backed by an OpenTelemetry span of the same ids; entering it makes both current.

        The parent is ``parent`` (a span of this tracer, or ids as :func:`micro.debug.extract` returns),
        else the current OpenTelemetry span (inside a traced handler: the call's span).
        """
        tracer = self._resolve()
        parent_context: otel_context.Context | None = None
        if isinstance(parent, _BridgedSpan) and parent.otel is not None:
            parent_context = otel_trace.set_span_in_context(parent.otel)
        elif isinstance(parent, (Span, SpanContext)):
            ids = parent.context if isinstance(parent, Span) else parent
            parent_context = _hex_context(ids, keep(ids.trace_id, self.options.sample))
        elif parent is None:
            core = current_span()
            if isinstance(core, _BridgedSpan) and core.otel is not None:
                parent_context = otel_trace.set_span_in_context(core.otel)
        kind = _KINDS.get(type, SpanKind.INTERNAL)
        span = tracer.start_span(name, context=parent_context, kind=kind, attributes=dict(metadata or {}))
        context = span.get_span_context()
        parent_id = None
        if isinstance(span, ReadableSpan) and span.parent is not None:
            parent_id = f"{span.parent.span_id:016x}"
        return _BridgedSpan(
            trace_id=f"{context.trace_id:032x}",
            id=f"{context.span_id:016x}",
            name=name,
            parent=parent_id,
            metadata=dict(metadata or {}),
            type=type,
            otel=span,
            _tracer=self,
        )

    def finish(self, span: Span) -> None:
        if not span.end():
            return
        otel = span.otel if isinstance(span, _BridgedSpan) else None
        if otel is None:
            self._keep(span)
            return
        for key, value in span.metadata.items():
            if key != "error":
                otel.set_attribute(key, value)
        otel.end()
        self._record(otel)

    async def read(self, *, trace_id: str | None = None) -> list[Span]:
        with self._lock:
            kept = list(self._spans)
        spans = [s if isinstance(s, Span) else _core_span(s) for s in kept]
        return [s for s in spans if s is not None and (trace_id is None or s.trace_id == trace_id)]

    def _keep(self, span: Span | ReadableSpan) -> None:
        with self._lock:
            self._spans.append(span)

    def _record(self, span: otel_trace.Span) -> None:
        """Keep a finished, recorded span for ``micro debug trace`` (an unsampled one has nothing to show)."""
        if isinstance(span, ReadableSpan):
            with self._lock:
                self._spans.append(span)

    # -- the middleware ---------------------------------------------------------------------------

    def middleware(self, service: str) -> Middleware:
        """Wrappers that trace service ``service``'s calls served and made, and messages published and handled.

        ``service`` names the provider's resource when this tracer builds it and ``OTEL_SERVICE_NAME``
        (or ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES``) does not.
        """
        if not self._service:
            self._service = service
        return Middleware(
            handler=(self._handler_wrapper(service),),
            call=(self._call_wrapper(),),
            subscriber=(self._subscriber_wrapper(service),),
            publish=(self._publish_wrapper(),),
        )

    def _handler_wrapper(self, service: str) -> Any:
        resolve, record, rate = self._resolve, self._record, self.options.sample

        def wrapper(next: HandlerFunc) -> HandlerFunc:
            async def handler(request: ServerRequest) -> Any:
                rpc_service, method = _split(request.endpoint)
                attributes: dict[str, Any] = {
                    "rpc.system": SYSTEM,
                    "rpc.service": rpc_service,
                    "rpc.method": method,
                    "micro.service": service,
                }
                if request.remote:
                    attributes["network.peer.address"] = request.remote
                parent = _extract(request.metadata, rate)
                span = resolve().start_span(
                    f"{rpc_service}/{method}", context=parent, kind=SpanKind.SERVER, attributes=attributes
                )
                token = otel_context.attach(otel_trace.set_span_in_context(span, parent))
                try:
                    return await next(request)
                except BaseException as exc:
                    _fail(span, exc)
                    raise
                finally:
                    otel_context.detach(token)
                    span.end()
                    record(span)

            return handler

        return wrapper

    def _call_wrapper(self) -> Any:
        resolve, record = self._resolve, self._record

        def wrapper(next: CallFunc) -> CallFunc:
            async def call(request: Request) -> Response:
                rpc_service, method = _split(request.endpoint)
                attributes: dict[str, Any] = {
                    "rpc.system": SYSTEM,
                    "rpc.service": rpc_service,
                    "rpc.method": method,
                    "micro.service": request.service,
                }
                node = request.node
                if node is not None:
                    host, _, port = node.address.rpartition(":")
                    attributes["server.address"] = host or node.address
                    if port.isdigit():
                        attributes["server.port"] = int(port)
                span = resolve().start_span(f"{rpc_service}/{method}", kind=SpanKind.CLIENT, attributes=attributes)
                context = otel_trace.set_span_in_context(span)
                _inject(request.metadata, span, context)
                token = otel_context.attach(context)
                try:
                    return await next(request)
                except BaseException as exc:
                    _fail(span, exc)
                    raise
                finally:
                    otel_context.detach(token)
                    span.end()
                    record(span)

            return call

        return wrapper

    def _publish_wrapper(self) -> Any:
        resolve, record = self._resolve, self._record

        def wrapper(next: PublishFunc) -> PublishFunc:
            async def publish(publication: OutgoingMessage) -> None:
                attributes: dict[str, Any] = {
                    "messaging.system": SYSTEM,
                    "messaging.destination.name": publication.topic,
                    "messaging.operation.type": "send",
                    "messaging.operation.name": "publish",
                    "messaging.message.body.size": len(publication.body),
                }
                message_id = publication.header.get("Micro-Id")
                if message_id:
                    attributes["messaging.message.id"] = message_id
                span = resolve().start_span(
                    f"publish {publication.topic}", kind=SpanKind.PRODUCER, attributes=attributes
                )
                context = otel_trace.set_span_in_context(span)
                _inject(publication.header, span, context)
                try:
                    await next(publication)
                except BaseException as exc:
                    _fail(span, exc)
                    raise
                finally:
                    span.end()
                    record(span)

            return publish

        return wrapper

    def _subscriber_wrapper(self, service: str) -> Any:
        resolve, record, rate = self._resolve, self._record, self.options.sample

        def wrapper(next: SubscriberFunc) -> SubscriberFunc:
            async def subscriber(message: Message) -> None:
                attributes: dict[str, Any] = {
                    "messaging.system": SYSTEM,
                    "messaging.destination.name": message.topic,
                    "messaging.operation.type": "process",
                    "messaging.operation.name": "process",
                    "messaging.message.body.size": len(message.body),
                    "micro.service": service,
                    "micro.subscriber": message.subscriber,
                }
                message_id = message.header.get("Micro-Id")
                if message_id:
                    attributes["messaging.message.id"] = message_id
                parent = _extract(message.header, rate)
                span = resolve().start_span(
                    f"process {message.topic}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
                )
                token = otel_context.attach(otel_trace.set_span_in_context(span, parent))
                try:
                    await next(message)
                except BaseException as exc:
                    _fail(span, exc)
                    raise
                finally:
                    otel_context.detach(token)
                    span.end()
                    record(span)

            return subscriber

        return wrapper


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("asyncmicro-opentelemetry")
    except PackageNotFoundError:  # running from a source tree
        return "0"


def _build_provider(service: str, sample: float) -> SDKTracerProvider:
    """A provider configured the way the SDK's own auto-configuration does it, from ``os.environ``.

    Raises :class:`~micro.errors.ConfigError` naming the variable for an exporter that is not installed
    or a bad sampler.
    """
    import os

    from opentelemetry.sdk._configuration import _get_exporter_names, _import_exporters
    from opentelemetry.sdk.environment_variables import OTEL_TRACES_SAMPLER
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    resource = Resource.create()  # OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME, the SDK's defaults
    if service and str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service}))
    # Without OTEL_TRACES_SAMPLER, the SDK's TracerProvider reads the sampler from the environment itself.
    sampler = None if os.environ.get(OTEL_TRACES_SAMPLER) else ParentBased(TraceIdRatioBased(sample))
    try:
        provider = SDKTracerProvider(resource=resource, sampler=sampler)
        exporters, _, _ = _import_exporters(_get_exporter_names("traces"), [], [])
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"OTEL_TRACES_EXPORTER / OTEL_TRACES_SAMPLER: {exc} "
            "(the OTLP exporters: pip install 'asyncmicro-opentelemetry[otlp]')"
        ) from None
    for exporter in exporters.values():
        provider.add_span_processor(BatchSpanProcessor(exporter()))
    return provider
