"""Handler wrappers that authenticate calls: ``server_wrapper`` checks them, ``client_wrapper`` signs them.

Both work on any request object with ``service``, ``endpoint`` and
``metadata`` (see :class:`Request`), so they do not depend on the server or
client packages: a server applies ``server_wrapper(auth)`` to each handler,
a client applies ``client_wrapper(...)`` to its call function::

    handler = server_wrapper(auth)(handler)
    call = client_wrapper(auth)(call)

As Go Micro, the token travels in the ``Authorization`` metadata entry as
``"Bearer <access token>"``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, Protocol, TypeVar

from ..errors import Forbidden, InvalidToken, MicroError, Unauthorized
from .base import BEARER, SCOPE_ACCOUNT, Account, Auth, Resource, Rule, Token
from .rules import matches, verify

__all__ = [
    "AUTHORIZATION",
    "DEFAULT_RULE",
    "Handler",
    "Request",
    "TokenProvider",
    "Wrapper",
    "client_wrapper",
    "current_account",
    "rules_applied",
    "server_wrapper",
]

#: The metadata key carrying ``"Bearer <token>"``.
AUTHORIZATION: Final = "Authorization"

# Refresh a cached token this long before it expires, so a call never leaves with a token about to lapse.
_REFRESH_MARGIN: Final = 30.0

#: What ``server_wrapper(auth, deny_by_default=False)`` applies to an endpoint no rule mentions: any account
#: may call it (Go Micro's default rule). An endpoint that some rule covers is decided by the rules alone.
DEFAULT_RULE: Final = Rule("micro.default", SCOPE_ACCOUNT, Resource("*", "*", "*"))

_account: contextvars.ContextVar[Account | None] = contextvars.ContextVar("micro.auth.account", default=None)
_ruled: contextvars.ContextVar[bool] = contextvars.ContextVar("micro.auth.ruled", default=False)


class Request(Protocol):
    """What the wrappers need of a request, incoming or outgoing.

    ``metadata`` is a :class:`~micro.metadata.Metadata` in practice; any
    mutable ``str -> str`` mapping works, but only ``Metadata`` matches the
    ``Authorization`` key regardless of case.
    """

    @property
    def service(self) -> str: ...

    @property
    def endpoint(self) -> str: ...

    @property
    def metadata(self) -> MutableMapping[str, str]: ...


R = TypeVar("R", bound=Request)
T = TypeVar("T")

#: A handler (server side) or call function (client side): takes the request, returns the response.
Handler = Callable[[Request], Awaitable[Any]]

#: Something that returns the access token to send, or ``None`` to call anonymously.
TokenProvider = Callable[[], Awaitable[str | None]]


class Wrapper(Protocol):
    """Wraps a handler into one with the same request and response types."""

    def __call__(self, handler: Callable[[R], Awaitable[T]], /) -> Callable[[R], Awaitable[T]]: ...


def current_account() -> Account | None:
    """The account of the call being handled, set by :func:`server_wrapper`; ``None`` if anonymous or outside one."""
    return _account.get()


def rules_applied() -> bool:
    """Whether the call being handled was admitted by an auth that applies rules (``"rules"`` capability).

    ``False`` outside a call, without :func:`server_wrapper`, and under the
    ``noop`` auth, which admits everything. The ``Debug`` endpoints use it to
    tell "the rules let this caller in" from "nobody checked".
    """
    return _ruled.get()


def _bearer(request: Request) -> str | None:
    value = request.metadata.get(AUTHORIZATION)
    if value is None:
        return None
    if value[: len(BEARER)].lower() != BEARER.lower() or not value[len(BEARER) :].strip():
        raise InvalidToken(f"the {AUTHORIZATION} metadata must be {BEARER!r} followed by a token", id=request.service)
    return value[len(BEARER) :].strip()


def server_wrapper(auth: Auth, *, deny_by_default: bool = True) -> Wrapper:
    """A wrapper that admits a call only if ``auth`` lets its caller access the endpoint.

    For each call: a ``Bearer`` token in the ``Authorization`` metadata is
    inspected (a bad one raises :class:`~micro.errors.InvalidToken`, a 401,
    even if the endpoint is public, so a client knows to renew it); then
    :meth:`Auth.verify` is asked about ``Resource(name=request.service,
    type="service", endpoint=request.endpoint)``, raising
    :class:`~micro.errors.Unauthorized` (401: no token given and no public
    rule lets the call in, including when there are no rules at all) or
    :class:`~micro.errors.Forbidden` (403: the account may not, or a public
    rule denies everyone). The handler runs only if both pass,
    with the account available from :func:`current_account`.

    With ``deny_by_default`` (the default here) only :meth:`Auth.verify`
    decides: a call no rule grants is refused. Without it, an endpoint that
    no rule covers is decided by :data:`DEFAULT_RULE` (any authenticated
    caller; anonymous callers need a public rule either way), and one that a
    rule covers (a ``*`` rule covers everything) by the rules alone, so a rule
    granting only scope ``admin`` keeps other accounts out.
    (:class:`~micro.Service` passes ``options.deny_by_default``, false unless
    ``MICRO_AUTH_DENY_BY_DEFAULT`` is set.)

    Identity comes only from the token: nothing else in the request's
    metadata is read.

    The resource must be what the server is, not what the caller says: the
    RPC server sets ``request.service`` to its own name and refuses a call
    whose ``Micro-Service`` names another service, so a rule on
    ``greeter:Admin.reset`` cannot be sidestepped by naming another service.
    """

    enforces = "rules" in auth.capabilities

    def wrap(handler: Callable[[R], Awaitable[T]], /) -> Callable[[R], Awaitable[T]]:
        @functools.wraps(handler)
        async def authenticated(request: R) -> T:
            try:
                token = _bearer(request)
                account = await auth.inspect(token) if token is not None else None
                resource = Resource(name=request.service, type="service", endpoint=request.endpoint)
                rules = await auth.rules()
                try:
                    if deny_by_default or matches(rules, resource):
                        await auth.verify(account, resource)
                    else:
                        verify([DEFAULT_RULE], account, resource)
                except Forbidden as exc:
                    if account is not None or rules:
                        raise
                    # No rules at all: an anonymous caller is told to get a token (401), as Go Micro's wrapper.
                    raise Unauthorized(f"{exc.detail} (anonymous caller)") from None
            except MicroError as exc:
                # The wire error names the service that refused, as Go Micro's errors.Unauthorized(service, ...).
                exc.id = exc.id or request.service
                raise
            reset = _account.set(account)
            ruled = _ruled.set(enforces)
            try:
                return await handler(request)
            finally:
                _ruled.reset(ruled)
                _account.reset(reset)

        return authenticated

    return wrap


class _CachedToken:
    """Fetches a token with the auth's own credentials and renews it shortly before it expires."""

    def __init__(self, auth: Auth) -> None:
        self._auth = auth
        self._token: Token | None = None
        self._lock = asyncio.Lock()

    async def __call__(self) -> str | None:
        options = self._auth.options
        if not options.id or not options.secret:
            return None
        token = self._token
        if token is not None and token.expiry - _REFRESH_MARGIN > time.time():
            return token.access_token
        async with self._lock:
            # Another task may have renewed it while this one waited.
            token = self._token
            if token is not None and token.expiry - _REFRESH_MARGIN > time.time():
                return token.access_token
            fresh: Token | None = None
            if token is not None:
                try:
                    fresh = await self._auth.token(refresh_token=token.refresh_token, expiry=options.token_expiry)
                except InvalidToken:
                    fresh = None  # the refresh token lapsed too: fall back to the credentials
            if fresh is None:
                fresh = await self._auth.token(id=options.id, secret=options.secret, expiry=options.token_expiry)
            self._token = fresh
            return fresh.access_token


def client_wrapper(source: Auth | str | TokenProvider) -> Wrapper:
    """A wrapper that sends ``Authorization: Bearer <token>`` with each call.

    ``source`` is a fixed access token, an async callable returning one (or
    ``None`` to call anonymously), or an :class:`Auth` whose ``options.id`` and
    ``options.secret`` are exchanged for a token, cached and renewed before
    it expires (an auth without credentials calls anonymously). An
    ``Authorization`` entry already in the request's metadata is left alone,
    so a caller can pass on the token of the call it is handling.
    """
    provider: TokenProvider
    if isinstance(source, str):
        fixed = source

        async def provider() -> str | None:
            return fixed

    elif isinstance(source, Auth):
        provider = _CachedToken(source)
    else:
        provider = source

    def wrap(call: Callable[[R], Awaitable[T]], /) -> Callable[[R], Awaitable[T]]:
        @functools.wraps(call)
        async def signed(request: R) -> T:
            if AUTHORIZATION not in request.metadata:
                token = await provider()
                if token:
                    request.metadata[AUTHORIZATION] = BEARER + token
            return await call(request)

        return signed

    return wrap
