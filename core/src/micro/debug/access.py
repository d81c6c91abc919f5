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

The proof is ``v1.<milliseconds>.<nonce>.<hmac>``, the HMAC-SHA256 under the
secret of the service name, the endpoint, the time and a random nonce. The
secret itself never leaves the process. The server accepts a proof for its own
name and that endpoint, made within ``proof_window`` seconds of its clock, once
(it remembers the nonces it accepted for the window): a proof copied from one
call is useless for another endpoint, another service, later, or twice.
``Debug.health`` answers everyone: it says only that the service is up.

The ``Micro-Local-Proof`` header is a routing header: it never reaches a
handler's metadata, so a handler does not forward it on its own calls.
:func:`local_proof` is the client wrapper that signs calls (``micro debug``
uses it).
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import logging
import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from .. import _mucp
from ..errors import Forbidden, InvalidOption, MicroError
from ..options import Options

if TYPE_CHECKING:
    from ..client.base import CallFunc, CallWrapper, Response
    from ..client.base import Request as CallRequest
    from ..server.base import HandlerFunc, HandlerWrapper, Request

__all__ = [
    "Access",
    "DebugOptions",
    "LocalProofs",
    "admit",
    "debug_guard",
    "local_proof",
    "make_proof",
]

#: ``off``: no Debug endpoints at all; ``local``: the owner's processes or the auth rules; ``open``: anyone.
Access = Literal["off", "local", "open"]

logger = logging.getLogger("micro.debug")

_VERSION: Final = "v1"
# Accepted nonces kept at most; a burst beyond it is refused rather than letting memory grow.
_MAX_REMEMBERED: Final = 4096


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


def _mac(secret: bytes, service: str, endpoint: str, millis: str, nonce: str) -> str:
    message = "\n".join((_VERSION, service, endpoint, millis, nonce)).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def make_proof(secret: bytes, service: str, endpoint: str, *, now: float | None = None) -> str:
    """A ``Micro-Local-Proof`` value for one call of ``endpoint`` on ``service``, made at ``now``."""
    millis = str(int((time.time() if now is None else now) * 1000))
    nonce = secrets.token_hex(16)
    return f"{_VERSION}.{millis}.{nonce}.{_mac(secret, service, endpoint, millis, nonce)}"


class LocalProofs:
    """Checks local proofs for one service: each accepted once, within the window.

    :param secret: returns the per-user secret; read on the first check and kept.
    """

    def __init__(self, service: str, secret: Callable[[], bytes], window: float = 30.0) -> None:
        self._service = service
        self._source = secret
        self._secret: bytes | None = None
        self._window = window
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def service(self) -> str:
        return self._service

    def check(self, proof: str, endpoint: str, *, now: float | None = None) -> str | None:
        """``None`` if ``proof`` is good for ``endpoint`` (and remember it), else why not (for the error)."""
        parts = proof.split(".")
        if len(parts) != 4 or parts[0] != _VERSION or not parts[1].isascii() or not parts[1].isdigit():
            return "the local proof is malformed"
        _, millis, nonce, mac = parts
        if len(millis) > 16 or len(nonce) != 32 or len(mac) != 64:
            return "the local proof is malformed"
        current = time.time() if now is None else now
        if abs(int(millis) / 1000 - current) > self._window:
            return f"the local proof is outside its {self._window:g}s window"
        if self._secret is None:
            self._secret = self._source()
        if not hmac.compare_digest(mac, _mac(self._secret, self._service, endpoint, millis, nonce)):
            return "the local proof does not match (another user, service or endpoint)"
        with self._lock:
            if nonce in self._seen:
                return "the local proof was already used"
            if len(self._seen) >= _MAX_REMEMBERED:
                self._seen = {n: t for n, t in self._seen.items() if t > current}
                if len(self._seen) >= _MAX_REMEMBERED:
                    return "too many local proofs at once; retry shortly"
            self._seen[nonce] = current + 2 * self._window
        return None


# Set by debug_guard for the call being served: None when local, else why it is not.
_local: contextvars.ContextVar[str | None] = contextvars.ContextVar("micro.debug.local", default="no local proof")


def debug_guard(proofs: LocalProofs) -> HandlerWrapper:
    """A server wrapper that checks the local proof of every ``Debug.*`` call, for :func:`admit` to read.

    It refuses nothing itself: the decision is taken innermost, by :func:`admit`,
    after an auth wrapper (which may run later) has had its say.
    """

    def wrapper(next: HandlerFunc) -> HandlerFunc:
        async def handler(request: Request) -> Any:
            if not request.endpoint.startswith("Debug."):
                return await next(request)
            proof = _mucp.header(request.header, _mucp.LOCAL_PROOF)
            try:
                verdict = "no local proof" if proof is None else proofs.check(proof, request.endpoint)
            except (MicroError, OSError) as exc:  # the secret cannot be read: no caller can prove anything
                logger.warning("%s: cannot read the local secret to check a Debug call: %s", proofs.service, exc)
                verdict = "the local secret is unavailable (see the service's log)"
            token = _local.set(verdict)
            try:
                return await next(request)
            finally:
                _local.reset(token)

        return handler

    return wrapper


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


def local_proof(secret: Callable[[], bytes] | None = None, environ: Mapping[str, str] | None = None) -> CallWrapper:
    """A client wrapper that signs every attempt with a fresh local proof (the caller's own user's secret).

    ``secret`` returns the per-user secret; by default
    :func:`micro._private.local_secret` (read once, on the first call).
    """
    kept: list[bytes] = []

    def source() -> bytes:
        if not kept:
            if secret is not None:
                kept.append(secret())
            else:
                from .._private import local_secret

                kept.append(local_secret(environ))
        return kept[0]

    def wrapper(next: CallFunc) -> CallFunc:
        async def call(request: CallRequest) -> Response:
            request.metadata[_mucp.LOCAL_PROOF] = make_proof(source(), request.service, request.endpoint)
            return await next(request)

        return call

    return wrapper
