"""The hooks micro finds through the ``micro.plugins`` entry point: factories by name, nothing imported yet."""

from __future__ import annotations

from micro.hookspecs import Register, hookimpl


@hookimpl
def micro_register_broker(register: Register) -> None:
    register("nats", "micro_nats.broker:NatsBroker")


@hookimpl
def micro_register_registry(register: Register) -> None:
    register("nats", "micro_nats.registry:NatsRegistry")


@hookimpl
def micro_register_transport(register: Register) -> None:
    register("nats", "micro_nats.transport:NatsTransport")
