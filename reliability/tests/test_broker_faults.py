"""Broker connections cut by the server mid-stream: no message whose publish returned is lost.

The server ends the connections the way an operator or a failover would: Redis with
``CLIENT KILL`` on every connection of the broker under test, RabbitMQ with
``rabbitmqctl close_connection``. NATS (micro-nats with JetStream) has its monitoring endpoint off
here, so its connection is cut on the client's side instead: the broker's socket is aborted under it,
which the server sees as a dropped connection. Publishing goes on throughout; a publish that raised is
the caller's to retry and is not counted, every publish that returned must reach the
queue-group subscriber at least once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import micro
import pytest
from conftest import Figure, eventually, need
from micro.broker import Broker, Event, Message
from micro.errors import MicroError

TOTAL = 600
CUT_AT = (150, 350)


async def _cut_redis(broker: Any) -> int:
    import redis.asyncio as redis

    raw = redis.Redis(host="127.0.0.1", port=6379)
    try:
        killed = 0
        for client in await raw.client_list():
            if client.get("name", "").startswith(broker.client_name):
                killed += await raw.client_kill_filter(_id=client["id"], skipme=True)
        return killed
    finally:
        await raw.aclose()


def _cut_rabbitmq_sync(broker: Any) -> int:
    listing = subprocess.run(
        ["rabbitmqctl", "list_connections", "-q", "--no-table-headers", "pid", "client_properties"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    pids = [line.split("\t")[0] for line in listing.stdout.splitlines() if broker.connection_name in line]
    for pid in pids:
        subprocess.run(["rabbitmqctl", "close_connection", pid, "reliability test"], capture_output=True, timeout=60)
    return len(pids)


async def _cut_rabbitmq(broker: Any) -> int:
    return await asyncio.to_thread(_cut_rabbitmq_sync, broker)


async def _drop_nats_stream(name: str) -> None:
    """Delete this run's JetStream stream: the broker creates it but never deletes it (it may be shared)."""
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect("nats://127.0.0.1:4222", allow_reconnect=False)
    try:
        try:
            await nc.jetstream().delete_stream(name)
        except NotFoundError:
            pass  # the broker never got as far as creating it
    finally:
        await nc.close()


async def _cut_nats(broker: Any) -> int:
    # No monitoring endpoint (connz/kick) on the server here: abort the client's socket under it.
    nc = broker._nc
    if nc is None or nc._transport is None:
        return 0
    nc._transport._io_writer.transport.abort()
    return 1


_NATS_RUN = uuid.uuid4().hex[:8]

BROKERS: dict[str, tuple[tuple[str, int], dict[str, Any], Callable[[Any], Awaitable[int]]]] = {
    "redis": (("Redis", 6379), {}, _cut_redis),
    "rabbitmq": (("RabbitMQ", 5672), {"reconnect_interval": 0.2}, _cut_rabbitmq),
    # JetStream: core NATS is at most once by design. A stream of this run's own (empty once acked).
    "nats": (
        ("NATS", 4222),
        {"jetstream": True, "ack_wait": 1.0, "stream": f"RELIABILITY_{_NATS_RUN}", "subject_prefix": f"rel{_NATS_RUN}"},
        _cut_nats,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(BROKERS))
async def test_no_confirmed_message_is_lost_when_the_server_cuts_the_connections(
    kind: str, unique: str, figure: Figure
) -> None:
    backend, options, cut = BROKERS[kind]
    need(*backend)
    if kind == "rabbitmq" and (shutil.which("rabbitmqctl") is None or os.geteuid() != 0):
        pytest.fail("rabbitmqctl (as root, for the Erlang cookie) is needed to close a connection from the server")
    broker: Broker = micro.create("broker", kind, **options)
    topic, group = f"{unique}.t", f"{unique}-g"
    received: set[int] = set()
    deliveries = 0

    async def take(event: Event) -> None:
        nonlocal deliveries
        deliveries += 1
        received.add(int(event.message.body))

    confirmed: set[int] = set()
    refused = 0
    cuts = 0
    recovery: list[float] = []
    try:
        async with broker:
            await broker.subscribe(topic, take, queue=group)
            for n in range(TOTAL):
                if n in CUT_AT:
                    killed = await cut(broker)
                    assert killed > 0, f"found no {kind} connection of the broker to cut"
                    cuts += 1
                    cut_time = time.monotonic()
                try:
                    await broker.publish(topic, Message(str(n).encode()))
                    confirmed.add(n)
                except MicroError:
                    refused += 1  # the caller was told: not a silent loss
                if n in CUT_AT:
                    recovery.append(time.monotonic() - cut_time)
                await asyncio.sleep(0.002)
            await eventually(lambda: confirmed <= received, f"every confirmed {kind} message delivered", timeout=60)
            lost = len(confirmed - received)
    finally:
        if kind == "nats":
            await _drop_nats_stream(options["stream"])
    figure(f"{kind} broker, server cut the connections {cuts}x: confirmed publishes", len(confirmed))
    figure(f"{kind} broker, server cut the connections {cuts}x: confirmed messages lost", lost)
    figure(f"{kind} broker, server cut the connections {cuts}x: publishes refused (caller told)", refused)
    figure(f"{kind} broker, server cut the connections {cuts}x: deliveries more than once", deliveries - len(received))
    figure(f"{kind} broker: the publish right after a cut returned after", max(recovery), "s")
    assert lost == 0
