"""The store interface and its record type (Go Micro ``store/store.go``).

A store keeps :class:`Record` values, bytes with metadata and an optional
time to live, under string keys. Keys live in a *table* inside a *database*:
the same key in two tables (or two databases) names two independent records.
Every operation takes ``database=`` and ``table=``; ``None`` means the store's
:class:`~micro.store.StoreOptions` defaults (both ``"micro"``).

The rules every implementation follows, and the conformance suite checks:

* **Misses.** An exact :meth:`Store.read` of a missing (or expired) key raises
  :class:`~micro.errors.RecordNotFound` naming the key, as Go Micro returns
  ``ErrNotFound``. A prefix or suffix read that matches nothing, and a
  :meth:`Store.list` that matches nothing, return ``[]``. :meth:`Store.delete`
  of a missing key does nothing.
* **Ordering.** Prefix/suffix reads and lists are sorted by key (code point
  order), and ``offset``/``limit`` page through that order after filtering.
* **Expiry.** A record written with a TTL is invisible to every operation once
  it has expired; on read, :attr:`Record.expiry` is the time it has left.
  Writing a key again replaces its value, metadata *and* expiry.
* **Isolation.** Records are copied in and out: changing a :class:`Record` (or
  its metadata) after writing it, or after reading it, never changes the store.
* **Bad input** raises :class:`~micro.errors.BadRequest` before anything is
  done: an empty key, a key that is not UTF-8 encodable, a value that is not
  ``bytes``, metadata that is not JSON-compatible, a TTL that is not a positive
  finite number of seconds up to :data:`MAX_TTL` (100 years), a limit or offset
  that is not an ``int`` from 0 to :data:`MAX_PAGE` (``2**63 - 1``, the largest
  count a 64-bit database takes). A ``bool`` is not a number here, and a number
  too large for a float is refused like any other out-of-range one. The error
  names the argument, so no backend ever fails on such input with an untyped
  ``OverflowError`` or a driver error.

**Hooks.** The public methods of :class:`Store` are concrete: they check the arguments (with
:func:`check_key`, :func:`check_read`, :func:`check_list`, :func:`check_record` and friends), fill
in the scope, refuse a TTL without the ``"ttl"`` capability, apply the lifecycle rule of
:class:`~micro.component.Component` (``ConnectionClosed`` before ``start()`` and after
``close()``), raise :class:`~micro.errors.RecordNotFound` for an exact miss and translate
driver errors through :meth:`Store._translate`. A backend implements only the protected hooks
(``_read``, ``_read_matching``, ``_write``, ``_delete``, ``_list``, and optionally the ``_*_many``
batch hooks and ``_start``/``_close``), which receive checked arguments and a concrete
``(database, table)``. :class:`KeyFilter` does the filtering, ordering and paging for a backend
that cannot do it in its own queries.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

import orjson

from ..component import Component
from ..errors import BadRequest, NotSupported, RecordNotFound
from .options import StoreOptions

__all__ = [
    "MAX_PAGE",
    "MAX_TTL",
    "KeyFilter",
    "Record",
    "Store",
    "check_key",
    "check_keys",
    "check_list",
    "check_page",
    "check_pattern",
    "check_read",
    "check_record",
    "check_ttl",
    "not_found",
    "pack_metadata",
]

#: The largest ``limit`` and ``offset`` a store accepts: a signed 64-bit count, what SQLite,
#: PostgreSQL and Redis take; a larger one would fail in the backend's driver instead.
MAX_PAGE: Final = 2**63 - 1
#: The longest TTL a store accepts, in seconds (100 years). Longer ones mean "forever", which
#: is ``None``; refusing them keeps every backend's deadline arithmetic (milliseconds in
#: 64 bits, floats of Unix time) far from overflow.
MAX_TTL: Final = 100 * 365.25 * 86_400


@dataclass(slots=True)
class Record:
    """One stored value (Go Micro ``store.Record``).

    ``metadata`` holds JSON-compatible values (str keys; str, int, float, bool,
    ``None``, lists and dicts of those); it comes back as JSON would return it,
    so a tuple is read back as a list.
    """

    #: The record's key, unique within its database and table.
    key: str
    #: The payload. Encoding is the caller's business (see :mod:`micro.codec`).
    value: bytes
    #: Free-form, JSON-compatible annotations stored with the value.
    metadata: dict[str, Any] = field(default_factory=dict)
    #: On write: seconds to live, ``None`` for no expiry. On read: seconds left.
    expiry: float | None = None


def check_key(key: object, *, what: str = "key") -> str:
    """``key`` if it is a non-empty, UTF-8 encodable string, else :class:`~micro.errors.BadRequest`."""
    if not isinstance(key, str):
        raise BadRequest(f"{what} must be a str, not {type(key).__name__}")
    if not key:
        raise BadRequest(f"{what} must not be empty")
    _check_text(key, what)
    return key


def check_keys(keys: object) -> builtins.list[str]:
    """``keys`` (a sequence of keys, each checked by :func:`check_key`) as a list."""
    # A bare string is a Sequence[str] too; iterating it letter by letter is never what was meant.
    if isinstance(keys, (str, bytes)) or not isinstance(keys, Sequence):
        raise BadRequest(f"keys must be a list of str, not {type(keys).__name__}")
    return [check_key(k) for k in keys]


def check_pattern(text: object, *, what: str = "prefix") -> str:
    """Like :func:`check_key`, but ``""`` (match everything) is allowed: for prefixes and suffixes."""
    if not isinstance(text, str):
        raise BadRequest(f"{what} must be a str, not {type(text).__name__}")
    _check_text(text, what)
    return text


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(f"{what} {text!r} is not valid Unicode (it contains a lone surrogate)") from None


def check_ttl(ttl: object, *, what: str = "ttl") -> float | None:
    """``ttl`` as a float, ``None`` for no expiry.

    :class:`~micro.errors.BadRequest` naming ``what`` unless it is an ``int`` or ``float`` (not a
    ``bool``) with ``0 < ttl <= MAX_TTL``: NaN, infinities and ints too large for a float included.
    """
    if ttl is None:
        return None
    if not isinstance(ttl, (int, float)) or isinstance(ttl, bool):
        raise BadRequest(f"{what} must be a number of seconds or None, not {type(ttl).__name__}")
    # One chained comparison: false for NaN and the infinities, and exact for an int of any size
    # (float(10**400) and math.isfinite(10**400) would raise OverflowError).
    if not 0 < ttl <= MAX_TTL:
        raise BadRequest(
            f"{what} must be a positive number of seconds up to {MAX_TTL:.0f} (100 years; None for no expiry),"
            f" got {_shown(ttl)}"
        )
    return float(ttl)


def _shown(number: float) -> str:
    """``number`` for an error message, cut short: a caller's ``10**400`` must not fill the log."""
    text = repr(number)
    return text if len(text) <= 32 else f"{text[:12]}...({len(text)} digits)"


