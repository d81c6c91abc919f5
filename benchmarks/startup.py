"""Start-up: wall time of ``import micro`` and ``micro --help`` in a fresh process, best of N; an idle service.

``python -c pass`` is measured the same way: it is the interpreter's own
start-up, which no package can go below. The idle rows build and start a default
``micro.Service`` (``MICRO_*`` unset) in a fresh interpreter and report its RSS and
how many modules it has loaded, against the interpreter with asyncio imported.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _harness import Context, Row

GROUP = "startup"


def best_of(argv: list[str], repeats: int, env: dict[str, str]) -> float:
    """The fastest of ``repeats`` runs of ``argv``, in ms; raises if one fails."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=60)
        best = min(best, time.perf_counter() - start)
    return best * 1e3


# A default Service, built, started and idle; then the process's RSS (MiB) and module count.
_IDLE = """
import asyncio, json, sys
def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
base = (rss(), len(sys.modules))
import micro
async def main():
    service = micro.Service("idle-probe", handle_signals=False)
    await service.start()
    await asyncio.sleep(0.2)
    out = (rss(), len(sys.modules))
    await service.stop()
    return out
idle = asyncio.run(main())
print(json.dumps({"base_mib": base[0], "base_modules": base[1], "mib": idle[0], "modules": idle[1]}))
"""


def idle_service(repeats: int, env: dict[str, str]) -> dict[str, float]:
    """Medians over ``repeats`` fresh processes of what :data:`_IDLE` prints."""
    runs = []
    for _ in range(repeats):
        done = subprocess.run(
            [sys.executable, "-c", "import asyncio\n" + _IDLE],
            check=True,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def micro_command() -> list[str]:
    script = Path(sys.executable).parent / "micro"
    return [str(script)] if script.exists() else [sys.executable, "-m", "micro"]


async def run(ctx: Context) -> list[Row]:
    repeats = ctx.pick(3, 10)
    ctx.log(f"  startup: best of {repeats}")
    env = ctx.env
    floor = best_of([sys.executable, "-c", "pass"], repeats, env)
    imported = best_of([sys.executable, "-c", "import micro"], repeats, env)
    helped = best_of([*micro_command(), "--help"], repeats, env)
    note = f"best of {repeats}; python -c pass: {floor:.0f} ms"
    ctx.log("  startup: an idle default service")
    idle = idle_service(ctx.pick(1, 3), env)
    base = f"the interpreter with asyncio: {idle['base_mib']:.1f} MiB, {idle['base_modules']:.0f} modules"
    return [
        Row(GROUP, "python -c pass", floor, "ms", higher_is_better=False, note="the interpreter alone"),
        Row(GROUP, "import micro", imported, "ms", higher_is_better=False, note=note),
        Row(GROUP, "micro --help", helped, "ms", higher_is_better=False, note=note),
        Row(GROUP, "idle service RSS", idle["mib"], "MiB", higher_is_better=False, note=f"a default Service; {base}"),
        Row(GROUP, "idle service modules", idle["modules"], "modules", higher_is_better=False, note=base),
    ]
