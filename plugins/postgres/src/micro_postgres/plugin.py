"""The hooks micro finds through the ``micro.plugins`` entry point: factories by name, nothing imported yet."""

from __future__ import annotations

from micro.hookspecs import Register, hookimpl


@hookimpl
def micro_register_store(register: Register) -> None:
    register("postgres", "micro_postgres.store:PostgresStore")


@hookimpl
def micro_register_sync(register: Register) -> None:
    register("postgres", "micro_postgres.sync:PostgresSync")
