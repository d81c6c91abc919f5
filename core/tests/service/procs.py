"""Services from serve.py in their own OS processes, for the service and CLI tests."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Protocol

__all__ = ["SERVE", "ServiceProcess", "Spawn", "spawner", "unique_name"]

SERVE = Path(__file__).resolve().parent / "serve.py"


def unique_name() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


class ServiceProcess:
    """A service started from serve.py in its own OS process."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.address = ""
        self.lines: list[str] = []

    @classmethod
    async def launch(cls, name: str, env: Mapping[str, str] | None = None) -> ServiceProcess:
        """Start serve.py; ``env`` is added to this process's environment."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SERVE),
            name,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **env} if env is not None else None,
        )
        return cls(process, name)

    async def ready(self, *, timeout: float = 20.0) -> ServiceProcess:
        line = await self.expect("READY ", timeout=timeout)
        self.address = line.removeprefix("READY ")
        return self

    async def expect(self, prefix: str, *, timeout: float = 10.0) -> str:
        """The next stdout line starting with ``prefix``; fails on EOF or after ``timeout`` seconds."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: no {prefix!r} line within {timeout}s; saw {self.lines}")
            try:
                raw = await asyncio.wait_for(self.process.stdout.readline(), remaining)
            except TimeoutError:
                continue
            if not raw:
                stderr = await self.stderr()
                raise AssertionError(f"{self.name} exited ({self.process.returncode}) before {prefix!r}:\n{stderr}")
            line = raw.decode().rstrip("\n")
            self.lines.append(line)
            if line.startswith(prefix):
                return line

    async def stderr(self) -> str:
        assert self.process.stderr is not None
        try:
            return (await asyncio.wait_for(self.process.stderr.read(), 5)).decode()
        except TimeoutError:
            return "<stderr not readable>"

    def signal(self, signum: int) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signum)

    async def wait(self, timeout: float = 15.0) -> int:
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.signal(signal.SIGTERM)
            try:
                await self.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


class Spawn(Protocol):
    def __call__(self, name: str, env: Mapping[str, str] | None = None, /) -> Awaitable[ServiceProcess]: ...


@asynccontextmanager
async def spawner() -> AsyncIterator[Spawn]:
    """``await spawn(name)`` starts serve.py and waits until it is registered; every process is
    stopped (SIGTERM, then SIGKILL) when the block exits."""
    started: list[ServiceProcess] = []

    async def start(name: str, env: Mapping[str, str] | None = None) -> ServiceProcess:
        process = await ServiceProcess.launch(name, env)
        started.append(process)
        return await process.ready()

    try:
        yield start
    finally:
        for process in started:
            await process.stop()
