"""CPU cost of one RPC, client and server in one process, and where it goes.

    python benchmarks/profile_rpc.py                  # CPU µs per call: micro, micro (debug=False), raw echo
    python benchmarks/profile_rpc.py --profile micro  # the same with pyinstrument, printed as a call tree

Throughput on a shared machine moves with whatever else runs; the CPU time a
call costs (``time.process_time``, both sides together) hardly does, so this
is the figure to optimise against. Calls go over the real tcp transport on
loopback, 64 at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rpc_worker import SMALL, Bench, RawClient, RawServer, Small

Call = Callable[[], Awaitable[Any]]


async def micro_calls(debug: bool) -> tuple[Call, Callable[[], Awaitable[None]]]:
    import micro
    from micro.registry.memory import MemoryRegistry

    name = f"bench-{uuid.uuid4().hex[:6]}"
    registry = MemoryRegistry()
    server = micro.Service(name, registry=registry, handle_signals=False, debug=debug)
    server.handle(Bench())
    await server.start()
    # A client of its own, as a caller in another process would have (its own transport and selector).
    caller = micro.Service(f"{name}-caller", registry=registry, handle_signals=False, debug=False)
    client = caller.client
    await client.start()
    request = Small(**SMALL)

    async def call() -> None:
        await client.call(name, "Bench.echo", request, response_type=Small)

    async def close() -> None:
        await client.close()
        await caller.transport.close()
        await server.stop()

    return call, close


async def raw_calls() -> tuple[Call, Callable[[], Awaitable[None]]]:
    import json

    loop = asyncio.get_running_loop()
    server = await loop.create_server(RawServer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    _, client = await loop.create_connection(RawClient, "127.0.0.1", port)
    payload = json.dumps(SMALL).encode()

    async def call() -> None:
        await client.call(payload)

    async def close() -> None:
        client.transport.close()
        server.close()

    return call, close


async def cost(kind: str, calls: int, callers: int = 64) -> float:
    """CPU µs per call (client and server together) over ``calls`` calls from ``callers`` tasks."""
    call, close = await (raw_calls() if kind == "raw" else micro_calls(debug=kind != "micro-nodebug"))
    try:
        for _ in range(200):
            await call()
        remaining = calls

        async def caller() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await call()

        start = time.process_time()
        await asyncio.gather(*(caller() for _ in range(callers)))
        return (time.process_time() - start) / calls * 1e6
    finally:
        await close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3, help="rounds; the best of each kind is printed")
    parser.add_argument("--profile", choices=("micro", "micro-nodebug"), help="print a pyinstrument profile")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="micro-profile-")
    os.environ["XDG_RUNTIME_DIR"] = scratch
    run: Callable[[Any], Any] = asyncio.run
    if args.uvloop:
        import uvloop

        run = uvloop.run
    if args.profile:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="disabled")
        profiler.start()
        per_call = run(cost(args.profile, args.calls))
        profiler.stop()
        print(profiler.output_text(unicode=True, color=False, show_all=False))
        print(f"{args.profile}: {per_call:.1f} CPU µs per call (profiled)")
        return
    best: dict[str, float] = {}
    for _ in range(args.repeat):  # interleaved rounds: a burst of load elsewhere hurts one round, not one kind
        for kind in ("raw", "micro-nodebug", "micro"):
            best[kind] = min(best.get(kind, float("inf")), run(cost(kind, args.calls)))
    for kind, per_call in best.items():
        print(f"{kind:>14}: {per_call:7.1f} CPU µs per call (best of {args.repeat})")


if __name__ == "__main__":
    main()
