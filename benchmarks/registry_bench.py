"""Registry scaling: the ``local`` registry (one SQLite file per user) at 10, 100 and 1,000 services.

For each size the file is filled with that many services of one node each
(ttl 30 s), and a separate process keeps every node alive the way servers do,
re-registering each one every 10 s, spread evenly. While it runs:

* **first lookup**: a new client (a fresh registry and selector) selects one
  service: what the first call of a new process pays.
* **watch latency**: a node registered by another connection, until a watcher
  in this process reports it (median of several). Each change is made right after
  the previous one was reported, so just after a poll: this is the worst case, about
  one ``poll_interval``.
* **idle CPU per watching client**: a process whose watcher has nothing to
  report, only the heartbeats going on, as a percentage of one core.
* **heartbeat cost**: the time one re-registration takes in the heartbeating
  process (mean).

Run alone with ``python benchmarks/run.py --only registry``.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

from _harness import HERE, Context, Row

GROUP = "registry local"
PERIOD = 10.0  # seconds between two refreshes of one node, as a server with register_interval=10s
TTL = 30.0

HEARTBEAT = """
import asyncio, json, sys, time
from micro.registry import LocalRegistryOptions
from micro.registry.local import LocalRegistry
from registry_bench import service

async def main(path, prefix, count, period, duration):
    registry = LocalRegistry(LocalRegistryOptions(path=path))
    await registry.start()
    services = [service(prefix, i) for i in range(count)]
    gap = period / count
    spent = cpu = 0.0
    beats = 0
    start = time.monotonic()
    print("ready", flush=True)
    while time.monotonic() - start < duration:
        refreshed = services[beats % count]
        t0, c0 = time.perf_counter(), time.process_time()
        await registry.register(refreshed, ttl=30.0)
        spent += time.perf_counter() - t0
        cpu += time.process_time() - c0
        beats += 1
        if beats % max(1, count // 10) == 0:  # stats so far: the process is stopped, not asked to finish
            print(json.dumps({"beats": beats, "ms": spent / beats * 1e3, "cpu_ms": cpu / beats * 1e3}), flush=True)
        await asyncio.sleep(max(0.0, start + beats * gap - time.monotonic()))
    await registry.close()

asyncio.run(main(*sys.argv[1:3], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])))
"""


def service(prefix: str, i: int) -> Any:
    """Service ``i``: one node, four endpoints and some metadata, about what a small real service registers."""
    from micro.registry import Endpoint, Node, Service, Value

    request = Value("Request", "Request", [Value("name", "string"), Value("count", "int")])
    response = Value("Response", "Response", [Value("message", "string")])
    return Service(
        f"{prefix}-{i}",
        "1.0",
        metadata={"team": "bench", "region": "local"},
        endpoints=[Endpoint(f"Handler.Method{e}", request, response) for e in range(4)],
        nodes=[Node(f"n{i}", f"127.0.0.1:{10000 + i}", {"transport": "tcp", "protocol": "mucp"})],
    )


async def fill(path: str, prefix: str, count: int) -> None:
    from micro.registry import LocalRegistryOptions
    from micro.registry.local import LocalRegistry

    async with LocalRegistry(LocalRegistryOptions(path=path)) as registry:
        for i in range(count):
            await registry.register(service(prefix, i), ttl=TTL)


async def first_lookup(path: str, name: str, repeats: int) -> float:
    """Median ms of a fresh client's first ``select`` of ``name``."""
    from micro.registry import LocalRegistryOptions
    from micro.registry.local import LocalRegistry
    from micro.selector.cache import RandomSelector

    times = []
    for _ in range(repeats):
        registry = LocalRegistry(LocalRegistryOptions(path=path))
        selector = RandomSelector(registry=registry)
        try:
            start = time.perf_counter()
            (await selector.select(name))()
            times.append((time.perf_counter() - start) * 1e3)
        finally:
            await selector.close()
            await registry.close()
    return statistics.median(times)


