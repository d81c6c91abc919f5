"""Fixtures for the service tests: the in-process stack, and service processes started from serve.py."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# Tests are imported with --import-mode=importlib: make the helpers beside them importable.
sys.path.insert(0, str(HERE.parent / "server"))
sys.path.insert(0, str(HERE))

from procs import Spawn, spawner, unique_name  # noqa: E402
from rpcstack import stack  # noqa: E402

__all__ = ["spawn", "stack", "unique"]


@pytest.fixture
def unique() -> str:
    return unique_name()


@pytest.fixture
async def spawn() -> AsyncIterator[Spawn]:
    async with spawner() as start:
        yield start
