"""The built-in ``Debug`` handler: a service's health, stats, logs and traces over RPC.

Its endpoints are what ``micro debug`` calls (Go Micro's ``debug.proto``
service ``Debug``):

=================  ==========================================  =================================
endpoint           request                                     response
=================  ==========================================  =================================
``Debug.health``   nothing                                     ``{"status": "ok"}``
``Debug.stats``    nothing                                     ``{"stats": [Stat.to_dict(), ...]}``
``Debug.logs``     :class:`LogsRequest` (count, since, level)  ``{"records": [LogRecord.to_dict(), ...]}``
``Debug.trace``    :class:`TraceRequest` (id)                  ``{"spans": [Span.to_dict(), ...]}``
=================  ==========================================  =================================

Responses are plain JSON-able dicts so any codec and any language can read
them. :func:`mount` puts the handler on a :class:`~micro.service.Service`
together with the tracing and stats wrappers.

Who may call them is :attr:`DebugOptions.access <micro.debug.access.DebugOptions.access>`
(``MICRO_DEBUG_ACCESS``), see :mod:`micro.debug.access`: by default ``stats``,
``logs`` and ``trace`` answer the service's own local user (``micro debug``)
and callers an auth with rules admits; ``health`` answers everyone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .. import _env
from ..auth.local import LocalProofs
from ..component import Make, Parts
from ..errors import NotSupported
from ..options import build
from .access import Access, DebugOptions, admit, debug_guard
from .log import Log
from .middleware import Middleware
from .stats import Stats
from .trace import Tracer
from .wrappers import stats_handler, trace_call, trace_handler, traced_and_counted_handler

_log = logging.getLogger("micro.debug")

__all__ = ["Debug", "DebugOptions", "LogsRequest", "Mountable", "TraceRequest", "debug_options", "mount"]


class Mountable(Protocol):
    """What :func:`mount` needs of a service: a :class:`~micro.service.Service` is one."""

    @property
    def name(self) -> str: ...

    @property
    def environ(self) -> Mapping[str, str]: ...

    def handle(self, handler: object, *, name: str | None = None) -> object: ...

    def wrap(self, *wrappers: Any) -> None: ...

    def wrap_call(self, *wrappers: Any) -> None: ...

    def wrap_subscriber(self, *wrappers: Any) -> None: ...

    def wrap_publish(self, *wrappers: Any) -> None: ...

    def hook(self, when: Any, function: Callable[[], Awaitable[None] | None]) -> object: ...


def _memory_log() -> Log:
    from .log import MemoryLog

    return MemoryLog()


def _memory_tracer() -> Tracer:
    from .trace import MemoryTracer

    return MemoryTracer()


def _memory_stats() -> Stats:
    from .stats import MemoryStats

    return MemoryStats()


@dataclass(slots=True)
class LogsRequest:
    """Which records ``Debug.logs`` returns; see :meth:`micro.debug.log.Log.read`."""

    #: Only the last ``count`` matching records.
    count: int | None = None
    #: Only records at or after this time, seconds since the epoch.
    since: float | None = None
    #: Only records at this level or above (``debug``, ``info``, ``warning``...).
    level: str | None = None


@dataclass(slots=True)
class TraceRequest:
    """Which spans ``Debug.trace`` returns: those of trace ``id``, or every recorded one."""

    id: str | None = None


def debug_options(environ: Mapping[str, str] | None = None) -> DebugOptions:
    """:class:`DebugOptions` from ``MICRO_DEBUG_<OPTION>`` variables (``os.environ`` by default)."""
    selection = _env.selection("debug", os.environ if environ is None else environ)
    return build(DebugOptions, selection.options, describe=lambda key: _env.variable("debug", key))


class Debug:
    """Serves a service's debug data. Each part is optional: an endpoint whose part is missing raises
    :class:`~micro.errors.NotSupported` (501).

    The objects are only read; their lifecycle belongs to whoever created them.
    Its methods answer whoever calls them in process: serve it with
    :func:`mount`, which puts the access check of ``MICRO_DEBUG_ACCESS`` in
    front of it (``service.handle(Debug(...))`` would serve it to anyone).
    """

    def __init__(self, *, log: Log | None = None, tracer: Tracer | None = None, stats: Stats | None = None) -> None:
        self._log = log
        self._tracer = tracer
        self._stats = stats

    async def health(self) -> dict[str, str]:
        """``{"status": "ok"}`` while the service answers."""
        return {"status": "ok"}

    async def stats(self) -> dict[str, Any]:
        """Stored snapshots, oldest first, then one taken now."""
        if self._stats is None:
            raise NotSupported("this service keeps no stats")
        return {"stats": [stat.to_dict() for stat in await self._stats.read()]}

    async def logs(self, request: LogsRequest) -> dict[str, Any]:
        """Buffered log records, oldest first; raises :class:`~micro.errors.BadRequest` for bad filters."""
        if self._log is None:
            raise NotSupported("this service keeps no debug log")
        records = await self._log.read(count=request.count, since=request.since, level=request.level)
        return {"records": [record.to_dict() for record in records]}

    async def trace(self, request: TraceRequest) -> dict[str, Any]:
        """Recorded spans in the order they finished, only trace ``id``'s when given."""
        if self._tracer is None:
            raise NotSupported("this service keeps no traces")
        spans = await self._tracer.read(trace_id=request.id or None)
        return {"spans": [span.to_dict() for span in spans]}


