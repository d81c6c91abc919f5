"""End to end: ``MICRO_REGISTRY=etcd``, a service process and this test as its client, on the real server.

The client finds the service only through etcd; the node is an etcd key on a lease while the service runs,
and the key is gone once it stops (SIGTERM deregisters it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import micro
import pytest
from micro_etcd._client import Etcd, prefix_end

HERE = Path(__file__).resolve().parent


@contextlib.asynccontextmanager
async def running(*args: str, env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """A child Python process, killed if the test leaves it running."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def ready(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    async with asyncio.timeout(30):
        while line := (await process.stdout.readline()).decode():
            if line.startswith("READY "):
                return line.removeprefix("READY ").strip()
    raise AssertionError(f"the service exited before it was ready (status {await process.wait()})")


async def test_a_service_and_its_client_find_each_other_through_etcd(
    etcd_address: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = uuid.uuid4().hex[:8]
    name, prefix = f"e2e-echo-{run}", f"micro-test/e2e-{run}/"
    selection = {"MICRO_REGISTRY": "etcd", "MICRO_REGISTRY_ADDRESS": etcd_address, "MICRO_REGISTRY_PREFIX": prefix}
    for key, value in selection.items():
        monkeypatch.setenv(key, value)
    etcd = Etcd((etcd_address,), variable="test", timeout=5)
    await etcd.open()
    try:
        async with running(str(HERE / "e2e_echo.py"), name, env={**os.environ, **selection}) as process:
            address = await ready(process)
            _, keys = await etcd.range(prefix, prefix_end(prefix), "test")
            assert len(keys) == 1
            assert keys[0].key.decode().startswith(f"{prefix}{name}/")
            assert keys[0].lease, "the server's register_ttl must put its node on a lease"
            assert address in keys[0].value.decode()

            client = micro.create("client")
            try:
                assert await client.call(name, "Echo.hello", {"name": "Alice"}) == {"text": "hello Alice"}
            finally:
                await client.close()

            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(15):
                assert await process.wait() == 0
        assert (await etcd.range(prefix, prefix_end(prefix), "test"))[1] == [], "stopping did not deregister"
    finally:
        await etcd.close()
