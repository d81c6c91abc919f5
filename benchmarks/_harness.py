"""What every benchmark shares: result rows, goals, the closed-loop load generator and worker processes.

A benchmark module exposes ``async def run(ctx: Context) -> list[Row]``. Rows of
one ``group`` are measured back to back in the same run, so their ratios hold
even when absolute numbers drift on a shared machine. Every loop is bounded by a
call count or a deadline, and every process started here is stopped (SIGTERM,
then SIGKILL) before the benchmark returns.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

__all__ = [
    "HERE",
    "ROOT",
    "Context",
    "Goal",
    "Load",
    "Row",
    "Worker",
    "closed_loop",
    "percentile",
    "run_worker",
    "unavailable",
]


@dataclass
class Row:
    """One measured system in a group: ``value`` in ``unit``, plus latency where it applies."""

    group: str
    name: str
    value: float | None = None
    unit: str = "ops/s"
    #: Whether a larger ``value`` is better (throughput) or a smaller one (a duration).
    higher_is_better: bool = True
    p50_ms: float | None = None
    p99_ms: float | None = None
    note: str = ""
    #: Why the system could not be measured; ``value`` is ``None`` then.
    unavailable: str | None = None

    @property
    def key(self) -> str:
        return f"{self.group}/{self.name}"


def unavailable(group: str, name: str, reason: str, unit: str = "ops/s") -> Row:
    """A row for a system that could not be measured in this run, with the reason."""
    first = reason.strip().splitlines()[0] if reason.strip() else "unknown reason"
    return Row(group, name, None, unit, unavailable=first[:160])


@dataclass(frozen=True)
class Goal:
    """A figure to reach: ``subject / baseline >= ratio`` (or ``<= max_ratio``; rows of one group), or ``subject``
    under ``limit``."""

    group: str
    subject: str
    baseline: str | None = None
    ratio: float | None = None
    limit: float | None = None
    #: ``subject / baseline <= max_ratio`` instead (rows where less is better: memory, CPU).
    max_ratio: float | None = None

    def label(self) -> str:
        if self.baseline is not None:
            return f"{self.group}: {self.subject} vs {self.baseline}"
        return f"{self.group}: {self.subject}"


@dataclass
class Context:
    """Settings of one run, handed to every benchmark."""

    quick: bool
    #: Scratch directory of this run (XDG_* point here, so micro's per-user state is private to it).
    scratch: Path
    #: Where slow-to-build things (the nameko venv) are kept between runs.
    cache: Path
    log: Callable[[str], None] = print
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))

    def pick(self, quick: Any, full: Any) -> Any:
        return quick if self.quick else full


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values, nearest-rank."""
    if not sorted_values:
        return math.nan
    index = min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[index]


@dataclass
class Load:
    """What a closed loop measured: calls per second over the measured window and latency quantiles."""

    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    #: CPU seconds (all threads) per call over the measured window, of this process and of the server process
    #: named by ``server_pid`` (``None`` when not measured). Less disturbed by other load than the rate.
    client_cpu_us: float | None = None
    server_cpu_us: float | None = None

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "calls": self.calls,
            "seconds": self.seconds,
            "rate": self.rate,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "errors": self.errors,
            "client_cpu_us": self.client_cpu_us,
            "server_cpu_us": self.server_cpu_us,
        }


