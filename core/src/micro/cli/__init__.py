"""The ``micro`` command.

Sub-commands are imported only when they run, so ``micro --help`` stays fast.
Built-in ones are listed in :data:`COMMANDS`, and ``micro --help`` prints their
:data:`SUMMARIES` instead of importing them. Plugins add theirs through the
``micro_register_command`` hook (``micro conformance`` comes from
asyncmicro-conformance that way); ``micro --help`` imports a plugin's command module
for its summary, so that module should import its heavy dependencies inside the
command.
"""

from __future__ import annotations

import importlib
from typing import Any, Final

import click

from .._version import __version__

__all__ = ["COMMANDS", "SUMMARIES", "main"]

#: Built-in sub-commands: name -> "module:attribute" of a click command.
COMMANDS: Final[dict[str, str]] = {
    "plugins": "micro.cli.plugins:command",
    "auth": "micro.cli.auth:command",
    "debug": "micro.cli.debug:command",
    "call": "micro.cli.call:command",
    "describe": "micro.cli.describe:command",
    "publish": "micro.cli.publish:command",
    "services": "micro.cli.services:command",
    "kill": "micro.cli.kill:command",
    "logs": "micro.cli.logs:command",
    "ps": "micro.cli.ps:command",
    "run": "micro.cli.run:command",
    "network": "micro.cli.network:command",
    "new": "micro.cli.new:command",
    "store": "micro.cli.store:command",
    "config": "micro.cli.config:command",
    "subscribe": "micro.cli.subscribe:command",
}

#: The first paragraph of each built-in command's help, which ``micro --help`` shows (shortened to fit).
#: Importing the commands instead would cost asyncio and the runtime (~80 ms); a test keeps the two equal.
SUMMARIES: Final[dict[str, str]] = {
    "plugins": "List installed plugins: distribution, version, interface, name, core range, status.",
    "auth": "Create accounts, issue tokens and edit rules in the shared auth store.",
    "debug": "Read a running service's logs, traces and stats.",
    "call": "Call ENDPOINT (Class.method) of SERVICE with REQUEST (JSON, default {}).",
    "describe": "Show SERVICE's versions, nodes and endpoints (with request/response shapes).",
    "publish": "Publish MESSAGE (JSON) on TOPIC, encoded as application/json.",
    "services": "List registered services with their versions.",
    "kill": "Stop each service NAME (SIGTERM, then SIGKILL after the grace period) and remove it.",
    "logs": "Print the service NAME's stdout and stderr.",
    "ps": "List the services started with `micro run`.",
    "run": "Start SOURCE in the background and print its name and pid.",
    "network": "Run a network node, or show its nodes, routes, services and graph.",
    "new": "Create a service package NAME: handler, tests, pyproject and README.",
    "store": "Read, write, list and delete records of the configured store.",
    "config": "Get and set values of the configured config source.",
    "subscribe": "Print each message published on TOPIC as one JSON line, as it arrives.",
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

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The "Commands" section, as click writes it, without importing the built-in commands."""
        commands: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            summary = SUMMARIES.get(name)
            cmd = click.Command(name, help=summary) if summary is not None else self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                commands.append((name, cmd))
        if not commands:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in commands)
        with formatter.section("Commands"):
            formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in commands])


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="micro")
@click.option("--debug", is_flag=True, help="Show tracebacks of local errors (as MICRO_LOG_LEVEL=debug).")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """micro: a pluggable microservice framework.

    Exit status: 0 done, 1 the service (or a remote call) returned an error, printed as JSON on stderr;
    2 bad usage; 3 a local problem: a bad MICRO_* name or option, or a backend that does not answer.
    """
    ctx.obj = {"debug": debug}
