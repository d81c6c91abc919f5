"""``micro conformance <interface> postgres``: the documented command, run as a user would, against the real server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid

import pytest

from .conftest import ADDRESS, drop_schema


@pytest.mark.parametrize("interface", ["store", "sync"])
def test_micro_conformance_passes(interface: str) -> None:
    run = uuid.uuid4().hex[:8]
    # A schema of its own for the store, a lock prefix of its own for sync: nothing shared with other runs.
    option = f"schema=mc_cli_{run}" if interface == "store" else f"prefix=mc-cli-{run}/"
    options = ["--option", f"address={ADDRESS}", "--option", option]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "micro", "conformance", interface, "postgres", "--json", *options],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        asyncio.run(drop_schema(f"mc_cli_{run}"))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads(result.stdout)
    assert (report["status"], report["interface"], report["name"]) == ("passed", interface, "postgres")
