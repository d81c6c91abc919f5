"""``micro auth``: accounts, tokens and rules, kept in the store the services share.

The commands build the auth the way a service does, from ``MICRO_AUTH`` and
``MICRO_STORE`` (with their options), and edit the same records: an account made
here can sign in at every service using that store, and a rule granted here
applies on a running service within ``MICRO_AUTH_RULES_REFRESH`` (5s).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from ._service import dump, run
from ._text import table, terminal_width

__all__ = ["command"]

T = TypeVar("T")


def _with_auth(action: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``action(auth)`` with the configured auth started, refusing an auth that keeps nothing."""

    async def main() -> T:
        from ..auth.base import Auth
        from ..errors import ConfigError
        from ..plugins import create
        from ..store.memory import MemoryStore

        if not os.environ.get("MICRO_AUTH"):
            raise ConfigError("MICRO_AUTH is not set: `micro auth` needs the services' auth, e.g. MICRO_AUTH=jwt")
        auth = create("auth", cls=Auth)
        store = getattr(auth, "store", None)
        if not {"tokens", "rules"} <= auth.capabilities or store is None:
            raise ConfigError(
                f"MICRO_AUTH={os.environ['MICRO_AUTH']} keeps no accounts or rules; `micro auth` needs one that "
                "does (MICRO_AUTH=jwt)"
            )
        if isinstance(store, MemoryStore):
            raise ConfigError(
                "MICRO_STORE is the in-process memory store, which the services cannot see: set MICRO_STORE to "
                "the store the services use (sqlite, redis, postgres)"
            )
        async with auth:
            return await action(auth)

    return run(main, timeout=60.0)


@click.group("auth")
def command() -> None:
    """Create accounts, issue tokens and edit rules in the shared auth store."""


@command.group("create")
def create() -> None:
    """Create an account or a rule."""


@command.group("list")
def list_() -> None:
    """List accounts or rules."""


@command.group("delete")
def delete() -> None:
    """Delete an account or a rule."""


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@create.command("account")
@click.argument("id")
@click.option("--secret", help="The secret (default: a random one, printed once).")
@click.option("--scope", "scopes", multiple=True, help="A scope the account holds (repeat for more).")
@click.option("--type", "kind", default="user", show_default=True, help="user, service...")
@json_option
def create_account(id: str, secret: str | None, scopes: tuple[str, ...], kind: str, as_json: bool) -> None:
    """Create (or replace) account ID and print its secret."""

    async def action(auth: Any) -> Any:
        return await auth.generate(id, secret=secret, type=kind, scopes=scopes)

    account = _with_auth(action)
    if as_json:
        click.echo(dump({"id": account.id, "type": account.type, "scopes": account.scopes, "secret": account.secret}))
    else:
        click.echo(f"id: {account.id}\nsecret: {account.secret}")


@command.command("token")
@click.argument("id")
@click.option("--secret", required=True, envvar="MICRO_AUTH_SECRET", help="The account's secret.")
@click.option("--expiry", default=None, metavar="DURATION", help="How long the token lives (1h, 15m).")
@json_option
def token(id: str, secret: str, expiry: str | None, as_json: bool) -> None:
    """Print an access token for account ID (for `micro call --token`)."""
    from ..options import parse_duration

    try:
        lifetime = parse_duration(expiry) if expiry is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--expiry") from None

    async def action(auth: Any) -> Any:
        return await auth.token(id=id, secret=secret, expiry=lifetime)

    issued = _with_auth(action)
    if as_json:
        click.echo(
            dump(
                {
                    "access_token": issued.access_token,
                    "refresh_token": issued.refresh_token,
                    "created": issued.created,
                    "expiry": issued.expiry,
                }
            )
        )
    else:
        click.echo(issued.access_token)


def _resource(text: str) -> Any:
    from ..auth.base import Resource

    parts = text.split(":", 2)
    if len(parts) != 3 or not all(parts):
        raise click.BadParameter(f"expected TYPE:NAME:ENDPOINT (service:greeter:Say.hello), got {text!r}")
    return Resource(type=parts[0], name=parts[1], endpoint=parts[2])


@create.command("rule")
@click.argument("id")
@click.option(
    "--scope",
    default="*",
    show_default=True,
    help="Who: '' (everyone, even without a token), '*' (any account) or a scope.",
)
@click.option(
    "--resource",
    default="*:*:*",
    show_default=True,
    metavar="TYPE:NAME:ENDPOINT",
    help="What, e.g. service:greeter:Say.hello; * matches anything.",
)
@click.option("--access", type=click.Choice(["granted", "denied"]), default="granted", show_default=True)
@click.option("--priority", type=int, default=0, show_default=True, help="Higher is considered first.")
def create_rule(id: str, scope: str, resource: str, access: str, priority: int) -> None:
    """Grant (or replace) rule ID."""
    from ..auth.base import Access, Rule

    rule = Rule(id=id, scope=scope, resource=_resource(resource), access=Access(access), priority=priority)

    async def action(auth: Any) -> None:
        await auth.grant(rule)

    _with_auth(action)
    click.echo(f"rule {id} granted", err=True)


@delete.command("rule")
@click.argument("id")
def delete_rule(id: str) -> None:
    """Revoke rule ID (nothing happens if there is none)."""
    from ..auth.base import Resource, Rule

    async def action(auth: Any) -> None:
        await auth.revoke(Rule(id=id, scope="", resource=Resource("*", "*", "*")))

    _with_auth(action)
    click.echo(f"rule {id} revoked", err=True)


@delete.command("account")
@click.argument("id")
def delete_account(id: str) -> None:
    """Delete account ID: its secret and refresh tokens stop working; issued access tokens run out."""

    async def action(auth: Any) -> None:
        remove = getattr(auth, "delete", None)
        if remove is None:
            from ..errors import NotSupported

            raise NotSupported(f"{type(auth).__name__} cannot delete accounts")
        await remove(id)

    _with_auth(action)
    click.echo(f"account {id} deleted", err=True)


@list_.command("rules")
@json_option
def list_rules(as_json: bool) -> None:
    """List the rules, highest priority first."""

    async def action(auth: Any) -> list[Any]:
        return list(await auth.rules())

    rules = sorted(_with_auth(action), key=lambda rule: -rule.priority)
    rows = [
        {
            "id": r.id,
            "scope": r.scope,
            "resource": f"{r.resource.type}:{r.resource.name}:{r.resource.endpoint}",
            "access": r.access.value,
            "priority": r.priority,
        }
        for r in rules
    ]
    if as_json:
        click.echo(dump(rows))
    elif not rows:
        click.echo("no rules", err=True)
    else:
        columns = ["id", "scope", "resource", "access", "priority"]
        click.echo(table(columns, [[str(v) for v in row.values()] for row in rows], width=terminal_width()))


@list_.command("accounts")
@json_option
def list_accounts(as_json: bool) -> None:
    """List the accounts (never their secrets)."""

    async def action(auth: Any) -> list[Any]:
        accounts = getattr(auth, "accounts", None)
        if accounts is None:
            from ..errors import NotSupported

            raise NotSupported(f"{type(auth).__name__} cannot list accounts")
        return list(await accounts())

    rows = [{"id": a.id, "type": a.type, "scopes": list(a.scopes)} for a in _with_auth(action)]
    if as_json:
        click.echo(dump(rows))
    elif not rows:
        click.echo("no accounts", err=True)
    else:
        lines = [[r["id"], r["type"], ", ".join(r["scopes"])] for r in rows]
        click.echo(table(["id", "type", "scopes"], lines, width=terminal_width()))
