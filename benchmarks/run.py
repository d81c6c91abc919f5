"""Run micro's benchmarks side by side with the alternatives and print a table of ratios.

    python benchmarks/run.py            # the full run (under 10 minutes on 2 cores)
    python benchmarks/run.py --quick    # a spot check (under two minutes)
    python benchmarks/run.py --only rpc,selector --markdown out.md

Absolute numbers drift on a shared machine; ratios measured in the same run
hold. Every loop is bounded, every server listens on loopback, and micro's
per-user state (local registry, stores) goes to a scratch directory removed
at the end, so a run neither sees nor disturbs services on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _harness import Context, Goal, Row

#: name -> module, in running order (cheap and quiet first).
SUITES = {
    "startup": "startup",
    "selector": "selector_bench",
    "registry": "registry_bench",
    "registry-consul": "registry_scale",
    "rpc": "rpc",
    "api": "api_gateway",
    "scale": "scale",
    "store": "store",
    "broker": "broker",
    "network": "network_bench",
}

GOALS: list[Goal] = [
    Goal("rpc", "micro", "grpcio-aio", ratio=5.0),
    Goal("rpc", "micro", "aiohttp", ratio=2.5),
    Goal("rpc", "micro", "nameko", ratio=25.0),
    Goal("rpc", "micro", "raw asyncio echo", ratio=0.5),
    Goal("rpc", "micro + uvloop", "grpcio-aio + uvloop", ratio=5.0),
    Goal("rpc", "micro + uvloop", "aiohttp + uvloop", ratio=2.5),
    Goal("rpc", "micro + uvloop", "raw asyncio echo + uvloop", ratio=0.5),
    # The gRPC goals by CPU per call (rpc.py's "rpc cpu" groups): steadier than the rate on a shared machine.
    # Both processes for micro at both ends; the server alone when both rows use grpcio's client.
    Goal("rpc cpu", "micro over gRPC", "grpcio-aio", ratio=0.9),
    Goal("rpc server cpu", "micro gRPC server, grpcio client", "grpcio-aio", ratio=0.9),
    # 64 concurrent 1 MB calls on one connection (issue #17; server memory within 2x is in the rows' notes).
    Goal("payload 1 MB x 64", "micro", "raw asyncio echo", ratio=0.8),
    Goal("payload 1 MB x 64", "micro + uvloop", "raw asyncio echo + uvloop", ratio=0.8),
    Goal("payload 1 MB x 64 server RSS", "micro", "raw asyncio echo", max_ratio=2.0),
    Goal("payload 1 MB x 64 server RSS", "micro + uvloop", "raw asyncio echo + uvloop", max_ratio=2.0),
    # A call through the gateway against the aiohttp JSON echo: calls per CPU-second of the HTTP server process.
    Goal("api gateway", "micro api gateway", "aiohttp JSON echo", ratio=1.0),
    Goal("broker-rabbitmq", "micro-rabbitmq", "aio-pika", ratio=0.8),
    Goal("broker-rabbitmq", "micro-rabbitmq", "faststream", ratio=1.1),
    Goal("broker-redis", "micro-redis", "redis-py", ratio=0.8),
    Goal("broker-nats", "micro-nats", "nats-py", ratio=0.8),
    Goal("broker-nats jetstream", "micro-nats jetstream", "nats-py jetstream", ratio=0.8),
    *(
        Goal(f"store {p}", "micro-redis", "redis.asyncio", ratio=0.9)
        for p in ("write", "read", "write batch", "read batch")
    ),
    *(
        Goal(f"store {p}", "micro-postgres", "asyncpg", ratio=0.8)
        for p in ("write", "read", "write batch", "read batch")
    ),
    Goal("network", "through one proxy hop", "direct call", ratio=0.5),
    Goal("selector", "warm select", limit=5.0),
    Goal("selector", "registry reads per call", limit=0.0),
    Goal("registry local", "first lookup, 1,000 services", limit=10.0),
    Goal("registry local", "idle watcher CPU, 1,000 services", limit=2.0),
    Goal("startup", "import micro", limit=150.0),
    Goal("startup", "micro --help", limit=400.0),
    # A default service, started and idle (issue #17: 44 MiB before Service() imported lazily).
    Goal("startup", "idle service RSS", limit=40.0),
]


def isolate(scratch: Path) -> dict[str, str]:
    """Point micro's per-user directories into ``scratch`` and drop ``MICRO_*`` settings, here and for children."""
    for name in ("XDG_RUNTIME_DIR", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
        path = scratch / name.lower()
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.environ[name] = str(path)
    for key in [k for k in os.environ if k.startswith("MICRO_")]:
        del os.environ[key]
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    return dict(os.environ)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()} ({platform.python_implementation()})"
    )


# -- the tables ---------------------------------------------------------------------------------------


def _subject(rows: Sequence[Row], row: Row) -> Row | None:
    """The micro row ``row`` is compared with: the group's plain ``micro`` row run the same way (uvloop or not),
    else its first micro row (a group that holds micro over gRPC before plain micro compares with plain micro)."""
    uv = row.name.endswith("+ uvloop")
    same = [
        other
        for other in rows
        if other.group == row.group and other.name.startswith("micro") and other.name.endswith("+ uvloop") == uv
    ]
    plain = "micro + uvloop" if uv else "micro"
    return next((other for other in same if other.name == plain), same[0] if same else None)


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    if digits == 0 and abs(value) < 100:
        digits = 2 if abs(value) < 10 else 1
    return f"{value:,.{digits}f}"


