"""``memory``: the default store, a dict per table in this process (Go Micro ``store/memory.go``).

Records live as long as the instance: they survive ``close()`` and a later
``start()``, and are not shared with other instances. Every operation runs
without yielding to the event loop, so each one, bulk operations included, is
atomic. Expired records are dropped when an operation comes across them.
"""

from __future__ import annotations

import builtins
import time
from dataclasses import dataclass
from typing import ClassVar

import orjson

from .base import KeyFilter, Record, Store, pack_metadata
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

    async def _read(self, key: str, database: str, table: str) -> Record | None:
        now = time.monotonic()
        entry = _live(self._table(database, table), key, now)
        return None if entry is None else entry.record(key, now)

    async def _read_matching(self, wanted: KeyFilter, database: str, table: str) -> builtins.list[Record]:
        entries = self._table(database, table)
        now = time.monotonic()
        return [entries[k].record(k, now) for k in wanted.select(_prune(entries, now))]

    async def _write(self, record: Record, ttl: float | None, database: str, table: str) -> None:
        self._table(database, table)[record.key] = _entry(record, ttl, time.monotonic())

    async def _delete(self, key: str, database: str, table: str) -> None:
        self._table(database, table).pop(key, None)

    async def _list(self, wanted: KeyFilter, database: str, table: str) -> builtins.list[str]:
        return wanted.select(_prune(self._table(database, table), time.monotonic()))

    async def _read_many(self, keys: builtins.list[str], database: str, table: str) -> builtins.list[Record | None]:
        entries = self._table(database, table)
        now = time.monotonic()
        found: builtins.list[Record | None] = []
        for key in keys:
            entry = _live(entries, key, now)
            found.append(None if entry is None else entry.record(key, now))
        return found

    async def _write_many(self, records: builtins.list[tuple[Record, float | None]], database: str, table: str) -> None:
        entries = self._table(database, table)
        now = time.monotonic()
        for record, ttl in records:
            entries[record.key] = _entry(record, ttl, now)

    async def _delete_many(self, keys: builtins.list[str], database: str, table: str) -> None:
        entries = self._table(database, table)
        for key in keys:
            entries.pop(key, None)

    def _table(self, database: str, table: str) -> _Table:
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
