"""The auth interface and its value types, after Go Micro v4's ``auth.Auth`` and ``auth.Rules``.

Authentication: :meth:`Auth.generate` creates an account with a secret,
:meth:`Auth.token` exchanges the credentials (or a refresh token) for an
access token, and :meth:`Auth.inspect` turns an access token back into the
account. Authorisation: a table of :class:`Rule` (``grant``/``revoke``/``rules``)
and :meth:`Auth.verify`, which applies :func:`micro.auth.rules.verify`.
"""

from __future__ import annotations

import abc
import enum
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Final

from ..component import Component
from .options import AuthOptions

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

#: A rule with this scope applies to everyone, with or without an account.
SCOPE_PUBLIC: Final = ""
#: A rule with this scope applies to any authenticated account.
SCOPE_ACCOUNT: Final = "*"
#: The scheme prefix of the ``Authorization`` metadata value: ``"Bearer <access token>"``.
BEARER: Final = "Bearer "


class Access(enum.Enum):
    """What a matching :class:`Rule` decides."""

    GRANTED = "granted"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class Account:
    """An identity: a user, a service, or anything that holds a token."""

    #: Unique within the issuer: a username, an email, a service name.
    id: str
    #: ``"user"``, ``"service"``...
    type: str = "user"
    #: The namespace that issued the account (``AuthOptions.namespace``).
    issuer: str = ""
    #: The secret to exchange for tokens. Set only on the account :meth:`Auth.generate` returns, never by ``inspect``.
    secret: str = ""
    scopes: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Token:
    """An access token with the refresh token to renew it. Times are ``time.time()`` seconds."""

    access_token: str
    refresh_token: str
    created: float
    expiry: float

    @property
    def expired(self) -> bool:
        """Whether the access token's expiry has passed."""
        return time.time() >= self.expiry


@dataclass(frozen=True, slots=True)
class Resource:
    """What is accessed. For an RPC: ``Resource(name=<service>, type="service", endpoint="Greeter.Hello")``.

    In a :class:`Rule`, ``"*"`` in any field matches every value, and an
    ``endpoint`` ending in ``/*`` matches a path and everything under it
    (``"/foo/*"`` matches ``"/foo/bar"``). Comparisons ignore case.
    """

    name: str
    type: str
    endpoint: str


@dataclass(frozen=True, slots=True)
class Rule:
    """Grants or denies a scope access to matching resources; higher ``priority`` is considered first.

    ``scope`` is :data:`SCOPE_PUBLIC` (everyone), :data:`SCOPE_ACCOUNT` (any
    account), or a scope an account must hold.
    """

    id: str
    scope: str
    resource: Resource
    access: Access = Access.GRANTED
    priority: int = 0


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
        from .rules import verify

        verify(await self.rules(), account, resource)
