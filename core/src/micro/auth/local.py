"""Local proofs: a caller shows it runs as the same local user as the server, without sending a secret.

Every process of a user can read the per-user secret
(:func:`micro._private.local_secret`: 32 random bytes in a 0600 file of the
user's private runtime directory); no other user can. A caller proves it is
that user by sending, in the ``Micro-Local-Proof`` header,

    ``v1.<milliseconds since the epoch>.<32 hex nonce>.<64 hex HMAC-SHA256>``

the HMAC under the secret of ``v1``, the service name, the endpoint, the time
and the nonce. The secret never leaves the process, so a server that does not
know it learns nothing. :class:`LocalProofs` accepts a proof for its own
service and that endpoint, made within ``window`` seconds of its clock, once
(it remembers accepted nonces for twice the window, at most 4096 of them): a
proof is useless for another endpoint, another service, later, or a second time.

(The caller's ``Micro-Id`` is a per-process counter assigned after the call
wrappers run, so the proof carries its own random nonce instead of binding to it.
Each server process remembers its own nonces, and a proof names a service, not
a node: whoever sees a proof in flight could present it once to another node
of that service within the window. Send proofs to the user's local services
only; :func:`local_proof` signs every call of the client it wraps.)

The header is a routing header (:data:`micro._mucp.ROUTING`): it never reaches
a handler's metadata, so a handler's own calls do not forward it.

Used by the ``Debug`` endpoints (:mod:`micro.debug.access`) and by servers
with ``local_only`` set (:class:`~micro.server.options.ServerOptions`);
:func:`local_proof` is the client wrapper that signs calls.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from .. import _mucp

if TYPE_CHECKING:
    from ..client.base import CallFunc, CallWrapper, Response
    from ..client.base import Request as CallRequest

__all__ = ["HEADER", "LocalProofs", "local_proof", "make_proof"]

#: The request header carrying the proof.
HEADER: Final = _mucp.LOCAL_PROOF

_VERSION: Final = "v1"
# Accepted nonces kept at most; a burst beyond it is refused rather than letting memory grow.
_MAX_REMEMBERED: Final = 4096


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
            request.metadata[HEADER] = make_proof(source(), request.service, request.endpoint)
            return await next(request)

        return call

    return wrapper
