"""The micro plugin of asyncmicro-conformance: it adds the ``micro conformance`` sub-command."""

from __future__ import annotations

from micro.hookspecs import Register, hookimpl

__all__ = ["micro_register_command"]


@hookimpl
def micro_register_command(register: Register) -> None:
    register("conformance", "micro_conformance.cli:command")
