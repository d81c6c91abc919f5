"""Services from serve.py in their own OS processes."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

__all__ = ["SERVE", "ServiceProcess"]

SERVE = Path(__file__).resolve().parent / "serve.py"


class ServiceProcess:
    """A service started from serve.py; ``env`` is added to this process's environment."""

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name
        self.address = ""
        self.lines: list[str] = []

    @classmethod
    async def launch(cls, name: str, env: dict[str, str]) -> ServiceProcess:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SERVE),
            name,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **env},
        )
        return cls(process, name)

    @property
    def pid(self) -> int:
        return self.process.pid

    async def ready(self, *, timeout: float = 30.0) -> ServiceProcess:
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

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_mib(self) -> float:
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    async def wait(self, timeout: float = 20.0) -> int:
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.signal(signal.SIGTERM)
            try:
                await self.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
