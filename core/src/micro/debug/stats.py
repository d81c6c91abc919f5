"""Runtime statistics of a service: uptime, memory, threads, GC, request and error counts.

:class:`MemoryStats` (``MICRO_STATS=memory``, the default) counts what
:meth:`Stats.record` is told and, while started, takes a :class:`Stat`
snapshot every ``interval`` seconds into a ring of ``size`` (60 by default,
as in Go Micro).
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
import gc
import os
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..component import Component
from ..errors import BadRequest, InvalidOption
from ..options import Options
from .middleware import Middleware

__all__ = ["MemoryStats", "Stat", "Stats", "StatsOptions", "rss_bytes"]


@dataclass(frozen=True, slots=True)
class Stat:
    """One snapshot. Every field is JSON-able."""

    #: When it was taken, seconds since the epoch.
    timestamp: float
    #: When the stats started counting, seconds since the epoch.
    started: float
    #: Seconds since ``started``.
    uptime: float
    #: Resident set size in bytes (0 where the platform does not say).
    memory: int
    #: Live Python threads.
    threads: int
    #: Collections so far, per GC generation.
    gc: tuple[int, ...]
    #: Requests recorded so far.
    requests: int
    #: Of those, how many failed.
    errors: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp,
            "started": self.started,
            "uptime": self.uptime,
            "memory": self.memory,
            "threads": self.threads,
            "gc": list(self.gc),
            "requests": self.requests,
            "errors": self.errors,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Stat:
        """The inverse of :meth:`to_dict`; raises :class:`BadRequest` if malformed."""
        try:
            return cls(
                timestamp=float(data["timestamp"]),
                started=float(data["started"]),
                uptime=float(data["uptime"]),
                memory=int(data["memory"]),
                threads=int(data["threads"]),
                gc=tuple(int(n) for n in data["gc"]),
                requests=int(data["requests"]),
                errors=int(data["errors"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"not a stat: {exc!r}") from None


def rss_bytes() -> int:
    """This process's resident set size: ``/proc/self/statm`` on Linux, peak RSS elsewhere, else 0."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


@dataclass(frozen=True, kw_only=True, slots=True)
class StatsOptions(Options):
    """Options of the stats (``MICRO_STATS_<OPTION>``)."""

    #: How many snapshots the ring keeps.
    size: int = 60
    #: Seconds between snapshots while started.
    interval: float = 5.0

    def __post_init__(self) -> None:
        if self.size < 1:
            raise InvalidOption(f"must be at least 1, got {self.size}", option="size")
        if not self.interval > 0:
            raise InvalidOption(f"must be positive, got {self.interval}", option="interval")


class Stats(Component, abc.ABC):
    """Counts requests and errors and keeps snapshots of the process's vital signs."""

    options: StatsOptions
    interface: ClassVar[str] = "stats"
    options_type: ClassVar[type[StatsOptions]] = StatsOptions

    @abc.abstractmethod
    async def read(self) -> list[Stat]:
        """Stored snapshots, oldest first, then one taken now (so the list is never empty)."""

    @abc.abstractmethod
    def write(self, stat: Stat) -> None:
        """Store a snapshot. Thread-safe; never blocks."""

    @abc.abstractmethod
    def record(self, error: BaseException | None = None) -> None:
        """Count one request, and one error if ``error`` is given. Thread-safe; never blocks."""

    def middleware(self, service: str) -> Middleware | None:
        """The wrappers that count the calls and messages of service ``service``; ``None`` (the default) for
        the built-in :func:`~micro.debug.wrappers.stats_handler`, which calls :meth:`record`.

        :func:`micro.debug.handler.mount` calls it once, before the service starts. A backend with labelled
        metrics returns its own :class:`~micro.debug.middleware.Middleware` (and should still call
        :meth:`record` from its handler wrapper, so ``Debug.stats`` keeps counting).
        """
        return None


class MemoryStats(Stats):
    """Counters and a ring of snapshots in memory.

    The clock (``started``) and the counters begin when the object is built,
    so nothing recorded before :meth:`start` is lost; :meth:`start` only adds
    the periodic snapshots, and :meth:`close` stops them.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: StatsOptions | None = None) -> None:
        super().__init__(options)
        self.started = time.time()
        self._clock = time.monotonic()
        self._requests = 0
        self._errors = 0
        self._lock = threading.Lock()
        self._ring: collections.deque[Stat] = collections.deque(maxlen=self.options.size)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="micro-stats-snapshots")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.options.interval)
            self.write(self.snapshot())

    def snapshot(self) -> Stat:
        """A :class:`Stat` of this moment (not stored)."""
        with self._lock:
            requests, errors = self._requests, self._errors
        return Stat(
            timestamp=time.time(),
            started=self.started,
            uptime=time.monotonic() - self._clock,
            memory=rss_bytes(),
            threads=threading.active_count(),
            gc=tuple(generation["collections"] for generation in gc.get_stats()),
            requests=requests,
            errors=errors,
        )

    def record(self, error: BaseException | None = None) -> None:
        with self._lock:
            self._requests += 1
            if error is not None:
                self._errors += 1

    def write(self, stat: Stat) -> None:
        with self._lock:
            self._ring.append(stat)

    async def read(self) -> list[Stat]:
        with self._lock:
            stored = list(self._ring)
        return [*stored, self.snapshot()]
