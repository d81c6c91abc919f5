"""The mucp wire format shared by the RPC client and server: header names and their encodings.

One call is one transport socket (a multiplexed stream of the transport). A
unary call is one request message and one response message; a streaming call
is an opening message followed by data messages each way, each direction ended
by a message whose ``Micro-Error`` header is ``EOS`` (or an error).

Header names are Go Micro's, compared case-insensitively. Everything here is
small and allocation-free on purpose: it runs on every call.
"""

from __future__ import annotations

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

#: Routing headers, lower-cased: they describe one hop and are not copied into handler metadata,
#: so a handler that calls on does not forward its caller's routing.
ROUTING: Final[frozenset[str]] = frozenset(
    h.lower() for h in (SERVICE, ENDPOINT, METHOD, ID, CONTENT_TYPE, ACCEPT, TIMEOUT, ERROR, STREAM)
) | frozenset(("x-micro-service", "x-micro-endpoint", "x-micro-method", "x-micro-id", "x-micro-error"))


def parse(headers: Mapping[str, str]) -> tuple[dict[str, str], Metadata]:
    """Split a message's headers in one pass: routing headers keyed by lower-case name, and the rest.

    Go's ``X-Micro-*`` spellings are folded into ``micro-*`` (the plain spelling
    wins if both are present). The rest is the :class:`~micro.metadata.Metadata`
    a handler or caller sees, original spellings kept.
    """
    routing: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in headers.items():
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


def decode_timeout(text: str) -> float:
    """Seconds in a ``Timeout`` header: integer nanoseconds, or a duration such as ``"5s"``.

    Raises :class:`~micro.errors.BadRequest` naming the header for anything else.
    """
    try:
        if text.isdigit():
            return int(text) / 1e9
        seconds = parse_duration(text)
    except ValueError:
        seconds = -1.0
    if seconds < 0:
        raise BadRequest(f"bad {TIMEOUT} header {text!r}: expected nanoseconds or a duration such as 5s")
    return seconds


def error_from(text: str) -> RPCError:
    """The error a ``Micro-Error`` header carries."""
    return from_wire(text)


def error_json(error: MicroError) -> str:
    """The ``Micro-Error`` header value for ``error``."""
    return orjson.dumps(error.to_dict()).decode()