def check_page(limit: object, offset: object) -> None:
    """:class:`~micro.errors.BadRequest` naming the argument unless ``offset`` is an int from 0 to
    :data:`MAX_PAGE` and ``limit`` is one too, or ``None``."""
    for name, value in (("limit", limit), ("offset", offset)):
        if value is None and name == "limit":
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise BadRequest(f"{name} must be an int, not {type(value).__name__}")
        if value < 0:
            raise BadRequest(f"{name} must not be negative, got {value}")
        if value > MAX_PAGE:
            raise BadRequest(f"{name} must be at most {MAX_PAGE} (2**63 - 1), got {_shown(value)}")


def check_read(key: object, *, prefix: object, suffix: object, limit: object, offset: object) -> str:
    """Check the arguments of :meth:`Store.read`; returns the key (``""`` is allowed for a prefix/suffix read)."""
    if prefix is False and suffix is False and limit is None and type(offset) is int and 0 <= offset <= MAX_PAGE:
        return check_key(key)  # the plain exact read, checked without the general loops: it is the hot path
    for name, flag in (("prefix", prefix), ("suffix", suffix)):
        if not isinstance(flag, bool):
            raise BadRequest(f"{name} must be a bool, not {type(flag).__name__}")
    check_page(limit, offset)
    return check_pattern(key, what="key") if prefix or suffix else check_key(key)


def check_list(prefix: str, suffix: str, limit: int | None, offset: int) -> KeyFilter:
    """Check the arguments of :meth:`Store.list` (of any type, whatever the hints say); returns their filter."""
    check_pattern(prefix, what="prefix")
    check_pattern(suffix, what="suffix")
    check_page(limit, offset)
    return KeyFilter(prefix, suffix, limit, offset)


