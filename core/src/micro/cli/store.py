"""``micro store read|write|list|delete``: the records of the configured store (``MICRO_STORE``)."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from ._service import dump, run
from ._text import table as text_table
from ._text import terminal_width

__all__ = ["command"]

T = TypeVar("T")


def _with_store(action: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``action(store)`` on the configured store, started; the memory store is refused (no one could see it)."""

    async def main() -> T:
        from ..errors import ConfigError
        from ..plugins import create
        from ..store.base import Store
        from ..store.memory import MemoryStore

        store = create("store", cls=Store)
        if isinstance(store, MemoryStore):
            raise ConfigError(
                "MICRO_STORE is the in-process memory store (the default), which no service shares: set "
                "MICRO_STORE to the store the services use (sqlite, redis, postgres)"
            )
        async with store:
            return await action(store)

    return run(main, timeout=60.0)


scope = [
    click.option("--database", default=None, help="The database (default: MICRO_STORE_DATABASE, else micro)."),
    click.option("--table", default=None, help="The table (default: MICRO_STORE_TABLE, else micro)."),
]


def _scoped(function: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(scope):
        function = option(function)
    return function


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


@click.group("store")
def command() -> None:
    """Read, write, list and delete records of the configured store."""


@command.command("read")
@click.argument("key")
@click.option("--prefix", is_flag=True, help="Every record whose key starts with KEY.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N records (with --prefix).")
@_scoped
@click.option("--json", "as_json", is_flag=True, help="Print records as JSON (key, value, metadata, expiry).")
def read(key: str, prefix: bool, limit: int | None, database: str | None, table: str | None, as_json: bool) -> None:
    """Print the value of KEY (a missing key is a 404, exit status 1).

    With --prefix, a table of keys and values (--json for everything).
    """

    async def action(store: Any) -> list[Any]:
        return list(await store.read(key, prefix=prefix, limit=limit, database=database, table=table))

    records = _with_store(action)
    if as_json:
        click.echo(
            dump([{"key": r.key, "value": _text(r.value), "metadata": r.metadata, "expiry": r.expiry} for r in records])
        )
    elif not prefix:
        sys.stdout.buffer.write(records[0].value)
        if not records[0].value.endswith(b"\n") and sys.stdout.isatty():
            sys.stdout.buffer.write(b"\n")
        sys.stdout.flush()
    elif not records:
        click.echo(f"no keys start with {key!r}", err=True)
    else:
        rows = [
            [r.key, _text(r.value).replace("\n", " "), "" if r.expiry is None else f"{r.expiry:.0f}s"] for r in records
        ]
        click.echo(text_table(["key", "value", "expires in"], rows, width=terminal_width()))


@command.command("write")
@click.argument("key")
@click.argument("value")
@click.option("--ttl", default=None, metavar="DURATION", help="Expire after DURATION (30s, 1h).")
@_scoped
def write(key: str, value: str, ttl: str | None, database: str | None, table: str | None) -> None:
    """Write VALUE (text; "-" reads it from stdin) at KEY, replacing what is there."""
    from ..options import parse_duration
    from ..store.base import Record

    try:
        seconds = parse_duration(ttl) if ttl is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--ttl") from None
    data = sys.stdin.buffer.read() if value == "-" else value.encode("utf-8")

    async def action(store: Any) -> None:
        await store.write(Record(key=key, value=data), ttl=seconds, database=database, table=table)

    _with_store(action)
    click.echo(f"wrote {key}", err=True)


@command.command("list")
@click.option("--prefix", default="", help="Only keys starting with this.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N keys.")
@_scoped
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_(prefix: str, limit: int | None, database: str | None, table: str | None, as_json: bool) -> None:
    """Print the keys of a table, one a line, sorted."""

    async def action(store: Any) -> list[str]:
        return list(await store.list(prefix=prefix, limit=limit, database=database, table=table))

    keys = _with_store(action)
    if as_json:
        click.echo(dump(keys))
    else:
        for key in keys:
            click.echo(key)


@command.command("delete")
@click.argument("key")
@_scoped
def delete(key: str, database: str | None, table: str | None) -> None:
    """Delete KEY (nothing happens if it is not there)."""

    async def action(store: Any) -> None:
        await store.delete(key, database=database, table=table)

    _with_store(action)
    click.echo(f"deleted {key}", err=True)
