"""Call metadata between micro's :class:`~micro.metadata.Metadata` and gRPC's lists of pairs."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from micro.metadata import Metadata

__all__ = ["BODY_TYPE", "JSON", "inbound", "outbound", "received"]

#: The metadata key by which micro's client says a call's messages are not the method's own wire format but
#: JSON (a gateway or ``micro call`` passing a JSON body through). gRPC reserves ``content-type`` (its value is
#: ``application/grpc`` whatever the messages hold), so the encoding travels under a key of micro's own.
BODY_TYPE = "micro-body-type"
#: Its one value: JSON both ways (the server answers in the encoding it was sent).
JSON = "application/json"

# gRPC metadata keys: lower-case, no reserved ":" pseudo-headers; grpc-* belongs to the protocol itself.
_KEY = re.compile(r"^[0-9a-z_.-]+$")
# BODY_TYPE is set by the client for the call's own messages only: never taken from (or passed on as) call
# metadata, which a handler's own calls copy downstream.
_SKIPPED = ("grpc-", "user-agent", "content-type", "te", "micro-error-", BODY_TYPE)


def inbound(pairs: Iterable[Any] | None) -> Metadata:
    """The micro metadata in received gRPC metadata: text entries only, protocol headers left out."""
    return received(pairs or ())[0]


def received(pairs: Iterable[Any]) -> tuple[Metadata, str]:
    """What :func:`inbound` finds, and the call's :data:`BODY_TYPE` (``""`` when the client sent none)."""
    found = Metadata()
    body_type = ""
    for key, value in pairs:
        if isinstance(value, str) and not key.startswith(":"):
            if not key.startswith(_SKIPPED):
                found[key] = value
            elif key == BODY_TYPE:
                body_type = value
    return found, body_type


def outbound(metadata: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """gRPC metadata for micro metadata: keys lower-cased; entries gRPC cannot carry as text are left out."""
    pairs: list[tuple[str, str]] = []
    for key, value in (metadata or {}).items():
        key = key.lower()
        if (
            _KEY.match(key)
            and not key.endswith("-bin")
            and not key.startswith(_SKIPPED)
            and value.isascii()
            and value.isprintable()
        ):
            pairs.append((key, value))
    return pairs
