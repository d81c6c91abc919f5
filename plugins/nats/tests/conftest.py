"""Fixtures for tests against the real NATS server (JetStream enabled) on 127.0.0.1:4222.

Every test works under subjects and a JetStream stream of its own, removed afterwards: other suites
use the same server at the same time.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import nats
import pytest
from micro_conformance.live import LiveServer

ADDRESS = os.environ.get("MICRO_TEST_NATS_URL", "nats://127.0.0.1:4222")
NATS = LiveServer("NATS", ADDRESS, default_port=4222)

T = TypeVar("T")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test here talks to NATS (or to a process that does): one clear skip, or failure under CI, when it is down.
    NATS.mark(items)


def unique() -> str:
    """A name no other test (or run) uses, valid as a subject token and as a JetStream name."""
    return f"mt{uuid.uuid4().hex[:12]}"


def isolated(name: str | None = None) -> dict[str, Any]:
    """Broker options that keep a test's subjects and stream apart from everybody else's."""
    name = name or unique()
    return {"subject_prefix": f"{name}.b", "stream": f"{name}_B", "dead_letter_prefix": f"{name}.dead"}


async def delete_streams(*names: str) -> None:
    """Delete the JetStream streams ``names`` (those that exist)."""
    nc = await nats.connect(ADDRESS)
    try:
        js = nc.jetstream()
        for name in names:
            try:
                await js.delete_stream(name)
            except nats.js.errors.NotFoundError:
                pass
    finally:
        await nc.close()


@pytest.fixture
async def names() -> AsyncIterator[dict[str, Any]]:
    """:func:`isolated` options for one test; its stream (and a dead-letter stream ``<name>_D``) go afterwards."""
    name = unique()
    options = isolated(name)
    yield options
    await delete_streams(options["stream"], f"{name}_D")


@pytest.fixture
async def raw() -> AsyncIterator[nats.NATS]:
    """A plain client, to look at (and tamper with) what the broker does."""
    nc = await nats.connect(ADDRESS)
    yield nc
    await nc.close()


async def eventually(check: Callable[[], Awaitable[T]], *, timeout: float = 10.0) -> T:
    """``await check()`` until it stops raising AssertionError, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)


async def delete_buckets(*buckets: str) -> None:
    """Delete the key-value buckets ``buckets`` (those that exist)."""
    await delete_streams(*(f"KV_{bucket}" for bucket in buckets))
