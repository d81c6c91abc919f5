"""The value types of auth: accounts, tokens, resources and rules (Go Micro v4's ``auth`` types).

Below both the interface (:mod:`micro.auth.base`) and the rule engine (:mod:`micro.auth.rules`), so
the interface can apply the rules without the two importing each other. Import them from
:mod:`micro.auth`.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Final

__all__ = ["BEARER", "SCOPE_ACCOUNT", "SCOPE_PUBLIC", "Access", "Account", "Resource", "Rule", "Token"]

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
