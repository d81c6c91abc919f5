"""Fixtures shared by the sync tests: two started instances (two owners) of one implementation."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from micro.sync import FileSyncOptions, Sync, SyncOptions
from micro.sync.file import FileSync
from micro.sync.memory import MemorySync

T = TypeVar("T")


class Maker:
    """Builds instances that share one backend: the same file, or (for memory) the same unique prefix."""

    def __init__(self, kind: str, tmp_path: Path) -> None:
        self.kind = kind
        self.path = str(tmp_path / "sync.db")
        # Memory instances share one process-wide table, so each test gets its own prefix.
        self.prefix = f"t{uuid.uuid4().hex[:10]}/"
        self.made: list[Sync] = []

    def __call__(self, **options: object) -> Sync:
        options.setdefault("prefix", self.prefix)
        options.setdefault("poll_interval", 0.02)
        sync: Sync
        if self.kind == "memory":
            sync = MemorySync(SyncOptions(**options))  # type: ignore[arg-type]
        elif self.kind == "file":
            sync = FileSync(FileSyncOptions(path=self.path, **options))  # type: ignore[arg-type]
        else:
            raise AssertionError(self.kind)
        self.made.append(sync)
        return sync

    async def started(self, **options: object) -> Sync:
        sync = self(**options)
        await sync.start()
        return sync


@pytest.fixture(params=["memory", "file"])
async def make(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Maker]:
    maker = Maker(str(request.param), tmp_path)
    try:
        yield maker
    finally:
        for sync in maker.made:
            await sync.close()


@pytest.fixture
async def a(make: Maker) -> Sync:
    return await make.started()


@pytest.fixture
async def b(make: Maker) -> Sync:
    return await make.started()


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
