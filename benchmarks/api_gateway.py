"""``micro api`` (asyncmicro-api) against aiohttp's JSON echo: CPU per call in the HTTP server process.

A call through the gateway is an HTTP request to the gateway process, which calls the micro service
(a process of its own) and answers; the baseline is aiohttp's server answering the same request
itself. Both are driven by the same load process (aiohttp's client, 64 callers, the same JSON body,
``rpc_worker.py``), in alternated rounds, each server started once.

The recorded figure is CPU time per call of the process that serves HTTP (user + system, from
``/proc`` over the measured window): the gateway process against the aiohttp server process. On a
machine shared with other work, throughput follows whatever else runs (and the gateway's path has a
third process, the service, on the same cores); the CPU a process spends per call hardly does.
Each row's value is calls per CPU-second (higher is better, so the goal reads as a ratio like the
others); its note gives the µs per call, the service's own CPU per call and the median throughput,
which also has rows of its own (group ``api gateway throughput``).
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from _harness import HERE, Context, Row, Worker, python, run_worker, unavailable

GROUP = "api gateway"
WORKER = str(HERE / "rpc_worker.py")
GATEWAY = "micro api gateway"
BASELINE = "aiohttp JSON echo"


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux ``/proc``): the service behind the gateway."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


async def _round(ctx: Context, kind: str, server: Worker, duration: float, warmup: float) -> dict[str, Any]:
    pid = server.process.pid
    pids = [pid, *children(pid)]
    argv = [
        python(), WORKER, "load", kind, server.address, "--duration", str(duration), "--warmup", str(warmup),
        "--cpu", ",".join(map(str, pids)),
    ]  # fmt: skip
    return await run_worker(argv, env=ctx.env, timeout=duration + warmup + 60)


async def run(ctx: Context) -> list[Row]:
    rounds = ctx.pick(2, 6)
    duration = ctx.pick(1.0, 3.0)
    warmup = ctx.pick(0.3, 0.5)
    kinds = {"aiohttp": BASELINE, "micro-api": GATEWAY}
    results: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    servers: dict[str, Worker] = {}
    try:
        for kind in kinds:
            try:
                servers[kind] = await Worker.start([python(), WORKER, "serve", kind], env=ctx.env, label=kind)
            except Exception as exc:
                return [
                    unavailable(GROUP, label, f"{type(exc).__name__}: {exc}", "calls/CPU-s") for label in kinds.values()
                ]
        for round_ in range(rounds):
            for kind in kinds if round_ % 2 == 0 else reversed(kinds):
                ctx.log(f"  api gateway round {round_ + 1}/{rounds}: {kind}")
                results[kind].append(await _round(ctx, kind, servers[kind], duration, warmup))
    finally:
        for server in servers.values():
            await server.stop()
    rows: list[Row] = []
    throughput: list[Row] = []
    for kind, label in kinds.items():
        measured = results[kind]
        cpu = statistics.median(result["cpu_us"][0] for result in measured)
        rate = statistics.median(result["rate"] for result in measured)
        per_round = ", ".join(f"{result['cpu_us'][0]:.0f}" for result in measured)
        note = f"{cpu:.0f} µs CPU per call in the HTTP server (median of {rounds} alternated rounds: {per_round})"
        if kind == "micro-api" and all(len(result["cpu_us"]) > 1 for result in measured):
            service = statistics.median(result["cpu_us"][1] for result in measured)
            note += f"; the micro service behind it {service:.0f} µs"
        rows.append(Row(GROUP, label, 1e6 / cpu, "calls/CPU-s", note=note))
        throughput.append(
            Row(
                f"{GROUP} throughput",
                label,
                rate,
                "calls/s",
                p50_ms=statistics.median(result["p50_ms"] for result in measured),
                p99_ms=statistics.median(result["p99_ms"] for result in measured),
                note=f"median of {rounds} alternated rounds, 64 callers",
            )
        )
    gateway, baseline = rows[1], rows[0]
    if gateway.value and baseline.value:
        gateway.note += f"; {gateway.value / baseline.value:.2f}x the aiohttp echo's calls per CPU-second"
    return [gateway, baseline, *throughput[::-1]]
