"""micro.testing.ServiceProcess and spawner: a script in its own process, read line by line, stopped after."""

from __future__ import annotations

import signal
import textwrap
from pathlib import Path

import pytest
from micro.testing import ServiceProcess, spawner, unique_name

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    signal.signal(signal.SIGTERM, lambda *_: (print("BYE", flush=True), sys.exit(3)))
    print("hello", flush=True)
    print("READY 127.0.0.1:" + os.environ.get("PORT", "0") + " " + sys.argv[1], flush=True)
    print("AFTER", flush=True)
    while True:
        time.sleep(0.05)
    """
)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "svc.py"
    path.write_text(SCRIPT)
    return path


async def test_spawner_starts_reads_and_stops(script: Path) -> None:
    name = unique_name("proc")
    assert name.startswith("proc-")
    async with spawner(script) as spawn:
        process: ServiceProcess = await spawn(name, {"PORT": "4242"})
        assert process.address == f"127.0.0.1:4242 {name}"
        assert process.lines[0] == "hello"
        assert await process.expect("AFTER") == "AFTER"
        assert process.open_fds() > 0
        assert process.rss_mib() > 0
    assert process.process.returncode == 3  # SIGTERM ran the script's handler: a graceful stop


async def test_expect_fails_on_exit_with_stderr(tmp_path: Path) -> None:
    path = tmp_path / "dies.py"
    path.write_text("import sys\nsys.stderr.write('boom')\nsys.exit(1)\n")
    process = await ServiceProcess.launch(path, "x")
    with pytest.raises(AssertionError, match="boom"):
        await process.ready(timeout=20)
    assert await process.wait() == 1


async def test_stop_kills_what_ignores_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "stubborn.py"
    path.write_text(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('READY x', flush=True)\n"
        "while True:\n    time.sleep(0.05)\n"
    )
    process = await (await ServiceProcess.launch(path)).ready()
    original = ServiceProcess.wait

    async def short_wait(self: ServiceProcess, timeout: float = 20.0) -> int:
        return await original(self, 0.5)

    monkeypatch.setattr(ServiceProcess, "wait", short_wait)
    await process.stop()
    assert process.process.returncode == -signal.SIGKILL