@dataclass(frozen=True, slots=True)
class KeyFilter:
    """The keys a prefix/suffix :meth:`Store.read` or a :meth:`Store.list` selects, and the page of them wanted.

    Build it from checked arguments: with :func:`check_list`, or with :meth:`for_read` after
    :func:`check_read`. A backend that filters in its own queries reads the fields; one that
    holds (or fetches) the candidate keys passes them to :meth:`select`.
    """

    #: Selected keys start with this (``""``: any key).
    prefix: str = ""
    #: Selected keys end with this (``""``: any key).
    suffix: str = ""
    #: At most this many keys are kept, ``None`` for no limit.
    limit: int | None = None
    #: This many selected keys are skipped first.
    offset: int = 0

    @classmethod
    def for_read(cls, key: str, *, prefix: bool, suffix: bool, limit: int | None, offset: int) -> KeyFilter:
        """The filter of a :meth:`Store.read` with ``prefix`` and/or ``suffix`` set: ``key`` plays those parts."""
        return cls(key if prefix else "", key if suffix else "", limit, offset)

    def matches(self, key: str) -> bool:
        """Whether ``key`` starts with :attr:`prefix` and ends with :attr:`suffix` (paging aside)."""
        return key.startswith(self.prefix) and key.endswith(self.suffix)

    def select(self, keys: Iterable[str]) -> builtins.list[str]:
        """The keys of ``keys`` that match, sorted by code point, then paged by :attr:`offset` and :attr:`limit`.

        ``keys`` should hold each key once: a key given twice is kept twice.
        """
        matching = sorted(k for k in keys if self.matches(k))
        end = None if self.limit is None else self.offset + self.limit
        return matching[self.offset : end]


def not_found(key: str, database: str, table: str) -> RecordNotFound:
    """The error for an exact read of a missing ``key``, worded the same by every backend."""
    return RecordNotFound(f"record {key!r} not found in {database}/{table}")


def pack_metadata(metadata: object, *, key: str = "") -> bytes:
    """``metadata`` as JSON bytes; :class:`~micro.errors.BadRequest` if it is not a JSON-compatible dict."""
    if not isinstance(metadata, Mapping):
        raise BadRequest(f"metadata of {key!r} must be a dict, not {type(metadata).__name__}")
    try:
        return orjson.dumps(metadata)
    except TypeError as exc:
        raise BadRequest(f"metadata of {key!r} is not JSON-compatible: {exc}") from None


def check_record(record: object, ttl: object = None) -> tuple[Record, float | None]:
    """Check a record for :meth:`Store.write`; returns it with its effective TTL.

    The effective TTL is ``ttl`` when given, else ``record.expiry``. Raises
    :class:`~micro.errors.BadRequest` for anything :meth:`Store.write` refuses.
    """
    if not isinstance(record, Record):
        raise BadRequest(f"expected a micro.store.Record, not {type(record).__name__}")
    check_key(record.key)
    if not isinstance(record.value, bytes):
        raise BadRequest(
            f"value of {record.key!r} must be bytes, not {type(record.value).__name__}; encode it first"
            " (for example with a micro codec)"
        )
    if type(record.metadata) is not dict or record.metadata:  # {} is JSON: skip encoding it on the hot path
        pack_metadata(record.metadata, key=record.key)
    expiry = check_ttl(record.expiry, what="record expiry")
    return record, (check_ttl(ttl) if ttl is not None else expiry)


