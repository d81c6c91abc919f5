"""``micro ps``: the services the runtime runs, with their status."""

from __future__ import annotations

import datetime
import json

import click

from ..runtime import Runtime, RuntimeService
from .run import run_runtime

__all__ = ["command"]


@click.command("ps")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def command(as_json: bool) -> None:
    """List the services started with `micro run`."""

    async def read(runtime: Runtime) -> list[RuntimeService]:
        return await runtime.read()

    services = run_runtime(read)
    if as_json:
        click.echo(json.dumps([s.to_dict() for s in services], indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for column in ("NAME", "VERSION", "STATUS", "PID", "EXIT", "RESTARTS", "STARTED", "SOURCE"):
        table.add_column(column)
    colours = {"running": "green", "restarting": "magenta", "stopped": "yellow", "error": "red"}
    for s in services:
        status = s.status.value if s.status else "?"
        started = datetime.datetime.fromtimestamp(s.started).strftime("%Y-%m-%d %H:%M:%S") if s.started else ""
        table.add_row(
            s.name,
            s.version,
            f"[{colours.get(status, 'white')}]{status}[/]",
            str(s.pid or ""),
            "" if s.exit_code is None else str(s.exit_code),
            str(s.restarts),
            started,
            s.source,
        )
    Console().print(table)
