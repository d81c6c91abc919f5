"""Tracing: spans that follow a request across services.

A span is started with :meth:`Tracer.start_span` and used as a context manager
(``with`` or ``async with``); inside it, :func:`current_span` returns it and a
span started there becomes its child. Across a call, the trace travels in
metadata under ``Micro-Trace-Id`` and ``Micro-Span-Id``:

* the client calls :func:`inject` on the outgoing metadata, which copies the
  current span's ids into it;
* the server calls :func:`extract` on the incoming metadata and passes the
  result as ``parent=`` to :meth:`Tracer.start_span`, so its span joins the same trace.

New trace ids are 32 hex digits and span ids 16, as in W3C trace context; ids
that arrive in other shapes (Go Micro sends UUIDs) are carried as they are.

The server and client trace wrappers (:mod:`micro.debug.wrappers`) record a
span for every call of a sampled trace (``sample``, 10% by default, decided
from the trace id by :func:`keep` so all services agree), and for every call
that fails or takes ``slow`` seconds or more whatever the sample. Ids travel in
metadata either way.

:class:`MemoryTracer` (``MICRO_TRACER=memory``, the default) keeps the last
``size`` finished spans for ``micro debug trace``.
"""

from __future__ import annotations

import abc
import builtins
import collections
import contextvars
import enum
import math
import os
import random
import re
import threading
import time
import zlib
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Final, Self

from .._redact import redact
from ..component import Component
from ..errors import BadRequest, InvalidOption
from ..metadata import Metadata
from ..options import Options
from .middleware import Middleware

__all__ = [
    "SPAN_ID_HEADER",
    "TRACE_ID_HEADER",
    "MemoryTracer",
    "Span",
    "SpanContext",
    "SpanType",
    "Tracer",
    "TracerOptions",
    "current_span",
    "extract",
    "inject",
    "keep",
    "sampled_trace_id",
]

TRACE_ID_HEADER: Final = "Micro-Trace-Id"
SPAN_ID_HEADER: Final = "Micro-Span-Id"


class SpanType(enum.StrEnum):
    """Which side of a call a span covers."""

    #: A request being served.
    INBOUND = "inbound"
    #: A request being sent.
    OUTBOUND = "outbound"
    #: Work inside one process.
    INTERNAL = "internal"


@dataclass(frozen=True, slots=True)
class SpanContext:
    """The ids a span passes to its children, in process or through metadata."""

    trace_id: str
    span_id: str


_current: contextvars.ContextVar[Span | None] = contextvars.ContextVar("micro_current_span", default=None)


def current_span() -> Span | None:
    """The innermost span entered (``with span:``) in this context, if any."""
    return _current.get()


# Ids need to be unique, not unpredictable: a generator seeded from os.urandom saves a system call per id,
# and the server's trace wrapper makes up to two ids per call.
_random = random.Random()
# A forked child must not repeat its parent's ids.
os.register_at_fork(after_in_child=_random.seed)


def _new_trace_id() -> str:
    """32 hex digits: a W3C trace-context trace id."""
    return _random.getrandbits(128).to_bytes(16).hex()  # randbytes() is the same, through a slower Python wrapper


# The sampling decision reads a trace id's first 8 hex digits as a number in [0, 2**32).
_SPACE: Final = 1 << 32
_HEX: Final = frozenset("0123456789abcdefABCDEF")


def keep(trace_id: str, rate: float) -> bool:
    """Whether the trace ``trace_id`` is recorded in full at sample rate ``rate`` (0 to 1).

    A function of the id alone, so every service a trace crosses makes the same
    choice without a sampling flag on the wire: a kept trace shows complete in
    the waterfall. The first 8 hex digits of the id (W3C ids, Go Micro's UUIDs)
    are the number compared; other shapes of id are hashed (CRC-32).
    """
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    head = trace_id[:8]
    value = int(head, 16) if len(head) == 8 and _HEX.issuperset(head) else zlib.crc32(trace_id.encode())
    return value < rate * _SPACE


def sampled_trace_id(rate: float) -> str | None:
    """A new trace id that :func:`keep` keeps at ``rate``, with probability ``rate``; otherwise ``None``."""
    if rate < 1.0 and _random.random() >= rate:
        return None
    top = _random.randrange(max(1, min(_SPACE, math.ceil(rate * _SPACE))))
    return f"{top:08x}{_random.getrandbits(96):024x}"


def _new_span_id() -> str:
    """16 hex digits: a W3C trace-context span id."""
    return _random.getrandbits(64).to_bytes(8).hex()


