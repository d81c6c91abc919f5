"""nameko RPC over the local RabbitMQ, in a venv of its own (nameko needs eventlet, which must not enter ours).

The venv is built once under the cache directory (``python -m venv`` and
``pip install nameko``) and reused by later runs. If it cannot be built or
RabbitMQ cannot be reached, the row says so instead of failing the run.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import uuid
from pathlib import Path

from _harness import HERE, Context, Row, Worker, run_worker, unavailable

AMQP_URI = os.environ.get("BENCH_AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")
NAME = "nameko"
WORKER = str(HERE / "nameko_worker.py")
NAMEKO = "nameko==2.14.1"


def _rabbitmq_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5672), timeout=2):
            return True
    except OSError:
        return False


async def _venv(ctx: Context) -> Path:
    """The venv's python, building the venv first if it is missing or has no nameko."""
    root = ctx.cache / "nameko-venv"
    exe = root / "bin" / "python"
    ready = root / ".ready"
    if ready.exists() and exe.exists():
        return exe
    ctx.log(f"  building the nameko venv in {root} (once)")
    steps = [[sys.executable, "-m", "venv", "--clear", str(root)], [str(exe), "-m", "pip", "install", "-q", NAMEKO]]
    for argv in steps:
        process = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        try:
            _, err = await asyncio.wait_for(process.communicate(), 300)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise RuntimeError(f"{' '.join(argv[-3:])} took over 300 s") from None
        if process.returncode != 0:
            lines = [line for line in err.decode(errors="replace").splitlines() if "ERROR" in line] or ["failed"]
            raise RuntimeError(f"{' '.join(argv[-3:])}: {lines[-1]}")
    ready.touch()
    return exe


async def run(ctx: Context, group: str, *, duration: float, callers: int = 64) -> Row:
    if not _rabbitmq_up():
        return unavailable(group, NAME, "RabbitMQ is not reachable on 127.0.0.1:5672", "calls/s")
    try:
        exe = await _venv(ctx)
    except Exception as exc:
        return unavailable(group, NAME, f"could not install nameko: {exc}", "calls/s")
    service = f"bench_{uuid.uuid4().hex[:8]}"
    ctx.log(f"  rpc: nameko ({callers} green threads)")
    try:
        server = await Worker.start([str(exe), WORKER, "serve", service, AMQP_URI], env=ctx.env, label="nameko")
        try:
            warmup = ctx.pick(0.5, 1.0)
            argv = [str(exe), WORKER, "load", service, AMQP_URI, str(callers), str(duration), str(warmup)]
            result = await run_worker(argv, env=ctx.env, timeout=duration + warmup + 90)
        finally:
            await server.stop()
    except Exception as exc:
        return unavailable(group, NAME, f"{type(exc).__name__}: {exc}", "calls/s")
    return Row(
        group,
        NAME,
        result["rate"],
        "calls/s",
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        note=f"eventlet, {callers} proxies, {result['calls']} calls",
    )
