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
    from ._text import styled, table

    for entry in entries:
        click.echo(f"{styled(entry['name'], 'bold')} version {entry['version']}")
        nodes = []
        for node in entry["nodes"]:
            metadata = ", ".join(f"{k}={v}" for k, v in sorted(node["metadata"].items()))
            nodes.append((node["id"], node["address"], metadata))
        click.echo(table(("id", "address", "metadata"), nodes, title="nodes"))
        endpoints = []
        for endpoint in sorted(entry["endpoints"], key=lambda e: e["name"]):
            metadata = ", ".join(f"{k}={v}" for k, v in sorted(endpoint["metadata"].items()))
            endpoints.append((endpoint["name"], _shape(endpoint["request"]), _shape(endpoint["response"]), metadata))
        click.echo(table(("endpoint", "request", "response", "metadata"), endpoints, title="endpoints"))
