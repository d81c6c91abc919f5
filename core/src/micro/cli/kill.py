"""``micro kill``: stop services started with ``micro run`` and forget them."""

from __future__ import annotations

import click

from ..runtime import Runtime
from .run import run_runtime

__all__ = ["command"]


@click.command("kill")
@click.argument("names", nargs=-1, required=True)
def command(names: tuple[str, ...]) -> None:
    """Stop each service NAME (SIGTERM, then SIGKILL after the grace period) and remove it."""

    async def kill(runtime: Runtime) -> None:
        for name in names:
            await runtime.delete(name)
            click.echo(f"{name} stopped")

    run_runtime(kill)
