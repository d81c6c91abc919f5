"""Call metadata between micro's :class:`~micro.metadata.Metadata` and gRPC's lists of pairs."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from micro.metadata import Metadata

__all__ = ["inbound", "outbound"]

# gRPC metadata keys: lower-case, no reserved ":" pseudo-headers; grpc-* belongs to the protocol itself.
_KEY = re.compile(r"^[0-9a-z_.-]+$")
_SKIPPED = ("grpc-", "user-agent", "content-type", "te", "micro-error-")


def inbound(pairs: Iterable[Any] | None) -> Metadata:
    """The micro metadata in received gRPC metadata: text entries only, protocol headers left out."""
    found = Metadata()
    for key, value in pairs or ():
        if isinstance(value, str) and not key.startswith(":") and not key.startswith(_SKIPPED):
            found[key] = value
    return found


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
