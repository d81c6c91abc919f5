"""``micro run``: start a service in the background with the runtime (``MICRO_RUNTIME``, local by default)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import click

from ..errors import MicroError
from ..runtime import Runtime, RuntimeService

__all__ = ["command", "run_runtime"]

T = TypeVar("T")


def run_runtime(operation: Callable[[Runtime], Awaitable[T]]) -> T:
    """Run ``operation(runtime)`` on a started runtime; a micro error becomes a one-line CLI error."""
    from .. import create

    async def main() -> T:
        runtime = create("runtime", cls=Runtime)
        async with runtime:
            return await operation(runtime)

    try:
        return asyncio.run(main())
    except MicroError as exc:
        raise click.ClickException(str(exc)) from exc


def _parse_env(values: tuple[str, ...]) -> dict[str, str]:
    env = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint="--env")
        env[key] = value
    return env


@click.command("run", context_settings={"ignore_unknown_options": True})
@click.argument("source")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.option("--name", help="The service name (default: the directory, file or module name).")
@click.option("--version", "version", default="latest", show_default=True, help="The version to record.")
@click.option("--env", "-e", "env", multiple=True, metavar="KEY=VALUE", help="Set a variable (repeatable).")
@click.option("--command", "command_", metavar="CMD", help="Run CMD instead of what SOURCE implies.")
def command(
    source: str, args: tuple[str, ...], name: str | None, version: str, env: tuple[str, ...], command_: str | None
) -> None:
    """Start SOURCE in the background and print its name and pid.

    SOURCE is a directory (with __main__.py or main.py), a .py file, or a
    module path. ARGS after SOURCE are passed to the service. The service
    keeps running after this command returns: see `micro ps`, `micro logs`,
    `micro kill`.
    """
    from ..runtime.local import default_name

    variables = _parse_env(env)
    service = RuntimeService(name=name or default_name(source), version=version, source=source)

    async def start(runtime: Runtime) -> RuntimeService:
        return await runtime.create(service, command=command_, args=args, env=variables)

    started = run_runtime(start)
    click.echo(f"{started.name} {started.pid}")
