"""The registry with 1,000 services x 3 nodes in the real agent (issue #17).

Watching used to cost one blocking query, so one connection, per service: past
about 99 services the watch failed, and the idle process kept a core busy.
These tests hold the registry to bounded connections and an idle watch that
costs (almost) nothing, while watchers, a selector and the http broker keep
working.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import aiohttp
import pytest
from micro.broker import Event, Message
from micro.broker.http import HTTPBroker, HTTPBrokerOptions
from micro.registry import Node, Result, Service, Watcher
from micro.selector.cache import RandomSelector
from micro_conformance import eventually
from micro_consul.registry import ConsulRegistry

from .conftest import Agent

T = TypeVar("T")

SERVICES = 1000
NODES = 3
#: Registrations (and removals) in flight at once while the test sets up and cleans up.
IN_FLIGHT = 16
#: What the registry may hold open to the agent: its default max_connections.
CONNECTIONS = 8
#: CPU seconds the whole test process may use while a watch of every service idles for IDLE seconds.
IDLE, IDLE_CPU = 3.0, 0.45


def sockets_to(port: int) -> int:
    """TCP connections this process has open to ``port`` (read from /proc: no psutil needed)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed in the meantime
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as rows:
                lines = rows.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            # state 01 is ESTABLISHED: busy and idle keep-alive connections alike.
            if state == "01" and int(remote.rpartition(":")[2], 16) == port and inode in inodes:
                count += 1
    return count


async def bounded(call: Callable[[T], Awaitable[Any]], items: Iterable[T]) -> None:
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one(item: T) -> None:
        async with limit:
            await call(item)

    await asyncio.gather(*(one(item) for item in items))


async def remove_all(agent: Agent, prefix: str) -> None:
    """Deregister every agent service named ``prefix...``, with plain HTTP: whatever state the registry is in."""

    async def ours() -> list[str]:
        _, services = await agent.get("/v1/agent/services")
        return [sid for sid, info in services.items() if str(info.get("Service", "")).startswith(prefix)]

    for _ in range(10):
        try:
            ids = await ours()
            if not ids:
                return
            await bounded(lambda sid: agent.put(f"/v1/agent/service/deregister/{sid}"), ids)
        except (aiohttp.ClientError, OSError):
            # The agent refuses connections for a moment after a client held too many (http_max_conns_per_client).
            await asyncio.sleep(1)
    left = await ours()
    assert not left, f"{len(left)} test services could not be removed from the agent"


