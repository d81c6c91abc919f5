"""Registry scaling: micro-consul with 10, 100 and 1,000 services of 3 nodes each in a real Consul agent.

For each size, in this process against the agent at ``$CONSUL_HTTP_ADDR`` (else
``127.0.0.1:8500``):

* **first lookup**: a fresh registry and selector, ``select`` of one service
  (it opens the selector's watch of every service and reads the service);
* **list_services**: the whole listing, best of three;
* **watch latency**: a watch of every service is running; one service gets a
  node more (then one less), and the time until the watcher reports it is
  taken, median of the changes (each after half a second of quiet); then the
  same for a check change (maintenance mode of one of its nodes, on and off);
* **idle selector CPU**: the process's CPU time, as a share of one core,
  while a client that made its first lookup idles (its selector's watch of
  every service open).

The services are registered 16 at a time under a name prefix of this run and
removed afterwards, whatever happened. Without an agent the rows are
``unavailable``.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from _harness import Context, Row, unavailable

GROUP = "registry consul"
NODES = 3
IN_FLIGHT = 16
#: Seconds of quiet before each timed change.
SETTLE = 0.5
T = TypeVar("T")


def _agent() -> str:
    address = os.environ.get("CONSUL_HTTP_ADDR") or "127.0.0.1:8500"
    return (address if "//" in address else f"http://{address}").rstrip("/")


def _agent_down() -> str | None:
    try:
        with urllib.request.urlopen(f"{_agent()}/v1/status/leader", timeout=2) as response:
            if response.read().strip() in (b"", b'""'):
                return "the Consul agent has no leader"
    except OSError as exc:
        return f"no Consul agent at {_agent()} ({exc})"
    try:
        import micro_consul  # noqa: F401
    except ImportError:
        return "micro-consul is not installed"
    return None


async def _bounded(call: Callable[[T], Awaitable[Any]], items: Iterable[T]) -> None:
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one(item: T) -> None:
        async with limit:
            await call(item)

    await asyncio.gather(*(one(item) for item in items))


async def _wait_for(watcher: Any, name: str, nodes: int, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        async for result in watcher:
            if result.service.name == name and len(result.service.nodes) == nodes:
                return


async def measure(ctx: Context, count: int) -> list[Row]:
    from micro.registry import Node, Service
    from micro.selector.cache import RandomSelector
    from micro_consul._tags import service_id
    from micro_consul.registry import ConsulRegistry

    label = f"{count:,} services"
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    services = [
        Service(f"{prefix}-{i:04d}", "1.0.0", nodes=[Node(f"n{j}", f"127.0.0.1:{20000 + j}") for j in range(NODES)])
        for i in range(count)
    ]
    target = services[count // 2]
    rows: list[Row] = []
    registry = ConsulRegistry()
    try:
        await _bounded(registry.register, services)

        # First lookup: what a client's first call pays (its selector's watch starts, the service is read).
        firsts = []
        for _ in range(ctx.pick(2, 3)):
            fresh = ConsulRegistry()
            selector = RandomSelector(registry=fresh)
            try:
                started = time.perf_counter()
                await selector.select(target.name)
                firsts.append(time.perf_counter() - started)
            finally:
                await selector.close()
                await fresh.close()
        rows.append(Row(GROUP, f"first lookup, {label}", min(firsts) * 1e3, "ms", higher_is_better=False))

        listings = []
        for _ in range(3):
            started = time.perf_counter()
            listed = await registry.list_services()
            listings.append(time.perf_counter() - started)
        ours = sum(1 for s in listed if s.name.startswith(prefix))
        rows.append(
            Row(GROUP, f"list_services, {label}", min(listings) * 1e3, "ms", False, note=f"{ours} of ours listed")
        )

        # Idle: a client between calls. Its selector follows every service with a watch.
        fresh = ConsulRegistry()
        selector = RandomSelector(registry=fresh)
        try:
            await selector.select(target.name)
            await asyncio.sleep(ctx.pick(0.5, 1.0))  # the watch's first read
            idle = ctx.pick(2.0, 5.0)
            started = time.process_time()
            await asyncio.sleep(idle)
            share = (time.process_time() - started) / idle * 100
            rows.append(Row(GROUP, f"idle selector CPU, {label}", share, "% of a core", False, note="its watch open"))
        finally:
            await selector.close()
            await fresh.close()

        watcher = registry.watch()
        try:
            await asyncio.wait_for(watcher.ready.wait(), 60)  # type: ignore[attr-defined]
            latencies = []
            extra = Node("n3", "127.0.0.1:20003")
            for _ in range(ctx.pick(2, 3)):
                for change, nodes in ((registry.register, NODES + 1), (registry.deregister, NODES)):
                    # The agent writes to the catalog again shortly after a change: let that settle first, so
                    # one change is timed, not a change queued behind the read of the previous one.
                    await asyncio.sleep(SETTLE)
                    started = time.perf_counter()
                    await change(target.replace(nodes=[extra]))
                    await _wait_for(watcher, target.name, nodes, 30)
                    latencies.append(time.perf_counter() - started)
            checks = []
            sid = service_id(target.name, target.version, target.nodes[0].id)
            for _ in range(ctx.pick(2, 3)):
                for flag, nodes in (("true", NODES - 1), ("false", NODES)):
                    await asyncio.sleep(SETTLE)
                    started = time.perf_counter()
                    await _put(f"/v1/agent/service/maintenance/{sid}?enable={flag}&reason=bench")
                    await _wait_for(watcher, target.name, nodes, 30)
                    checks.append(time.perf_counter() - started)
            rows.append(
                Row(
                    GROUP,
                    f"watch latency of a check, {label}",
                    statistics.median(checks) * 1e3,
                    "ms",
                    False,
                    note="maintenance mode of one node on and off to its report",
                )
            )
            rows.append(
                Row(
                    GROUP,
                    f"watch latency, {label}",
                    statistics.median(latencies) * 1e3,
                    "ms",
                    False,
                    note="register/deregister of one node to its report",
                )
            )
        finally:
            await watcher.stop()
    except Exception as exc:
        rows.append(unavailable(GROUP, f"{label}", f"{type(exc).__name__}: {exc}", "ms"))
    finally:
        await registry.close()
        await _remove(ctx, prefix)
    return rows


async def _put(path: str) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session, session.put(f"{_agent()}{path}") as response:
        await response.read()
        response.raise_for_status()


async def _remove(ctx: Context, prefix: str) -> None:
    """Deregister this run's services with plain HTTP, whatever state the registry is in."""
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=IN_FLIGHT)) as session:
        for _ in range(30):
            try:
                async with session.get(f"{_agent()}/v1/agent/services") as response:
                    found = await response.json()
                ids = [sid for sid, info in found.items() if str(info.get("Service", "")).startswith(prefix)]
                if not ids:
                    return

                async def remove(sid: str) -> None:
                    async with session.put(f"{_agent()}/v1/agent/service/deregister/{sid}") as response:
                        await response.read()

                await _bounded(remove, ids)
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(1)  # the agent limits connections per client address for a moment
    ctx.log(f"  could not remove every service named {prefix}-* from the agent")


async def run(ctx: Context) -> list[Row]:
    sizes = ctx.pick((10, 100), (10, 100, 1000))
    reason = _agent_down()
    if reason is not None:
        return [unavailable(GROUP, f"{n:,} services", reason, "ms") for n in sizes]
    rows: list[Row] = []
    for count in sizes:
        ctx.log(f"  {count} services")
        rows += await measure(ctx, count)
    return rows
