"""Fixtures shared by the transport tests: each contract test runs on tcp, memory and http."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from micro.transport import Transport
from micro.transport.http import HTTPTransport
from micro.transport.memory import MemoryTransport
from micro.transport.tcp import TCPTransport


@pytest.fixture(params=["tcp", "memory", "http"])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    """A fresh transport of each kind, closed after the test."""
    kinds: dict[str, type[Transport]] = {"tcp": TCPTransport, "memory": MemoryTransport, "http": HTTPTransport}
    instance: Transport = kinds[request.param]()
    yield instance
    await instance.close()


@pytest.fixture
async def client(transport: Transport) -> AsyncIterator[Transport]:
    """A second transport of the same kind, for dialling, so client and server share nothing."""
    instance = type(transport)(transport.options)
    yield instance
    await instance.close()
