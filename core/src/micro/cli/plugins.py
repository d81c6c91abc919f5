"""``micro plugins``: what is installed, for which interface, and whether it loaded."""

from __future__ import annotations

import json
from typing import Any

import click

from ..plugins import CORE_DISTRIBUTION, PluginManager, get_manager

__all__ = ["command", "rows"]


def rows(manager: PluginManager) -> list[dict[str, Any]]:
    """One row per registered name, then one per plugin that did not load."""
    providers = manager.providers()
    counts: dict[tuple[str, str], int] = {}
    for p in providers:
        counts[(p.interface, p.name)] = counts.get((p.interface, p.name), 0) + 1
    defaults: dict[str, int] = {}
    for p in providers:
        if p.default:
            defaults[p.interface] = defaults.get(p.interface, 0) + 1
    table: list[dict[str, Any]] = []
    for p in providers:
        status = "ok"
        if counts[(p.interface, p.name)] > 1:
            status = "conflict"
        elif p.default and defaults[p.interface] > 1:
            status = "conflict (default)"
        dist = p.distribution
        table.append(
            {
                "distribution": dist.name if dist else None,
                "version": dist.version if dist else None,
                "interface": p.interface,
                "name": p.name,
                "default": p.default,
                "core_range": dist.core_range if dist else None,
                "status": status,
                "plugin": p.plugin,
                "factory": p.factory if isinstance(p.factory, str) else f"{p.factory.__module__}:{p.factory.__name__}",
            }
        )
    for info in manager.plugins():
        if info.status == "ok":
            continue
        dist = info.distribution
        table.append(
            {
                "distribution": dist.name if dist else None,
                "version": dist.version if dist else None,
                "interface": None,
                "name": None,
                "default": False,
                "core_range": dist.core_range if dist else None,
                "status": f"{info.status}: {info.reason}",
                "plugin": info.name,
                "factory": None,
            }
        )
    return table


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def command(as_json: bool) -> None:
    """List installed plugins: distribution, version, interface, name, core range, status."""
    table = rows(get_manager())
    if as_json:
        click.echo(json.dumps(table, indent=2))
        return
    from ._text import table as text_table
    from ._text import terminal_width

    click.echo(f"micro plugins ({CORE_DISTRIBUTION} {get_manager().core_version})")
    lines = []
    for row in table:
        name = row["name"] or "-"
        if row["default"]:
            name += "*"
        core_range = row["core_range"]
        lines.append(
            [
                row["distribution"] or row["plugin"],
                row["version"] or "-",
                row["interface"] or "-",
                name,
                "any" if core_range == "" else (core_range or "undeclared"),
                row["status"],
            ]
        )
    # Distribution names share their first letters (asyncmicro-core, asyncmicro-consul): cut short they would
    # all read "asyncmicro-co…", so those, the interface and the core range are never shortened.
    columns = ["distribution", "version", "interface", "name", "core range", "status"]
    keep = ("distribution", "interface", "core range")
    click.echo(text_table(columns, lines, width=terminal_width(), keep=keep))
    click.echo("* the default of its interface")
