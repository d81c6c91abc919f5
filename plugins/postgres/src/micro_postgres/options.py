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

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

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

_SCHEMES: Final = frozenset({"postgresql", "postgres"})
# A query parameter whose name says it holds a secret (libpq reads ``?password=`` from the URL).
_SECRET_PARAMETER: Final = re.compile(r"(?i)([?&;][^=&;#]*(?:pass|pwd|token|secret|auth|cred|key)[^=&;#]*=)[^&;#]*")
# The longest wait an option may ask for: longer is a hang by another name.
_MAX_SECONDS: Final = 86_400.0
_MAX_POOL: Final = 1024
# PostgreSQL truncates identifiers to 63 bytes; a schema name must fit.
_MAX_IDENTIFIER: Final = 63


def masked(text: str) -> str:
    """``text``, an address as given and perhaps malformed, with whatever may be a credential replaced by ``***``.

    The user information (everything before the last ``@`` after the scheme, since a
    password may hold ``@``, ``/`` or ``:``), the value of a query parameter named like a
    password, and a port that is not a number (``postgresql://:secret`` with the ``@host``
    forgotten) become ``***``.
    """
    scheme, separator, rest = text.partition("://")
    if not separator:
        scheme, rest = "", text
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    host, colon, port = netloc.rpartition(":")
    if colon and port and not port.isdigit() and not netloc.endswith("]"):
        netloc = f"{host}:***"
    return scheme + separator + netloc + _SECRET_PARAMETER.sub(r"\1***", tail)


def server_dsn(address: tuple[str, ...]) -> str:
    """The ``postgresql://`` URL for ``address`` (an options ``address`` tuple); :class:`InvalidOption` if unusable.

    Messages show the address through :func:`masked`: never a password, even from a malformed one.
    """
    if not address:
        return DEFAULT_ADDRESS
    if len(address) > 1:
        raise InvalidOption(
            f"expected one PostgreSQL server, got {len(address)}: {', '.join(masked(a) for a in address)}",
            option="address",
        )
    text = address[0].strip()
    shown = repr(masked(text))
    url = text if "://" in text else f"postgresql://{text}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        # urlsplit's message quotes the bad port, which may be a password: say what is wrong instead.
        why = "its port is not a number from 0 to 65535" if "port" in str(exc).lower() else "it cannot be parsed"
        raise InvalidOption(f"{shown} is not a PostgreSQL address: {why}", option="address") from None
    if parts.scheme not in _SCHEMES:
        raise InvalidOption(f"{shown}: unknown scheme {parts.scheme!r}; use postgresql://", option="address")
    if not parts.hostname:
        raise InvalidOption(f"{shown} names no host (host:port or postgresql://host:port)", option="address")
    if port == 0:
        raise InvalidOption(f"{shown}: port 0 cannot be connected to", option="address")
    return url


def display_address(dsn: str) -> str:
    """``dsn`` without its credentials, for messages: ``127.0.0.1:5432/test``."""
    parts = urlsplit(dsn)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    database = parts.path.strip("/")
    where = f"{host}:{parts.port or 5432}"
    return f"{where}/{database}" if database else where


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
