"""Fixtures for the micro-consul tests: the Consul agent at ``$CONSUL_HTTP_ADDR`` (skipped, saying why, without one)."""

from __future__ import annotations

import functools
import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest


@functools.cache
def consul_unavailable() -> str | None:
    """``None`` if the agent at ``$CONSUL_HTTP_ADDR`` answers, else the reason it cannot be used (checked once)."""
    address = os.environ.get("CONSUL_HTTP_ADDR")
    if not address:
        return "Consul agent not available: CONSUL_HTTP_ADDR unset (the CI download from Debian's archive failed?)"
    url = (address if "//" in address else f"http://{address}").rstrip("/") + "/v1/status/leader"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            leader = json.loads(response.read() or b'""')
    except (OSError, urllib.error.URLError, ValueError) as exc:
        return f"Consul agent not available: CONSUL_HTTP_ADDR={address} does not answer ({exc})"
    if not leader:
        return f"Consul agent not available: CONSUL_HTTP_ADDR={address} has no cluster leader"
    return None


@pytest.fixture(scope="session")
def consul_address() -> str:
    reason = consul_unavailable()
    if reason:
        pytest.skip(reason)
    return os.environ["CONSUL_HTTP_ADDR"]


def pytest_configure(config: pytest.Config) -> None:
    # Here rather than in pyproject.toml: slow tests still run in the normal test command.
    config.addinivalue_line("markers", "slow: takes more than ten seconds (1,000 services in the agent)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    # Every test here talks to Consul, except those marked offline: skip before any fixture connects.
    if item.get_closest_marker("offline") is None and (reason := consul_unavailable()):
        pytest.skip(reason)


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Names unique to this test: ``unique("orders")`` is ``"t-<hex>-orders"``."""
    run = uuid.uuid4().hex[:10]
    return lambda label: f"t-{run}-{label}"


class Agent:
    """Plain HTTP to the agent, for looking behind the plugin's back (and cleaning up)."""

    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(self.base + path) as response:
            text = await response.text()
            return response.status, json.loads(text) if text.strip().startswith(("[", "{", '"')) else text

    async def put(self, path: str, body: Any = None, *, raw: bytes | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        async with self.session.put(self.base + path, data=data) as response:
            text = await response.text()
            return response.status, json.loads(text) if text.strip().startswith(("[", "{")) else text

    async def delete(self, path: str) -> int:
        async with self.session.delete(self.base + path) as response:
            return response.status


@pytest.fixture
async def agent(consul_address: str) -> AsyncIterator[Agent]:
    base = (consul_address if "//" in consul_address else f"http://{consul_address}").rstrip("/")
    async with aiohttp.ClientSession() as session:
        yield Agent(session, base)