async def watching(path: str, prefix: str, idle: float, changes: int) -> tuple[float, float]:
    """(% of a core used by an idle watching client over ``idle`` s, median ms for one change to reach it)."""
    from micro.registry import LocalRegistryOptions, Node, Service
    from micro.registry.local import LocalRegistry

    async with (
        LocalRegistry(LocalRegistryOptions(path=path)) as client,
        LocalRegistry(LocalRegistryOptions(path=path)) as writer,
    ):
        await writer.start()
        watcher = client.watch()
        await asyncio.sleep(1.0)  # let the watcher settle (baseline read) before measuring
        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.sleep(idle)
        percent = (time.process_time() - cpu) / (time.perf_counter() - wall) * 100
        latencies = []
        for i in range(changes):
            service = Service(f"{prefix}-new-{i}", "1.0", nodes=[Node("x", "127.0.0.1:1")])
            start = time.perf_counter()
            await writer.register(service, ttl=TTL)
            while True:
                result = await asyncio.wait_for(anext(watcher), 10)
                if result.service.name == service.name:
                    break
            latencies.append((time.perf_counter() - start) * 1e3)
        await watcher.stop()
    return percent, statistics.median(latencies)


async def measure(ctx: Context, count: int) -> list[Row]:
    path = str(ctx.scratch / f"registry-bench-{count}-{uuid.uuid4().hex[:6]}.db")
    prefix = f"bench-{uuid.uuid4().hex[:6]}"
    await fill(path, prefix, count)
    idle = ctx.pick(2.0, 5.0)
    duration = idle + 30.0
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        textwrap.dedent(HEARTBEAT),
        path,
        prefix,
        str(count),
        str(PERIOD),
        str(duration),
        stdout=asyncio.subprocess.PIPE,
        env=dict(ctx.env, PYTHONPATH=os.pathsep.join(filter(None, [str(HERE), ctx.env.get("PYTHONPATH")]))),
    )
    try:
        assert proc.stdout is not None
        await asyncio.wait_for(proc.stdout.readline(), 30)
        lookup = await first_lookup(path, f"{prefix}-{count // 2}", 5)
        percent, latency = await watching(path, prefix, idle, 5)
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
        out = await proc.stdout.read()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    beat: dict[str, Any] = {}
    for line in out.decode().splitlines():
        if line.startswith("{"):
            beat = json.loads(line)
    label = f"{count:,} services"
    rows = [
        Row(GROUP, f"first lookup, {label}", lookup, "ms", higher_is_better=False, note="median of 5 new clients"),
        Row(GROUP, f"watch latency, {label}", latency, "ms", higher_is_better=False, note="median of 5 changes"),
        Row(GROUP, f"idle watcher CPU, {label}", percent, "% core", higher_is_better=False,
            note=f"over {idle:.0f} s, {count / PERIOD:.0f} heartbeats/s elsewhere"),
    ]  # fmt: skip
    if beat:
        rows.append(
            Row(GROUP, f"heartbeat, {label}", beat["ms"], "ms", higher_is_better=False,
                note=f"{beat['cpu_ms']:.2f} ms CPU each, {beat['beats']} refreshes")
        )  # fmt: skip
    return rows


async def run(ctx: Context) -> list[Row]:
    rows: list[Row] = []
    for count in (10, 100, 1000):
        ctx.log(f"  registry: local, {count} services")
        rows += await measure(ctx, count)
    return rows


if __name__ == "__main__":
    import tempfile

    async def main() -> None:
        with tempfile.TemporaryDirectory() as scratch:
            ctx = Context(quick="--quick" in sys.argv, scratch=Path(scratch), cache=Path(scratch))
            for row in await run(ctx):
                print(f"{row.name:40} {row.value:10.3f} {row.unit:7} {row.note}")

    asyncio.run(main())
