"""asyncmicro-opentelemetry: OpenTelemetry tracing of micro's clients, servers and broker messages.

Select it with ``MICRO_TRACER=opentelemetry``; the SDK is configured by the standard
``OTEL_*`` variables (``OTEL_SERVICE_NAME``, ``OTEL_TRACES_EXPORTER``,
``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_TRACES_SAMPLER``...). The trace context travels
as W3C ``traceparent``/``tracestate`` in call metadata and message headers. Importing
this package (or its plugin hooks) does not import OpenTelemetry: the classes load when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .tracer import OpenTelemetryTracer, OpenTelemetryTracerOptions

__all__ = ["OpenTelemetryTracer", "OpenTelemetryTracerOptions"]

_LAZY = {"OpenTelemetryTracer": ".tracer", "OpenTelemetryTracerOptions": ".tracer"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
