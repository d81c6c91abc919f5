"""Processes that stop, gracefully or not: SIGTERM drain, rolling restart, kill -9 and the registry."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import micro
import pytest
from conftest import Figure, eventually, need
from micro.client import Client
from micro.errors import MicroError, ServiceNotFound
from micro.registry import Registry


@pytest.fixture
async def client() -> Any:
    made = micro.create("client", cls=Client)
    try:
        yield made
    finally:
        await made.close()


async def test_sigterm_drains_every_call_in_flight(spawn: Any, unique: str, client: Client, figure: Figure) -> None:
    """SIGTERM mid-call: every call already running completes, then the process deregisters and exits 0."""
    server = await spawn(unique)
    calls = [asyncio.create_task(client.call(unique, "Echo.slow", {"seconds": 1.0}, timeout=15)) for _ in range(20)]
    for _ in calls:
        await server.expect("STARTED Echo.slow", timeout=15)
    signalled = time.monotonic()
    server.signal(signal.SIGTERM)
    results = await asyncio.gather(*calls, return_exceptions=True)
    failed = [r for r in results if isinstance(r, BaseException)]
    assert failed == [], failed
    assert await server.wait() == 0
    figure("SIGTERM drain: in-flight calls completed", f"{len(calls) - len(failed)}/{len(calls)}")
    figure("SIGTERM drain: signal to exit with 20 calls of 1 s in flight", time.monotonic() - signalled, "s")
    with pytest.raises(ServiceNotFound):  # deregistered on the way out
        async with micro.create("registry") as registry:
            await registry.get_service(unique)


async def test_rolling_restart_fails_no_call(spawn: Any, unique: str, client: Client, figure: Figure) -> None:
    """Two instances restarted one after the other (SIGTERM, then a new one) under a steady stream of
    calls from 8 callers: no call fails.

    As a rolling restart is done for real, the next instance is stopped only once its replacement takes
    calls (a readiness check): until the callers' selector has seen the replacement, the instance being
    stopped may be the only one it knows, and a node that has left answers no retry.
    """
    instances = [await spawn(unique), await spawn(unique)]
    outcomes = {"ok": 0, "failed": 0}
    errors: list[str] = []
    served_by: set[int] = set()
    stop = asyncio.Event()

    async def caller() -> None:
        while not stop.is_set():
            try:
                reply = await client.call(unique, "Echo.hello", {"name": "r"}, timeout=10)
                served_by.add(reply["pid"])
                outcomes["ok"] += 1
            except MicroError as exc:
                outcomes["failed"] += 1
                errors.append(repr(exc))
            await asyncio.sleep(0.005)

    callers = [asyncio.create_task(caller()) for _ in range(8)]
    try:
        await eventually(lambda: outcomes["ok"] > 50, "calls flowing before the restart", timeout=20)
        for index in range(len(instances)):
            await instances[index].stop()
            instances[index] = replacement = await spawn(unique)
            before = outcomes["ok"]
            await eventually(lambda before=before: outcomes["ok"] > before + 50, "calls flowing again", timeout=20)
            await eventually(lambda pid=replacement.pid: pid in served_by, "the replacement taking calls", timeout=20)
    finally:
        stop.set()
        await asyncio.gather(*callers)
    figure("rolling restart (2 instances, 8 callers): calls made", outcomes["ok"] + outcomes["failed"])
    figure("rolling restart (2 instances, 8 callers): failed calls", outcomes["failed"])
    assert outcomes["failed"] == 0, errors[:5]


REGISTRIES = {
    # name: (environment for the service and for the observer, backend to wait for, seconds allowed past the TTL)
    "local": ({}, None, 1.0),  # lapsed rows are invisible to reads at once
    # mDNS on loopback only; a peer probes a lapsed node once before dropping it (the sweep runs every second).
    "mdns": ({"MICRO_REGISTRY": "mdns", "MICRO_REGISTRY_INTERFACES": "127.0.0.1"}, None, 3.0),
    # Consul marks a TTL check critical on its own schedule.
    "consul": ({"MICRO_REGISTRY": "consul"}, ("Consul", 8500), 10.0),
    # etcd leases are whole seconds (2 s at least) and expire on the server's own clock.
    "etcd": ({"MICRO_REGISTRY": "etcd"}, ("etcd", 2379), 3.0),
    # NATS key-value: readers leave a node out once its expiry time (in the value) has passed.
    "nats": ({"MICRO_REGISTRY": "nats"}, ("NATS", 4222), 1.0),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(REGISTRIES))
async def test_a_killed_node_leaves_the_registry_within_its_ttl(
    spawn: Any, unique: str, kind: str, figure: Figure
) -> None:
    """kill -9 (no deregistration): the node disappears from lookups once its registration TTL lapses."""
    env, backend, slack = REGISTRIES[kind]
    if backend is not None:
        need(*backend)
    ttl = 4.0
    server = await spawn(unique, {**env, "MICRO_REGISTER_TTL": f"{ttl}s", "MICRO_REGISTER_INTERVAL": "1s"})
    registry: Registry = micro.create("registry", environ=env)
    async with registry:

        async def seen() -> bool:
            try:
                return any(s.nodes for s in await registry.get_service(unique))
            except ServiceNotFound:  # mDNS: the observer may not have heard the announcement yet
                return False

        await eventually(seen, f"the node in the {kind} registry", timeout=15)
        killed = time.monotonic()
        server.signal(signal.SIGKILL)
        await server.wait()

        async def gone() -> bool:
            try:
                services = await registry.get_service(unique)
            except ServiceNotFound:
                return True
            return not any(s.nodes for s in services)

        took = await eventually(gone, f"the killed node leaving the {kind} registry", timeout=ttl + 60)
        figure(f"kill -9: node gone from the {kind} registry (TTL {ttl:g}s)", time.monotonic() - killed, "s")
        # Renewals stop with the process; the registration lapses no later than one TTL after the last one.
        assert took <= ttl + slack
