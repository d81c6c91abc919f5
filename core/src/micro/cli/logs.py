"""``micro logs``: the output of a service started with ``micro run``."""

from __future__ import annotations

import click

from ..runtime import Runtime
from .run import run_runtime

__all__ = ["command"]


@click.command("logs")
@click.argument("name")
@click.option("--count", "-n", type=click.IntRange(min=0), help="Only the last N lines.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing lines as they are written (Ctrl-C to stop).")
def command(name: str, count: int | None, follow: bool) -> None:
    """Print the service NAME's stdout and stderr."""

    async def show(runtime: Runtime) -> None:
        async with await runtime.logs(name, count=count, stream=follow) as lines:
            async for line in lines:
                click.echo(line)

    try:
        run_runtime(show)
    except KeyboardInterrupt:
        pass
