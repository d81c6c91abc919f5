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

    run.env = env  # type: ignore[attr-defined]
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


GREETER = """
from micro.service import Service


class Say:
    async def hello(self, request: dict) -> dict:
        return {"message": "Hello " + request["name"]}


service = Service("NAME")
service.handle(Say())
service.run_forever()
"""


@pytest.mark.slow  # a dozen CLI processes at about 0.6s each
def test_micro_run_starts_a_service_that_micro_call_reaches(micro_cli, tmp_path):
    name = f"greeter-{os.getpid()}-{time.monotonic_ns()}"
    source = write_service(tmp_path / "greeter", GREETER.replace("NAME", name))
    micro_cli.env["MICRO_REGISTRY_PATH"] = str(tmp_path / "registry.db")  # service and CLI share it
    micro_cli.env["MICRO_TRACER_SAMPLE"] = "1"  # the one Say.hello call is read back from the trace
    micro_cli("run", str(source), "--name", name)

    deadline = time.monotonic() + 30
    while (call := micro_cli("call", name, "Say.hello", '{"name": "Alice"}', check=False)).returncode != 0:
        assert time.monotonic() < deadline, call.stderr + micro_cli("logs", name).stdout
        time.sleep(0.1)
    assert json.loads(call.stdout) == {"message": "Hello Alice"}

    # the service serves its Debug endpoints, which `micro debug` reads
    assert micro_cli("debug", "health", name).stdout.strip() == "ok"
    # a record longer than the (non-terminal, 80-column) console stays on one line
    (serving,) = [line for line in micro_cli("debug", "logs", name).stdout.splitlines() if "serving on" in line]
    assert name in serving
    assert len(serving) > 80
    assert "Say.hello" in micro_cli("debug", "trace", name).stdout
    (stat,) = json.loads(micro_cli("debug", "stats", name, "--json").stdout)["stats"][-1:]
    assert stat["requests"] >= 4  # hello, health, logs, trace
    assert "REQUESTS" in micro_cli("debug", "stats", name).stdout

    micro_cli("kill", name)
    gone = micro_cli("call", name, "Say.hello", '{"name": "Bob"}', check=False)
    assert gone.returncode == 1
