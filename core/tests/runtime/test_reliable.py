"""The runtime a person can rely on, through the real CLI in subprocesses (issue #15).

A missing source is a ``BadRequest`` that leaves nothing behind; ``micro logs -n N`` past the log's
length prints the whole log; a crashed service is restarted with backoff up to a limit, and one that is
stopped on purpose is not.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import alive, write_service

CRASHES = """
import os, sys
print("run", os.getpid(), flush=True)
sys.exit(3)
"""

# Crashes on its first two runs (counted in a file), then serves until SIGTERM.
CRASHES_TWICE = """
import pathlib, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
runs = pathlib.Path("runs")
n = int(runs.read_text()) + 1 if runs.exists() else 1
runs.write_text(str(n))
print("run", n, flush=True)
if n <= 2:
    sys.exit(3)
while True:
    time.sleep(0.05)
"""


@pytest.fixture
def cli(tmp_path: Path):
    env = {
        **os.environ,
        "MICRO_RUNTIME_DIRECTORY": str(tmp_path / "state"),
        "MICRO_RUNTIME_GRACE": "2s",
        "MICRO_RUNTIME_RESTART_DELAY": "0.05",
        "MICRO_RUNTIME_RESTART_MAX_DELAY": "0.2",
    }
    names: list[str] = []

    def run(*args: str, check: bool = True, **extra: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "micro", *args],
            env={**env, **extra},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check:
            assert done.returncode == 0, done.stderr
        if args[0] == "run" and done.returncode == 0:
            names.append(done.stdout.split()[0])
        return done

    yield run
    for name in names:
        run("kill", name, check=False)


def ps(cli) -> list[dict]:
    return json.loads(cli("ps", "--json").stdout)


def wait_for(condition, what: str, seconds: float = 30.0):
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


@pytest.mark.parametrize("source", ["missing.py", "missing/main.py", "no_such_module_xyz.sub"])
def test_run_of_a_missing_source_fails_and_leaves_nothing(cli, source):
    done = cli("run", source, check=False)
    assert done.returncode == 1, done.stdout
    assert "neither" in done.stderr
    assert source in done.stderr
    assert "Traceback" not in done.stderr
    assert ps(cli) == []


def test_logs_count_larger_than_the_log_prints_all_of_it(cli, tmp_path):
    source = write_service(tmp_path / "five", "for i in range(5): print('line', i, flush=True)\n")
    cli("run", str(source), MICRO_RUNTIME_RESTART="never")
    wait_for(lambda: ps(cli)[0]["status"] == "stopped", "the service to exit")
    everything = [f"line {i}" for i in range(5)]
    assert cli("logs", "five").stdout.splitlines() == everything
    for count in (5, 6, 100):
        assert cli("logs", "five", "-n", str(count)).stdout.splitlines() == everything, count
    assert cli("logs", "five", "-n", "2").stdout.splitlines() == everything[-2:]
    assert cli("logs", "five", "-n", "0").stdout == ""


def test_a_crashed_service_is_restarted_until_it_stays_up(cli, tmp_path):
    source = write_service(tmp_path / "flaky", CRASHES_TWICE)
    cli("run", str(source))
    (service,) = wait_for(
        lambda: [s for s in ps(cli) if s["status"] == "running" and s["restarts"] == 2], "two restarts"
    )
    wait_for(lambda: (source / "runs").read_text() == "3", "the third run")
    assert alive(service["pid"])
    logs = cli("logs", "flaky").stdout.splitlines()
    assert [line for line in logs if line.startswith("run ")] == ["run 1", "run 2", "run 3"]
    assert "exited with code 3; restart 1 of 5" in "\n".join(logs)

    assert cli("kill", "flaky").stdout.strip() == "flaky stopped"
    assert not alive(service["pid"])
    assert (source / "runs").read_text() == "3", "a service stopped on purpose is not restarted"


def test_restarts_stop_at_the_limit(cli, tmp_path):
    source = write_service(tmp_path / "broken", CRASHES)
    cli("run", str(source), MICRO_RUNTIME_RESTART_LIMIT="2")
    (service,) = wait_for(lambda: [s for s in ps(cli) if s["status"] == "error"], "the service to give up")
    assert (service["exit_code"], service["restarts"]) == (3, 2)
    runs = [line for line in cli("logs", "broken").stdout.splitlines() if line.startswith("run ")]
    assert len(runs) == 3  # the first run and two restarts
    assert "giving up after 2 restarts" in cli("logs", "broken").stdout


def test_restart_never_leaves_a_crashed_service_down(cli, tmp_path):
    source = write_service(tmp_path / "once", CRASHES)
    cli("run", str(source), MICRO_RUNTIME_RESTART="never")
    (service,) = wait_for(lambda: [s for s in ps(cli) if s["status"] == "error"], "the service to exit")
    assert (service["exit_code"], service["restarts"]) == (3, 0)
    assert len([line for line in cli("logs", "once").stdout.splitlines() if line.startswith("run ")]) == 1


def test_a_bad_restart_option_names_its_variable(cli, tmp_path):
    done = cli("run", str(write_service(tmp_path / "x", CRASHES)), check=False, MICRO_RUNTIME_RESTART="sometimes")
    assert done.returncode == 1
    assert "MICRO_RUNTIME_RESTART" in done.stderr
    assert "Traceback" not in done.stderr
    assert ps(cli) == []
