"""Helpers shared by ``micro call``, ``services``, ``describe`` and ``publish``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import click
import orjson

from ..errors import MicroError

__all__ = ["dump", "fail", "parse_json", "parse_metadata", "run"]

T = TypeVar("T")

#: Exit status for an error the call itself returned (as ``curl --fail``); 2 is click's usage error.
EXIT_ERROR = 1


def parse_json(text: str, what: str) -> Any:
    """``text`` as JSON, or a click usage error naming ``what`` and where the text is wrong."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=what) from None


def parse_metadata(pairs: Iterable[str]) -> dict[str, str]:
    """``-m key=value`` options as a dict; a pair without ``=`` is a usage error."""
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected key=value, got {pair!r}", param_hint="--metadata")
        metadata[key.strip()] = value
    return metadata


def _default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def dump(value: Any, *, pretty: bool = True) -> str:
    """``value`` as JSON text (indented unless ``pretty`` is false); non-JSON values become strings."""
    option = orjson.OPT_NON_STR_KEYS | (orjson.OPT_INDENT_2 if pretty else 0)
    return orjson.dumps(value, default=_default, option=option).decode()


def fail(error: MicroError) -> None:
    """Print the error as Go Micro's JSON (``{"id","code","detail","status"}``) on stderr and exit 1."""
    click.echo(dump(error.to_dict()), err=True)
    sys.exit(EXIT_ERROR)


def run(main: Callable[[], Awaitable[T]], *, timeout: float | None) -> T:
    """Run ``main()`` in a new event loop, giving up after ``timeout`` seconds (if set) with a 408-style error.

    Every :class:`~micro.errors.MicroError` becomes :func:`fail`.
    """

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await main()

    try:
        return asyncio.run(bounded())
    except MicroError as exc:
        fail(exc)
    except TimeoutError:
        from ..errors import Timeout

        fail(Timeout(f"gave up after {timeout}s", id="micro.cli"))
    raise AssertionError("unreachable")  # fail() exits
