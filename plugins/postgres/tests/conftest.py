"""Fixtures for tests against the real PostgreSQL on 127.0.0.1:5432 (trust auth): a unique schema or lock
prefix per test, removed afterwards."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import asyncpg
import pytest
from micro_conformance.live import LiveServer

ADDRESS = os.environ.get("MICRO_TEST_POSTGRES_URL", "postgresql://127.0.0.1:5432/test")
POSTGRES = LiveServer("PostgreSQL", ADDRESS, default_port=5432, hint="set MICRO_TEST_POSTGRES_URL")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test here talks to PostgreSQL, except those marked offline: one clear skip, or failure under CI.
    POSTGRES.mark(items)


T = TypeVar("T")


def unique_name() -> str:
    """A schema name or lock prefix no other test (or run) uses."""
    return f"micro_test_{uuid.uuid4().hex[:12]}"


async def drop_schema(schema: str) -> None:
    conn = await asyncpg.connect(ADDRESS)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def schema() -> AsyncIterator[str]:
    value = unique_name()
    yield value
    await drop_schema(value)


@pytest.fixture
async def raw() -> AsyncIterator[asyncpg.Connection]:
    """A plain connection, to look at (and tamper with) what the implementations store."""
    conn = await asyncpg.connect(ADDRESS)
    yield conn
    await conn.close()


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