class Log:
    """A watcher read in the background: its results, and the error it raised if any."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher
        self.results: list[Result] = []
        self.error: BaseException | None = None
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        try:
            async for result in self.watcher:
                self.results.append(result)
        except Exception as exc:
            self.error = exc

    def nodes_of(self, name: str) -> list[list[str]]:
        return [[n.id for n in r.service.nodes] for r in self.results if r.service.name == name]

    async def close(self) -> None:
        await self.watcher.stop()
        await asyncio.wait({self.task}, timeout=5)


async def test_many_watchers_by_name_share_the_connections(unique: Callable[[str], str], agent: Agent) -> None:
    """150 watch(name), as many services as the old watch held connections for (it stopped at 100)."""
    names = [unique(f"named-{i:03d}") for i in range(150)]
    registry = ConsulRegistry()
    logs = [Log(registry.watch(name)) for name in names]
    try:
        await eventually(
            lambda: all(log.watcher.ready.is_set() for log in logs),  # type: ignore[attr-defined]
            timeout=30,
            what="the watchers' first read",
        )
        service = Service(names[77], nodes=[Node("n", "127.0.0.1:1")])
        await registry.register(service)
        await eventually(lambda: logs[77].nodes_of(names[77]) == [["n"]], timeout=30, what="the create")
        assert [s.name for s in await registry.get_service(names[77])] == [names[77]]
        assert sockets_to(8500) <= CONNECTIONS
        assert all(log.error is None and not log.results for log in logs if log is not logs[77])
    finally:
        for log in logs:
            await log.close()
        await registry.close()
        await remove_all(agent, names[0].rpartition("-")[0])


@pytest.mark.slow
@pytest.mark.timeout(300)  # about 15 s, but 3,000 registrations and removals crawl when the agent's host is busy
async def test_a_thousand_services_watched_with_bounded_connections_and_no_idle_cpu(
    unique: Callable[[str], str], agent: Agent
) -> None:
    prefix = unique("scale")
    services = [
        Service(f"{prefix}-{i:04d}", "1.0.0", nodes=[Node(f"n{j}", f"127.0.0.1:{20000 + j}") for j in range(NODES)])
        for i in range(SERVICES)
    ]
    registry = ConsulRegistry()
    peak = 0

    sampling = asyncio.Event()
    sampling.set()

    async def sample() -> None:
        nonlocal peak
        while True:
            await sampling.wait()
            peak = max(peak, sockets_to(8500))
            await asyncio.sleep(0.02)

    sampler = asyncio.ensure_future(sample())
    logs: list[Log] = []
    selector = RandomSelector(registry=registry)
    broker = HTTPBroker(HTTPBrokerOptions(), registry=registry)
    try:
        await bounded(registry.register, services)
        every = Log(registry.watch())
        one = Log(registry.watch(services[1].name))
        logs += [every, one]
        await eventually(
            lambda: all(w.ready.is_set() for w in (every.watcher, one.watcher)),  # type: ignore[attr-defined]
            timeout=60,
            what="the watchers' first read",
        )
        # A first lookup through the selector while the watch runs.
        pick = await selector.select(services[500].name)
        assert pick().id in {"n0", "n1", "n2"}

        # Idle: two pending blocking queries, nothing else to do. (The sampler pauses: reading /proc costs CPU.)
        # Other test runs share the agent and each of their changes is news to watch(): of a few windows, one
        # without them shows what idling costs. The old watch (in a selector) burned 0.6 to 1.2 s per window.
        sampling.clear()
        for _ in range(3):
            started = time.process_time()
            await asyncio.sleep(IDLE)
            idle_cpu = time.process_time() - started
            if idle_cpu < IDLE_CPU:
                break
        sampling.set()
        peak = max(peak, sockets_to(8500))

        # One change: a fourth node for service 500, another for service 1 (watched by name too).
        for index in (500, 1):
            await registry.register(services[index].replace(nodes=[Node("n3", "127.0.0.1:20003")]))
        four = ["n0", "n1", "n2", "n3"]
        await eventually(lambda: every.nodes_of(services[500].name) == [four], timeout=30, what="watch() result")
        await eventually(lambda: one.nodes_of(services[1].name) == [four], timeout=30, what="watch(name) result")
        assert every.nodes_of(services[1].name) == [four]
        assert [r.action for r in every.results if r.service.name.startswith(prefix)] == ["update", "update"]
        picked: set[str] = set()

        async def sees_the_new_node() -> bool:
            pick = await selector.select(services[500].name)
            picked.update(pick().id for _ in range(50))
            return "n3" in picked

        await eventually(sees_the_new_node, timeout=30, what="the selector picking the new node")

        # The http broker follows the same registry (a watch of its own service) and delivers.
        received: list[bytes] = []

        async def handler(event: Event) -> None:
            received.append(event.message.body)

        topic = unique("topic")
        await broker.subscribe(topic, handler)
        await broker.publish(topic, Message(b"through consul"))
        await eventually(lambda: received == [b"through consul"], timeout=30, what="the broker's delivery")

        for log in logs:
            assert log.error is None, f"a watcher raised {log.error!r}"
            assert not log.watcher.stopped
        assert peak <= CONNECTIONS, f"{peak} connections to the agent at once"
        assert idle_cpu < IDLE_CPU, f"the idle watch used {idle_cpu:.2f}s of CPU in {IDLE:g}s"
    finally:
        sampler.cancel()
        await broker.close()
        await selector.close()
        for log in logs:
            await log.close()
        await registry.close()
        await remove_all(agent, prefix)