class _Served:
    """What :func:`mount` serves as ``Debug``: the handler's endpoints behind :func:`~micro.debug.access.admit`."""

    def __init__(self, debug: Debug, access: Access, service: str) -> None:
        self._debug = debug
        self._access: Access = access
        self._service = service

    async def health(self) -> dict[str, str]:
        """``{"status": "ok"}`` while the service answers; open to every caller."""
        return await self._debug.health()

    async def stats(self) -> dict[str, Any]:
        """:meth:`Debug.stats`, for callers :func:`~micro.debug.access.admit` lets in."""
        admit(self._access, "Debug.stats", self._service)
        return await self._debug.stats()

    async def logs(self, request: LogsRequest) -> dict[str, Any]:
        """:meth:`Debug.logs`, for callers :func:`~micro.debug.access.admit` lets in."""
        admit(self._access, "Debug.logs", self._service)
        return await self._debug.logs(request)

    async def trace(self, request: TraceRequest) -> dict[str, Any]:
        """:meth:`Debug.trace`, for callers :func:`~micro.debug.access.admit` lets in."""
        admit(self._access, "Debug.trace", self._service)
        return await self._debug.trace(request)


def mount(
    service: Mountable,
    *,
    log: Log | None = None,
    tracer: Tracer | None = None,
    stats: Stats | None = None,
    options: DebugOptions | None = None,
    make: Make | None = None,
) -> Debug:
    """Serve :class:`Debug` on ``service``, with tracing and stats on every call it serves and makes.

    ``options`` (default: from ``MICRO_DEBUG_*`` in ``service.environ``) say who may call it; with
    ``access="local"`` a :func:`~micro.debug.access.debug_guard` checking local
    proofs against the user's secret is added too. With ``access="off"`` no ``Debug`` endpoint is
    served, but the log, tracer and stats (built-in or a plugin's: ``MICRO_TRACER=opentelemetry``,
    ``MICRO_STATS=prometheus``) still record every call: turning the endpoints off does not turn
    observability off. The returned handler reads them in-process.

    Parts not given are built with ``make`` (see :class:`~micro.component.Make`; a
    :class:`~micro.service.Service` hands in its wiring, so ``MICRO_LOG=...`` and
    ``MICRO_LOG_LEVEL`` in its environment apply), or the built-in ``memory`` ones
    without it; they are started before the service starts and closed after it
    stops. Parts given are only used. Adds the tracer's and the stats'
    :class:`~micro.debug.middleware.Middleware` (``tracer.middleware(service.name)``; by default
    :func:`~micro.debug.wrappers.trace_handler` and :func:`~micro.debug.wrappers.stats_handler` on
    the server, :func:`~micro.debug.wrappers.trace_call` on the client), tracer first, after any
    wrappers already there.
    """
    parts = Parts(make)
    owned: list[Log | Tracer | Stats] = []
    if log is None:
        log = parts.make(Log, _memory_log)
        owned.append(log)
    if tracer is None:
        tracer = parts.make(Tracer, _memory_tracer)
        owned.append(tracer)
    if stats is None:
        stats = parts.make(Stats, _memory_stats)
        owned.append(stats)

    async def start() -> None:
        for part in owned:
            await part.start()

    async def close() -> None:
        for part in reversed(owned):
            await part.close()

    if options is None:
        options = debug_options(service.environ)
    handler = Debug(log=log, tracer=tracer, stats=stats)
    if options.access != "off":
        service.handle(_Served(handler, options.access, service.name), name="Debug")
    if options.access == "local":
        from .._private import local_secret

        environ = service.environ

        def secret() -> bytes:
            return local_secret(environ)

        service.wrap(debug_guard(LocalProofs(service.name, secret, options.proof_window)))
    own_traced, own_counted = tracer.middleware(service.name), stats.middleware(service.name)
    traced = own_traced or Middleware(handler=(trace_handler(tracer),), call=(trace_call(tracer),))
    counted = own_counted or Middleware(handler=(stats_handler(stats),))
    if own_traced is None and own_counted is None:
        # Both built in: the two server wrappers as one layer (it runs for every call served).
        service.wrap(traced_and_counted_handler(tracer, stats))
    else:
        service.wrap(*traced.handler, *counted.handler)
    service.wrap_call(*traced.call, *counted.call)
    if traced.subscriber or counted.subscriber:
        service.wrap_subscriber(*traced.subscriber, *counted.subscriber)
    if traced.publish or counted.publish:
        try:
            service.wrap_publish(*traced.publish, *counted.publish)
        except NotSupported as exc:
            # A client without publish middleware still serves: its publishes go untraced and uncounted.
            _log.warning("%s: publishes are not traced or counted: %s", service.name, exc)
    service.hook("before_start", start)
    service.hook("after_stop", close)
    return handler
