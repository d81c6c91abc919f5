"""Options of the NATS broker: ``MICRO_BROKER_*``.

* ``address``: one or more NATS servers of one cluster, as URLs (``nats://[user:password@]host:4222``,
  ``tls://host:4222``) or ``host:port``. Empty means ``nats://127.0.0.1:4222``.
* ``connect_timeout``: seconds to open a connection; bounds how long ``start()`` takes against a
  server that does not answer.
* ``request_timeout``: seconds a JetStream request (a publish's acknowledgement, creating the stream
  or a consumer) may take before it fails with :class:`~micro.errors.BackendUnavailable`.

See :mod:`micro_nats.broker` for what the broker's own options do. This module does not import the
NATS driver, so options can be built and checked without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from micro.address import masked
from micro.broker import BrokerOptions
from micro.errors import InvalidOption
from micro.registry.options import RegistryOptions

__all__ = ["DEFAULT_ADDRESS", "NatsBrokerOptions", "NatsRegistryOptions", "display_address", "masked", "server_urls"]

#: The server used when no address is given.
DEFAULT_ADDRESS: Final = "nats://127.0.0.1:4222"

_SCHEMES: Final = frozenset({"nats", "tls"})
# A subject token: anything but whitespace, '.', and the wildcards '*' and '>'.
_TOKEN: Final = re.compile(r"[^\s.*>]+")
# JetStream names (streams, consumers) may not hold whitespace, '.', '*', '>', path separators.
_NAME: Final = re.compile(r"[^\s.*>/\\]{1,255}")
_MAX_SECONDS: Final = 86_400.0 * 365
_MAX_COUNT: Final = 2**31 - 1


def server_urls(address: tuple[str, ...]) -> list[str]:
    """The ``nats://`` URLs for ``address`` (an options ``address`` tuple); :class:`InvalidOption` if unusable."""
    if not address:
        return [DEFAULT_ADDRESS]
    urls = []
    for text in address:
        shown = repr(masked(text.strip()))
        url = text.strip() if "://" in text else f"nats://{text.strip()}"
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise InvalidOption(f"{shown} is not a NATS address: its port is not a number", option="address") from None
        if parts.scheme not in _SCHEMES:
            raise InvalidOption(f"{shown}: unknown scheme {parts.scheme!r}; use nats:// or tls://", option="address")
        if not parts.hostname:
            raise InvalidOption(f"{shown} names no host (host:port or nats://host:port)", option="address")
        if port == 0:
            raise InvalidOption(f"{shown}: port 0 cannot be connected to", option="address")
        urls.append(url)
    return urls


def display_address(urls: list[str]) -> str:
    """The servers of ``urls`` without credentials, for messages: ``127.0.0.1:4222``."""
    shown = []
    for url in urls:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        if ":" in host:
            host = f"[{host}]"
        shown.append(f"{host}:{parts.port or 4222}")
    return ",".join(shown)


def check_subject(value: object, option: str) -> str:
    """``value`` if it is a subject of literal tokens (``micro.broker``), else :class:`InvalidOption`."""
    if not isinstance(value, str) or not all(_TOKEN.fullmatch(t) for t in value.split(".")):
        raise InvalidOption(
            f"must be a NATS subject of dot-separated tokens without whitespace or wildcards, got {value!r}",
            option=option,
        )
    return value


