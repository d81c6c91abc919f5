"""Fixtures for the asyncmicro-etcd tests: the etcd server of ``$ETCD_ENDPOINTS`` (first one), else 127.0.0.1:2379."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable

import pytest
from micro_conformance.live import LiveServer
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
