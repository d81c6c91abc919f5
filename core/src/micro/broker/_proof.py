"""The proof a publisher sends with each http-broker delivery, and its check on the subscriber's side.

A delivery POST carries one header::

    Micro-Broker-Proof: t=<unix ms>,n=<32 hex nonce>,h=<hex HMAC of the head>,b=<hex HMAC of head and body>

both HMAC-SHA256 under the broker secret (the user's local secret, or the
configured ``secret``). The *head* is the target node id, the time, the nonce
and the body's length; it is checked before a byte of the body is read, so a
peer without the secret cannot make a subscriber buffer bodies. The second MAC
covers the head and the body. The secret itself never goes on the wire: a
process that took over a dead subscriber's port learns a proof for one node id,
one body and one moment, which no live subscriber accepts (node ids are never
reused), and a subscriber accepts each nonce once within ``window`` seconds of
its time.
"""

from __future__ import annotations

import heapq
import hmac
import math
import os
import time
from typing import NamedTuple

from ..errors import Unauthorized

__all__ = ["HEADER", "Proof", "Replays", "sign", "verify_body", "verify_head"]

HEADER = "Micro-Broker-Proof"
_HEAD = b"micro.broker.http/v1 head\n"
_BODY = b"micro.broker.http/v1 body\n"
_MAC_HEX = 64
_NONCE_HEX = 32


class Proof(NamedTuple):  # a tuple: built for every delivery, and much cheaper than a frozen dataclass
    """A parsed proof header whose head MAC checked out."""

    head: bytes
    body_mac: str
    nonce: str
    time: float


def _head(node_id: str, millis: int, nonce: str, length: int) -> bytes:
    return f"{node_id}\n{millis}\n{nonce}\n{length}".encode()


def _body_mac(secret: bytes, head: bytes, body: bytes) -> str:
    # One-shot hmac.digest (OpenSSL) is several times faster than an hmac.HMAC object for the small
    # bodies most deliveries are; the copy it needs costs little next to decoding the body.
    return hmac.digest(secret, b"".join((_BODY, head, b"\n", body)), "sha256").hex()


def sign(secret: bytes, node_id: str, body: bytes, now: float | None = None) -> str:
    """The :data:`HEADER` value for POSTing ``body`` to the subscriber node ``node_id``."""
    millis = int((time.time() if now is None else now) * 1000)
    nonce = os.urandom(_NONCE_HEX // 2).hex()
    head = _head(node_id, millis, nonce, len(body))
    head_mac = hmac.digest(secret, _HEAD + head, "sha256").hex()
    return f"t={millis},n={nonce},h={head_mac},b={_body_mac(secret, head, body)}"


def verify_head(
    secret: bytes, value: str | None, node_id: str, length: int | None, window: float, now: float | None = None
) -> Proof:
    """Check the head of a proof: its form, its MAC for ``node_id`` and ``length``, and its time.

    :raises Unauthorized: no proof, a malformed one, a wrong MAC, no body
        length to check against, or a time more than ``window`` seconds away
        from ``now``. The message says which, never what was expected.
    """
    if not value:
        raise Unauthorized(f"no {HEADER} header: the delivery is not signed with the broker secret")
    # The form is fixed (t, n, h, b in this order), so a split is all the parsing it needs.
    parts = value.split(",")
    if len(parts) != 4 or [p[:2] for p in parts] != ["t=", "n=", "h=", "b="]:
        raise Unauthorized(f"malformed {HEADER} header")
    millis_text, nonce, head_mac, body_mac = (p[2:] for p in parts)
    if (
        not millis_text.isascii()
        or not millis_text.isdigit()
        or len(millis_text) > 16
        or len(nonce) != _NONCE_HEX
        or len(head_mac) != _MAC_HEX
        or len(body_mac) != _MAC_HEX
    ):
        raise Unauthorized(f"malformed {HEADER} header")
    if length is None:
        raise Unauthorized("a signed delivery needs a Content-Length")
    millis = int(millis_text)
    head = _head(node_id, millis, nonce, length)
    if not hmac.compare_digest(hmac.digest(secret, _HEAD + head, "sha256").hex(), head_mac):
        raise Unauthorized(f"{HEADER} does not match: the publisher uses another broker secret")
    signed = millis / 1000
    current = time.time() if now is None else now
    if not abs(current - signed) <= window:
        raise Unauthorized(f"{HEADER} is {current - signed:+.1f}s old, outside the auth_window of {window}s")
    return Proof(head=head, body_mac=body_mac, nonce=nonce, time=signed)


def verify_body(secret: bytes, proof: Proof, body: bytes) -> None:
    """:raises Unauthorized: ``body`` is not the one the proof was made for."""
    if not hmac.compare_digest(_body_mac(secret, proof.head, body), proof.body_mac):
        raise Unauthorized(f"{HEADER} does not match the body")


class Replays:
    """The nonces accepted within the last ``window`` seconds, so that each proof is accepted once.

    At most ``limit`` are remembered. When that many are, the one that
    expires first is forgotten and every proof signed at or before its time
    is refused from then on (a floor), so a forgotten nonce can still never
    be accepted twice; a publisher signs each POST just before sending it, so
    a live one is never under the floor.
    """

    def __init__(self, window: float, limit: int) -> None:
        self.window = window
        self.limit = limit
        self._expiry: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._floor = -math.inf

    def __len__(self) -> int:
        return len(self._expiry)

    def admit(self, proof: Proof, now: float | None = None) -> None:
        """Remember ``proof``'s nonce; :raises Unauthorized: it was accepted before, or is under the floor."""
        current = time.time() if now is None else now
        heap, expiry = self._heap, self._expiry
        while heap and heap[0][0] < current:
            expiry.pop(heapq.heappop(heap)[1], None)
        if proof.nonce in expiry or proof.time <= self._floor:
            raise Unauthorized(f"{HEADER} was used before (a replayed delivery)")
        if len(expiry) >= self.limit:
            until, nonce = heapq.heappop(heap)
            del expiry[nonce]
            self._floor = max(self._floor, until - self.window)
        until = proof.time + self.window
        expiry[proof.nonce] = until
        heapq.heappush(heap, (until, proof.nonce))
