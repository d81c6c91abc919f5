"""Fixtures for the asyncmicro-etcd tests: the etcd server of ``$ETCD_ENDPOINTS`` (first one), else 127.0.0.1:2379."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from micro_conformance.live import LiveServer, skip_or_fail
from micro_etcd._client import DEFAULT_ADDRESS

#: The server the suite runs against: the plugin's own default when ETCD_ENDPOINTS is unset.
ADDRESS = (os.environ.get("ETCD_ENDPOINTS") or DEFAULT_ADDRESS).split(",")[0].strip()


def _healthy() -> str | None:
    """``None`` if etcd reports itself healthy (it has a leader), else why not."""
    url = (ADDRESS if "//" in ADDRESS else f"http://{ADDRESS}").rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            health = json.loads(response.read() or b"{}")
    except (OSError, urllib.error.URLError, ValueError) as exc:
        return f"/health does not answer ({exc})"
    return None if str(health.get("health")) == "true" else f"it reports {health!r}"


ETCD = LiveServer("etcd server", ADDRESS, default_port=2379, probe=_healthy, hint="set ETCD_ENDPOINTS")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test here talks to etcd, except those marked offline: checked before any fixture connects.
    ETCD.mark(items)


@pytest.fixture(scope="session")
def etcd_address() -> str:
    ETCD.require()
    return ADDRESS


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Names unique to this test: ``unique("orders")`` is ``"t-<hex>-orders"``."""
    run = uuid.uuid4().hex[:10]
    return lambda label: f"t-{run}-{label}"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def private_etcd(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """An etcd server of this test's own on free loopback ports, which the test may kill: (address, process)."""
    binary = shutil.which("etcd")
    if binary is None:  # a missing backend: skipped on a developer's machine, failed under CI
        skip_or_fail("no etcd binary on PATH to start a private server (install Debian's etcd-server)")
    client, peer = _free_port(), _free_port()
    address = f"127.0.0.1:{client}"
    with (tmp_path / "etcd.log").open("wb") as log:
        process = subprocess.Popen(
            [binary, "--name", "t", "--data-dir", str(tmp_path / "data"), "--logger=zap", "--log-level", "warn",
             "--listen-client-urls", f"http://{address}", "--advertise-client-urls", f"http://{address}",
             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", f"t=http://127.0.0.1:{peer}"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://{address}/health", timeout=1) as response:
                    if json.loads(response.read()).get("health") == "true":
                        break
            except (OSError, ValueError):
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the private etcd did not start: {(tmp_path / 'etcd.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield address, process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
