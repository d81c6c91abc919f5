"""Faults: an unreachable server, refused credentials, and connections lost while running."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Callable

import aio_pika
import pytest
from micro.broker import Event, Message
from micro.errors import BackendUnavailable, ConnectionClosed, Unauthorized
from micro_conformance import eventually
from micro_rabbitmq import RabbitMQBrokerOptions
from micro_rabbitmq.broker import RabbitMQBroker

from .conftest import Maker


def drop_connection(broker: RabbitMQBroker) -> None:
    """Cut the broker's TCP connection as a network failure would: no AMQP close, the socket just goes."""
    connection = broker.connection
    assert connection is not None
    amqp = connection.transport.connection  # type: ignore[union-attr]
    # aiormq keeps the socket's writer only in its writer task; aborting it is what a dead peer looks like.
    writer = amqp._writer_task.get_coro().cr_frame.f_locals["writer"]
    writer.transport.abort()


async def test_unreachable_server_fails_start_quickly_naming_address_and_variable() -> None:
    broker = RabbitMQBroker(RabbitMQBrokerOptions(address=("amqp://guest:secret@127.0.0.1:1/",), connect_timeout=2))
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        await broker.start()
    assert time.monotonic() - started < 3
    message = str(caught.value)
    assert "127.0.0.1:1" in message
    assert "MICRO_BROKER_ADDRESS" in message
    assert "secret" not in message, "the password leaked into the error"
    # publish starts a broker nobody started, and fails the same way
    with pytest.raises(BackendUnavailable, match="MICRO_BROKER_ADDRESS"):
        await broker.publish("t", Message(b"x"))
    await broker.close()


async def test_refused_credentials_are_unauthorized(amqp_url: str) -> None:
    bad = amqp_url.replace("guest:guest@", "bad:wrong@")
    broker = RabbitMQBroker(RabbitMQBrokerOptions(address=(bad,)))
    with pytest.raises(Unauthorized, match="authentication failed") as caught:
        await broker.start()
    assert "MICRO_BROKER_ADDRESS" in str(caught.value)
    assert "wrong" not in str(caught.value)


async def test_the_first_reachable_address_is_used(amqp_url: str) -> None:
    broker = RabbitMQBroker(RabbitMQBrokerOptions(address=("amqp://guest:guest@127.0.0.1:1/", amqp_url)))
    async with broker:
        assert broker.address == amqp_url.replace(":guest@", ":***@")
        got: list[bytes] = []

        async def take(event: Event) -> None:
            got.append(event.message.body)

        await broker.subscribe("failover-check", take)
        await broker.publish("failover-check", Message(b"ok"))
        await eventually(lambda: got == [b"ok"])


async def test_closed_broker_refuses_until_started_again(broker: RabbitMQBroker) -> None:
    await broker.close()
    assert broker.connection is None
    with pytest.raises(ConnectionClosed):
        await broker.publish("t", Message(b"x"))
    await broker.start()
    await broker.publish("t", Message(b"x"))


async def test_a_lost_connection_is_restored_with_its_subscriptions(
    make: Maker, admin: aio_pika.abc.AbstractConnection, unique: Callable[[str], str]
) -> None:
    """After the socket dies: publish retries through the reconnect, both kinds of subscriber resume,
    the delivery in progress comes again (its ack was lost), and acked messages are not delivered again."""
    broker = await make(reconnect_interval=0.2)
    topic, group = unique("t"), unique("g")
    group_got: list[bytes] = []
    broadcast_got: list[bytes] = []
    hold = asyncio.Event()

    async def group_handler(event: Event) -> None:
        group_got.append(event.message.body)
        if event.message.body == b"in-flight" and group_got.count(b"in-flight") == 1:
            await hold.wait()  # still running when the connection drops: its ack cannot reach RabbitMQ

    async def broadcast_handler(event: Event) -> None:
        broadcast_got.append(event.message.body)

    await broker.subscribe(topic, group_handler, queue=group)
    await broker.subscribe(topic, broadcast_handler)
    await broker.publish(topic, Message(b"before"))
    await eventually(lambda: b"before" in group_got and b"before" in broadcast_got)
    await broker.publish(topic, Message(b"in-flight"))
    await eventually(lambda: b"in-flight" in group_got)

    drop_connection(broker)
    await broker.publish(topic, Message(b"during"))  # retried once the connection is back
    hold.set()

    await eventually(lambda: b"during" in group_got, what="the group receiving what was published during the outage")
    await eventually(lambda: group_got.count(b"in-flight") == 2, what="the unacknowledged delivery coming back")

    probes = 0

    async def broadcast_resumed() -> bool:
        nonlocal probes
        probes += 1
        await broker.publish(topic, Message(f"probe{probes}".encode()))
        await asyncio.sleep(0.05)
        return any(body.startswith(b"probe") for body in broadcast_got)

    await eventually(broadcast_resumed, what="the broadcast subscriber resuming")
    await asyncio.sleep(0.2)
    assert group_got.count(b"before") == 1, "an acked message was delivered again after the reconnect"
    assert broadcast_got.count(b"before") == 1
    async with await admin.channel() as channel:
        await channel.queue_delete(f"micro:{topic}:{group}")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="rabbitmqctl is not installed on this machine")
@pytest.mark.skipif(os.geteuid() != 0, reason="rabbitmqctl needs root (the Erlang cookie) to close a connection")
async def test_a_connection_closed_by_the_server_is_restored(make: Maker, unique: Callable[[str], str]) -> None:
    """``rabbitmqctl close_connection``: RabbitMQ itself ends the connection (CONNECTION_FORCED)."""
    broker = await make(reconnect_interval=0.2)
    topic = unique("t")
    got: list[bytes] = []

    async def take(event: Event) -> None:
        got.append(event.message.body)

    await broker.subscribe(topic, take)

    def close_ours() -> None:
        listing = subprocess.run(
            ["rabbitmqctl", "list_connections", "-q", "--no-table-headers", "pid", "client_properties"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        (pid,) = [line.split("\t")[0] for line in listing.stdout.splitlines() if broker.connection_name in line]
        subprocess.run(
            ["rabbitmqctl", "close_connection", pid, "micro test"], capture_output=True, timeout=30, check=True
        )

    await asyncio.to_thread(close_ours)
    probes = 0

    async def resumed() -> bool:
        nonlocal probes
        probes += 1
        await broker.publish(topic, Message(f"p{probes}".encode()))
        await asyncio.sleep(0.05)
        return bool(got)

    await eventually(resumed, timeout=10, what="delivery after the server closed the connection")
