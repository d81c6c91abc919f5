"""``micro run``, ``ps``, ``logs`` and ``kill``, each in its own process, sharing one state directory."""

import json
import os
import subprocess
import sys
import time

import pytest

from .conftest import alive, write_service


@pytest.fixture
def micro_cli(tmp_path):
    env = {**os.environ, "MICRO_RUNTIME_DIRECTORY": str(tmp_path / "state"), "MICRO_RUNTIME_GRACE": "2s"}
    started: list[str] = []

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "micro", *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        if check:
            assert done.returncode == 0, done.stderr
        if args[0] == "run" and done.returncode == 0:
            started.append(done.stdout.split()[0])
        return done

    yield run
    for name in started:
        run("kill", name, check=False)


def test_run_ps_logs_kill(micro_cli, tmp_path):
    source = write_service(tmp_path / "greeter")
    done = micro_cli("run", str(source), "--env", "GREETING=hello", "extra-arg")
    name, pid = done.stdout.split()
    assert name == "greeter"
    assert alive(int(pid)), "micro run must leave the service running after it exits"

    (listed,) = json.loads(micro_cli("ps", "--json").stdout)
    assert (listed["name"], listed["pid"], listed["status"]) == ("greeter", int(pid), "running")
    table = micro_cli("ps").stdout
    assert "greeter" in table
    assert "running" in table

    deadline = time.monotonic() + 10
    while "tick 1" not in (logs := micro_cli("logs", "greeter").stdout):
        assert time.monotonic() < deadline, logs
        time.sleep(0.05)
    assert logs.splitlines()[0] == "started hello extra-arg"
    assert len(micro_cli("logs", "greeter", "-n", "1").stdout.splitlines()) == 1

    assert micro_cli("kill", "greeter").stdout.strip() == "greeter stopped"
    assert not alive(int(pid))
    assert json.loads(micro_cli("ps", "--json").stdout) == []


def test_errors_are_one_line_messages(micro_cli, tmp_path):
    missing = micro_cli("kill", "nobody", check=False)
    assert missing.returncode == 1
    assert "no service named 'nobody'" in missing.stderr
    assert "Traceback" not in missing.stderr

    bad = micro_cli("run", str(tmp_path), check=False)
    assert bad.returncode == 1
    assert "neither __main__.py nor main.py" in bad.stderr

    env = micro_cli("run", str(write_service(tmp_path / "x")), "--env", "NOEQUALS", check=False)
    assert env.returncode == 2
    assert "KEY=VALUE" in env.stderr

    source = write_service(tmp_path / "twice")
    micro_cli("run", str(source))
    again = micro_cli("run", str(source), check=False)
    assert again.returncode == 1
    assert "already running" in again.stderr
