"""The micro plugin of asyncmicro-etcd: the registry, config source and sync named ``etcd``."""

from __future__ import annotations

from micro.hookspecs import Register, hookimpl

__all__ = ["micro_register_config", "micro_register_registry", "micro_register_sync"]


@hookimpl
def micro_register_registry(register: Register) -> None:
    register("etcd", "micro_etcd.registry:EtcdRegistry")


@hookimpl
def micro_register_sync(register: Register) -> None:
    register("etcd", "micro_etcd.sync:EtcdSync")


@hookimpl
def micro_register_config(register: Register) -> None:
    register("etcd", "micro_etcd.config:EtcdSource")
