"""Middleware that feeds the tracer and the stats: one span and one count per call.

* :func:`trace_handler` (server side) starts an inbound span for every call,
  continuing the caller's trace from the ``Micro-Trace-Id``/``Micro-Span-Id``
  metadata, and makes it the current span while the handler runs.
* :func:`trace_call` (client side) starts an outbound span for every attempt,
  as a child of the current span, and puts its ids into the outgoing metadata.
* :func:`stats_handler` records every call, and whether it failed, in a :class:`~micro.debug.stats.Stats`.

With both trace wrappers in place, a call that service A makes while serving a
call lands in service B's tracer under A's trace id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .trace import SpanType, Tracer, current_span, extract, inject

if TYPE_CHECKING:
    from ..client.base import CallFunc, CallWrapper, Response
    from ..client.base import Request as CallRequest
    from ..server.base import HandlerFunc, HandlerWrapper, Request
    from .stats import Stats

__all__ = ["stats_handler", "trace_call", "trace_handler"]


def trace_handler(tracer: Tracer) -> HandlerWrapper:
    """A server wrapper that runs every call inside an inbound span named after its endpoint."""

    def wrapper(next: HandlerFunc) -> HandlerFunc:
        async def handler(request: Request) -> Any:
            span = tracer.start_span(
                request.endpoint,
                parent=extract(request.metadata),
                type=SpanType.INBOUND,
                metadata={"service": request.service},
            )
            with span:
                return await next(request)

        return handler

    return wrapper


def trace_call(tracer: Tracer) -> CallWrapper:
    """A client wrapper that sends every attempt inside an outbound span and propagates its ids."""

    def wrapper(next: CallFunc) -> CallFunc:
        async def call(request: CallRequest) -> Response:
            # No current span (a handler without trace_handler): still continue any trace the metadata carries.
            parent = current_span() or extract(request.metadata)
            metadata = {"service": request.service}
            if request.node is not None:
                metadata["node"] = request.node.address
            span = tracer.start_span(
                f"{request.service} {request.endpoint}", parent=parent, type=SpanType.OUTBOUND, metadata=metadata
            )
            with span:
                inject(request.metadata, span)
                return await next(request)

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
