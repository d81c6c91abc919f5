"""``micro conformance broker|registry nats``: the documented command, run as a user would, against the real server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import pytest

from .conftest import delete_buckets, delete_streams, isolated, unique


@pytest.mark.parametrize("jetstream", [False, True])
def test_micro_conformance_passes(jetstream: bool) -> None:
    names = {**isolated(unique()), "jetstream": str(jetstream).lower()}
    options = [arg for key, value in names.items() for arg in ("--option", f"{key}={value}")]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "micro", "conformance", "broker", "nats", "--json", *options],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        asyncio.run(delete_streams(names["stream"]))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads(result.stdout)
    assert report["status"] == "passed"
    assert report["interface"] == "broker"
    assert report["name"] == "nats"


def test_micro_conformance_registry_passes() -> None:
    bucket = unique()
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "micro",
                "conformance",
                "registry",
                "nats",
                "--json",
                "--option",
                f"bucket={bucket}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        asyncio.run(delete_buckets(bucket))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads(result.stdout)
    assert (report["status"], report["interface"], report["name"]) == ("passed", "registry", "nats")


def test_micro_conformance_transport_passes() -> None:
    """The transport contract through the documented command (its own subjects: a unique subject_prefix)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "micro",
            "conformance",
            "transport",
            "nats",
            "--json",
            "--option",
            f"subject_prefix={unique()}.t",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report = json.loads(result.stdout)
    assert (report["status"], report["interface"], report["name"]) == ("passed", "transport", "nats")
