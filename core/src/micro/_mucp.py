"""The mucp wire format shared by the RPC client and server: header names and their encodings.

One call is one transport socket (a multiplexed stream of the transport). A
unary call is one request message and one response message; a streaming call
is an opening message followed by data messages each way, each direction ended
by a message whose ``Micro-Error`` header is ``EOS`` (or an error).

Header names are Go Micro's, compared case-insensitively. Everything here is
small and allocation-free on purpose: it runs on every call.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

import orjson

from .errors import BadRequest, MicroError, RPCError, from_wire
from .metadata import Metadata
from .options import parse_duration

__all__ = [
    "ACCEPT",
    "CONTENT_TYPE",
    "ENDPOINT",
    "EOS",
    "ERROR",
    "ID",
    "LOCAL_PROOF",
    "MAX_TIMEOUT",
    "METHOD",
    "ROUTING",
    "SERVICE",
    "STREAM",
    "TIMEOUT",
    "TOPIC",
    "decode_timeout",
    "encode_timeout",
    "error_from",
    "error_json",
    "header",
    "inbound_metadata",
    "parse",
]

SERVICE: Final = "Micro-Service"
ENDPOINT: Final = "Micro-Endpoint"
#: Go Micro sends the endpoint twice, as ``Micro-Method`` and ``Micro-Endpoint``; the server accepts either.
METHOD: Final = "Micro-Method"
ID: Final = "Micro-Id"
CONTENT_TYPE: Final = "Content-Type"
ACCEPT: Final = "Accept"
#: The caller's remaining time, as integer nanoseconds (Go's ``time.Duration``); ``5s`` style is accepted too.
TIMEOUT: Final = "Timeout"
#: On a response: the error as ``{"id","code","detail","status"}`` JSON, or ``EOS`` at the end of a stream.
ERROR: Final = "Micro-Error"
#: On the opening message of a streaming call: the stream's id.
STREAM: Final = "Micro-Stream"
TOPIC: Final = "Micro-Topic"
EOS: Final = "EOS"
#: On a request: proof that the caller runs as the server's own local user (see :mod:`micro.debug.access`).
LOCAL_PROOF: Final = "Micro-Local-Proof"

#: Routing headers, lower-cased: they describe one hop and are not copied into handler metadata,
#: so a handler that calls on does not forward its caller's routing (nor its local proof).
ROUTING: Final[frozenset[str]] = frozenset(
    h.lower() for h in (SERVICE, ENDPOINT, METHOD, ID, CONTENT_TYPE, ACCEPT, TIMEOUT, ERROR, STREAM, LOCAL_PROOF)
) | frozenset(("x-micro-service", "x-micro-endpoint", "x-micro-method", "x-micro-id", "x-micro-error"))


# The routing headers as micro and Go Micro spell them, to their lower-case names (X-Micro-* are folded by parse).
_SPELLED: Final[dict[str, str]] = {
    name: name.lower()
    for name in (SERVICE, ENDPOINT, METHOD, ID, CONTENT_TYPE, ACCEPT, TIMEOUT, ERROR, STREAM, LOCAL_PROOF)
}


def parse(headers: Mapping[str, str]) -> tuple[dict[str, str], Metadata]:
    """Split a message's headers in one pass: routing headers keyed by lower-case name, and the rest.

    Go's ``X-Micro-*`` spellings are folded into ``micro-*`` (the plain spelling
    wins if both are present). The rest is the :class:`~micro.metadata.Metadata`
    a handler or caller sees, original spellings kept.
    """
    routing: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in headers.items():
        folded = _SPELLED.get(key)
        if folded is not None:  # micro's own spelling of a routing header: one lookup, no lower-casing
            routing[folded] = value
            continue
        folded = key.lower()
        if folded in ROUTING:
            if folded.startswith("x-"):
                routing.setdefault(folded[2:], value)
            else:
                routing[folded] = value
        else:
            rest.append((key, value))
    return routing, (Metadata(rest) if rest else Metadata())


def header(headers: Mapping[str, str], name: str) -> str | None:
    """``headers[name]``, tolerating other spellings (``micro-id``) and Go's ``X-Micro-*`` variants."""
    value = headers.get(name)
    if value is not None:
        return value
    if isinstance(headers, Metadata):
        return headers.get("X-" + name) if name.startswith("Micro-") else None
    folded = name.lower()
    alternative = "x-" + folded if folded.startswith("micro-") else None
    for key, candidate in headers.items():
        lowered = key.lower()
        if lowered in (folded, alternative):
            return candidate
    return None


def inbound_metadata(headers: Mapping[str, str]) -> Metadata:
    """The metadata a handler sees: every request header except the routing ones."""
    return Metadata((k, v) for k, v in headers.items() if k.lower() not in ROUTING)


def encode_timeout(seconds: float) -> str:
    """The ``Timeout`` header for ``seconds``: integer nanoseconds, at least 1."""
    return str(max(1, int(seconds * 1e9)))


#: The longest ``Timeout`` accepted, in seconds (a year): anything longer is a mistake or an attack, and a
#: deadline that far out would overflow the event loop's clock arithmetic.
MAX_TIMEOUT: Final = 366 * 24 * 3600.0
# 2**63 ns (Go's largest Duration) has 19 digits; a header twice as long is not a duration.
_MAX_TIMEOUT_CHARS: Final = 40


def decode_timeout(text: str) -> float:
    """Seconds in a ``Timeout`` header: integer nanoseconds, or a duration such as ``"5s"``.

    Only ASCII digits (and a unit) are accepted; the result is finite, not
    negative and at most :data:`MAX_TIMEOUT`. Anything else (empty, hundreds of
    digits, ``1e999``, ``nan``, ``-1``, other scripts' digits) raises
    :class:`~micro.errors.BadRequest` naming the header; never another exception.
    """
    if len(text) <= _MAX_TIMEOUT_CHARS and text.isascii() and text.isdigit():
        # What every micro client sends (integer nanoseconds), checked here without the general path's call.
        seconds = int(text) / 1e9
        if seconds <= MAX_TIMEOUT:
            return seconds
    problem = _timeout_problem(text)
    if problem is None:
        seconds = int(text) / 1e9 if text.isdigit() else parse_duration(text)
        if math.isfinite(seconds) and 0 <= seconds <= MAX_TIMEOUT:
            return seconds
        problem = "out of range"
    shown = text if len(text) <= _MAX_TIMEOUT_CHARS else text[:_MAX_TIMEOUT_CHARS] + "..."
    raise BadRequest(
        f"bad {TIMEOUT} header {shown!r} ({problem}): expected nanoseconds or a duration such as 5s, "
        f"at most {int(MAX_TIMEOUT)}s"
    )


def _timeout_problem(text: str) -> str | None:
    """Why ``text`` cannot be a ``Timeout`` value, or ``None`` if it parses (checked before any conversion)."""
    if not text:
        return "empty"
    if len(text) > _MAX_TIMEOUT_CHARS:
        return f"{len(text)} characters"
    if not text.isascii():
        return "not ASCII"
    if text.isdigit():
        return None
    try:
        parse_duration(text)
    except ValueError:
        return "not a duration"
    return None


def error_from(text: str) -> RPCError:
    """The error a ``Micro-Error`` header carries."""
    return from_wire(text)


def error_json(error: MicroError) -> str:
    """The ``Micro-Error`` header value for ``error``."""
    return orjson.dumps(error.to_dict()).decode()
