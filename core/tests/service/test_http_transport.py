"""The demo RPC over the http transport: a service process and a client, both with MICRO_TRANSPORT=http."""

from __future__ import annotations

from typing import Any

import pytest
from micro import create
from micro.client import Client
from micro.registry import Registry
from procs import Spawn


@pytest.fixture
def http_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    # The service process inherits the environment; the client below reads it too.
    monkeypatch.setenv("MICRO_TRANSPORT", "http")


async def test_a_call_and_a_stream_go_over_http_end_to_end(http_everywhere: None, spawn: Spawn, unique: str) -> None:
    server = await spawn(unique)
    registry: Any = create("registry", cls=Registry)
    await registry.start()
    try:
        [service] = await registry.get_service(unique)
        [node] = service.nodes
        assert node.metadata.get("transport") == "http", node.metadata
    finally:
        await registry.close()
    client = create("client", cls=Client, retries=0)
    try:
        assert type(client.transport).__name__ == "HTTPTransport"
        reply = await client.call(unique, "Echo.hello", {"name": "Alice"})
        assert reply == {"message": "Hello Alice", "pid": server.process.pid}
        async with await client.stream(unique, "Echo.count", {"to": 3}) as stream:
            assert [n async for n in stream] == [0, 1, 2]
    finally:
        await client.close()
