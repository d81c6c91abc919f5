"""``micro debug logs|trace|stats|health <service>``: read a running service through its ``Debug`` endpoints."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import time
from typing import Any

import click

from ..errors import MicroError
from ..options import parse_duration
from ._text import Cell, Tree, styled, table

__all__ = ["command"]

_LEVEL_STYLES = {"trace": "dim", "debug": "dim", "warning": "yellow", "error": "red", "critical": "bold red"}


def _call(service: str, endpoint: str, request: dict[str, Any], address: str | None) -> Any:
    from ._service import signed_client

    async def main() -> Any:
        # The Debug endpoints answer the service's own local user (the client proves it with the per-user
        # secret) or, when the service enforces an auth, whom its rules admit (MICRO_TOKEN, MICRO_AUTH_ID/SECRET).
        async with signed_client(os.environ.get("MICRO_TOKEN")) as client:
            return await client.call(service, endpoint, request, address=address)

    from ..errors import BackendUnavailable, ConfigError
    from ._service import local_failure

    try:
        return asyncio.run(main())
    except (ConfigError, BackendUnavailable) as exc:  # this side's configuration or backends, not the service's
        local_failure(exc)
    except MicroError as exc:
        raise click.ClickException(f"{service} {endpoint}: {exc}") from exc


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="milliseconds")


def _since(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return time.time() - parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None


address_option = click.option("--address", help="Call this host:port instead of looking the service up.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print the raw response as JSON.")


@click.group("debug")
def command() -> None:
    """Read a running service's logs, traces and stats."""


@command.command("health")
@click.argument("service")
@address_option
def health(service: str, address: str | None) -> None:
    """Whether SERVICE answers."""
    response = _call(service, "Debug.health", {}, address)
    click.echo(response.get("status", "?") if isinstance(response, dict) else response)


@command.command("logs")
@click.argument("service")
@click.option("--count", "-n", type=click.IntRange(min=0), help="Only the last N records.")
@click.option("--since", metavar="DURATION", help="Only records of the last DURATION (30s, 5m, 1h).")
@click.option("--level", help="Only records at this level or above (debug, info, warning, error).")
@address_option
@json_option
def logs(
    service: str, count: int | None, since: str | None, level: str | None, address: str | None, as_json: bool
) -> None:
    """SERVICE's recent log records, oldest first."""
    from ..debug.log import LogRecord

    request = {"count": count, "since": _since(since), "level": level}
    response = _call(service, "Debug.logs", request, address)
    if as_json:
        click.echo(json.dumps(response, indent=2))
        return
    for data in response.get("records", []):
        record = LogRecord.from_dict(data)
        # one record per line, however narrow the terminal: logs are read with grep
        click.echo(styled(record.format(), _LEVEL_STYLES.get(record.level)))


@command.command("trace")
@click.argument("service")
@click.option("--id", "trace_id", help="Only the spans of this trace.")
@address_option
@json_option
def trace(service: str, trace_id: str | None, address: str | None, as_json: bool) -> None:
    """The spans SERVICE recorded, as one tree per trace."""
    from ..debug.trace import Span

    response = _call(service, "Debug.trace", {"id": trace_id}, address)
    if as_json:
        click.echo(json.dumps(response, indent=2))
        return
    spans = [Span.from_dict(data) for data in response.get("spans", [])]
    if not spans:
        click.echo("no spans recorded")
        return
    ids = {span.id for span in spans}
    children: dict[str | None, list[Span]] = {}
    for span in sorted(spans, key=lambda s: s.started):
        # a parent in another service is not here: show the span at the top of its trace
        children.setdefault(span.parent if span.parent in ids else None, []).append(span)

    def label(span: Span) -> str:
        extra = " ".join(f"{k}={v}" for k, v in span.metadata.items())
        timing = styled(f"{span.type.value} {span.duration * 1000:.2f}ms {span.id}", "dim")
        return f"{span.name} {timing} {extra}".rstrip()

    def grow(node: Tree, span: Span) -> None:
        branch = node.add(label(span))
        for child in children.get(span.id, []):
            grow(branch, child)

    traces: dict[str, Tree] = {}
    for root in children.get(None, []):
        tree = traces.setdefault(root.trace_id, Tree(f"trace {styled(root.trace_id, 'bold')}"))
        grow(tree, root)
    for tree in traces.values():
        click.echo(tree.render())


@command.command("stats")
@click.argument("service")
@click.option("--count", "-n", type=click.IntRange(min=1), default=10, show_default=True, help="Snapshots to show.")
@address_option
@json_option
def stats(service: str, count: int, address: str | None, as_json: bool) -> None:
    """SERVICE's uptime, memory, threads, GC runs, requests and errors over time."""
    from ..debug.stats import Stat

    response = _call(service, "Debug.stats", {}, address)
    if as_json:
        click.echo(json.dumps(response, indent=2))
        return
    snapshots = [Stat.from_dict(data) for data in response.get("stats", [])][-count:]
    columns = ("TIME", "UPTIME", "MEMORY", "THREADS", "GC", "REQUESTS", "ERRORS")
    rows = [
        (
            _when(stat.timestamp),
            str(datetime.timedelta(seconds=int(stat.uptime))),
            f"{stat.memory / 1024 / 1024:.1f} MiB",
            str(stat.threads),
            "/".join(map(str, stat.gc)),
            str(stat.requests),
            Cell(str(stat.errors), fg="red") if stat.errors else "0",
        )
        for stat in snapshots
    ]
    click.echo(table(columns, rows, right=columns[1:]))
