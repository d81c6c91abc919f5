"""Auth options: ``MICRO_AUTH_ID``, ``MICRO_AUTH_SECRET``, ``MICRO_AUTH_PUBLIC_KEY``..."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..errors import InvalidOption
from ..options import Options

__all__ = ["AuthOptions", "JWTAuthOptions"]


@dataclass(frozen=True, kw_only=True, slots=True)
class AuthOptions(Options):
    """Settings shared by every auth implementation (Go Micro's ``auth.Options``)."""

    #: This service's own account id, used to fetch tokens for outgoing calls (:func:`micro.auth.client_wrapper`).
    id: str | None = None
    #: The secret of that account.
    secret: str | None = None
    #: The issuer of accounts and tokens; a token from another namespace does not inspect. Go Micro: ``go.micro``.
    namespace: str = "micro"
    #: The PEM text of the key that checks tokens, or the path of a file holding it.
    public_key: str | None = None
    #: The PEM text of the key that signs tokens, or the path of a file holding it.
    private_key: str | None = None
    #: The address of a remote auth service, for implementations that have one.
    address: str | None = None
    #: Default lifetime in seconds of an access token; ``MICRO_AUTH_TOKEN_EXPIRY=15m`` also works.
    token_expiry: float = 3600.0
    #: Lifetime in seconds of a refresh token.
    refresh_expiry: float = 30 * 24 * 3600.0
    #: On a :class:`~micro.Service`: refuse every call no rule grants (``MICRO_AUTH_DENY_BY_DEFAULT=true``).
    #: When false, a call with a valid token may reach an endpoint no rule mentions (Go Micro's default rule);
    #: anonymous calls need a public rule either way.
    deny_by_default: bool = False

    def __post_init__(self) -> None:
        if not self.namespace:
            raise InvalidOption("must not be empty", option="namespace")
        if not self.token_expiry > 0:
            raise InvalidOption(f"must be positive, got {self.token_expiry!r}", option="token_expiry")
        if not self.refresh_expiry > 0:
            raise InvalidOption(f"must be positive, got {self.refresh_expiry!r}", option="refresh_expiry")


@dataclass(frozen=True, kw_only=True, slots=True)
class JWTAuthOptions(AuthOptions):
    """Options of :class:`~micro.auth.jwt.JWTAuth`.

    Without ``public_key`` and ``private_key``, a key pair is generated on
    first use and kept in ``key_dir`` (files readable by the owner only), so
    tokens survive a restart. With only ``public_key``, the instance can
    inspect tokens but not issue them.
    """

    #: Where a generated key pair is kept; default ``$XDG_CONFIG_HOME/micro/auth`` (``~/.config/micro/auth``).
    key_dir: str | None = None
    #: ``"EdDSA"`` (Ed25519) or ``"RS256"`` (RSA 2048); given keys must be of this kind.
    algorithm: Literal["EdDSA", "RS256"] = "EdDSA"
    #: The store table holding accounts, rules and (when kept there) the key pair.
    table: str = "auth"
    #: Seconds a running instance may apply its copy of the rules before reading the store again: a rule
    #: granted or revoked by another instance or ``micro auth`` applies here within this time.
    rules_refresh: float = 5.0

    def __post_init__(self) -> None:
        AuthOptions.__post_init__(self)
        if self.algorithm not in ("EdDSA", "RS256"):
            raise InvalidOption(f"expected EdDSA or RS256, got {self.algorithm!r}", option="algorithm")
        if not self.table:
            raise InvalidOption("must not be empty", option="table")
        if not 0 <= self.rules_refresh <= 3600:
            raise InvalidOption(f"must be 0 to 3600 seconds, got {self.rules_refresh!r}", option="rules_refresh")
