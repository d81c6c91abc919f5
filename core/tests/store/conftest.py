"""Fixtures shared by the store tests: one started ``store`` per implementation, each with its own data."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from micro.store import SQLiteStoreOptions, Store, StoreOptions
from micro.store.memory import MemoryStore
from micro.store.sqlite import SQLiteStore

T = TypeVar("T")


def make_store(kind: str, tmp_path: Path, **options: object) -> Store:
    if kind == "memory":
        return MemoryStore(StoreOptions(**options))  # type: ignore[arg-type]
    if kind == "sqlite":
        return SQLiteStore(SQLiteStoreOptions(path=str(tmp_path / "store.db"), **options))  # type: ignore[arg-type]
    raise AssertionError(kind)


@pytest.fixture(params=["memory", "sqlite"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(kind: str, tmp_path: Path) -> AsyncIterator[Store]:
    s = make_store(kind, tmp_path)
    await s.start()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def unique() -> str:
    """A key prefix no other test uses."""
    return f"t{uuid.uuid4().hex[:10]}/"


async def eventually(check: Callable[[], Awaitable[T]], *, timeout: float = 3.0) -> T:
    """``await check()`` until it stops raising AssertionError, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.02)