def _integer(value: object, option: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidOption(f"must be an integer from {low} to {high}, got {value!r}", option=option)


def _seconds(value: object, option: str, low: float, *, strict: bool = False) -> None:
    """A number of seconds from ``low`` (excluded if ``strict``) to a year; NaN and infinities are refused."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= _MAX_SECONDS:
        raise InvalidOption(
            f"must be a number of seconds from {low:g} to {_MAX_SECONDS:g}, got {value!r}", option=option
        )
    if strict and value == low:
        raise InvalidOption(f"must be more than {low:g} seconds, got {value!r}", option=option)


@dataclass(frozen=True, kw_only=True, slots=True)
class NatsBrokerOptions(BrokerOptions):
    """The ``nats`` broker (``MICRO_BROKER=nats``); see :mod:`micro_nats.broker` for the semantics."""

    connect_timeout: float = 5.0
    request_timeout: float = 5.0
    #: Topic ``t`` is the subject ``<subject_prefix>.t``.
    subject_prefix: str = "micro.broker"
    #: ``False`` (the default): core NATS, at most once. ``True``: publishes are stored in the JetStream
    #: stream ``stream`` and confirmed by the server, and queue groups are durable JetStream consumers
    #: with explicit acks, redelivery and a dead-letter subject.
    jetstream: bool = False
    #: The JetStream stream holding ``<subject_prefix>.>`` (created on start if missing; an existing
    #: one is used as it is).
    stream: str = "MICRO_BROKER"
    #: Bounds of the stream when the broker creates it; a publish that would exceed them fails
    #: (nothing is dropped to make room).
    stream_max_msgs: int = 1_000_000
    stream_max_bytes: int = 1 << 30
    #: Seconds a stored message is kept at most, acked or not (0: no limit).
    stream_max_age: float = 7 * 86_400.0
    #: Seconds a queue member may hold a message without settling it before JetStream gives it to
    #: another member; a running handler keeps extending it, so only a member that died (or was cut
    #: off) loses its messages to the others.
    ack_wait: float = 30.0
    #: Deliveries of one message (the first included) before it is moved to the dead-letter subject:
    #: a handler that keeps failing, a nack with requeue, or members that keep dying with it.
    max_deliveries: int = 5
    #: A message past ``max_deliveries`` is published to ``<dead_letter_prefix>.<topic>``, its
    #: header extended with ``Micro-Dead-Topic`` and ``Micro-Dead-Deliveries``.
    dead_letter_prefix: str = "micro.dead"
    #: Seconds a durable queue group's consumer survives with no member before the server removes it.
    queue_inactive: float = 86_400.0
    #: Messages a JetStream queue member fetches at a time.
    prefetch: int = 32
    #: Messages (and bytes) a subscriber holds in memory that it has not handled yet; past that a
    #: core NATS subscriber loses messages (the NATS "slow consumer"), logged.
    pending_msgs_limit: int = 65_536
    pending_bytes_limit: int = 64 * 1024 * 1024
    #: Seconds a running handler may take to finish when its subscriber is removed, before it is cancelled.
    close_timeout: float = 5.0

    def __post_init__(self) -> None:
        BrokerOptions.__post_init__(self)
        server_urls(self.address)
        for name in ("connect_timeout", "request_timeout"):
            _seconds(getattr(self, name), name, 0, strict=True)
        check_subject(self.subject_prefix, "subject_prefix")
        check_subject(self.dead_letter_prefix, "dead_letter_prefix")
        if not isinstance(self.jetstream, bool):
            raise InvalidOption(f"must be a boolean, got {self.jetstream!r}", option="jetstream")
        if not isinstance(self.stream, str) or not _NAME.fullmatch(self.stream):
            raise InvalidOption(
                f"must be a JetStream name (no whitespace, '.', '*', '>', '/' or '\\'), got {self.stream!r}",
                option="stream",
            )
        _integer(self.stream_max_msgs, "stream_max_msgs", 1, 2**62)
        _integer(self.stream_max_bytes, "stream_max_bytes", 1, 2**62)
        _seconds(self.stream_max_age, "stream_max_age", 0)
        _seconds(self.ack_wait, "ack_wait", 0.1)
        _integer(self.max_deliveries, "max_deliveries", 1, _MAX_COUNT)
        _seconds(self.queue_inactive, "queue_inactive", 1)
        _integer(self.prefetch, "prefetch", 1, 10_000)
        _integer(self.pending_msgs_limit, "pending_msgs_limit", 1, _MAX_COUNT)
        _integer(self.pending_bytes_limit, "pending_bytes_limit", 1024, 2**40)
        _seconds(self.close_timeout, "close_timeout", 0)


_BUCKET: Final = re.compile(r"[A-Za-z0-9_-]{1,200}")


@dataclass(frozen=True, kw_only=True, slots=True)
class NatsRegistryOptions(RegistryOptions):
    """The ``nats`` registry (``MICRO_REGISTRY=nats``); see :mod:`micro_nats.registry`.

    ``timeout`` (``MICRO_REGISTRY_TIMEOUT``) bounds each request to the server.
    """

    connect_timeout: float = 5.0
    #: The JetStream key-value bucket holding the nodes (created on start if missing).
    bucket: str = "micro_registry"

    def __post_init__(self) -> None:
        RegistryOptions.__post_init__(self)
        server_urls(self.address)
        _seconds(self.connect_timeout, "connect_timeout", 0, strict=True)
        if not isinstance(self.bucket, str) or not _BUCKET.fullmatch(self.bucket):
            raise InvalidOption(
                f"must be a key-value bucket name (letters, digits, '_' and '-'), got {self.bucket!r}", option="bucket"
            )
