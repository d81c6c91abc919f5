"""``micro describe <service>``: nodes and endpoints, with request and response shapes."""

from __future__ import annotations

from typing import Any

import click

from ._service import dump, run

__all__ = ["command"]


def _shape(value: dict[str, Any] | None, depth: int = 0) -> str:
    """A Value tree as compact text: ``HelloRequest {name: str, tags: list[str]}``."""
    if not value:
        return "-"
    fields = value.get("values") or []
    if not fields or depth > 3:
        return str(value.get("type") or "any")
    inner = ", ".join(f"{f.get('name')}: {_shape(f, depth + 1)}" for f in fields)
    return f"{value.get('type')} {{{inner}}}"


@click.command("describe")
@click.argument("service")
@click.option("--json", "as_json", is_flag=True, help="Print the registry entries as JSON.")
def command(service: str, as_json: bool) -> None:
    """Show SERVICE's versions, nodes and endpoints (with request/response shapes)."""

    async def main() -> list[dict[str, Any]]:
        from ..plugins import create
        from ..registry.base import Registry

        registry = create("registry", cls=Registry)
        try:
            return [entry.to_dict() for entry in await registry.get_service(service)]
        finally:
            await registry.close()

    entries = run(main, timeout=30.0)
    if as_json:
        click.echo(dump(entries))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    for entry in entries:
        console.print(f"[bold]{escape(entry['name'])}[/bold] version {escape(entry['version'])}")
        nodes = Table(title="nodes", title_justify="left", box=None)
        for column in ("id", "address", "metadata"):
            nodes.add_column(column)
        for node in entry["nodes"]:
            metadata = ", ".join(f"{k}={v}" for k, v in sorted(node["metadata"].items()))
            nodes.add_row(escape(node["id"]), escape(node["address"]), escape(metadata))
        console.print(nodes)
        endpoints = Table(title="endpoints", title_justify="left", box=None)
        for column in ("endpoint", "request", "response", "metadata"):
            endpoints.add_column(column)
        for endpoint in sorted(entry["endpoints"], key=lambda e: e["name"]):
            metadata = ", ".join(f"{k}={v}" for k, v in sorted(endpoint["metadata"].items()))
            endpoints.add_row(
                escape(endpoint["name"]),
                escape(_shape(endpoint["request"])),
                escape(_shape(endpoint["response"])),
                escape(metadata),
            )
        console.print(endpoints)
