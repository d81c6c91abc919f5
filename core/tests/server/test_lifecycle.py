"""The server on Component's one lifecycle rule: _start/_close hooks, one start at a time, restartable."""

from __future__ import annotations

import asyncio
import uuid

from micro.registry.memory import MemoryRegistry
from micro.server.options import ServerOptions
from micro.server.rpc import RPCServer
from micro.transport.memory import MemoryTransport


class Counting(RPCServer):
    """Counts how often the hooks run, and can hold _start open to race it."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.starts = 0
        self.closes = 0
        self.gate: asyncio.Event | None = None

    async def _listen(self) -> None:
        self.starts += 1
        if self.gate is not None:
            await self.gate.wait()
        await super()._listen()

    async def _close(self) -> None:
        self.closes += 1
        await super()._close()


def server(registry: MemoryRegistry) -> Counting:
    return Counting(ServerOptions(name=f"life-{uuid.uuid4().hex[:8]}"), transport=MemoryTransport(), registry=registry)


async def names(registry: MemoryRegistry, name: str) -> int:
    return sum(len(s.nodes) for s in await registry.list_services() if s.name == name)


async def test_concurrent_starts_start_once_and_stop_is_idempotent() -> None:
    registry = MemoryRegistry()
    srv = server(registry)
    srv.gate = asyncio.Event()
    starting = [asyncio.ensure_future(srv.start()) for _ in range(5)]
    await asyncio.sleep(0.05)
    srv.gate.set()
    await asyncio.gather(*starting)
    assert srv.starts == 1
    assert srv.running
    assert [s.name for s in await registry.get_service(srv.options.name)]
    await asyncio.gather(srv.stop(), srv.close(), srv.stop())
    assert srv.closes == 1
    assert not srv.running
    assert srv.options.name not in {s.name for s in await registry.list_services()}
    await registry.close()


async def test_a_stop_during_start_waits_for_it_then_stops() -> None:
    registry = MemoryRegistry()
    srv = server(registry)
    srv.gate = asyncio.Event()
    starting = asyncio.ensure_future(srv.start())
    await asyncio.sleep(0.05)
    stopping = asyncio.ensure_future(srv.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waits for the start it would otherwise race
    srv.gate.set()
    await starting
    await stopping
    assert (srv.starts, srv.closes) == (1, 1)
    assert not srv.running
    await registry.close()


async def test_stop_before_start_is_a_no_op_and_a_stopped_server_starts_again() -> None:
    registry = MemoryRegistry()
    srv = server(registry)
    await srv.stop()
    assert srv.closes == 0
    await srv.start()
    await srv.stop()
    await srv.start()
    assert srv.starts == 2
    assert srv.running
    assert [s.name for s in await registry.get_service(srv.options.name)]
    await srv.stop()
    assert srv.closes == 2
    await registry.close()


async def test_the_server_registers_again_after_the_registry_lost_it() -> None:
    """The heartbeat (micro.registry.heartbeat) renews every register_interval: a lost node comes back."""
    registry = MemoryRegistry()
    srv = RPCServer(
        ServerOptions(name=f"life-{uuid.uuid4().hex[:8]}", register_ttl=5.0, register_interval=0.05),
        transport=MemoryTransport(),
        registry=registry,
    )
    await srv.start()
    try:
        await registry.deregister(srv.service())  # what a restarted registry looks like from here
        assert await names(registry, srv.options.name) == 0
        deadline = asyncio.get_running_loop().time() + 10
        while await names(registry, srv.options.name) == 0:
            assert asyncio.get_running_loop().time() < deadline, "the server never registered again"
            await asyncio.sleep(0.02)
    finally:
        await srv.stop()
    await registry.close()