@dataclass(kw_only=True, slots=True, eq=False)
class Span:
    """One timed operation in a trace.

    Entering the span (``with`` or ``async with``) makes it the current span;
    leaving it restores the previous one and finishes it, recording
    ``"<ExceptionClass>: <message>"`` under ``metadata["error"]`` if an exception escaped.
    """

    #: Shared by every span of one request tree.
    trace_id: str
    name: str
    id: str = field(default_factory=_new_span_id)
    #: The parent span's id; ``None`` for the root of a trace.
    parent: str | None = None
    #: Seconds since the epoch.
    started: float = field(default_factory=time.time)
    #: Seconds; 0 until finished.
    duration: float = 0.0
    metadata: dict[str, str] = field(default_factory=dict)
    type: SpanType = SpanType.INTERNAL
    _tracer: Tracer | None = field(default=None, repr=False)
    _clock: float = field(default_factory=time.perf_counter, repr=False)
    _finished: bool = field(default=False, repr=False)
    _tokens: list[contextvars.Token[Span | None]] = field(default_factory=list, repr=False)

    @property
    def context(self) -> SpanContext:
        return SpanContext(self.trace_id, self.id)

    @property
    def finished(self) -> bool:
        return self._finished

    def end(self) -> bool:
        """Fix the duration. ``False`` if the span was already finished (so it is recorded once)."""
        if self._finished:
            return False
        self._finished = True
        self.duration = time.perf_counter() - self._clock
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "trace_id": self.trace_id,
            "name": self.name,
            "id": self.id,
            "parent": self.parent,
            "started": self.started,
            "duration": self.duration,
            "metadata": dict(self.metadata),
            "type": self.type.value,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Span:
        """The inverse of :meth:`to_dict` (a finished span); raises :class:`BadRequest` if malformed."""
        try:
            span = cls(
                trace_id=str(data["trace_id"]),
                name=str(data["name"]),
                id=str(data["id"]),
                parent=None if data.get("parent") is None else str(data["parent"]),
                started=float(data["started"]),
                duration=float(data.get("duration") or 0.0),
                metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
                type=SpanType(data.get("type") or SpanType.INTERNAL),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadRequest(f"not a span: {exc!r}") from None
        span._finished = True
        return span

    def __enter__(self) -> Self:
        self._tokens.append(_current.set(self))
        return self

    def __exit__(
        self, exc_type: builtins.type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._tokens:
            _current.reset(self._tokens.pop())
        if exc is not None:
            # Spans are read back by others (Debug.trace): an error's text is masked of credentials. A server
            # handler's unexpected exception arrives here already replaced by an InternalError with a reference.
            self.metadata.setdefault("error", redact(f"{type(exc).__name__}: {exc}"))
        if self._tracer is not None:
            self._tracer.finish(self)
        else:
            self.end()

    async def __aenter__(self) -> Self:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: builtins.type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


def inject(metadata: MutableMapping[str, str], span: Span | SpanContext | None = None) -> MutableMapping[str, str]:
    """Put ``span``'s ids (the current span's by default) into ``metadata``; returns ``metadata``.

    With no span and no current span, ``metadata`` is left as it is, so a trace
    id received earlier keeps travelling.
    """
    if span is None:
        span = current_span()
    if span is not None:
        context = span.context if isinstance(span, Span) else span
        metadata[TRACE_ID_HEADER] = context.trace_id
        metadata[SPAN_ID_HEADER] = context.span_id
    return metadata


def _lookup(metadata: Mapping[str, str], key: str) -> str | None:
    if isinstance(metadata, Metadata):
        # Keys already compare case-insensitively: one lookup, and no scan when the key is absent (most calls).
        return (metadata[key] or None) if key in metadata else None
    value = metadata.get(key)
    if value is None:  # a plain dict: compare keys case-insensitively, as Metadata does
        folded = key.lower()
        value = next((v for k, v in metadata.items() if k.lower() == folded), None)
    return value or None


# What a trace or span id received from a caller may look like: W3C hex ids, Go Micro's UUIDs, and other
# plain tokens up to 64 characters. Anything else (markup, control characters, a megabyte) is not carried.
_ID_SHAPE: Final = re.compile(r"[0-9A-Za-z_.\-]{1,64}", re.ASCII)


def valid_id(value: str) -> bool:
    """Whether ``value`` may be carried as a trace or span id: 1-64 ASCII letters, digits, ``-``, ``_``, ``.``."""
    return _ID_SHAPE.fullmatch(value) is not None


def extract(metadata: Mapping[str, str]) -> SpanContext | None:
    """The span context carried by ``metadata``, or ``None`` if it has no (well-formed) trace id.

    Keys match case-insensitively (``Micro-Trace-ID`` from Go Micro works).
    A trace id without a span id gives an empty ``span_id``: the new span
    joins the trace as a root. Ids come from the caller, so one that is not
    :func:`valid_id` is ignored: a malformed trace id starts a new trace, a
    malformed span id makes the span a root of its trace.
    """
    trace_id = _lookup(metadata, TRACE_ID_HEADER)
    if trace_id is None or not valid_id(trace_id):
        return None
    span_id = _lookup(metadata, SPAN_ID_HEADER) or ""
    return SpanContext(trace_id, span_id if valid_id(span_id) else "")


@dataclass(frozen=True, kw_only=True, slots=True)
class TracerOptions(Options):
    """Options of the tracer (``MICRO_TRACER_<OPTION>``)."""

    #: How many finished spans the ring buffer keeps.
    size: int = 1024
    #: The fraction of traces (0 to 1) whose calls the trace wrappers record in full (``MICRO_TRACER_SAMPLE``).
    #: The choice follows the trace id (see :func:`keep`), so a kept trace is kept in every service.
    sample: float = 0.1
    #: Seconds: a call at least this slow is recorded even when its trace is not sampled
    #: (``MICRO_TRACER_SLOW``, ``250ms`` style accepted). A call that fails is always recorded.
    slow: float = 0.1

    def __post_init__(self) -> None:
        if self.size < 1:
            raise InvalidOption(f"must be at least 1, got {self.size}", option="size")
        if not 0.0 <= self.sample <= 1.0:  # also refuses NaN
            raise InvalidOption(f"must be a fraction from 0 to 1, got {self.sample}", option="sample")
        if not 0.0 <= self.slow < math.inf:
            raise InvalidOption(f"must be a finite number of seconds, at least 0, got {self.slow}", option="slow")


class Tracer(Component, abc.ABC):
    """Starts spans, records them when they finish, and reads them back."""

    options: TracerOptions
    interface: ClassVar[str] = "tracer"
    options_type: ClassVar[type[TracerOptions]] = TracerOptions

    def start_span(
        self,
        name: str,
        *,
        metadata: Mapping[str, str] | None = None,
        parent: Span | SpanContext | None = None,
        type: SpanType = SpanType.INTERNAL,
    ) -> Span:
        """A new running span named ``name``; use it as a context manager, or call :meth:`finish`.

        (Go Micro's ``Start``: the name ``start`` belongs to the component lifecycle.)

        :param metadata: the span's own annotations (copied).
        :param parent: the span to descend from; by default the current span.
            Without either, the span starts a new trace.
        :param type: which side of a call it covers.
        """
        if parent is None:
            parent = current_span()
        context = parent.context if isinstance(parent, Span) else parent
        return Span(
            trace_id=context.trace_id if context else _new_trace_id(),
            name=name,
            parent=(context.span_id or None) if context else None,
            metadata=dict(metadata or {}),
            type=type if type.__class__ is SpanType else SpanType(type),
            _tracer=self,
        )

    def middleware(self, service: str) -> Middleware | None:
        """The wrappers that trace the calls and messages of service ``service``; ``None`` (the default) for
        the built-in :func:`~micro.debug.wrappers.trace_handler` and :func:`~micro.debug.wrappers.trace_call`
        (``Micro-Trace-Id`` propagation, ``sample``/``slow`` sampling).

        :func:`micro.debug.handler.mount` calls it once, before the service starts. A backend with its own
        propagation (W3C ``traceparent``) returns its own :class:`~micro.debug.middleware.Middleware`.
        """
        return None

    @abc.abstractmethod
    def finish(self, span: Span) -> None:
        """Fix ``span``'s duration and record it. Idempotent: a span is recorded once."""

    @abc.abstractmethod
    async def read(self, *, trace_id: str | None = None) -> list[Span]:
        """Recorded spans, in the order they finished; only those of ``trace_id`` if given."""


class MemoryTracer(Tracer):
    """The last ``size`` finished spans in memory. Thread-safe."""

    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: TracerOptions | None = None) -> None:
        super().__init__(options)
        self._spans: collections.deque[Span] = collections.deque(maxlen=self.options.size)
        self._lock = threading.Lock()

    def finish(self, span: Span) -> None:
        if span.end():
            with self._lock:
                self._spans.append(span)

    async def read(self, *, trace_id: str | None = None) -> list[Span]:
        with self._lock:
            spans = list(self._spans)
        if trace_id is not None:
            spans = [s for s in spans if s.trace_id == trace_id]
        return spans
