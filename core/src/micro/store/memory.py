"""``memory``: the default store, a dict per table in this process (Go Micro ``store/memory.go``).

Records live as long as the instance: they survive ``close()`` and a later
``start()``, and are not shared with other instances. Every operation runs
without yielding to the event loop, so each one, bulk operations included, is
atomic. Expired records are dropped when an operation comes across them.
"""

from __future__ import annotations

import builtins
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import orjson

from ..errors import ConnectionClosed
from .base import (
    KeyFilter,
    Record,
    Store,
    check_key,
    check_keys,
    check_list,
    check_read,
    check_record,
    not_found,
    pack_metadata,
)
from .options import StoreOptions

__all__ = ["MemoryStore"]


@dataclass(slots=True)
class _Entry:
    value: bytes
    #: JSON, so that metadata is copied, and reads back exactly as from a persistent store.
    metadata: bytes
    #: ``time.monotonic()`` at which it expires, or ``None``.
    expires: float | None

    def record(self, key: str, now: float) -> Record:
        expiry = None if self.expires is None else self.expires - now
        return Record(key=key, value=self.value, metadata=orjson.loads(self.metadata), expiry=expiry)


_Table = dict[str, _Entry]


class MemoryStore(Store):
    """An in-process store with TTLs, for tests and single-process services."""

    options_type: ClassVar[type[StoreOptions]] = StoreOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"ttl", "bulk"})

    def __init__(self, options: StoreOptions | None = None) -> None:
        super().__init__(options)
        self._tables: dict[tuple[str, str], _Table] = {}
        self._open = False

    async def start(self) -> None:
        self._open = True

    async def close(self) -> None:
        self._open = False

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
        key = check_read(key, prefix=prefix, suffix=suffix, limit=limit, offset=offset)
        db, tb = self._scope(database, table)
        entries = self._table(db, tb)
        now = time.monotonic()
        if not (prefix or suffix):
            entry = _live(entries, key, now)
            if entry is None:
                raise not_found(key, db, tb)
            return [entry.record(key, now)]
        wanted = KeyFilter.for_read(key, prefix=prefix, suffix=suffix, limit=limit, offset=offset)
        return [entries[k].record(k, now) for k in wanted.select(_prune(entries, now))]

    async def write(
        self,
        record: Record,
        *,
        database: str | None = None,
        table: str | None = None,
        ttl: float | None = None,
    ) -> None:
        record, effective = check_record(record, ttl)
        db, tb = self._scope(database, table)
        self._table(db, tb)[record.key] = _entry(record, effective, time.monotonic())

    async def delete(self, key: str, *, database: str | None = None, table: str | None = None) -> None:
        check_key(key)
        db, tb = self._scope(database, table)
        self._table(db, tb).pop(key, None)

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
        wanted = check_list(prefix, suffix, limit, offset)
        db, tb = self._scope(database, table)
        return wanted.select(_prune(self._table(db, tb), time.monotonic()))

    async def read_many(
        self, keys: Sequence[str], *, database: str | None = None, table: str | None = None
    ) -> builtins.list[Record | None]:
        checked = check_keys(keys)
        db, tb = self._scope(database, table)
        entries = self._table(db, tb)
        now = time.monotonic()
        found: builtins.list[Record | None] = []
        for key in checked:
            entry = _live(entries, key, now)
            found.append(None if entry is None else entry.record(key, now))
        return found

    async def write_many(
        self,
        records: Iterable[Record],
        *,
        database: str | None = None,
        table: str | None = None,
        ttl: float | None = None,
    ) -> None:
        checked = [check_record(record, ttl) for record in builtins.list(records)]
        db, tb = self._scope(database, table)
        entries = self._table(db, tb)
        now = time.monotonic()
        for record, effective in checked:
            entries[record.key] = _entry(record, effective, now)

    async def delete_many(self, keys: Sequence[str], *, database: str | None = None, table: str | None = None) -> None:
        checked = check_keys(keys)
        db, tb = self._scope(database, table)
        entries = self._table(db, tb)
        for key in checked:
            entries.pop(key, None)

    def _table(self, database: str, table: str) -> _Table:
        if not self._open:
            raise ConnectionClosed("the memory store is not started: await store.start() or use async with")
        return self._tables.setdefault((database, table), {})


def _entry(record: Record, ttl: float | None, now: float) -> _Entry:
    return _Entry(
        value=record.value,
        metadata=pack_metadata(record.metadata, key=record.key),
        expires=None if ttl is None else now + ttl,
    )


def _live(entries: _Table, key: str, now: float) -> _Entry | None:
    entry = entries.get(key)
    if entry is not None and entry.expires is not None and entry.expires <= now:
        del entries[key]
        return None
    return entry


def _prune(entries: _Table, now: float) -> _Table:
    """``entries`` without the records that have expired by ``now`` (they are deleted)."""
    expired = [k for k, e in entries.items() if e.expires is not None and e.expires <= now]
    for key in expired:
        del entries[key]
    return entries
