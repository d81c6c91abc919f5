"""What both built-in auths share: argument checks, the account they build, and the in-memory rule table."""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping

from ..errors import BadRequest
from .base import Access, Account, Resource, Rule

__all__ = ["LocalRules", "RuleTable", "check_token_request", "new_account"]


def new_account(
    id: str,
    *,
    issuer: str,
    secret: str | None,
    type: str,
    scopes: Iterable[str],
    metadata: Mapping[str, str] | None,
    provider: str | None,
) -> Account:
    """The account ``generate`` returns, arguments checked; the secret is generated when ``None``."""
    if not isinstance(id, str) or not id:
        raise BadRequest("an account needs a non-empty string id")
    if secret is not None and (not isinstance(secret, str) or not secret):
        raise BadRequest("a secret must be a non-empty string")
    if isinstance(scopes, str):
        raise BadRequest("scopes must be an iterable of strings, not a string")
    scope_list = list(scopes)
    if not all(isinstance(scope, str) for scope in scope_list):
        raise BadRequest("scopes must be strings")
    meta = dict(metadata or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise BadRequest("metadata must map strings to strings")
    if provider:
        meta["provider"] = provider
    return Account(
        id=id,
        type=type,
        issuer=issuer,
        secret=secret if secret is not None else secrets.token_urlsafe(32),
        scopes=scope_list,
        metadata=meta,
    )


def check_token_request(
    id: str | None, secret: str | None, refresh_token: str | None, expiry: float | None, default: float
) -> float:
    """Check the arguments of ``Auth.token`` and return the expiry to use."""
    credentials = id is not None or secret is not None
    if credentials and refresh_token is not None:
        raise BadRequest("give id and secret, or a refresh_token, not both")
    if refresh_token is None and (not id or not secret):
        raise BadRequest("a token needs an id and a secret, or a refresh_token")
    expiry = default if expiry is None else expiry
    if not isinstance(expiry, (int, float)) or isinstance(expiry, bool) or not expiry > 0:
        raise BadRequest(f"expiry must be a positive number of seconds, got {expiry!r}")
    return float(expiry)


class RuleTable:
    """Rules kept in memory, by id, in the order they were first granted."""

    def __init__(self) -> None:
        self._rules: dict[str, Rule] = {}

    def grant(self, rule: Rule) -> None:
        if not isinstance(rule, Rule):
            raise BadRequest(f"expected a Rule, got {type(rule).__name__}")
        if not rule.id:
            raise BadRequest("a rule needs a non-empty id")
        if not isinstance(rule.resource, Resource) or not isinstance(rule.access, Access):
            raise BadRequest(f"rule {rule.id!r} needs a Resource and an Access")
        self._rules[rule.id] = rule

    def revoke(self, rule: Rule) -> None:
        self._rules.pop(rule.id, None)

    def list(self) -> list[Rule]:
        return list(self._rules.values())


class LocalRules:
    """:meth:`~micro.auth.Auth.grant`, :meth:`~micro.auth.Auth.revoke` and :meth:`~micro.auth.Auth.rules` on a
    :class:`RuleTable` in this process: list it before :class:`~micro.auth.Auth` among the bases, and set
    ``_table`` in ``__init__``.
    """

    _table: RuleTable

    async def grant(self, rule: Rule) -> None:
        self._table.grant(rule)

    async def revoke(self, rule: Rule) -> None:
        self._table.revoke(rule)

    async def rules(self) -> list[Rule]:
        return self._table.list()
