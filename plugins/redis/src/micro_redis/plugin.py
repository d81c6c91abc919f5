"""The hooks micro finds through the ``micro.plugins`` entry point: factories by name, nothing imported yet."""

from __future__ import annotations

from micro.hookspecs import Register, hookimpl


@hookimpl
def micro_register_store(register: Register) -> None:
    register("redis", "micro_redis.store:RedisStore")


@hookimpl
def micro_register_broker(register: Register) -> None:
    register("redis", "micro_redis.broker:RedisBroker")


@hookimpl
def micro_register_sync(register: Register) -> None:
    register("redis", "micro_redis.sync:RedisSync")
