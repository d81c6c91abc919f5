"""The ``micro`` command.

Sub-commands are imported only when they run, so ``micro --help`` stays fast.
Built-in ones are listed in :data:`COMMANDS`; plugins add theirs through the
``micro_register_command`` hook (``micro conformance`` comes from
micro-conformance that way).
"""

from __future__ import annotations

import importlib
from typing import Any, Final

import click

from .._version import __version__

__all__ = ["COMMANDS", "main"]

#: Built-in sub-commands: name -> "module:attribute" of a click command.
COMMANDS: Final[dict[str, str]] = {
    "plugins": "micro.cli.plugins:command",
    "debug": "micro.cli.debug:command",
    "call": "micro.cli.call:command",
    "describe": "micro.cli.describe:command",
    "publish": "micro.cli.publish:command",
    "services": "micro.cli.services:command",
    "kill": "micro.cli.kill:command",
    "logs": "micro.cli.logs:command",
    "ps": "micro.cli.ps:command",
    "run": "micro.cli.run:command",
}


def _plugin_commands() -> dict[str, str]:
    from ..plugins import get_manager

    found: dict[str, str] = {}
    try:
        providers = get_manager().providers("command")
    except Exception:  # a broken plugin must not break `micro --help`; `micro plugins` reports it
        return found
    for provider in providers:
        if provider.name not in COMMANDS and isinstance(provider.factory, str):
            found[provider.name] = provider.factory
    return found


class LazyGroup(click.Group):
    """A group whose commands are imported on first use."""

    def _table(self) -> dict[str, str]:
        return {**_plugin_commands(), **COMMANDS}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._table())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self._table().get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
        if not isinstance(obj, click.Command):
            raise click.ClickException(f"{target} is not a click command")
        return obj


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="micro")
def main() -> None:
    """micro: a pluggable microservice framework."""
