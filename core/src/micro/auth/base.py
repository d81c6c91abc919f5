"""The auth interface and its value types, after Go Micro v4's ``auth.Auth`` and ``auth.Rules``.

Authentication: :meth:`Auth.generate` creates an account with a secret,
:meth:`Auth.token` exchanges the credentials (or a refresh token) for an
access token, and :meth:`Auth.inspect` turns an access token back into the
account. Authorisation: a table of :class:`Rule` (``grant``/``revoke``/``rules``)
and :meth:`Auth.verify`, which applies :func:`micro.auth.rules.verify`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from typing import ClassVar

from ..component import Component
from .options import AuthOptions
from .rules import verify
from .values import BEARER, SCOPE_ACCOUNT, SCOPE_PUBLIC, Access, Account, Resource, Rule, Token

__all__ = [
    "BEARER",
    "SCOPE_ACCOUNT",
    "SCOPE_PUBLIC",
    "Access",
    "Account",
    "Auth",
    "Resource",
    "Rule",
    "Token",
]


class Auth(Component, abc.ABC):
    """Accounts, tokens and access rules.

    Call :meth:`start` before the other methods. Every method may be called
    concurrently. Errors:

    * :class:`~micro.errors.InvalidToken` (a 401) for a token that is expired,
      forged, for another issuer, or not a token at all, and for credentials
      that do not match an account;
    * :class:`~micro.errors.Unauthorized` (401) from :meth:`verify` when no
      account was given and the rules require one;
    * :class:`~micro.errors.Forbidden` (403) from :meth:`verify` when the
      rules do not allow this account (or anyone) in;
    * :class:`~micro.errors.BadRequest` for a malformed argument (an empty id).

    Capabilities: ``"tokens"`` means :meth:`inspect` and :meth:`token` really
    check what they are given; ``"rules"`` means :meth:`verify` applies the
    rule table. An implementation without them (``noop``) accepts everything,
    and says so by not declaring them.
    """

    interface: ClassVar[str] = "auth"
    options_type: ClassVar[type[AuthOptions]] = AuthOptions
    options: AuthOptions

    #: A subset of ``{"tokens", "rules"}``: what this implementation enforces.
    capabilities: ClassVar[frozenset[str]] = frozenset()

    @abc.abstractmethod
    async def generate(
        self,
        id: str,
        *,
        secret: str | None = None,
        type: str = "user",
        scopes: Iterable[str] = (),
        metadata: Mapping[str, str] | None = None,
        provider: str | None = None,
    ) -> Account:
        """Create (or replace) the account ``id`` and return it with its secret.

        ``secret`` is generated when omitted; the returned :attr:`Account.secret`
        is the only time it is revealed. ``provider`` (``"oauth"``, ``"basic"``)
        is recorded in the metadata under ``"provider"``. The issuer is the
        namespace. Raises :class:`~micro.errors.BadRequest` for an empty ``id``.
        """

    @abc.abstractmethod
    async def inspect(self, token: str) -> Account:
        """The account an access token was issued to, without its secret.

        Raises :class:`~micro.errors.InvalidToken` when the token is expired,
        not signed by this auth, issued for another namespace, a refresh token,
        or garbage.
        """

    @abc.abstractmethod
    async def token(
        self,
        *,
        id: str | None = None,
        secret: str | None = None,
        refresh_token: str | None = None,
        expiry: float | None = None,
    ) -> Token:
        """A new access token valid for ``expiry`` seconds (default ``options.token_expiry``), and a refresh token.

        Give either ``id`` and ``secret`` (the account's credentials) or a
        ``refresh_token`` from an earlier :class:`Token`. Wrong credentials, an
        unknown account or a bad refresh token raise
        :class:`~micro.errors.InvalidToken`, with one message for all of them;
        giving neither, both, or a non-positive ``expiry`` raises
        :class:`~micro.errors.BadRequest`.
        """

    @abc.abstractmethod
    async def grant(self, rule: Rule) -> None:
        """Add ``rule``, replacing any rule with the same id (idempotent).

        Raises :class:`~micro.errors.BadRequest` for an empty id.
        """

    @abc.abstractmethod
    async def revoke(self, rule: Rule) -> None:
        """Remove the rule with ``rule.id``. Idempotent: revoking an unknown rule does nothing."""

    @abc.abstractmethod
    async def rules(self) -> list[Rule]:
        """Every rule, in the order granted (a replaced rule keeps its place)."""

    async def verify(self, account: Account | None, resource: Resource) -> None:
        """Return if ``account`` (``None`` for an anonymous caller) may access ``resource``, else raise.

        Applies :func:`micro.auth.rules.verify` to :meth:`rules`: raises
        :class:`~micro.errors.Unauthorized` or :class:`~micro.errors.Forbidden`.
        """
        verify(await self.rules(), account, resource)
