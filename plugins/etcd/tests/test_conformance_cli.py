"""``micro conformance <interface> etcd``: the documented command, run as a user would, against the real server."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

INTERFACES = ["registry", "config", "sync"]


def options(interface: str, run: str) -> list[str]:
    """Options that keep the run's keys apart from everything else on the shared server."""
    pairs = {
        "registry": {"prefix": f"mc-cli-{run}/registry/"},
        "config": {"prefix": f"mc-cli-{run}/config/"},
        "sync": {"root": f"mc-cli-{run}/sync/"},
    }
    return [arg for key, value in pairs[interface].items() for arg in ("--option", f"{key}={value}")]


@pytest.mark.parametrize("interface", INTERFACES)
def test_micro_conformance_passes(interface: str, etcd_address: str) -> None:
    run = uuid.uuid4().hex[:8]
    result = subprocess.run(
        [sys.executable, "-m", "micro", "conformance", interface, "etcd", "--json", *options(interface, run)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads(result.stdout)
    assert report["status"] == "passed"
    assert report["interface"] == interface
    assert report["name"] == "etcd"
