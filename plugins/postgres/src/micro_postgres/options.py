"""Options of the PostgreSQL store and sync: ``MICRO_STORE_*`` and ``MICRO_SYNC_*``.

Both add the same connection settings to their block's options:

* ``address``: one PostgreSQL server, as a URL
  (``postgresql://[user[:password]@]host[:port][/database][?sslmode=...]``, ``postgres://``
  too) or ``host:port``. Empty means ``postgresql://127.0.0.1:5432`` with asyncpg's defaults
  for the rest (the ``PGUSER``/``PGDATABASE`` variables, else the operating-system user).
  More than one address is an error.
* ``connect_timeout``: seconds to open a connection; bounds how long ``start()`` takes
  against a server that does not answer.
* ``request_timeout``: seconds a statement may take before it fails with
  :class:`~micro.errors.BackendUnavailable`.

This module does not import the driver, so options can be built and checked without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from micro.address import display_address as _display
from micro.address import masked
from micro.address import server_url as parse_address
from micro.errors import InvalidOption
from micro.store import StoreOptions
from micro.sync import SyncOptions

__all__ = [
    "DEFAULT_ADDRESS",
    "PostgresStoreOptions",
    "PostgresSyncOptions",
    "display_address",
    "masked",
    "server_dsn",
]

#: The server used when no address is given.
DEFAULT_ADDRESS: Final = "postgresql://127.0.0.1:5432"

_SCHEMES: Final = ("postgresql", "postgres")
# The longest wait an option may ask for: longer is a hang by another name.
_MAX_SECONDS: Final = 86_400.0
_MAX_POOL: Final = 1024
# PostgreSQL truncates identifiers to 63 bytes; a schema name must fit.
_MAX_IDENTIFIER: Final = 63


def server_dsn(address: tuple[str, ...]) -> str:
    """The ``postgresql://`` URL for ``address`` (an options ``address`` tuple); :class:`InvalidOption` if unusable.

    Messages show the address through :func:`micro.address.masked`: never a password, even from a malformed one.
    """
    if not address:
        return DEFAULT_ADDRESS
    if len(address) > 1:
        raise InvalidOption(
            f"expected one PostgreSQL server, got {len(address)}: {', '.join(masked(a) for a in address)}",
            option="address",
        )
    return parse_address(address[0], schemes=_SCHEMES, what="PostgreSQL")


def display_address(dsn: str) -> str:
    """``dsn`` without its credentials, for messages: ``127.0.0.1:5432/test``."""
    return _display(dsn, 5432)


def _seconds(value: object, option: str) -> None:
    # The chained comparison is false for NaN and the infinities, and exact for ints of any size.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= _MAX_SECONDS:
        raise InvalidOption(
            f"must be a positive number of seconds up to {_MAX_SECONDS:g} (a day), got {value!r}", option=option
        )


def _check(options: PostgresStoreOptions | PostgresSyncOptions) -> None:
    server_dsn(options.address)
    _seconds(options.connect_timeout, "connect_timeout")
    _seconds(options.request_timeout, "request_timeout")


@dataclass(frozen=True, kw_only=True, slots=True)
class PostgresStoreOptions(StoreOptions):
    """The ``postgres`` store (``MICRO_STORE=postgres``); see :mod:`micro_postgres.store` for the layout."""

    #: Seconds to open a connection (``MICRO_STORE_CONNECT_TIMEOUT``).
    connect_timeout: float = 5.0
    #: Seconds one statement may take (``MICRO_STORE_REQUEST_TIMEOUT``).
    request_timeout: float = 5.0
    #: Connections shared by the instance's calls (``MICRO_STORE_POOL_SIZE``); a call waits for a free one.
    pool_size: int = 10
    #: The PostgreSQL schema holding one table per store database/table (``MICRO_STORE_SCHEMA``).
    #: The store owns the tables in it whose names contain ``/``; it creates the schema if missing.
    schema: str = "micro_store"
    #: Seconds between two sweeps that delete expired records (``MICRO_STORE_CLEANUP_INTERVAL``).
    #: Expired records are invisible at once; the sweep only reclaims their space.
    cleanup_interval: float = 60.0

    def __post_init__(self) -> None:
        StoreOptions.__post_init__(self)
        _check(self)
        if (
            isinstance(self.pool_size, bool)
            or not isinstance(self.pool_size, int)
            or not 1 <= self.pool_size <= _MAX_POOL
        ):
            raise InvalidOption(f"must be an integer from 1 to {_MAX_POOL}, got {self.pool_size!r}", option="pool_size")
        if (
            not isinstance(self.schema, str)
            or not self.schema
            or "\x00" in self.schema
            or len(self.schema.encode("utf-8", "replace")) > _MAX_IDENTIFIER
        ):
            raise InvalidOption(
                f"must be a PostgreSQL schema name of 1 to {_MAX_IDENTIFIER} bytes without NUL, got {self.schema!r}",
                option="schema",
            )
        _seconds(self.cleanup_interval, "cleanup_interval")


@dataclass(frozen=True, kw_only=True, slots=True)
class PostgresSyncOptions(SyncOptions):
    """The ``postgres`` sync (``MICRO_SYNC=postgres``); see :mod:`micro_postgres.sync` for the semantics."""

    #: Seconds to open a connection (``MICRO_SYNC_CONNECT_TIMEOUT``).
    connect_timeout: float = 5.0
    #: Seconds one statement may take (``MICRO_SYNC_REQUEST_TIMEOUT``).
    request_timeout: float = 5.0

    def __post_init__(self) -> None:
        SyncOptions.__post_init__(self)
        _check(self)
