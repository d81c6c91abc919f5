"""``micro web`` options: ``MICRO_WEB_<FIELD>`` (``MICRO_WEB_ADDRESS=127.0.0.1:8082``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from micro import _env
from micro.errors import InvalidOption
from micro.options import Options, build

__all__ = ["WebOptions", "web_options"]


@dataclass(frozen=True, kw_only=True, slots=True)
class WebOptions(Options):
    """The dashboard's listening port and its limits."""

    #: Where its variables start (the configuration reference lists them under ``micro web``).
    variable_prefix: ClassVar[str] = "MICRO_WEB"

    #: Where the dashboard listens; loopback by default (it can call every service: keep it private).
    address: str = "127.0.0.1:8082"
    #: The access token the browser must send; empty means a new random one per run (printed in the URL).
    token: str = ""
    #: The largest request body, in bytes, the dashboard accepts (a call's JSON).
    max_body: int = 1_048_576
    #: Requests handled at once; more get a 503 at once instead of queueing without bound.
    max_requests: int = 64
    #: Connections kept open at once (``MICRO_WEB_MAX_CONNECTIONS``); one more is closed as it is accepted.
    max_connections: int = 256
    #: Seconds one call made from the dashboard may take.
    call_timeout: float = 30.0
    #: Seconds an idle keep-alive connection is kept open.
    idle_timeout: float = 15.0
    #: Seconds a request body may take to arrive; a slower one gets a 408 and gives its slot back.
    read_timeout: float = 10.0

    def __post_init__(self) -> None:
        host, sep, port = self.address.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise InvalidOption(f"must be host:port, got {self.address!r}", option="address")
        if self.token and len(self.token) < 16:
            raise InvalidOption("must be at least 16 characters (or empty for a random one)", option="token")
        for name, low, high in (
            ("max_body", 1024, 64 << 20),
            ("max_requests", 1, 10_000),
            ("max_connections", 1, 100_000),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise InvalidOption(f"must be an integer from {low} to {high}, got {value!r}", option=name)
        for name in ("call_timeout", "idle_timeout", "read_timeout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 3600:
                raise InvalidOption(f"must be a number of seconds in (0, 3600], got {value!r}", option=name)


def web_options(environ: Mapping[str, str], **values: object) -> WebOptions:
    """:class:`WebOptions` from ``MICRO_WEB_*`` in ``environ``, overridden by ``values`` that are not ``None``."""
    selection = _env.selection("web", environ)
    given = {key: value for key, value in values.items() if value is not None}
    return build(WebOptions, selection.options, given, describe=lambda key: _env.variable("web", key))
