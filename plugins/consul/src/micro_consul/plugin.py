"""The micro plugin of asyncmicro-consul: the registry, config source and sync named ``consul``."""

from __future__ import annotations

from micro.hookspecs import Register, hookimpl

__all__ = ["micro_register_config", "micro_register_registry", "micro_register_sync"]


@hookimpl
def micro_register_registry(register: Register) -> None:
    register("consul", "micro_consul.registry:ConsulRegistry")


@hookimpl
def micro_register_config(register: Register) -> None:
    register("consul", "micro_consul.config:ConsulSource")


@hookimpl
def micro_register_sync(register: Register) -> None:
    register("consul", "micro_consul.sync:ConsulSync")
