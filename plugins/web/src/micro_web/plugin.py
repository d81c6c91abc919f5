"""The hooks micro finds through the ``micro.plugins`` entry point: the ``micro web`` command, not imported yet."""

from __future__ import annotations

from micro.hookspecs import Register, hookimpl


@hookimpl
def micro_register_command(register: Register) -> None:
    register("web", "micro_web.cli:command")
