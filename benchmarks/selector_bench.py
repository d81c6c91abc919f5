"""Selector: the cost of one ``select`` with a warm cache, and proof that a call does no registry round trip.

The registry here is a :class:`~micro.registry.memory.MemoryRegistry` that
counts the reads (``get_service``, ``list_services``) made of it. The proof
runs real RPCs in this process (server, client and selector wired to that
registry over the tcp transport) and reports the reads per call after the
first: the warm path must make none.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from _harness import Context, Row

GROUP = "selector"


def counting_registry() -> Any:
    from micro.registry.base import Service
    from micro.registry.memory import MemoryRegistry

    class CountingRegistry(MemoryRegistry):
        """A memory registry that counts the reads made of it."""

        reads = 0

        async def get_service(self, name: str) -> list[Service]:
            self.reads += 1
            return await super().get_service(name)

        async def list_services(self) -> list[Service]:
            self.reads += 1
            return await super().list_services()

    return CountingRegistry()


async def select_cost(n: int, repeats: int) -> tuple[float, float, int]:
    """(µs per warm ``select``, µs per ``select`` plus picking a node, registry reads while timing)."""
    from micro.registry.base import Node, Service
    from micro.selector.cache import RandomSelector

    registry = counting_registry()
    await registry.start()
    nodes = [Node(f"n{i}", f"127.0.0.1:{9000 + i}") for i in range(3)]
    await registry.register(Service("bench-svc", "1.0", nodes=nodes))
    selector = RandomSelector(registry=registry)
    await selector.start()
    try:
        await selector.select("bench-svc")  # warm the cache
        before = registry.reads
        select = selector.select
        best_select = best_pick = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(n):
                await select("bench-svc")
            best_select = min(best_select, (time.perf_counter() - start) / n)
            start = time.perf_counter()
            for _ in range(n):
                (await select("bench-svc"))()
            best_pick = min(best_pick, (time.perf_counter() - start) / n)
        return best_select * 1e6, best_pick * 1e6, registry.reads - before
    finally:
        await selector.close()
        await registry.close()


class Echo:
    async def echo(self, req: dict[str, Any]) -> dict[str, Any]:
        return req


async def reads_per_call(calls: int) -> tuple[int, int]:
    """(registry reads during ``calls`` RPCs after the first one, calls made) through a real client and server."""
    import micro

    registry = counting_registry()
    name = f"bench-sel-{uuid.uuid4().hex[:6]}"
    service = micro.Service(name, registry=registry, address="127.0.0.1:0", handle_signals=False)
    service.handle(Echo())
    async with service:
        client = service.client
        await client.call(name, "Echo.echo", {"n": 0})
        before = registry.reads
        for i in range(calls):
            reply = await client.call(name, "Echo.echo", {"n": i})
            if reply != {"n": i}:
                raise AssertionError(f"bad reply {reply!r}")
        return registry.reads - before, calls


async def run(ctx: Context) -> list[Row]:
    n = ctx.pick(20_000, 100_000)
    ctx.log("  selector: warm select")
    per_select, per_pick, reads_timing = await select_cost(n, ctx.pick(3, 5))
    ctx.log("  selector: registry reads per call")
    reads, calls = await reads_per_call(ctx.pick(200, 1000))
    return [
        Row(GROUP, "warm select", per_select, "µs", higher_is_better=False,
            note=f"best of runs of {n}; {reads_timing} registry reads while timing"),
        Row(GROUP, "warm select + pick node", per_pick, "µs", higher_is_better=False),
        Row(GROUP, "registry reads per call", reads / calls, "reads", higher_is_better=False,
            note=f"{reads} reads in {calls} RPCs after the first (counting registry)"),
    ]  # fmt: skip
