"""Options of the Redis store, broker and sync: ``MICRO_STORE_*``, ``MICRO_BROKER_*`` and ``MICRO_SYNC_*``.

Each class adds the same connection settings to its block's options:

* ``address``: one Redis server, as a URL (``redis://[user:password@]host:port/db``,
  ``rediss://`` for TLS, ``unix:///path/to/redis.sock``) or ``host:port``. Empty means
  ``redis://127.0.0.1:6379``. Redis Cluster and Sentinel are not supported, so more than
  one address is an error.
* ``connect_timeout``: seconds to open a connection; bounds how long ``start()`` takes
  against a server that does not answer.
* ``request_timeout``: seconds a command may take before it fails with
  :class:`~micro.errors.BackendUnavailable`.
* ``pool_size``: connections shared by the instance's calls; a call waits up to
  ``request_timeout`` for a free one.
* ``key_prefix``: prepended to every Redis key the instance touches, so the three blocks
  (and several applications) can share one server.

This module does not import the Redis driver, so options can be built and checked without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

from micro.address import display_address as _display
from micro.address import masked
from micro.address import server_url as parse_address
from micro.broker import BrokerOptions
from micro.errors import InvalidOption
from micro.store import StoreOptions
from micro.sync import SyncOptions

__all__ = [
    "DEFAULT_ADDRESS",
    "RedisBrokerOptions",
    "RedisStoreOptions",
    "RedisSyncOptions",
    "display_address",
    "masked",
    "server_url",
]

#: The server used when no address is given.
DEFAULT_ADDRESS: Final = "redis://127.0.0.1:6379"

_SCHEMES: Final = ("redis", "rediss", "unix")


def server_url(address: tuple[str, ...]) -> str:
    """The ``redis://`` URL for ``address`` (an options ``address`` tuple); :class:`InvalidOption` if unusable.

    Messages show the address through :func:`micro.address.masked`: never a password, even from a malformed one.
    """
    if not address:
        return DEFAULT_ADDRESS
    if len(address) > 1:
        raise InvalidOption(
            f"expected one Redis server, got {len(address)}: {', '.join(masked(a) for a in address)} "
            "(Redis Cluster and Sentinel are not supported)",
            option="address",
        )
    return parse_address(address[0], schemes=_SCHEMES, what="Redis")


def display_address(url: str) -> str:
    """``url`` without its credentials, for messages: ``127.0.0.1:6379``, ``127.0.0.1:6379/2``, a socket path.

    As :func:`micro.address.display_address`, with ``rediss://`` kept (TLS is worth saying) and database 0 left out.
    """
    parts = urlsplit(url)
    shown = _display(parts._replace(path="") if parts.path.strip("/") == "0" else parts, 6379)
    return f"rediss://{shown}" if parts.scheme == "rediss" else shown


# Upper bounds of the numeric options: past them a value is a mistake, and some would reach Redis or the
# driver as numbers they cannot take (a pool of 10**9 connections is allocated up front, a timeout of 1e300
# does not fit a socket's timeval, COUNT and MAXLEN are signed 64-bit).
_MAX_SECONDS: Final = 86_400.0
_MAX_POOL: Final = 1024
_MAX_PREFETCH: Final = 10_000
_MAX_COUNT: Final = 2**31 - 1
_MAX_BODY: Final = 512 * 1024 * 1024


def _check(options: RedisStoreOptions | RedisBrokerOptions | RedisSyncOptions) -> None:
    server_url(options.address)
    for name in ("connect_timeout", "request_timeout"):
        _seconds(getattr(options, name), name, 0, strict=True)
    _integer(options.pool_size, "pool_size", 1, _MAX_POOL)
    if not isinstance(options.key_prefix, str):
        raise InvalidOption(f"must be a string, got {options.key_prefix!r}", option="key_prefix")


def _integer(value: object, option: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidOption(f"must be an integer from {low} to {high}, got {value!r}", option=option)


def _seconds(value: object, option: str, low: float, *, strict: bool = False) -> None:
    """A number of seconds from ``low`` (excluded if ``strict``) to a day; NaN and infinities are refused."""
    # The chained comparisons are false for NaN and exact for ints of any size (no float conversion).
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= _MAX_SECONDS:
        raise InvalidOption(
            f"must be a number of seconds from {low:g} to {_MAX_SECONDS:g}, got {value!r}", option=option
        )
    if strict and value == low:
        raise InvalidOption(f"must be more than {low:g} seconds, got {value!r}", option=option)


@dataclass(frozen=True, kw_only=True, slots=True)
class RedisStoreOptions(StoreOptions):
    """The ``redis`` store (``MICRO_STORE=redis``); see :mod:`micro_redis.store` for the key layout."""

    connect_timeout: float = 5.0
    request_timeout: float = 5.0
    pool_size: int = 16
    #: Record keys are ``<key_prefix><database>:<table>:<key>``.
    key_prefix: str = "micro:store:"

    def __post_init__(self) -> None:
        StoreOptions.__post_init__(self)
        _check(self)


@dataclass(frozen=True, kw_only=True, slots=True)
class RedisBrokerOptions(BrokerOptions):
    """The ``redis`` broker (``MICRO_BROKER=redis``); see :mod:`micro_redis.broker` for the semantics."""

    connect_timeout: float = 5.0
    request_timeout: float = 5.0
    pool_size: int = 16
    #: Each topic is the stream ``<key_prefix><topic>``.
    key_prefix: str = "micro:broker:"
    #: The most messages a topic holds for its queue groups: those a group has not received
    #: yet and those it received but has not settled (acked, dropped). What happens when it is
    #: full is ``overflow``'s choice. A topic without queue groups keeps its last ``max_length``
    #: messages for broadcast subscribers.
    max_length: int = 10_000
    #: When a queue group's backlog on a topic reaches ``max_length``: ``"block"`` (the default):
    #: publish waits up to ``overflow_timeout`` for the groups to catch up, then raises
    #: :class:`~micro.errors.Timeout` without publishing; no message is ever lost to the bound.
    #: ``"trim"``: publish goes on and the oldest messages are removed from the stream, those no
    #: group had received yet counted in :attr:`RedisBroker.dropped` and logged (at most every 10 s
    #: per topic).
    overflow: Literal["block", "trim"] = "block"
    #: Seconds a publish waits for room when ``overflow="block"`` and the backlog is full,
    #: before it raises :class:`~micro.errors.Timeout`; ``0`` fails at once.
    overflow_timeout: float = 5.0
    #: Messages a subscriber reads from Redis at a time (32: with fewer, a busy consumer cannot keep up
    #: with publishers, see docs/benchmarks.md).
    prefetch: int = 32
    #: How many times a message that is nacked with requeue (or whose handler fails) is
    #: delivered again before it is dropped and logged.
    max_redeliveries: int = 3
    #: Seconds a delivered message may stay unsettled with a queue-group member that has
    #: stopped answering (crashed, disconnected) before another member claims it.
    claim_idle: float = 30.0
    #: Seconds a running handler may take to finish when its subscriber is removed,
    #: before it is cancelled.
    close_timeout: float = 5.0

    def __post_init__(self) -> None:
        BrokerOptions.__post_init__(self)
        _check(self)
        # Redis refuses a bulk string over proto-max-bulk-len (512 MiB by default): say so at start-up.
        _integer(self.max_message_size, "max_message_size", 1, _MAX_BODY)
        _integer(self.max_length, "max_length", 1, _MAX_COUNT)
        _integer(self.prefetch, "prefetch", 1, _MAX_PREFETCH)
        _integer(self.max_redeliveries, "max_redeliveries", 0, _MAX_COUNT)
        if self.overflow not in ("block", "trim"):
            raise InvalidOption(f"must be 'block' or 'trim', got {self.overflow!r}", option="overflow")
        _seconds(self.claim_idle, "claim_idle", 0.01)
        _seconds(self.close_timeout, "close_timeout", 0)
        _seconds(self.overflow_timeout, "overflow_timeout", 0)


@dataclass(frozen=True, kw_only=True, slots=True)
class RedisSyncOptions(SyncOptions):
    """The ``redis`` sync (``MICRO_SYNC=redis``); a lock is the key ``<key_prefix><prefix><id>``."""

    connect_timeout: float = 5.0
    request_timeout: float = 5.0
    pool_size: int = 16
    key_prefix: str = "micro:sync:"

    def __post_init__(self) -> None:
        SyncOptions.__post_init__(self)
        _check(self)
