"""The gateway's settings: ``MICRO_API_<FIELD>`` variables, as every block's options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from micro.errors import InvalidOption
from micro.options import Options, build

__all__ = ["APIOptions", "api_options", "split_address"]

_PREFIX = "MICRO_API_"


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` as ``(host, port)``; ``[::1]:80`` for IPv6. Raises :class:`ValueError` if malformed."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected host:port, got {address!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _positive(options: APIOptions, *names: str, number: type = int) -> None:
    for name in names:
        value = getattr(options, name)
        if value is None and name in _OPTIONAL:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float) if number is float else int) or value <= 0:
            raise InvalidOption(f"must be a positive {number.__name__}, got {value!r}", option=name)


_OPTIONAL = frozenset({"stream_timeout"})


@dataclass(frozen=True, kw_only=True, slots=True)
class APIOptions(Options):
    """What ``micro api`` listens on and the limits it keeps. Durations are seconds."""

    #: Where its variables start (the configuration reference lists them under ``micro api``).
    variable_prefix: ClassVar[str] = "MICRO_API"

    #: Where to listen (``MICRO_API_ADDRESS``); loopback unless you mean to expose it.
    address: str = "127.0.0.1:8080"
    #: Prefix added to the service named in the path (``MICRO_API_NAMESPACE``), as Go Micro's
    #: ``--namespace``: with ``go.micro.api``, ``/greeter/Say/hello`` calls ``go.micro.api.greeter``.
    namespace: str = ""
    #: Origins allowed by CORS (``MICRO_API_CORS_ORIGINS=https://a.example,https://b.example``, or ``*``);
    #: empty: no CORS headers, so browsers allow same-origin pages only.
    cors_origins: tuple[str, ...] = ()
    #: Largest request body, and largest WebSocket message, in bytes (``MICRO_API_MAX_BODY_SIZE``); more is a 413.
    max_body_size: int = 1024 * 1024
    #: Connections open at once (``MICRO_API_MAX_CONNECTIONS``); one more is answered 503 as it is accepted and closed.
    max_connections: int = 1000
    #: WebSockets open at once (``MICRO_API_MAX_WEBSOCKETS``); more are refused (the handshake gets HTTP 403).
    max_websockets: int = 100
    #: Seconds an idle keep-alive connection stays open (``MICRO_API_IDLE_TIMEOUT``).
    idle_timeout: float = 5.0
    #: Seconds a client may take to send a request, head and body (``MICRO_API_READ_TIMEOUT``); slower is a 408.
    #: A WebSocket to a server stream must send its one request within it too (else it is closed with 4408).
    read_timeout: float = 30.0
    #: The deadline of each call (``MICRO_API_REQUEST_TIMEOUT``); a ``Timeout`` request header may only lower it.
    #: A call that misses it is a 504.
    request_timeout: float = 30.0
    #: The longest a stream (Server-Sent Events or WebSocket) may last (``MICRO_API_STREAM_TIMEOUT``; empty: no limit).
    stream_timeout: float | None = 3600.0
    #: Seconds between WebSocket pings; a peer that does not answer within as long again is dropped
    #: (``MICRO_API_PING_INTERVAL``).
    ping_interval: float = 20.0
    #: Seconds the gateway keeps a service's endpoint list from the registry (``MICRO_API_REGISTRY_TTL``).
    registry_ttl: float = 5.0

    def __post_init__(self) -> None:
        try:
            split_address(self.address)
        except (TypeError, ValueError, AttributeError) as exc:
            raise InvalidOption(str(exc), option="address") from None
        if not isinstance(self.namespace, str) or "/" in self.namespace:
            raise InvalidOption(
                f"must be a service name prefix without '/', got {self.namespace!r}", option="namespace"
            )
        if not isinstance(self.cors_origins, tuple) or not all(isinstance(o, str) for o in self.cors_origins):
            raise InvalidOption(f"must be a tuple of origins, got {self.cors_origins!r}", option="cors_origins")
        _positive(self, "max_body_size", "max_connections", "max_websockets")
        _positive(
            self,
            "idle_timeout",
            "read_timeout",
            "request_timeout",
            "stream_timeout",
            "ping_interval",
            "registry_ttl",
            number=float,
        )


def api_options(environ: Mapping[str, str], **values: Any) -> APIOptions:
    """:class:`APIOptions` from ``environ``'s ``MICRO_API_*`` variables, overridden by ``values`` (``None`` ignored).

    :raises ~micro.errors.InvalidOption: an unknown ``MICRO_API_*`` variable or a value that does not convert,
        naming the variable.
    """
    strings = {key[len(_PREFIX) :].lower(): value for key, value in environ.items() if key.startswith(_PREFIX)}
    given = {key: value for key, value in values.items() if value is not None}
    return build(APIOptions, strings, given, describe=lambda key: _PREFIX + key.upper())
