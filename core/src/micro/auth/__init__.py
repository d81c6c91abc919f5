"""Authentication and authorisation: accounts, tokens, rules, and the wrappers that enforce them.

Implementations are selected by name (``micro.create("auth", "jwt")``) or
``MICRO_AUTH``; ``noop`` (the default) lets everything through.
"""

from __future__ import annotations

from .base import BEARER, SCOPE_ACCOUNT, SCOPE_PUBLIC, Access, Account, Auth, Resource, Rule, Token
from .options import AuthOptions, JWTAuthOptions
from .rules import verify
from .wrappers import AUTHORIZATION, Request, TokenProvider, Wrapper, client_wrapper, current_account, server_wrapper

__all__ = [
    "AUTHORIZATION",
    "BEARER",
    "SCOPE_ACCOUNT",
    "SCOPE_PUBLIC",
    "Access",
    "Account",
    "Auth",
    "AuthOptions",
    "JWTAuthOptions",
    "Request",
    "Resource",
    "Rule",
    "Token",
    "TokenProvider",
    "Wrapper",
    "client_wrapper",
    "current_account",
    "server_wrapper",
    "verify",
]
