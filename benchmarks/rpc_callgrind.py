"""Instructions per call of one end of an ``rpc_worker.py`` pair, counted by callgrind: a repeatable A/B.

    python benchmarks/rpc_callgrind.py server micro-grpc-server   # the server under callgrind
    python benchmarks/rpc_callgrind.py client micro-grpc          # the client under callgrind
    python benchmarks/rpc_callgrind.py inproc micro-grpc          # micro's gRPC serve() alone, in-process

The measured process runs under ``valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes``; the
other end runs plainly. After ``WARM`` calls (64 callers, one channel) instrumentation is switched on for that
one process (``callgrind_control --instr=on <pid>``), ``N`` more calls are made (``CALLGRIND_CALLS``, default
2,000), and it is switched off. Printed: each thread's instructions per call (the event-loop thread is the one
to compare: grpcio's other threads move by tens of thousands between runs of the same code, with how calls
batch), then the process's total. Wall-clock rates on a shared machine swing 2-4x; these counts move by about
1-2% between runs of the same code, in the event-loop thread.

``inproc`` counts micro's Python alone, deterministically: the unary handler grpcio would call for
``Bench.echo`` (micro's ``serve()``, the Debug handler's wrappers, the typed marshal both ways) awaited
``N`` times in one process with a stub grpcio context (no metadata, no deadline), without grpcio's server.
"""

from __future__ import annotations

import asyncio
import glob
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKER = str(HERE / "rpc_worker.py")
WARM, CALLERS = 300, 64
N = int(os.environ.get("CALLGRIND_CALLS", "2000"))
OUT = tempfile.mkdtemp(prefix="rpc-callgrind-")


def start(command: list[str], counted: bool) -> subprocess.Popen[str]:
    if counted:
        command = [
            "valgrind", "--tool=callgrind", "--instr-atstart=no", "--separate-threads=yes",
            f"--callgrind-out-file={OUT}/cg.%p", *command,
        ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=HERE)


def ready(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("READY"):
            return line.split()[1]
    raise SystemExit("the server did not start")


def per_call(pid: int) -> float:
    """Thousands of instructions per call of process ``pid``, printing each busy thread's share."""
    threads: dict[str, int] = {}
    for name in glob.glob(f"{OUT}/cg.{pid}*"):
        with open(name) as dump:
            for line in dump:
                if line.startswith(("summary:", "totals:")):
                    threads[name] = max(threads.get(name, 0), int(line.split()[1]))
    busy = sorted((round(count / N / 1000, 1), name.rpartition("-")[2]) for name, count in threads.items())
    print("threads (k instructions per call, thread):", [entry for entry in busy if entry[0] >= 1])
    return sum(threads.values()) / N / 1000


async def drive(kind: str, address: str, on: Callable[[], None], off: Callable[[], None]) -> None:
    sys.path.insert(0, str(HERE))
    import rpc_worker

    calls, close = await rpc_worker.CLIENTS[kind](address, CALLERS, 1, 0)

    async def run(count: int) -> None:
        left = [count]

        async def caller(call: Callable[[], object]) -> None:
            while left[0] > 0:
                left[0] -= 1
                await call()  # type: ignore[misc]

        await asyncio.gather(*(caller(call) for call in calls))

    await run(WARM)
    on()
    await run(N)
    off()
    await close()


class _StubContext:
    """The grpcio servicer context calls micro's server makes, answered at once."""

    def invocation_metadata(self) -> tuple[()]:
        return ()

    def time_remaining(self) -> None:
        return None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:50000"

    def set_trailing_metadata(self, metadata: object) -> None:
        pass


async def serve_inproc() -> None:
    """Under callgrind: counts N awaits of micro's gRPC handler for ``Bench.echo`` (see the module doc)."""
    os.environ["MICRO_SERVER"] = "grpc"
    sys.path.insert(0, str(HERE))
    import micro
    import rpc_worker
    from micro_grpc.client import marshals

    service = micro.Service(rpc_worker.SERVICE, debug=True)
    service.handle(rpc_worker.Bench())
    handler = service.server._lookup("/bench.Bench/echo")  # type: ignore[attr-defined]
    value = rpc_worker.Small(**rpc_worker.SMALL)
    payload, context = marshals(type(value), type(value))[0].encode(value), _StubContext()
    for _ in range(WARM):
        await handler.unary_unary(payload, context)
    instrument(os.getpid(), "on")
    for _ in range(N):
        await handler.unary_unary(payload, context)
    instrument(os.getpid(), "off")


def instrument(pid: int, state: str) -> None:
    subprocess.run(["callgrind_control", f"--instr={state}", str(pid)], check=True, stdout=subprocess.DEVNULL)


def main() -> None:
    role, kind = sys.argv[1], sys.argv[2]
    if role == "server":
        server = start([sys.executable, WORKER, "serve", kind], counted=True)
        address = ready(server)
        asyncio.run(drive(kind, address, lambda: instrument(server.pid, "on"), lambda: instrument(server.pid, "off")))
        server.send_signal(signal.SIGTERM)
        server.wait()
        print(f"{kind} server: {per_call(server.pid):.1f}k instructions per call")
    elif role == "client":
        server = start([sys.executable, WORKER, "serve", kind], counted=False)
        address = ready(server)
        client = start([sys.executable, __file__, "_client", kind, address], counted=True)
        client.wait()
        server.send_signal(signal.SIGTERM)
        server.wait()
        print(f"{kind} client: {per_call(client.pid):.1f}k instructions per call")
    elif role == "inproc":
        if kind != "micro-grpc":
            raise SystemExit("inproc counts micro's gRPC server only: inproc micro-grpc")
        counted = start([sys.executable, __file__, "_inproc", kind], counted=True)
        counted.wait()
        print(f"{kind} serve() in-process: {per_call(counted.pid):.1f}k instructions per call")
    elif role == "_inproc":
        asyncio.run(serve_inproc())
    elif role == "_client":  # the client process itself, under callgrind: it switches its own counting
        me = os.getpid()
        asyncio.run(drive(kind, sys.argv[3], lambda: instrument(me, "on"), lambda: instrument(me, "off")))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
