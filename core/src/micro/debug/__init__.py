"""Debugging a running service: its recent logs, its traces and its vital statistics.

Three small interfaces, each selected like any other block (``MICRO_LOG``,
``MICRO_TRACER``, ``MICRO_STATS``), and the :class:`~micro.debug.handler.Debug`
handler that serves them to ``micro debug logs|trace|stats``.
"""

from __future__ import annotations

from .log import Log, LogOptions, LogRecord, LogStream, MemoryLog
from .middleware import Middleware
from .stats import MemoryStats, Stat, Stats, StatsOptions
from .trace import (
    SPAN_ID_HEADER,
    TRACE_ID_HEADER,
    MemoryTracer,
    Span,
    SpanContext,
    SpanType,
    Tracer,
    TracerOptions,
    current_span,
    extract,
    inject,
)

__all__ = [
    "SPAN_ID_HEADER",
    "TRACE_ID_HEADER",
    "Log",
    "LogOptions",
    "LogRecord",
    "LogStream",
    "MemoryLog",
    "MemoryStats",
    "MemoryTracer",
    "Middleware",
    "Span",
    "SpanContext",
    "SpanType",
    "Stat",
    "Stats",
    "StatsOptions",
    "Tracer",
    "TracerOptions",
    "current_span",
    "extract",
    "inject",
]
