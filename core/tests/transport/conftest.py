"""Fixtures shared by the transport tests: each contract test runs on tcp and on memory."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from micro.transport import Transport
from micro.transport.memory import MemoryTransport
from micro.transport.tcp import TCPTransport


@pytest.fixture(params=["tcp", "memory"])
async def transport(request: pytest.FixtureRequest) -> AsyncIterator[Transport]:
    """A fresh transport of each kind, closed after the test."""
    instance: Transport = TCPTransport() if request.param == "tcp" else MemoryTransport()
    yield instance
    await instance.close()


@pytest.fixture
async def client(transport: Transport) -> AsyncIterator[Transport]:
    """A second transport of the same kind, for dialling, so client and server share nothing."""
    instance = type(transport)(transport.options)
    yield instance
    await instance.close()
