"""Fixtures shared by the registry tests: one ``registry`` per implementation, each isolated."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from micro.registry import LocalRegistryOptions, Registry, Result, Watcher
from micro.registry.local import LocalRegistry
from micro.registry.memory import MemoryRegistry

T = TypeVar("T")

_ports = itertools.count(20000)


@pytest.fixture
def unique() -> str:
    """A service name no other test (or earlier run) uses."""
    return f"test.{uuid.uuid4().hex[:12]}"


def make_registry(kind: str, tmp_path: Path) -> Registry:
    if kind == "memory":
        return MemoryRegistry()
    if kind == "local":
        return LocalRegistry(LocalRegistryOptions(path=str(tmp_path / "registry.db"), poll_interval=0.02))
    raise AssertionError(kind)


@pytest.fixture(params=["memory", "local"])
async def registry(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Registry]:
    reg = make_registry(request.param, tmp_path)
    await reg.start()
    try:
        yield reg
    finally:
        await reg.close()


async def eventually(check: Callable[[], Awaitable[T]], *, timeout: float = 3.0) -> T:
    """``await check()`` until it stops raising AssertionError, failing after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.01)


async def next_result(watcher: Watcher, timeout: float = 3.0) -> Result:
    return await asyncio.wait_for(anext(watcher), timeout)
