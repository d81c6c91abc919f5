"""Scale: throughput and server memory with 1, 100 and 1,000 connections; callers; cost against payload size.

Connections: micro clients each with their own transport (one TCP connection
each), one caller per connection (64 callers sharing the single connection in
the first case), against the raw asyncio echo doing the same. Callers: 1, 8, 64 and 512 concurrent callers
sharing one connection (how the per-call cost grows with the calls in flight: more live objects,
more garbage collections). The server's peak
RSS is sampled while the load runs; the notes give what it grew by per connection and per call in
flight (peak minus idle, divided by the count). Payloads: ``{"data": "x" * size}`` echoed
by 16 callers over one connection, and 1 MB by 64 callers (many large replies queued on one
connection at once) on asyncio and on uvloop, in alternated rounds against the raw echo: medians
of calls/s, of the server's peak RSS and of both sides' CPU per MB.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics

from _harness import Context, Row, Worker, python, unavailable
from rpc import WORKER, _has_uvloop, measure

SYSTEMS = {"micro": "micro", "raw": "raw asyncio echo"}
PAYLOAD_SYSTEMS = {"micro": "micro", "raw": "raw asyncio echo", "grpc": "grpcio-aio"}
SIZES = {100: "100 B", 10_000: "10 KB", 1_000_000: "1 MB"}
CALLERS = (1, 8, 64, 512)
LARGE = 1_000_000
LARGE_GROUP = "payload 1 MB x 64"


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


async def _large_round(ctx: Context, kind: str, uvloop: bool, duration: float) -> dict[str, float]:
    """One run of 64 callers echoing 1 MB over one connection: rate, server peak RSS and both sides' CPU per MB."""
    flags = ["--uvloop"] if uvloop else []
    server = await Worker.start([python(), WORKER, "serve", kind, *flags], env=ctx.env, label=f"{kind} server")
    try:
        idle = server.rss_mib() or 0.0
        peak = [idle]
        sampler = asyncio.create_task(_peak_rss(server, peak))
        cpu = server.cpu_s() or 0.0
        try:
            result, _ = await measure(
                ctx, kind, callers=64, size=LARGE, duration=duration, warmup=0.3, server=server, uvloop=uvloop
            )
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        server_cpu = (server.cpu_s() or 0.0) - cpu
    finally:
        await server.stop()
    megabytes = max(result["all_calls"], 1) * LARGE * 2 / 1e6  # each call carries 1 MB each way
    return {
        "rate": result["rate"],
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "idle": idle,
        "peak": peak[0],
        "server_ms_mb": server_cpu * 1e3 / megabytes,
        "client_ms_mb": result["cpu_s"] * 1e3 / megabytes,
    }


async def large(ctx: Context, uvloop: bool, rounds: int, duration: float) -> list[Row]:
    """64 concurrent 1 MB calls on one connection, micro against the raw echo in alternated rounds; medians.

    Two rows per system: calls/s (group ``payload 1 MB x 64``) and the server's peak RSS (group ``... server
    RSS``), with the server's and the client's CPU per MB echoed in the notes, which hold under load where the
    rate does not.
    """
    suffix = " + uvloop" if uvloop else ""
    runs: dict[str, list[dict[str, float]]] = {kind: [] for kind in SYSTEMS}
    failed: dict[str, str] = {}
    for round_ in range(rounds):
        for kind in SYSTEMS:
            if kind in failed:
                continue
            ctx.log(f"  scale: {kind}, 1 MB payload, 64 callers{suffix}, round {round_ + 1}/{rounds}")
            try:
                runs[kind].append(await _large_round(ctx, kind, uvloop, duration))
            except Exception as exc:
                failed[kind] = f"{type(exc).__name__}: {exc}"
    rows: list[Row] = []
    medians = {kind: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for kind, rs in runs.items() if rs}
    for kind, label in SYSTEMS.items():
        name = label + suffix
        if kind not in medians:
            reason = failed.get(kind, "not measured")
            rows.append(unavailable(LARGE_GROUP, name, reason, "calls/s"))
            rows.append(unavailable(LARGE_GROUP + " server RSS", name, reason, "MiB"))
            continue
        m = medians[kind]
        cpu = f"server CPU {m['server_ms_mb']:.2f} ms/MB, client CPU {m['client_ms_mb']:.2f} ms/MB"
        rows.append(
            Row(
                LARGE_GROUP,
                name,
                m["rate"],
                "calls/s",
                p50_ms=m["p50_ms"],
                p99_ms=m["p99_ms"],
                note=f"median of {len(runs[kind])} alternated rounds; {m['rate'] * 2:.0f} MB/s echoed; {cpu}",
            )
        )
        rows.append(
            Row(
                LARGE_GROUP + " server RSS",
                name,
                m["peak"],
                "MiB",
                higher_is_better=False,
                note=f"peak, median of {len(runs[kind])}; idle {m['idle']:.0f} MiB; "
                + ", ".join(f"{r['peak']:.0f}" for r in runs[kind]),
            )
        )
    if "micro" in medians and "raw" in medians:
        micro, raw = medians["micro"], medians["raw"]
        rows[0].note += (
            f"; vs the raw echo: {micro['rate'] / raw['rate']:.2f}x calls/s, "
            f"{micro['server_ms_mb'] / raw['server_ms_mb']:.2f}x server CPU per MB"
        )
        rows[1].note += f"; {micro['peak'] / raw['peak']:.2f}x the raw echo's peak"
    return rows


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
    # Large messages under concurrency: many big replies queued on one connection at once, on both loops.
    for uvloop in (False, True) if _has_uvloop() else (False,):
        rows += await large(ctx, uvloop, rounds=ctx.pick(2, 3), duration=ctx.pick(1.0, 3.0))
    return rows
