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
    from ._text import table, terminal_width

    rows = []
    for s in services:
        status = s.status.value if s.status else "?"
        started = datetime.datetime.fromtimestamp(s.started).strftime("%Y-%m-%d %H:%M:%S") if s.started else ""
        exit_code = "" if s.exit_code is None else str(s.exit_code)
        rows.append([s.name, s.version, status, str(s.pid or ""), exit_code, str(s.restarts), started, s.source])
    columns = ["NAME", "VERSION", "STATUS", "PID", "EXIT", "RESTARTS", "STARTED", "SOURCE"]
    click.echo(table(columns, rows, width=terminal_width(), keep=("NAME", "STATUS")))