class Store(Component, abc.ABC):
    """Key/value records with optional expiry, safe to share between tasks.

    Operations need a started store (``await store.start()`` or ``async with``);
    before that, and after :meth:`close`, they raise
    :class:`~micro.errors.ConnectionClosed`. Each method documents what a cancelled call leaves behind; where it says
    "may", an implementation talking to a server cannot know whether the server
    applied a request it had already sent.

    The public methods enforce the contract and call one protected hook each; see
    the module docstring. A backend implements the five abstract hooks; the batch
    hooks default to one key at a time.
    """

    interface: ClassVar[str] = "store"
    options_type: ClassVar[type[StoreOptions]] = StoreOptions
    options: StoreOptions

    #: Optional behaviours this implementation has:
    #:
    #: ``"ttl"``: :meth:`write` honours ``ttl``/``Record.expiry``. Without it, a write
    #: with a TTL raises :class:`~micro.errors.NotSupported` and writes nothing.
    #:
    #: ``"bulk"``: :meth:`read_many`, :meth:`write_many` and :meth:`delete_many` each
    #: take one round trip and are atomic. Without it they still work, one key at a
    #: time, and may apply only part of a batch if they fail half-way.
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: StoreOptions | None = None) -> None:
        super().__init__(options)

    # -- the public contract -------------------------------------------------------------------
    # Each method checks everything, then awaits exactly one hook: no other await on the way.

    async def read(
        self,
        key: str,
        *,
        database: str | None = None,
        table: str | None = None,
        prefix: bool = False,
        suffix: bool = False,
        limit: int | None = None,
        offset: int = 0,
    ) -> builtins.list[Record]:
        """The records for ``key`` (Go Micro ``Read``).

        Exact read (neither ``prefix`` nor ``suffix``): a one-element list, or
        :class:`~micro.errors.RecordNotFound` naming the key if it is missing or
        expired. ``limit`` and ``offset`` are checked but play no part.

        With ``prefix=True`` the records whose key starts with ``key``; with
        ``suffix=True`` those whose key ends with it; with both, those that do
        both. Here ``key`` may be ``""`` (every record of the table). The result
        is sorted by key, skips ``offset`` records and holds at most ``limit``
        (``None``: no limit); it is ``[]``, never an error, when nothing matches.

        Each record's ``expiry`` is the time it has left, ``None`` if it never
        expires. Raises :class:`~micro.errors.BadRequest` for bad input.
        """
        key = check_read(key, prefix=prefix, suffix=suffix, limit=limit, offset=offset)
        db, tb = self._scope(database, table)
        if self._component_state != "started":
            self._check_open()
        try:
            if prefix or suffix:
                wanted = KeyFilter.for_read(key, prefix=prefix, suffix=suffix, limit=limit, offset=offset)
                return await self._read_matching(wanted, db, tb)
            record = await self._read(key, db, tb)
        except Exception as exc:
            self._fail(exc)
        if record is None:
            raise not_found(key, db, tb)
        return [record]

    async def write(
        self,
        record: Record,
        *,
        database: str | None = None,
        table: str | None = None,
        ttl: float | None = None,
    ) -> None:
        """Create or replace the record at ``record.key`` (Go Micro ``Write``).

        The record expires ``ttl`` seconds from now if ``ttl`` is given, else
        ``record.expiry`` seconds from now, and never if both are ``None``;
        writing an existing key replaces its value, metadata and expiry (so a
        rewrite without a TTL makes it permanent). The store keeps a copy:
        ``record`` may be reused afterwards.

        Raises :class:`~micro.errors.BadRequest` for a bad record or TTL (see the
        module docstring) and :class:`~micro.errors.NotSupported` for a TTL on a
        store without the ``"ttl"`` capability; nothing is written then. A
        cancelled write may have been applied.
        """
        record, effective = check_record(record, ttl)
        db, tb = self._scope(database, table)
        if effective is not None:
            self._require("ttl")
        if self._component_state != "started":
            self._check_open()
        try:
            await self._write(record, effective, db, tb)
        except Exception as exc:
            self._fail(exc)

    async def delete(self, key: str, *, database: str | None = None, table: str | None = None) -> None:
        """Remove the record at ``key`` (Go Micro ``Delete``).

        Deleting a missing or expired key is not an error (the record is gone
        either way), so ``delete`` is idempotent. A cancelled delete may have
        been applied.
        """
        check_key(key)
        db, tb = self._scope(database, table)
        if self._component_state != "started":
            self._check_open()
        try:
            await self._delete(key, db, tb)
        except Exception as exc:
            self._fail(exc)

    async def list(
        self,
        *,
        database: str | None = None,
        table: str | None = None,
        prefix: str = "",
        suffix: str = "",
        limit: int | None = None,
        offset: int = 0,
    ) -> builtins.list[str]:
        """The keys of the live records of a table (Go Micro ``List``).

        Keys are bare (no database or table in them), sorted, restricted to those
        starting with ``prefix`` and ending with ``suffix`` (``""`` matches
        everything), then paged by ``offset`` and ``limit`` (``None``: no limit).
        Nothing matching gives ``[]``, never an error. Expired records are not
        listed.
        """
        wanted = check_list(prefix, suffix, limit, offset)
        db, tb = self._scope(database, table)
        if self._component_state != "started":
            self._check_open()
        try:
            return await self._list(wanted, db, tb)
        except Exception as exc:
            self._fail(exc)

    async def read_many(
        self, keys: Sequence[str], *, database: str | None = None, table: str | None = None
    ) -> builtins.list[Record | None]:
        """The records at ``keys``, in the same order, with ``None`` for each missing key.

        Unlike :meth:`read`, a miss is not an error. Duplicate keys give
        duplicate entries. All keys are checked before any is read.
        """
        checked = check_keys(keys)
        db, tb = self._scope(database, table)
        if self._component_state != "started":
            self._check_open()
        try:
            return await self._read_many(checked, db, tb)
        except Exception as exc:
            self._fail(exc)

    async def write_many(
        self,
        records: Iterable[Record],
        *,
        database: str | None = None,
        table: str | None = None,
        ttl: float | None = None,
    ) -> None:
        """:meth:`write` each record in order (a later duplicate key wins).

        Every record is checked before any is written, so bad input writes
        nothing. ``ttl`` applies to every record, as in :meth:`write`.
        """
        checked = [check_record(record, ttl) for record in builtins.list(records)]
        db, tb = self._scope(database, table)
        if any(effective is not None for _, effective in checked):
            self._require("ttl")
        if self._component_state != "started":
            self._check_open()
        try:
            await self._write_many(checked, db, tb)
        except Exception as exc:
            self._fail(exc)

    async def delete_many(self, keys: Sequence[str], *, database: str | None = None, table: str | None = None) -> None:
        """:meth:`delete` each key; missing keys are ignored. All keys are checked first."""
        checked = check_keys(keys)
        db, tb = self._scope(database, table)
        if self._component_state != "started":
            self._check_open()
        try:
            await self._delete_many(checked, db, tb)
        except Exception as exc:
            self._fail(exc)

    # -- the hooks a backend implements --------------------------------------------------------
    # Arguments are checked, the scope is concrete and the store is started. Raise micro errors,
    # or let driver errors out for _translate to map.

    @abc.abstractmethod
    async def _read(self, key: str, database: str, table: str) -> Record | None:
        """The live record at ``key``, or ``None`` (the base raises :class:`~micro.errors.RecordNotFound`)."""

    @abc.abstractmethod
    async def _read_matching(self, wanted: KeyFilter, database: str, table: str) -> builtins.list[Record]:
        """The live records ``wanted`` selects: sorted by key and paged (:meth:`KeyFilter.select` does both)."""

    @abc.abstractmethod
    async def _write(self, record: Record, ttl: float | None, database: str, table: str) -> None:
        """Store a copy of ``record``, expiring ``ttl`` seconds from now (``None``: never)."""

    @abc.abstractmethod
    async def _delete(self, key: str, database: str, table: str) -> None:
        """Remove ``key`` if present; a missing key is not an error."""

    @abc.abstractmethod
    async def _list(self, wanted: KeyFilter, database: str, table: str) -> builtins.list[str]:
        """The keys of the live records ``wanted`` selects: sorted and paged."""

    async def _read_many(self, keys: builtins.list[str], database: str, table: str) -> builtins.list[Record | None]:
        """The record (or ``None``) at each of ``keys``, in order. The default reads one key at a time."""
        return [await self._read(key, database, table) for key in keys]

    async def _write_many(self, records: builtins.list[tuple[Record, float | None]], database: str, table: str) -> None:
        """Write each ``(record, ttl)`` in order. The default writes one at a time (not atomic)."""
        for record, ttl in records:
            await self._write(record, ttl, database, table)

    async def _delete_many(self, keys: builtins.list[str], database: str, table: str) -> None:
        """Remove each of ``keys``. The default deletes one at a time (not atomic)."""
        for key in keys:
            await self._delete(key, database, table)

    # -- shared machinery -----------------------------------------------------------------------

    def _require(self, capability: str) -> None:
        if capability not in self.capabilities:
            raise NotSupported(f"{type(self).__name__} does not support {capability!r}")

    def _scope(self, database: str | None, table: str | None) -> tuple[str, str]:
        """The ``(database, table)`` a call addresses, with the options' defaults filled in."""
        db = self.options.database if database is None else check_key(database, what="database")
        tb = self.options.table if table is None else check_key(table, what="table")
        return db, tb
