"""Helpers for the multi-process tunnel tests: a peer tunnel in a subprocess, and a TCP proxy that can cut links."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

PEER = os.path.join(os.path.dirname(__file__), "peer.py")


class Peer:
    """A ``peer.py`` process; :meth:`line` reads what it prints."""

    def __init__(self, process: asyncio.subprocess.Process, address: str, id: str) -> None:
        self.process = process
        self.address = address
        self.id = id

    async def line(self, timeout: float = 10.0) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        assert raw, "the peer exited"
        return dict(json.loads(raw))

    async def stop(self) -> None:
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


@pytest.fixture
async def spawn() -> AsyncIterator[Callable[..., Any]]:
    peers: list[Peer] = []

    async def start(config: dict[str, Any]) -> Peer:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            PEER,
            json.dumps(config),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        raw = await asyncio.wait_for(process.stdout.readline(), 30)
        assert raw, "the peer did not start"
        hello = json.loads(raw)
        peer = Peer(process, hello["address"], hello["id"])
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        await peer.stop()


class Proxy:
    """Forwards TCP connections to ``target``; :meth:`cut` closes them, :meth:`blackhole` silences them."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.address = ""
        self._server: asyncio.Server | None = None
        self._pairs: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._silenced: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        host, port = self._server.sockets[0].getsockname()[:2]
        self.address = f"{host}:{port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, _, port = self.target.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(host, int(port))
        self.connections += 1
        self._pairs.append((writer, up_writer))
        for src, dst, key in ((reader, up_writer, writer), (up_reader, writer, writer)):
            task = asyncio.create_task(self._pipe(src, dst, key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, key: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await src.read(65536):
                if key in self._silenced:
                    continue  # swallowed: the link looks alive to both ends, but nothing arrives
                dst.write(data)
                await dst.drain()
        with contextlib.suppress(OSError, RuntimeError):
            dst.close()

    def cut(self) -> None:
        """Close every forwarded connection under the tunnels (RST, no goodbye)."""
        for down, up in self._pairs:
            down.transport.abort()
            up.transport.abort()
        self._pairs.clear()

    def blackhole(self) -> None:
        """Keep the current connections open but drop everything sent on them."""
        for down, _ in self._pairs:
            self._silenced.add(down)

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@pytest.fixture
async def proxy() -> AsyncIterator[Callable[[str], Any]]:
    made: list[Proxy] = []

    async def start(target: str) -> Proxy:
        item = Proxy(target)
        await item.start()
        made.append(item)
        return item

    yield start
    for item in made:
        await item.close()


async def until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Wait (bounded) for ``predicate``; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)
