"""Scale: throughput and server memory with 1, 100 and 1,000 connections; callers; cost against payload size.

Connections: micro clients each with their own transport (one TCP connection
each), one caller per connection (64 callers sharing the single connection in
the first case), against the raw asyncio echo doing the same. Callers: 1, 8, 64 and 512 concurrent callers
sharing one connection (how the per-call cost grows with the calls in flight: more live objects,
more garbage collections). The server's peak
RSS is sampled while the load runs; the notes give what it grew by per connection and per call in
flight (peak minus idle, divided by the count). Payloads: ``{"data": "x" * size}`` echoed
by 16 callers over one connection, and 1 MB by 64 callers (many large replies queued on one
connection at once; also on uvloop), with the server RSS sampled too.
"""

from __future__ import annotations

import asyncio
import contextlib

from _harness import Context, Row, Worker, python, unavailable
from rpc import WORKER, _has_uvloop, measure

SYSTEMS = {"micro": "micro", "raw": "raw asyncio echo"}
PAYLOAD_SYSTEMS = {"micro": "micro", "raw": "raw asyncio echo", "grpc": "grpcio-aio"}
SIZES = {100: "100 B", 10_000: "10 KB", 1_000_000: "1 MB"}
CALLERS = (1, 8, 64, 512)


async def _peak_rss(server: Worker, peak: list[float]) -> None:
    while True:
        rss = server.rss_mib()
        if rss is not None and rss > peak[0]:
            peak[0] = rss
        await asyncio.sleep(0.1)


async def connections(ctx: Context, kind: str, count: int, duration: float) -> Row:
    group = f"scale {count} conn"
    server = await Worker.start([python(), WORKER, "serve", kind], env=ctx.env, label=f"{kind} server")
    try:
        idle = server.rss_mib() or 0.0
        peak = [idle]
        sampler = asyncio.create_task(_peak_rss(server, peak))
        try:
            result, _ = await measure(
                ctx, kind, callers=max(count, 64), connections=count, duration=duration, warmup=0.5, server=server
            )
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
    except Exception as exc:
        return unavailable(group, SYSTEMS[kind], f"{type(exc).__name__}: {exc}", "calls/s")
    finally:
        await server.stop()
    return Row(
        group,
        SYSTEMS[kind],
        result["rate"],
        "calls/s",
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        note=f"server RSS {idle:.0f} MiB idle, {peak[0]:.0f} MiB peak"
        + (f", {_per(peak[0] - idle, count)} per connection" if count > 1 else ""),
    )


def _per(mib: float, count: int) -> str:
    return f"{max(mib, 0.0) * 1024 / count:.1f} KiB"


async def callers(ctx: Context, kind: str, count: int, duration: float, base: list[float]) -> Row:
    """``count`` concurrent callers over one connection, small messages.

    ``base`` holds the server's peak RSS with one caller once measured (the first count run): the
    growth per call in flight is taken over it, so what warming up costs is not counted.
    """
    group = f"scale {count} caller{'s' if count != 1 else ''}"
    server = await Worker.start([python(), WORKER, "serve", kind], env=ctx.env, label=f"{kind} server")
    try:
        idle = server.rss_mib() or 0.0
        peak = [idle]
        sampler = asyncio.create_task(_peak_rss(server, peak))
        try:
            result, _ = await measure(
                ctx, kind, callers=count, connections=1, duration=duration, warmup=0.3, server=server
            )
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
    except Exception as exc:
        return unavailable(group, SYSTEMS[kind], f"{type(exc).__name__}: {exc}", "calls/s")
    finally:
        await server.stop()
    note = f"1 connection, server RSS {idle:.0f} MiB idle, {peak[0]:.0f} MiB peak"
    if not base:
        base.append(peak[0])
    elif count > 1:
        note += f", {_per(peak[0] - base[0], count - 1)} per call in flight over 1 caller"
    return Row(
        group,
        SYSTEMS[kind],
        result["rate"],
        "calls/s",
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        note=note,
    )


async def payload(ctx: Context, kind: str, size: int, duration: float, callers: int = 16, uvloop: bool = False) -> Row:
    group = f"payload {SIZES[size]}" + (f" x {callers}" if callers != 16 else "")
    flags = ["--uvloop"] if uvloop else []
    label = PAYLOAD_SYSTEMS[kind] + (" + uvloop" if uvloop else "")
    server = await Worker.start([python(), WORKER, "serve", kind, *flags], env=ctx.env, label=f"{kind} server")
    try:
        idle = server.rss_mib() or 0.0
        peak = [idle]
        sampler = asyncio.create_task(_peak_rss(server, peak))
        try:
            result, _ = await measure(
                ctx, kind, callers=callers, size=size, duration=duration, warmup=0.3, server=server, uvloop=uvloop
            )
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
    except Exception as exc:
        return unavailable(group, label, f"{type(exc).__name__}: {exc}", "calls/s")
    finally:
        await server.stop()
    mib_s = result["rate"] * size * 2 / 2**20  # request and response
    return Row(
        group,
        label,
        result["rate"],
        "calls/s",
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        note=f"{mib_s:.1f} MiB/s echoed, server RSS {idle:.0f} MiB idle, {peak[0]:.0f} MiB peak",
    )


async def run(ctx: Context) -> list[Row]:
    duration = ctx.pick(0.6, 3.0)
    rows: list[Row] = []
    # The quick run keeps the hardest case of each.
    for count in ctx.pick((1000,), (1, 100, 1000)):
        for kind in SYSTEMS:
            ctx.log(f"  scale: {kind}, {count} connections")
            rows.append(await connections(ctx, kind, count, duration))
    bases: dict[str, list[float]] = {kind: [] for kind in SYSTEMS}
    for count in ctx.pick((1, 512), CALLERS):
        for kind in SYSTEMS:
            ctx.log(f"  scale: {kind}, {count} callers on one connection")
            rows.append(await callers(ctx, kind, count, duration, bases[kind]))
    for size in ctx.pick((1_000_000,), tuple(SIZES)):
        for kind in ctx.pick(SYSTEMS, PAYLOAD_SYSTEMS):
            ctx.log(f"  scale: {kind}, {SIZES[size]} payload")
            rows.append(await payload(ctx, kind, size, duration))
    # Large messages under concurrency: many big replies queued on one connection at once.
    for uvloop in (False, True) if _has_uvloop() else (False,):
        for kind in SYSTEMS:
            ctx.log(f"  scale: {kind}, 1 MB payload, 64 callers{' + uvloop' if uvloop else ''}")
            rows.append(await payload(ctx, kind, 1_000_000, duration, callers=64, uvloop=uvloop))
    return rows
