"""The micro plugin of asyncmicro-rabbitmq: it registers the broker ``rabbitmq``."""

from __future__ import annotations

from micro.hookspecs import Register, hookimpl

__all__ = ["micro_register_broker"]


@hookimpl
def micro_register_broker(register: Register) -> None:
    register("rabbitmq", "micro_rabbitmq.broker:RabbitMQBroker")
