"""asyncmicro-conformance's broker contract against RabbitMQ (``micro conformance broker rabbitmq`` runs the same)."""

from __future__ import annotations

from typing import ClassVar

import pytest
from micro_conformance.broker import BrokerContract

from .conftest import QUEUE_EXPIRES


@pytest.mark.usefixtures("amqp_url")
class TestRabbitMQBroker(BrokerContract):
    name = "rabbitmq"
    # The contract's queue groups are unique per test: let RabbitMQ delete their durable queues afterwards.
    options: ClassVar = {"queue_expires": QUEUE_EXPIRES}
