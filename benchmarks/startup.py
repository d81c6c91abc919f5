"""Start-up: wall time of ``import micro`` and ``micro --help`` in a fresh process, best of N.

``python -c pass`` is measured the same way: it is the interpreter's own
start-up, which no package can go below.
"""

from __future__ import annotations

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
    return [
        Row(GROUP, "python -c pass", floor, "ms", higher_is_better=False, note="the interpreter alone"),
        Row(GROUP, "import micro", imported, "ms", higher_is_better=False, note=note),
        Row(GROUP, "micro --help", helped, "ms", higher_is_better=False, note=note),
    ]
