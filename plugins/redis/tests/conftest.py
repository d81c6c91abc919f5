"""Fixtures for tests against the real Redis on 127.0.0.1:6379: a unique key prefix per test, removed afterwards."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest
import redis.asyncio as redis
from micro_conformance.live import LiveServer

ADDRESS = "redis://127.0.0.1:6379"
REDIS = LiveServer("Redis", ADDRESS)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test here talks to Redis (or to a process that does): one clear skip, or failure under CI, when it is down.
    REDIS.mark(items)


T = TypeVar("T")


def unique_prefix() -> str:
    """A key prefix no other test (or run) uses; every key a test makes starts with it."""
    return f"micro-test:{uuid.uuid4().hex[:12]}:"


async def purge(prefix: str) -> int:
    """Delete every key that starts with ``prefix``; returns how many there were."""
    client = redis.Redis.from_url(ADDRESS)
    try:
        keys = [key async for key in client.scan_iter(match=prefix.replace("*", "\\*") + "*", count=1000)]
        if keys:
            await client.delete(*keys)
        return len(keys)
    finally:
        await client.aclose()


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    value = unique_prefix()
    yield value
    await purge(value)


@pytest.fixture
async def raw() -> AsyncIterator[redis.Redis]:
    """A plain client, to look at (and tamper with) what the implementations store."""
    client = redis.Redis.from_url(ADDRESS)
    yield client
    await client.aclose()


async def kill_clients(raw: redis.Redis, name: str) -> int:
    """Close, server-side, every connection whose client name starts with ``name``; returns how many.

    Names are unique per instance, so this never touches another test's (or anybody else's) connections.
    """
    killed = 0
    for client in await raw.client_list():
        if client.get("name", "").startswith(name):
            killed += await raw.execute_command("CLIENT", "KILL", "ID", client["id"], "SKIPME", "yes")
    return killed


async def eventually(check: Callable[[], Awaitable[T]], *, timeout: float = 5.0) -> T:
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