async def closed_loop(
    calls: Sequence[Callable[[], Awaitable[Any]]],
    *,
    duration: float,
    warmup: float,
    max_errors: int = 10,
    server_pid: int | None = None,
) -> Load:
    """Run one caller per entry of ``calls``, each awaiting its call back to back, for ``warmup + duration`` s.

    Only calls that start after the warm-up are counted and timed, so the rate
    is steady-state throughput at this concurrency. A call that raises counts
    as an error; more than ``max_errors`` errors stop the loop and re-raise the
    last one, so a broken system fails loudly instead of looking fast.
    """
    clock = time.perf_counter
    begin = clock()
    measure_from = begin + warmup
    end = measure_from + duration
    latencies: list[float] = []
    record = latencies.append
    errors: list[BaseException] = []
    done = [0]
    marks: list[tuple[int, float, float | None]] = []

    def mark() -> None:
        marks.append((done[0], time.process_time(), _cpu_seconds(server_pid)))

    loop = asyncio.get_running_loop()
    loop.call_later(warmup, mark)
    loop.call_later(warmup + duration, mark)

    async def caller(call: Callable[[], Awaitable[Any]]) -> None:
        while True:
            started = clock()
            if started >= end:
                return
            try:
                await call()
            except Exception as exc:
                errors.append(exc)
                if len(errors) > max_errors:
                    raise
                continue
            done[0] += 1
            if started >= measure_from:
                record(clock() - started)

    await asyncio.gather(*(caller(call) for call in calls))
    latencies.sort()
    client_cpu = server_cpu = None
    if len(marks) == 2 and marks[1][0] > marks[0][0]:
        (calls0, cpu0, server0), (calls1, cpu1, server1) = marks
        client_cpu = (cpu1 - cpu0) / (calls1 - calls0) * 1e6
        if server0 is not None and server1 is not None:
            server_cpu = (server1 - server0) / (calls1 - calls0) * 1e6
    # Callers finish the call in flight at ``end``: the window is until the last one returned.
    seconds = max(clock(), end) - measure_from
    return Load(
        calls=len(latencies),
        seconds=seconds,
        p50_ms=percentile(latencies, 0.50) * 1e3,
        p99_ms=percentile(latencies, 0.99) * 1e3,
        errors=len(errors),
        client_cpu_us=client_cpu,
        server_cpu_us=server_cpu,
    )


def _cpu_seconds(pid: int | None) -> float | None:
    """User plus system CPU seconds of process ``pid`` so far, all its threads (``None`` if unreadable)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    # Fields 14 and 15 of stat(5), utime and stime in clock ticks; the split starts at field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Worker:
    """A benchmark process that prints ``READY <address>`` once it serves, and runs until SIGTERM."""

    def __init__(self, process: asyncio.subprocess.Process, label: str) -> None:
        self.process = process
        self.label = label
        self.address = ""

    @classmethod
    async def start(
        cls, argv: Sequence[str], *, env: dict[str, str] | None = None, timeout: float = 30.0, label: str = ""
    ) -> Worker:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        worker = cls(process, label or " ".join(argv[-3:]))
        try:
            worker.address = await worker._ready(timeout)
        except BaseException:
            await worker.stop()
            raise
        return worker

    async def _ready(self, timeout: float) -> str:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        seen: list[str] = []
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                raw = await asyncio.wait_for(self.process.stdout.readline(), remaining)
            except TimeoutError:
                break
            if not raw:
                raise RuntimeError(f"{self.label} exited before READY: {await self._stderr()}")
            line = raw.decode().strip()
            if line.startswith("READY"):
                return line.removeprefix("READY").strip()
            seen.append(line)
        raise RuntimeError(f"{self.label}: no READY within {timeout}s (saw {seen[-3:]})")

    async def _stderr(self) -> str:
        assert self.process.stderr is not None
        try:
            data = await asyncio.wait_for(self.process.stderr.read(), 5)
        except TimeoutError:
            return "<no stderr>"
        lines = data.decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "<no stderr>"

    def rss_mib(self) -> float | None:
        """The worker's resident memory, in MiB (``None`` if psutil is missing or the process is gone)."""
        try:
            import psutil
        except ImportError:
            return None
        try:
            return float(psutil.Process(self.process.pid).memory_info().rss) / 2**20
        except psutil.Error:
            return None

    def cpu_s(self) -> float | None:
        """The worker's CPU time so far (user and system), in seconds (``None`` like :meth:`rss_mib`)."""
        try:
            import psutil
        except ImportError:
            return None
        try:
            times = psutil.Process(self.process.pid).cpu_times()
        except psutil.Error:
            return None
        return float(times.user + times.system)

    async def stop(self) -> None:
        if self.process.returncode is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                await self.process.wait()


async def run_worker(argv: Sequence[str], *, timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a process that prints one JSON object as its last stdout line, and return that object.

    The process is killed after ``timeout`` seconds; a non-zero exit raises
    ``RuntimeError`` with the last line of its stderr.
    """
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await process.wait()
        raise RuntimeError(f"timed out after {timeout:.0f}s") from None
    lines = out.decode(errors="replace").strip().splitlines()
    if process.returncode != 0 or not lines:
        tail = err.decode(errors="replace").strip().splitlines()
        raise RuntimeError(tail[-1] if tail else f"exit status {process.returncode}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def python() -> str:
    return sys.executable
