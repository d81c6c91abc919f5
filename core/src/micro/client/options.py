"""Client options: ``MICRO_CLIENT_<FIELD>`` (``MICRO_CLIENT_REQUEST_TIMEOUT=2s``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InvalidOption
from ..options import Options

__all__ = ["ClientOptions"]


def _seconds(value: object, option: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidOption(f"must be a positive number of seconds, got {value!r}", option=option)


@dataclass(frozen=True, kw_only=True, slots=True)
class ClientOptions(Options):
    """Settings of an RPC client (Go Micro ``client.Options`` and ``CallOptions`` defaults).

    Timeouts: Go Micro v4.10+ gives a call 30s and retries it 5 times; micro
    keeps the earlier, stricter defaults (5s, 1 retry), because a call that
    cannot answer in 5s is usually better failed fast. Raise
    ``request_timeout`` for slow endpoints, per call or with
    ``MICRO_CLIENT_REQUEST_TIMEOUT``.
    """

    #: Content type requests and published messages are encoded with; ``None`` is the default codec's
    #: (``application/json`` unless ``MICRO_CODEC`` says otherwise).
    content_type: str | None = None
    #: Seconds a call may take, retries and backoff included. A deadline already
    #: in the context (inside a handler) is never extended.
    request_timeout: float = 5.0
    #: Seconds a stream may stay open; ``None`` for no limit (a context deadline still applies).
    stream_timeout: float | None = None
    #: How many times a call that failed with a retryable error (timeout, unavailable) is tried again.
    retries: int = 1
    #: Seconds before the first retry; it doubles for each later one.
    backoff: float = 0.1
    #: The longest wait between two attempts, in seconds.
    backoff_max: float = 2.0
    #: Seconds allowed for connecting to a node (``None`` uses the transport's ``dial_timeout``).
    dial_timeout: float | None = None
    #: Send every call and publication through a network node's proxy (also read from Go Micro's
    #: ``MICRO_PROXY``): ``host:port`` (or several, comma-separated) of the proxy, or the name of the service
    #: the proxies register as (``micro.network``), picked by the selector. The call still names its own
    #: service; the node routes it (see :mod:`micro.network.mucp`). Calls given an explicit ``address`` go direct.
    proxy: str | None = None

    def __post_init__(self) -> None:
        if self.content_type is not None and (not isinstance(self.content_type, str) or not self.content_type.strip()):
            raise InvalidOption(
                f"must be a content type such as application/json, got {self.content_type!r}", option="content_type"
            )
        _seconds(self.request_timeout, "request_timeout")
        if self.stream_timeout is not None:
            _seconds(self.stream_timeout, "stream_timeout")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or not 0 <= self.retries <= 100:
            raise InvalidOption(f"must be an integer from 0 to 100, got {self.retries!r}", option="retries")
        for option in ("backoff", "backoff_max"):
            value = getattr(self, option)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InvalidOption(f"must be a non-negative number of seconds, got {value!r}", option=option)
        if self.dial_timeout is not None:
            _seconds(self.dial_timeout, "dial_timeout")
        if self.proxy is not None and (not isinstance(self.proxy, str) or not self.proxy.strip()):
            raise InvalidOption(f"must be host:port or a service name, got {self.proxy!r}", option="proxy")
