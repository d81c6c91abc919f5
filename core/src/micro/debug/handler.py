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

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import _env
from ..auth.local import LocalProofs
from ..errors import NotSupported
from ..options import build
from .access import Access, DebugOptions, admit, debug_guard
from .log import Log
from .stats import Stats
from .trace import Tracer
from .wrappers import stats_handler, trace_call, trace_handler

if TYPE_CHECKING:
    from ..service import Service

__all__ = ["Debug", "DebugOptions", "LogsRequest", "TraceRequest", "debug_options", "mount"]


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
    service: Service,
    *,
    log: Log | None = None,
    tracer: Tracer | None = None,
    stats: Stats | None = None,
    options: DebugOptions | None = None,
) -> Debug:
    """Serve :class:`Debug` on ``service``, with tracing and stats on every call it serves and makes.

    ``options`` (default: from ``MICRO_DEBUG_*``) say who may call it; with
    ``access="local"`` a :func:`~micro.debug.access.debug_guard` checking local
    proofs against the user's secret is added too. :class:`~micro.service.Service`
    does not call this at all with ``access="off"``.

    Parts not given are created with ``micro.create("log")``, ``("tracer")``
    and ``("stats")`` (so ``MICRO_LOG_LEVEL`` and friends apply), started
    before the service starts and closed after it stops; parts given are
    only used. Adds :func:`~micro.debug.wrappers.trace_handler` and
    :func:`~micro.debug.wrappers.stats_handler` to the server and
    :func:`~micro.debug.wrappers.trace_call` to the client, after any
    wrappers already there.
    """
    from ..plugins import create

    owned: list[Log | Tracer | Stats] = []
    if log is None:
        log = create("log", cls=Log)
        owned.append(log)
    if tracer is None:
        tracer = create("tracer", cls=Tracer)
        owned.append(tracer)
    if stats is None:
        stats = create("stats", cls=Stats)
        owned.append(stats)

    async def start() -> None:
        for part in owned:
            await part.start()

    async def close() -> None:
        for part in reversed(owned):
            await part.close()

    if options is None:
        options = debug_options()
    handler = Debug(log=log, tracer=tracer, stats=stats)
    service.handle(_Served(handler, options.access, service.name), name="Debug")
    if options.access == "local":
        from .._private import local_secret

        environ = service.environ

        def secret() -> bytes:
            return local_secret(environ)

        service.wrap(debug_guard(LocalProofs(service.name, secret, options.proof_window)))
    service.wrap(trace_handler(tracer), stats_handler(stats))
    service.wrap_call(trace_call(tracer))
    service.hook("before_start", start)
    service.hook("after_stop", close)
    return handler
