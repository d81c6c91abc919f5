"""An in-process stack for the server, client and service tests: memory registry, transport and broker,
cached selector. Imported by the conftest of each of those test directories."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from micro.broker.memory import MemoryBroker
from micro.client.rpc import RPCClient
from micro.registry.memory import MemoryRegistry
from micro.selector.cache import RandomSelector
from micro.server.options import ServerOptions
from micro.server.rpc import RPCServer
from micro.transport import Transport, TransportOptions
from micro.transport.memory import MemoryTransport
from micro.transport.tcp import TCPTransport

T = TypeVar("T")

TRANSPORTS: dict[str, type[Transport]] = {"memory": MemoryTransport, "tcp": TCPTransport}


@dataclass
class Stack:
    """Shared building blocks; ``server()`` makes more servers (nodes) of a service on them."""

    name: str
    transport_type: type[Transport] = MemoryTransport
    registry: MemoryRegistry = field(default_factory=MemoryRegistry)
    transport: Transport = field(init=False)
    broker: MemoryBroker = field(default_factory=MemoryBroker)
    servers: list[RPCServer] = field(default_factory=list)
    clients: list[RPCClient] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.transport = self.new_transport()
        self.extra_transports: list[Transport] = []

    def new_transport(self, **options: Any) -> Transport:
        """Another transport of the stack's kind (to kill a node without deregistering it, or with other limits)."""
        transport = self.transport_type(TransportOptions(**options))
        if hasattr(self, "extra_transports"):
            self.extra_transports.append(transport)
        return transport

    def server(self, *handlers: object, transport: Any = None, **options: Any) -> RPCServer:
        options.setdefault("name", self.name)
        server = RPCServer(
            ServerOptions(**options),
            transport=transport or self.transport,
            registry=self.registry,
            broker=self.broker,
        )
        for handler in handlers:
            server.handle(handler)
        self.servers.append(server)
        return server

    def client(self, *, transport: Any = None, **options: Any) -> RPCClient:
        from micro.client.options import ClientOptions

        client = RPCClient(
            ClientOptions(**options),
            transport=transport or self.transport,
            selector=RandomSelector(registry=self.registry),
            broker=self.broker,
        )
        self.clients.append(client)
        return client


@pytest.fixture(params=["memory", "tcp"])
async def stack(request: pytest.FixtureRequest) -> AsyncIterator[Stack]:
    """The stack on the in-process transport, then on real TCP sockets on 127.0.0.1."""
    made = Stack(name=f"test.{uuid.uuid4().hex[:10]}", transport_type=TRANSPORTS[request.param])
    try:
        yield made
    finally:
        for client in made.clients:
            await client.close()
            await client.selector.close()
        for server in made.servers:
            await server.stop()
        await made.broker.close()
        for transport in made.extra_transports:
            await transport.close()
        await made.transport.close()
        await made.registry.close()


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
