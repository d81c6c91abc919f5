"""RPC round trip: micro's full call path against grpc.aio, aiohttp, a raw asyncio echo and nameko.

Each system runs its server in one process and 64 concurrent callers in
another (see ``rpc_worker.py``), so client and server each have a core of
this machine, as they would across two hosts. Systems are measured in
interleaved rounds and the best round of each is kept: a burst of load from
elsewhere on a shared machine then hurts one round, not one system.

Each round also reads the CPU time of both processes (all threads) over its
measured window, divided by the calls: group ``rpc cpu`` gives calls per
CPU-second of client and server together, and ``rpc server cpu`` of the server
alone, each the median over the rounds. On a loaded machine these move far
less than the rate, so the gRPC goals are read from them.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

import nameko_bench
from _harness import HERE, Context, Row, Worker, python, run_worker, unavailable

GROUP = "rpc"
CPU_GROUP = "rpc cpu"
SERVER_CPU_GROUP = "rpc server cpu"
#: The kinds whose CPU per call gets rows of its own (the gRPC goals' subjects and baseline).
CPU_KINDS = ("grpc", "grpc-typed", "micro-grpc", "micro-grpc-server", "micro", "raw")
WORKER = str(HERE / "rpc_worker.py")
KINDS = {
    "micro": "micro",
    "micro-nodebug": "micro (debug=False)",
    "raw": "raw asyncio echo",
    "grpc": "grpcio-aio",
    # Not a goal's baseline: the like-for-like service a grpcio user writes (protobuf messages, a deadline on
    # every call, the handler reading metadata and deadline), to show what "grpcio-aio"'s bytes echo leaves out.
    "grpc-typed": "grpcio-aio, typed",
    "aiohttp": "aiohttp",
    # asyncmicro-grpc's server with micro's grpc client, then with grpcio's bytes client (as "grpcio-aio" uses):
    # the second isolates the server's cost over the raw grpc.aio echo.
    "micro-grpc": "micro over gRPC",
    "micro-grpc-server": "micro gRPC server, grpcio client",
    # micro's service and client over MICRO_TRANSPORT=http, beside the aiohttp JSON POST row.
    "micro-http": "micro over the http transport",
    # MICRO_TRANSPORT=nats at both ends (asyncmicro-nats, the NATS server on 127.0.0.1:4222): every call
    # crosses the NATS server; the note compares it with the tcp transport's row ("micro").
    "micro-nats": "micro over the nats transport",
    # The observability plugins on the server, selected by name, against "micro" (the built-in memory tracer
    # and stats) and "micro (debug=False)" (neither): what each costs per call.
    "micro-otel": "micro + opentelemetry",
    "micro-otel-all": "micro + opentelemetry (every call sampled)",
    "micro-prometheus": "micro + prometheus",
    # The gateway ("micro-api" in rpc_worker.py) is measured by api_gateway.py, against "aiohttp" in CPU per call.
}


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


async def measure(
    ctx: Context,
    kind: str,
    *,
    uvloop: bool = False,
    callers: int = 64,
    connections: int = 1,
    size: int = 0,
    duration: float,
    warmup: float,
    server: Worker | None = None,
) -> tuple[dict[str, Any], float | None]:
    """One closed-loop run against a server of ``kind`` (started here unless given); returns (load, server RSS)."""
    flags = ["--uvloop"] if uvloop else []
    owned = server is None
    if server is None:
        server = await Worker.start([python(), WORKER, "serve", kind, *flags], env=ctx.env, label=f"{kind} server")
    try:
        argv = [
            python(), WORKER, "load", kind, server.address, *flags,
            "--callers", str(callers), "--connections", str(connections), "--size", str(size),
            "--duration", str(duration), "--warmup", str(warmup), "--server-pid", str(server.process.pid),
        ]  # fmt: skip
        result = await run_worker(argv, env=ctx.env, timeout=duration + warmup + 60)
        return result, server.rss_mib()
    finally:
        if owned:
            await server.stop()


async def run(ctx: Context) -> list[Row]:
    rounds = ctx.pick(1, 3)
    duration = ctx.pick(0.6, 3.0)
    warmup = ctx.pick(0.2, 0.5)
    # The quick run skips the uvloop rows to stay under a minute.
    loops = [False, True] if _has_uvloop() and not ctx.quick else [False]
    kinds = {k: v for k, v in KINDS.items() if not (ctx.quick and k in ("micro-nodebug", "micro-otel-all"))}
    best: dict[tuple[str, bool], dict[str, Any]] = {}
    cpu: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    failed: dict[tuple[str, bool], str] = {}
    for round_ in range(rounds):
        for uvloop in loops:
            for kind in kinds:
                key = (kind, uvloop)
                if key in failed:
                    continue
                ctx.log(f"  rpc round {round_ + 1}/{rounds}: {kind}{' + uvloop' if uvloop else ''}")
                try:
                    result, _ = await measure(ctx, kind, uvloop=uvloop, duration=duration, warmup=warmup)
                except Exception as exc:  # a baseline that cannot run is reported, not fatal
                    failed[key] = f"{type(exc).__name__}: {exc}"
                    continue
                if key not in best or result["rate"] > best[key]["rate"]:
                    best[key] = result
                if result.get("client_cpu_us") and result.get("server_cpu_us"):
                    cpu.setdefault(key, []).append((result["client_cpu_us"], result["server_cpu_us"]))
    rows: list[Row] = []
    for uvloop in loops:
        suffix = " + uvloop" if uvloop else ""
        for kind, label in kinds.items():
            key = (kind, uvloop)
            if key in failed:
                rows.append(unavailable(GROUP, label + suffix, failed[key], "calls/s"))
                continue
            result = best[key]
            rows.append(
                Row(
                    GROUP,
                    label + suffix,
                    result["rate"],
                    "calls/s",
                    p50_ms=result["p50_ms"],
                    p99_ms=result["p99_ms"],
                    note=f"best of {rounds}, {result['calls']} calls",
                )
            )
    rows += cpu_rows(kinds, loops, cpu, rounds)
    by_label = {row.name: row for row in rows if row.group == GROUP}
    for uvloop in loops:
        suffix = " + uvloop" if uvloop else ""
        nats, tcp = by_label.get(KINDS["micro-nats"] + suffix), by_label.get(KINDS["micro"] + suffix)
        if nats is not None and tcp is not None and nats.value and tcp.value:
            nats.note += f"; {nats.value / tcp.value:.2f}x the tcp transport"
        for group in (CPU_GROUP,):
            cpu_by = {row.name: row for row in rows if row.group == group}
            typed, micro = cpu_by.get(KINDS["grpc-typed"] + suffix), cpu_by.get(KINDS["micro-grpc"] + suffix)
            if typed is not None and micro is not None and typed.value and micro.value:
                micro.note += f"; {micro.value / typed.value:.2f}x grpcio-aio, typed"
    rows.append(await nameko_bench.run(ctx, GROUP, duration=ctx.pick(1.0, 5.0)))
    return rows


def cpu_rows(
    kinds: dict[str, str], loops: list[bool], cpu: dict[tuple[str, bool], list[tuple[float, float]]], rounds: int
) -> list[Row]:
    """Calls per CPU-second (client and server together; the server alone), the median of the rounds."""
    rows: list[Row] = []
    for uvloop in loops:
        suffix = " + uvloop" if uvloop else ""
        for kind in CPU_KINDS:
            samples = cpu.get((kind, uvloop))
            if kind not in kinds or not samples:
                continue
            client = statistics.median(c for c, _ in samples)
            server = statistics.median(s for _, s in samples)
            both = statistics.median(c + s for c, s in samples)
            note = (
                f"median of {len(samples)}/{rounds} rounds: client {client:.0f} µs, server {server:.0f} µs CPU per call"
            )
            label = kinds[kind] + suffix
            rows.append(Row(CPU_GROUP, label, 1e6 / both, "calls/CPU-s", note=note))
            rows.append(Row(SERVER_CPU_GROUP, label, 1e6 / server, "calls/CPU-s", note=note))
    return rows


if __name__ == "__main__":
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as scratch:
        for row in asyncio.run(run(Context(quick=True, scratch=Path(scratch), cache=Path(scratch)))):
            print(row)
