"""Middleware that feeds the tracer and the stats: spans for sampled, failed and slow calls, a count per call.

* :func:`trace_handler` (server side) serves a call of a sampled trace inside
  an inbound span, continuing the caller's trace from the
  ``Micro-Trace-Id``/``Micro-Span-Id`` metadata, and makes it the current span
  while the handler runs.
* :func:`trace_call` (client side) sends an attempt of a sampled trace inside
  an outbound span, as a child of the current span, and puts its ids into the
  outgoing metadata.
* :func:`stats_handler` records every call, and whether it failed, in a :class:`~micro.debug.stats.Stats`.

Sampling (``MICRO_TRACER_SAMPLE``, ``MICRO_TRACER_SLOW``; see
:class:`~micro.debug.trace.TracerOptions`): a call whose trace is not sampled
runs without a span, which is most of what tracing costs per call; if it fails
or is slow it is still recorded, afterwards, as a span without children. The
ids it received keep travelling on in the metadata of the calls it makes.
With both trace wrappers in place, a sampled call that service A makes while
serving a call lands in service B's tracer under A's trace id.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from .trace import Span, SpanContext, SpanType, Tracer, current_span, extract, inject, keep, sampled_trace_id

if TYPE_CHECKING:
    from ..client.base import CallFunc, CallWrapper, Response
    from ..client.base import Request as CallRequest
    from ..server.base import HandlerFunc, HandlerWrapper, Request
    from .stats import Stats

__all__ = ["stats_handler", "trace_call", "trace_handler", "traced_and_counted_handler"]


def _sampled(parent: SpanContext | None, rate: float) -> SpanContext | None:
    """The parent to start a recorded span under, or ``None`` if this call's trace is not sampled.

    A call that continues a trace follows :func:`~micro.debug.trace.keep`; one that starts a trace is
    sampled at ``rate`` with an id ``keep`` keeps, so the services it calls agree.
    """
    if parent is not None:
        return parent if keep(parent.trace_id, rate) else None
    trace_id = sampled_trace_id(rate)
    return None if trace_id is None else SpanContext(trace_id, "")


def _record_late(
    tracer: Tracer,
    name: str,
    parent: SpanContext | None,
    kind: SpanType,
    metadata: dict[str, str],
    clock: float,
    exc: BaseException | None,
    why: str,
) -> None:
    """Record a span for a call that ran without one (its trace not sampled) because it failed or was slow."""
    elapsed = time.perf_counter() - clock
    span = Span(
        trace_id=parent.trace_id if parent is not None else sampled_trace_id(1.0) or "",
        name=name,
        parent=(parent.span_id or None) if parent is not None else None,
        started=time.time() - elapsed,
        metadata=metadata,
        type=kind,
        _tracer=tracer,
        _clock=clock,
    )
    span.metadata["recorded"] = why
    span.__exit__(None if exc is None else type(exc), exc, None)  # records the error text, masked, and finishes


def trace_handler(tracer: Tracer) -> HandlerWrapper:
    """A server wrapper that serves sampled calls inside an inbound span named after the endpoint,
    and records failed and slow ones afterwards."""
    rate, slow = tracer.options.sample, tracer.options.slow

    def wrapper(next: HandlerFunc) -> HandlerFunc:
        async def handler(request: Request) -> Any:
            received = extract(request.metadata)
            parent = _sampled(received, rate)
            if parent is not None:
                span = tracer.start_span(
                    request.endpoint, parent=parent, type=SpanType.INBOUND, metadata={"service": request.service}
                )
                with span:
                    return await next(request)
            clock = time.perf_counter()
            try:
                result = await next(request)
            except BaseException as exc:
                metadata = {"service": request.service}
                _record_late(tracer, request.endpoint, received, SpanType.INBOUND, metadata, clock, exc, "error")
                raise
            if time.perf_counter() - clock >= slow:
                metadata = {"service": request.service}
                _record_late(tracer, request.endpoint, received, SpanType.INBOUND, metadata, clock, None, "slow")
            return result

        return handler

    return wrapper


def _name(request: CallRequest) -> str:
    return f"{request.service} {request.endpoint}"


def _annotations(request: CallRequest) -> dict[str, str]:
    metadata = {"service": request.service}
    if request.node is not None:
        metadata["node"] = request.node.address
    return metadata


def trace_call(tracer: Tracer) -> CallWrapper:
    """A client wrapper that sends sampled attempts inside an outbound span and propagates its ids,
    and records failed and slow ones afterwards."""
    rate, slow = tracer.options.sample, tracer.options.slow

    def wrapper(next: CallFunc) -> CallFunc:
        async def call(request: CallRequest) -> Response:
            # A current span is recorded, so its children are too. Without one (a handler without
            # trace_handler, or a call of an unsampled trace), continue any trace the metadata carries.
            current = current_span()
            received = current.context if current is not None else extract(request.metadata)
            parent = received if current is not None else _sampled(received, rate)
            if parent is not None:
                span = tracer.start_span(
                    _name(request), parent=parent, type=SpanType.OUTBOUND, metadata=_annotations(request)
                )
                with span:
                    inject(request.metadata, span)
                    return await next(request)
            clock = time.perf_counter()
            try:
                response = await next(request)
            except BaseException as exc:
                late = _name(request), received, SpanType.OUTBOUND, _annotations(request), clock
                _record_late(tracer, *late, exc, "error")
                raise
            if time.perf_counter() - clock >= slow:
                late = _name(request), received, SpanType.OUTBOUND, _annotations(request), clock
                _record_late(tracer, *late, None, "slow")
            return response

        return call

    return wrapper


def stats_handler(stats: Stats) -> HandlerWrapper:
    """A server wrapper that counts every call, and every call that raised, in ``stats``."""

    def wrapper(next: HandlerFunc) -> HandlerFunc:
        async def handler(request: Request) -> Any:
            try:
                result = await next(request)
            except Exception as exc:
                stats.record(exc)
                raise
            stats.record(None)
            return result

        return handler

    return wrapper


def traced_and_counted_handler(tracer: Tracer, stats: Stats) -> HandlerWrapper:
    """``trace_handler(tracer)`` around ``stats_handler(stats)`` in one layer: the same spans and counts.

    What :func:`~micro.debug.handler.debug_handler` installs when neither the tracer nor the stats bring
    middleware of their own: every call served awaits one coroutine less.
    """
    rate, slow = tracer.options.sample, tracer.options.slow
    record = stats.record

    def wrapper(next: HandlerFunc) -> HandlerFunc:
        async def handler(request: Request) -> Any:
            received = extract(request.metadata)
            parent = _sampled(received, rate)
            if parent is not None:
                span = tracer.start_span(
                    request.endpoint, parent=parent, type=SpanType.INBOUND, metadata={"service": request.service}
                )
                with span:
                    try:
                        result = await next(request)
                    except Exception as exc:
                        record(exc)
                        raise
                    record(None)
                    return result
            clock = time.perf_counter()
            try:
                result = await next(request)
            except BaseException as exc:
                if isinstance(exc, Exception):  # as stats_handler: a cancelled call is not counted
                    record(exc)
                metadata = {"service": request.service}
                _record_late(tracer, request.endpoint, received, SpanType.INBOUND, metadata, clock, exc, "error")
                raise
            record(None)
            if time.perf_counter() - clock >= slow:
                metadata = {"service": request.service}
                _record_late(tracer, request.endpoint, received, SpanType.INBOUND, metadata, clock, None, "slow")
            return result

        return handler

    return wrapper
