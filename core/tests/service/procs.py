"""serve.py, the service the service and CLI tests run in their own processes (micro.testing's helpers)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from micro.testing import ServiceProcess, Spawn, unique_name
from micro.testing import spawner as _spawner

__all__ = ["SERVE", "ServiceProcess", "Spawn", "spawner", "unique_name"]

SERVE = Path(__file__).resolve().parent / "serve.py"


@asynccontextmanager
async def spawner() -> AsyncIterator[Spawn]:
    """``await spawn(name)`` starts serve.py and waits until it is registered; all are stopped after."""
    async with _spawner(SERVE) as spawn:
        yield spawn