def table(rows: Sequence[Row]) -> list[list[str]]:
    out = [["group", "system", "result", "p50 ms", "p99 ms", "micro x", "note"]]
    for row in rows:
        subject = _subject(rows, row)
        ratio = "-"
        # Only alternatives get a ratio: micro's own defaults (memory, sqlite) are not competitors.
        if (
            row.higher_is_better
            and subject is not None
            and not row.name.startswith("micro")
            and subject.value
            and row.value
        ):
            ratio = f"{subject.value / row.value:.2f}x"
        if row.unavailable is not None:
            result, note = "unavailable", row.unavailable
        else:
            result, note = f"{_fmt(row.value)} {row.unit}", row.note
        out.append([row.group, row.name, result, _fmt(row.p50_ms, 2), _fmt(row.p99_ms, 2), ratio, note])
    return out


def goals(rows: Sequence[Row]) -> list[list[str]]:
    by_key = {row.key: row for row in rows}
    out = [["goal", "measured", "target", "status"]]
    for goal in GOALS:
        subject = by_key.get(f"{goal.group}/{goal.subject}")
        if subject is None:
            continue  # that suite did not run
        if goal.baseline is not None:
            base = by_key.get(f"{goal.group}/{goal.baseline}")
            target = f"≥ {goal.ratio}x"
            if subject.value is None or base is None or base.value is None:
                why = subject.unavailable or (base.unavailable if base is not None else "not measured")
                out.append([goal.label(), "-", target, f"n/a ({why})"[:90]])
                continue
            ratio = subject.value / base.value
            if goal.max_ratio is not None:
                target = f"≤ {goal.max_ratio}x"
                met = ratio <= goal.max_ratio
            else:
                assert goal.ratio is not None
                met = ratio >= goal.ratio
            out.append([goal.label(), f"{ratio:.2f}x", target, "met" if met else "MISSED"])
        else:
            assert goal.limit is not None
            target = f"≤ {goal.limit:g} {subject.unit}"
            if subject.value is None:
                out.append([goal.label(), "-", target, f"n/a ({subject.unavailable})"])
                continue
            ok = subject.value <= goal.limit
            out.append([goal.label(), f"{_fmt(subject.value)} {subject.unit}", target, "met" if ok else "MISSED"])
    return out


def text(cells: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def markdown(cells: list[list[str]]) -> str:
    escape = [[cell.replace("|", "\\|") for cell in row] for row in cells]
    lines = ["| " + " | ".join(escape[0]) + " |", "|" + "---|" * len(escape[0])]
    lines += ["| " + " | ".join(row) + " |" for row in escape[1:]]
    return "\n".join(lines)


# -- running -------------------------------------------------------------------------------------------


async def run_suites(ctx: Context, names: Sequence[str]) -> tuple[list[Row], dict[str, float]]:
    rows: list[Row] = []
    seconds: dict[str, float] = {}
    for name in names:
        ctx.log(f"[{name}]")
        start = time.perf_counter()
        module = importlib.import_module(SUITES[name])
        try:
            rows += await module.run(ctx)
        except Exception as exc:  # one broken suite must not hide the others' results
            ctx.log(f"  {name} failed: {type(exc).__name__}: {exc}")
            rows.append(Row(name, "suite", None, unavailable=f"suite failed: {type(exc).__name__}: {exc}"))
        seconds[name] = time.perf_counter() - start
    return rows, seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts and short windows (under two minutes)")
    parser.add_argument("--only", default="", help=f"comma-separated suites: {', '.join(SUITES)}")
    parser.add_argument("--markdown", type=Path, help="also write the tables as Markdown to this file")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SUITES)
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; suites: {', '.join(SUITES)}")

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "micro-bench"
    cache.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="micro-bench-"))
    # The suites that run micro in this process would log every service start; the tables are the output.
    logging.getLogger("micro").setLevel(logging.WARNING)
    started = time.perf_counter()
    try:
        env = isolate(scratch)

        def log(message: str) -> None:
            print(message, file=sys.stderr, flush=True)

        ctx = Context(quick=args.quick, scratch=scratch, cache=cache, log=log, env=env)
        rows, seconds = asyncio.run(run_suites(ctx, names))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    total = time.perf_counter() - started

    mode = "quick" if args.quick else "full"
    timing = ", ".join(f"{name} {s:.0f}s" for name, s in seconds.items())
    header = f"micro benchmarks ({mode} run, {total:.0f} s: {timing})\n{machine()}"
    print(header)
    print()
    print(text(table(rows)))
    print()
    print(text(goals(rows)))
    if args.markdown is not None:
        body = [
            f"Run: {mode}, {time.strftime('%Y-%m-%d')}, {total:.0f} s ({timing}).",
            "",
            f"Machine: {machine()}.",
            "",
            markdown(table(rows)),
            "",
            "Goals:",
            "",
            markdown(goals(rows)),
            "",
        ]
        args.markdown.write_text("\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
