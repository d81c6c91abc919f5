"""``micro services``: the services in the registry."""

from __future__ import annotations

import click

from ._service import dump, run
from ._text import table, terminal_width

__all__ = ["command"]


@click.command("services")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def command(as_json: bool) -> None:
    """List registered services with their versions."""

    async def main() -> list[dict[str, object]]:
        from ..plugins import create
        from ..registry.base import Registry

        registry = create("registry", cls=Registry)
        try:
            rows: dict[str, list[str]] = {}
            for service in await registry.list_services():
                rows.setdefault(service.name, []).append(service.version)
            return [{"name": name, "versions": versions} for name, versions in sorted(rows.items())]
        finally:
            await registry.close()

    rows = run(main, timeout=30.0)
    if as_json:
        click.echo(dump(rows))
        return
    if not rows:
        click.echo("no services registered", err=True)
        return
    lines = [[str(row["name"]), ", ".join(row["versions"])] for row in rows]  # type: ignore[arg-type]
    click.echo(table(["service", "versions"], lines, width=terminal_width()))
