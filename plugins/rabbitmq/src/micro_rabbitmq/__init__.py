"""micro-rabbitmq: the ``rabbitmq`` broker for micro (``MICRO_BROKER=rabbitmq``).

The broker itself lives in :mod:`micro_rabbitmq.broker`, imported only when it
is selected; its settings are :class:`RabbitMQBrokerOptions`.
"""

from __future__ import annotations

from .options import DEFAULT_URL, RabbitMQBrokerOptions

__all__ = ["DEFAULT_URL", "RabbitMQBrokerOptions"]
