"""Fixtures for the asyncmicro-consul tests: the Consul agent at ``$CONSUL_HTTP_ADDR``, else 127.0.0.1:8500."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from micro_conformance.live import LiveServer
from micro_consul._client import DEFAULT_ADDRESS

#: The agent the suite runs against: the plugin's own default when CONSUL_HTTP_ADDR is unset.
ADDRESS = os.environ.get("CONSUL_HTTP_ADDR") or DEFAULT_ADDRESS


def _has_leader() -> str | None:
    """``None`` if the agent has elected a leader (it cannot serve KV or sessions before), else why not."""
    url = (ADDRESS if "//" in ADDRESS else f"http://{ADDRESS}").rstrip("/") + "/v1/status/leader"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            leader = json.loads(response.read() or b'""')
    except (OSError, urllib.error.URLError, ValueError) as exc:
        return f"/v1/status/leader does not answer ({exc})"
    return None if leader else "it has no cluster leader"


CONSUL = LiveServer("Consul agent", ADDRESS, default_port=8500, probe=_has_leader, hint="set CONSUL_HTTP_ADDR")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test here talks to Consul, except those marked offline: checked before any fixture connects.
    CONSUL.mark(items)


@pytest.fixture(scope="session")
def consul_address() -> str:
    CONSUL.require()
    return ADDRESS


def pytest_configure(config: pytest.Config) -> None:
    # Here rather than in pyproject.toml: slow tests still run in the normal test command.
    config.addinivalue_line("markers", "slow: takes more than ten seconds (1,000 services in the agent)")


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
