import os
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from micro.runtime.local import LocalRuntime
from micro.runtime.options import RuntimeOptions

# A well-behaved service: says hello, ticks, and exits 0 on SIGTERM.
SERVICE = textwrap.dedent(
    """
    import os, signal, sys, time

    def stop(signum, frame):
        print("stopping", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    print("started", os.environ.get("GREETING", "-"), *sys.argv[1:], flush=True)
    print("oops on stderr", file=sys.stderr, flush=True)
    for i in range(100000):
        print("tick", i, flush=True)
        time.sleep(0.05)
    """
)


def write_service(directory: Path, body: str = SERVICE, filename: str = "main.py") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / filename).write_text(body)
    return directory


@pytest.fixture
def service_dir(tmp_path: Path) -> Path:
    return write_service(tmp_path / "src" / "greeter")


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[LocalRuntime]:
    # restart="never": these tests watch how one run ends; test_reliable.py covers the restart policy
    runtime = LocalRuntime(RuntimeOptions(directory=str(tmp_path / "state"), grace=2.0, restart="never"))
    yield runtime
    # never leave a process behind, whatever the test did
    for service in await runtime.read():
        await runtime.delete(service)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except OSError:
        return True
