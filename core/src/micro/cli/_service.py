"""Helpers shared by ``micro call``, ``services``, ``describe`` and ``publish``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from ..errors import BackendUnavailable, ConfigError, MicroError, RPCError

if TYPE_CHECKING:
    from ..client.base import Client

__all__ = [
    "EXIT_CONFIG",
    "EXIT_ERROR",
    "debugging",
    "dump",
    "fail",
    "parse_json",
    "parse_metadata",
    "run",
    "signed_client",
]

T = TypeVar("T")

#: Exit status for an error the call itself returned (as ``curl --fail``); 2 is click's usage error.
EXIT_ERROR = 1
#: Exit status for a problem on this side: a bad implementation name or option, a backend that does not answer.
EXIT_CONFIG = 3


@contextlib.asynccontextmanager
async def signed_client(token: str | None = None) -> AsyncIterator[Client]:
    """The configured client, started, whose calls prove the local user and carry a token.

    The token is ``token`` if given; else, when ``MICRO_AUTH`` names an auth that checks tokens and
    ``MICRO_AUTH_ID``/``MICRO_AUTH_SECRET`` are set, one obtained (and renewed) with those credentials,
    as a service's own calls do.
    """
    from ..auth.base import Auth
    from ..auth.local import local_proof
    from ..auth.wrappers import client_wrapper
    from ..client.base import Client
    from ..plugins import create

    client = create("client", cls=Client)
    # The user's own command: prove the local user, so the user's Debug endpoints and local_only
    # services answer it (the proof is one-use, bound to the endpoint, and carries no secret).
    client.wrap(local_proof())
    auth: Auth | None = None
    if token:
        client.wrap(client_wrapper(token))
    elif os.environ.get("MICRO_AUTH") and os.environ.get("MICRO_AUTH_ID"):
        auth = create("auth", cls=Auth)
        if "tokens" in auth.capabilities:
            client.wrap(client_wrapper(auth))
    try:
        yield client
    finally:
        await client.close()
        if auth is not None:
            await auth.close()


def debugging() -> bool:
    """Whether tracebacks are wanted: ``micro --debug`` or ``MICRO_LOG_LEVEL=debug``."""
    ctx = click.get_current_context(silent=True)
    root = ctx.find_root() if ctx is not None else None
    if root is not None and isinstance(root.obj, dict) and root.obj.get("debug"):
        return True
    return os.environ.get("MICRO_LOG_LEVEL", "").strip().lower() in ("debug", "trace")


def local_failure(error: BaseException) -> None:
    """Print a local configuration or connection error as one line (a traceback only when debugging); exit 3."""
    if debugging():
        traceback.print_exception(error)
    click.echo(f"micro: {type(error).__name__}: {error}", err=True)
    if not debugging():
        click.echo("micro: (run with --debug or MICRO_LOG_LEVEL=debug for the traceback)", err=True)
    sys.exit(EXIT_CONFIG)


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
    except RPCError as exc:  # the remote side's error, as it sent it
        fail(exc)
    except (ConfigError, BackendUnavailable) as exc:  # this side's configuration or its backends
        local_failure(exc)
    except MicroError as exc:
        fail(exc)
    except TimeoutError:
        from ..errors import Timeout

        fail(Timeout(f"gave up after {timeout}s", id="micro.cli"))
    raise AssertionError("unreachable")  # fail() exits
