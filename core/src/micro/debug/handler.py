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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import NotSupported
from .log import Log
from .stats import Stats
from .trace import Tracer
from .wrappers import stats_handler, trace_call, trace_handler

if TYPE_CHECKING:
    from ..service import Service

__all__ = ["Debug", "LogsRequest", "TraceRequest", "mount"]


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


class Debug:
    """Serves a service's debug data. Each part is optional: an endpoint whose part is missing raises
    :class:`~micro.errors.NotSupported` (501).

    The objects are only read; their lifecycle belongs to whoever created them.
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


def mount(
    service: Service, *, log: Log | None = None, tracer: Tracer | None = None, stats: Stats | None = None
) -> Debug:
    """Serve :class:`Debug` on ``service``, with tracing and stats on every call it serves and makes.

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

    handler = Debug(log=log, tracer=tracer, stats=stats)
    service.handle(handler)
    service.wrap(trace_handler(tracer), stats_handler(stats))
    service.wrap_call(trace_call(tracer))
    service.hook("before_start", start)
    service.hook("after_stop", close)
    return handler
