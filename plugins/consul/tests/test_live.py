"""The suite finds the agent at its default address, and under CI a missing agent fails it (never a skip)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def run_registry_tests(address: str | None, *, ci: bool) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key not in ("CI", "CONSUL_HTTP_ADDR")}
    if address is not None:
        env["CONSUL_HTTP_ADDR"] = address
    if ci:
        env["CI"] = "true"
    # Two tests that need the agent: what the suite does with it, or without one.
    tests = ["-k", "go_micro_tags or list_services", "tests/test_registry.py"]
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rsE", *tests],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=HERE.parent,
        env=env,
    )


@pytest.mark.offline
def test_a_missing_agent_fails_the_suite_under_ci() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        result = run_registry_tests(address, ci=True)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"Consul agent not available at {address}" in result.stdout
    assert "CI is set: a missing backend fails the suite instead of skipping it" in result.stdout
    assert " skipped" not in result.stdout


def test_the_default_address_is_used_when_consul_http_addr_is_unset() -> None:
    """Needs the agent on 127.0.0.1:8500 (as CI starts it): without CONSUL_HTTP_ADDR nothing is skipped."""
    result = run_registry_tests(None, ci=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout
    assert " skipped" not in result.stdout
