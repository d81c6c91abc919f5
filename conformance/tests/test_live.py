"""The ``live_server`` marker: a down server is a skip on a developer's machine and a failure under CI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from micro_conformance.live import LiveServer, in_ci

SUITE = """
from micro_conformance.live import LiveServer
import pytest

SERVER = LiveServer("Flaky DB", "flaky://127.0.0.1:{port}", probe={probe}, hint="set FLAKY_URL", wait=0.5)


def pytest_collection_modifyitems(items):
    SERVER.mark(items)
"""

TESTS = """
import pytest


def test_needs_the_server():
    pass


@pytest.mark.offline
def test_needs_nothing():
    pass
"""


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound by this test but not listening: connections to it are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def open_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def run_suite(tmp_path: Path, port: int, *, ci: str | None, probe: str = "None") -> subprocess.CompletedProcess[str]:
    (tmp_path / "conftest.py").write_text(textwrap.dedent(SUITE.format(port=port, probe=probe)))
    (tmp_path / "test_suite.py").write_text(textwrap.dedent(TESTS))
    env = {key: value for key, value in os.environ.items() if key != "CI"}
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rsE", "-o", "markers=offline", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env=env,
    )


@pytest.mark.parametrize("ci", ["true", "1", "YES"])
def test_a_down_server_fails_the_suite_under_ci(tmp_path: Path, closed_port: int, ci: str) -> None:
    result = run_suite(tmp_path, closed_port, ci=ci)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 passed, 1 error" in result.stdout
    assert f"Flaky DB not available at flaky://127.0.0.1:{closed_port}" in result.stdout
    assert "set FLAKY_URL" in result.stdout
    assert "CI is set: a missing backend fails the suite instead of skipping it" in result.stdout


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_a_down_server_skips_the_tests_that_need_it_outside_ci(
    tmp_path: Path, closed_port: int, ci: str | None
) -> None:
    result = run_suite(tmp_path, closed_port, ci=ci)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed, 1 skipped" in result.stdout
    assert f"Flaky DB not available at flaky://127.0.0.1:{closed_port}" in result.stdout


def test_a_server_that_answers_runs_every_test_under_ci(tmp_path: Path, open_port: int) -> None:
    result = run_suite(tmp_path, open_port, ci="true")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout


def test_a_failing_probe_is_a_down_server(tmp_path: Path, open_port: int) -> None:
    result = run_suite(tmp_path, open_port, ci="true", probe="lambda: 'it has no leader'")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"Flaky DB at flaky://127.0.0.1:{open_port} cannot be used: it has no leader; set FLAKY_URL" in result.stdout


def test_the_server_is_probed_once(open_port: int) -> None:
    calls: list[int] = []

    def probe() -> None:
        calls.append(1)

    server = LiveServer("X", f"127.0.0.1:{open_port}", probe=probe)
    assert [server.unavailable() for _ in range(3)] == [None, None, None]
    assert calls == [1]


def test_a_server_that_answers_late_is_waited_for(closed_port: int) -> None:
    """A probe that fails at first (a server starting, or busy) is tried again until ``wait`` runs out."""
    answers = iter(["connection reset by peer", "connection reset by peer", None])
    calls: list[int] = []

    def probe() -> str | None:
        calls.append(1)
        return next(answers)

    with socket.socket() as sock:  # listening: the TCP part succeeds, the probe decides
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        server = LiveServer("X", f"127.0.0.1:{sock.getsockname()[1]}", probe=probe, wait=30, interval=0.01)
        assert server.unavailable() is None
    assert len(calls) == 3
    refused = LiveServer("X", f"127.0.0.1:{closed_port}", wait=0.2, interval=0.05)
    reason = refused.unavailable()
    assert reason is not None
    assert reason.startswith(f"X not available at 127.0.0.1:{closed_port}: ")


def test_addresses() -> None:
    assert LiveServer("X", "amqp://guest:guest@127.0.0.1:5672/").endpoint() == ("127.0.0.1", 5672)
    assert LiveServer("X", "127.0.0.1:8500").endpoint() == ("127.0.0.1", 8500)
    assert LiveServer("X", "redis://127.0.0.1", default_port=6379).endpoint() == ("127.0.0.1", 6379)
    with pytest.raises(ValueError, match="no port"):
        LiveServer("X", "redis://127.0.0.1").endpoint()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("true", True), (" True ", True), ("1", True), ("yes", True), (None, False), ("", False), ("false", False)],
)
def test_in_ci(value: str | None, expected: bool) -> None:
    assert in_ci({} if value is None else {"CI": value}) is expected
