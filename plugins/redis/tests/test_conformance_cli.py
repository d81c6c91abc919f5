"""``micro conformance <interface> redis``: the documented command, run as a user would, against the real server."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

INTERFACES = ["store", "broker", "sync"]


def options(interface: str, run: str) -> list[str]:
    """Options that keep the run's keys apart from everything else on the shared server."""
    pairs = {i: {"key_prefix": f"mc-cli-{run}:"} for i in INTERFACES}
    return [arg for key, value in pairs.get(interface, {}).items() for arg in ("--option", f"{key}={value}")]


@pytest.mark.parametrize("interface", INTERFACES)
def test_micro_conformance_passes(interface: str) -> None:
    run = uuid.uuid4().hex[:8]
    result = subprocess.run(
        [sys.executable, "-m", "micro", "conformance", interface, "redis", "--json", *options(interface, run)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads(result.stdout)
    assert report["status"] == "passed"
    assert report["interface"] == interface
    assert report["name"] == "redis"


@pytest.fixture(autouse=True)
def _clean_up() -> Iterator[None]:
    yield
    import redis

    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        for key in client.scan_iter(match="mc-cli-*", count=500):
            client.delete(key)
    finally:
        client.close()
