"""Fixtures for the asyncmicro-rabbitmq tests: a live RabbitMQ on loopback (skipped when down, failed under CI)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aio_pika
import pytest
from micro_conformance.live import LiveServer
from micro_rabbitmq import DEFAULT_URL, RabbitMQBrokerOptions
from micro_rabbitmq.broker import RabbitMQBroker

#: The server the suite runs against; MICRO_TEST_AMQP_URL points it elsewhere.
AMQP_URL = os.environ.get("MICRO_TEST_AMQP_URL", DEFAULT_URL)
#: Group queues the tests leave behind are deleted by RabbitMQ after this long unused.
QUEUE_EXPIRES = 60.0


RABBITMQ = LiveServer("RabbitMQ", AMQP_URL, default_port=5672, hint="start it or set MICRO_TEST_AMQP_URL")


@pytest.fixture(scope="session")
def amqp_url() -> str:
    RABBITMQ.require()
    return AMQP_URL


@pytest.fixture
def unique() -> Callable[[str], str]:
    """Names unique to this test: ``unique("orders")`` is ``"t-<hex>-orders"``."""
    run = uuid.uuid4().hex[:10]
    return lambda label: f"t-{run}-{label}"


@pytest.fixture
async def admin(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractConnection]:
    """A plain aio-pika connection for looking at (and cleaning up) what the broker declared."""
    connection = await aio_pika.connect(amqp_url)
    try:
        yield connection
    finally:
        await connection.close()


Maker = Callable[..., Awaitable[RabbitMQBroker]]


@pytest.fixture
async def make(amqp_url: str) -> AsyncIterator[Maker]:
    """Started brokers on the test server, closed after the test: ``await make(prefetch_count=1)``."""
    made: list[RabbitMQBroker] = []

    async def factory(**options: Any) -> RabbitMQBroker:
        options.setdefault("address", (amqp_url,))
        options.setdefault("queue_expires", QUEUE_EXPIRES)
        broker = RabbitMQBroker(RabbitMQBrokerOptions(**options))
        made.append(broker)
        await broker.start()
        return broker

    try:
        yield factory
    finally:
        for broker in made:
            await broker.close()


@pytest.fixture
async def broker(make: Maker) -> RabbitMQBroker:
    return await make()
