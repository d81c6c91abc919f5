"""Who may call the ``Debug`` endpoints: the service's own local user, the auth rules, or anyone.

``Debug.logs``, ``Debug.trace`` and ``Debug.stats`` expose what a service
logged, whom it called and how it is doing, so by default
(``MICRO_DEBUG_ACCESS=local``) they answer a caller only if

* an auth with rules (``jwt``; not ``noop``) admitted the call through
  :func:`micro.auth.server_wrapper`: the rules decide, on the resource
  ``service <name>:Debug.logs`` like any endpoint; or
* the call carries a *local proof*: evidence that the caller runs as the same
  local user as the service, made from the per-user secret
  (:func:`micro._private.local_secret`, a 0600 file only that user can read).

The proof (:mod:`micro.auth.local`) is an HMAC under the secret, bound to the
service, the endpoint, the time (``proof_window``) and a one-use nonce; the
secret itself never leaves the process. :func:`micro.auth.local.local_proof` is
the client wrapper that signs calls (``micro debug`` uses it).
``Debug.health`` answers everyone: it says only that the service is up.
"""

from __future__ import annotations

import contextvars
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .. import _mucp
from ..auth.local import LocalProofs
from ..errors import Forbidden, InvalidOption, MicroError
from ..options import Options

if TYPE_CHECKING:
    from ..server.base import HandlerFunc, HandlerWrapper, Request

__all__ = ["Access", "DebugOptions", "admit", "debug_guard"]

#: ``off``: no Debug endpoints at all; ``local``: the owner's processes or the auth rules; ``open``: anyone.
Access = Literal["off", "local", "open"]

logger = logging.getLogger("micro.debug")


@dataclass(frozen=True, kw_only=True, slots=True)
class DebugOptions(Options):
    """Options of the ``Debug`` endpoints (``MICRO_DEBUG_<OPTION>``)."""

    #: ``off``, ``local`` (default) or ``open``: who may call ``Debug.logs|trace|stats`` (``MICRO_DEBUG_ACCESS``).
    access: Access = "local"
    #: Seconds a local proof is accepted either side of the server's clock (``MICRO_DEBUG_PROOF_WINDOW``).
    proof_window: float = 30.0

    def __post_init__(self) -> None:
        if self.access not in ("off", "local", "open"):
            raise InvalidOption(f"expected off, local or open, got {self.access!r}", option="access")
        window = self.proof_window
        if isinstance(window, bool) or not isinstance(window, (int, float)) or not math.isfinite(window):
            raise InvalidOption(f"must be a number of seconds, got {window!r}", option="proof_window")
        if not 0 < window <= 300:
            raise InvalidOption(f"must be more than 0 and at most 300 seconds, got {window!r}", option="proof_window")


# Set by debug_guard for the call being served: None when local, else why it is not.
_local: contextvars.ContextVar[str | None] = contextvars.ContextVar("micro.debug.local", default="no local proof")


def debug_guard(proofs: LocalProofs) -> HandlerWrapper:
    """A server wrapper that checks the local proof of every ``Debug.*`` call, for :func:`admit` to read.

    It refuses nothing itself: the decision is taken innermost, by :func:`admit`,
    after an auth wrapper (which may run later) has had its say.
    """

    def wrapper(next: HandlerFunc) -> HandlerFunc:
        async def handler(request: Request) -> Any:
            if not request.endpoint.startswith("Debug."):  # (a server that honours _micro_endpoints never asks)
                return await next(request)
            try:
                if request.local:  # a local_only server checked (and used up) this call's proof already
                    verdict: str | None = None
                elif (proof := _mucp.header(request.header, _mucp.LOCAL_PROOF)) is None:
                    verdict = "no local proof"
                else:
                    verdict = proofs.check(proof, request.endpoint)
            except (MicroError, OSError) as exc:  # the secret cannot be read: no caller can prove anything
                logger.warning("%s: cannot read the local secret to check a Debug call: %s", proofs.service, exc)
                verdict = "the local secret is unavailable (see the service's log)"
            token = _local.set(verdict)
            try:
                return await next(request)
            finally:
                _local.reset(token)

        return handler

    # RPCServer wraps only the Debug endpoints with it: every other call is served without this layer.
    wrapper._micro_endpoints = _is_debug  # type: ignore[attr-defined]
    return wrapper


def _is_debug(endpoint: str) -> bool:
    return endpoint.startswith("Debug.")


def admit(access: Access, endpoint: str, service: str = "") -> None:
    """Return if the call being handled may read ``endpoint`` under ``access``; else raise
    :class:`~micro.errors.Forbidden` saying why and what to do."""
    if access == "open":
        return
    from ..auth.wrappers import rules_applied

    if access == "local":
        reason = _local.get()
        if reason is None or rules_applied():
            return
        raise Forbidden(
            f"{endpoint} answers only the local user running {service or 'the service'}, or callers the auth "
            f"rules admit ({reason}); use `micro debug`, or set MICRO_DEBUG_ACCESS=open",
            id=service,
        )
    raise Forbidden(f"{endpoint} is turned off (MICRO_DEBUG_ACCESS=off)", id=service)
