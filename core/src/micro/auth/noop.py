"""The default auth: every token is valid and every call allowed. For development and trusted networks."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Mapping
from typing import ClassVar

from ._common import LocalRules, RuleTable, check_token_request, new_account
from .base import Account, Auth, Resource, Token
from .options import AuthOptions

__all__ = ["NoopAuth"]


class NoopAuth(LocalRules, Auth):
    """Authenticates nobody and refuses nothing, as Go Micro's ``noop`` auth.

    ``generate`` returns an account (remembering nothing), ``token`` returns
    random strings, ``inspect`` turns any token into the account
    ``Account(id="default", issuer=<namespace>)``, and ``verify`` always
    returns. Arguments are still checked (an empty id is a
    :class:`~micro.errors.BadRequest`). Rules are stored so that ``rules``
    lists them, but they are not applied.
    """

    options_type: ClassVar[type[AuthOptions]] = AuthOptions
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: AuthOptions | None = None) -> None:
        super().__init__(options)
        self._table = RuleTable()

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
        return new_account(
            id,
            issuer=self.options.namespace,
            secret=secret,
            type=type,
            scopes=scopes,
            metadata=metadata,
            provider=provider,
        )

    async def inspect(self, token: str) -> Account:
        return Account(id="default", issuer=self.options.namespace)

    async def token(
        self,
        *,
        id: str | None = None,
        secret: str | None = None,
        refresh_token: str | None = None,
        expiry: float | None = None,
    ) -> Token:
        lifetime = check_token_request(id, secret, refresh_token, expiry, self.options.token_expiry)
        now = time.time()
        return Token(secrets.token_urlsafe(16), secrets.token_urlsafe(16), now, now + lifetime)

    async def verify(self, account: Account | None, resource: Resource) -> None:
        return None
