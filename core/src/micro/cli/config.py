"""``micro config get|set``: read and change the configured config source (``MICRO_CONFIG``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click
import orjson

from ._service import dump, run

__all__ = ["command"]

T = TypeVar("T")


def _with_source(action: Callable[[Any], Awaitable[T]]) -> T:
    async def main() -> T:
        from ..config.base import Source
        from ..plugins import create

        source = create("config", cls=Source)
        async with source:
            return await action(source)

    return run(main, timeout=60.0)


def _at(data: Any, path: str) -> Any:
    for part in [p for p in path.split(".") if p]:
        if not isinstance(data, dict) or part not in data:
            return _MISSING
        data = data[part]
    return data


_MISSING: Any = object()


@click.group("config")
def command() -> None:
    """Get and set values of the configured config source."""


@command.command("get")
@click.argument("path", default="")
@click.option("--json", "as_json", is_flag=True, help="Print JSON even for text (quoted).")
def get(path: str, as_json: bool) -> None:
    """Print the value at PATH (database.host; empty: everything) of MICRO_CONFIG.

    Text prints as it is, anything else as JSON; a missing path is exit status 1.
    """

    async def action(source: Any) -> Any:
        return (await source.read()).data

    value = _at(_with_source(action), path)
    if value is _MISSING:
        click.echo(f"micro: nothing at {path!r}", err=True)
        raise SystemExit(1)
    click.echo(value if isinstance(value, str) and not as_json else dump(value))


@command.command("set")
@click.argument("path")
@click.argument("value")
def set_(path: str, value: str) -> None:
    """Set PATH to VALUE (JSON if it parses: 5432, true, {"a": 1}; else text) in MICRO_CONFIG.

    Needs a source that can be written (etcd, consul; not env, file or flags).
    """
    from ..config.base import ChangeSet

    parts = [p for p in path.split(".") if p]
    if not parts:
        raise click.BadParameter("must name a key, e.g. database.host", param_hint="PATH")
    try:
        parsed: Any = orjson.loads(value)
    except orjson.JSONDecodeError:
        parsed = value

    async def action(source: Any) -> None:
        if "write" not in source.capabilities:
            from ..errors import ConfigError

            raise ConfigError(
                f"the {source.name or type(source).__name__!r} config source (MICRO_CONFIG) is read-only; "
                "set MICRO_CONFIG to one that can be written (etcd, consul)"
            )
        data = dict((await source.read()).data)
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[parts[-1]] = parsed
        await source.write(ChangeSet.of(data, source.name or "micro config"))

    _with_source(action)
    click.echo(f"set {path}", err=True)
