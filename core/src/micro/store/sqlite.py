"""``sqlite``: a persistent store in one SQLite file, shared by every process that opens it.

The file defaults to ``$XDG_DATA_HOME/micro/store.db`` (see
:class:`~micro.store.SQLiteStoreOptions`). All records of all databases and
tables live in one SQL table keyed by ``(database, table, key)``:

* **Blocking.** Statements run on a thread owned by the store (one per
  instance), never on the event loop; see :mod:`micro._sqlite`.
* **Processes.** WAL journal, ``busy_timeout`` and ``BEGIN IMMEDIATE`` bulk
  writes: concurrent writers from several processes wait for each other and
  lose nothing. A writer that waits longer than ``busy_timeout`` gets
  :class:`~micro.errors.BackendUnavailable`.
* **Prefix and suffix** lookups are index range scans, on the key and on the
  reversed key, so they need no ``LIKE`` pattern and no wildcard escaping.
* **Expiry** is an absolute wall-clock time per row (processes share no
  monotonic clock). Expired rows are invisible to every query and are deleted
  on start and, at most once a minute, on write.
* **Bulk** operations run in one transaction each, so they are atomic.
"""

from __future__ import annotations

import builtins
import sqlite3
import time
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Final

import orjson

from .._sqlite import Database, data_dir, immediate, resolve
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
from .options import SQLiteStoreOptions

__all__ = ["SQLiteStore"]

#: Bumped when the schema changes; a file from a newer version is refused rather than misread.
SCHEMA_VERSION: Final = 1

_SCHEMA: Final = (
    """
CREATE TABLE IF NOT EXISTS micro_store (
    db       TEXT NOT NULL,
    tbl      TEXT NOT NULL,
    key      TEXT NOT NULL,
    rkey     TEXT NOT NULL,  -- key reversed: a suffix match is a prefix range on it
    value    BLOB NOT NULL,
    metadata BLOB NOT NULL,  -- JSON
    expires  REAL,           -- Unix time, NULL for never
    PRIMARY KEY (db, tbl, key)
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS micro_store_rkey ON micro_store (db, tbl, rkey)",
    "CREATE INDEX IF NOT EXISTS micro_store_expires ON micro_store (expires) WHERE expires IS NOT NULL",
)

_LIVE: Final = "(expires IS NULL OR expires > ?)"
# SQLite's default limit on bound parameters is 32766; stay far below it.
_CHUNK: Final = 500
_PRUNE_EVERY: Final = 60.0


def _setup(conn: sqlite3.Connection) -> None:
    with immediate(conn):
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"the file has store schema {version}, newer than this micro's {SCHEMA_VERSION}; upgrade micro"
            )
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("DELETE FROM micro_store WHERE expires <= ?", (time.time(),))


def _successor(prefix: str) -> str | None:
    """The least string greater than every string starting with ``prefix`` (``None``: there is none)."""
    # Code point order is what SQLite's BINARY collation gives on UTF-8 and what Python's str order is.
    head = prefix.rstrip("\U0010ffff")
    if not head:
        return None
    nxt = ord(head[-1]) + 1
    if 0xD800 <= nxt <= 0xDFFF:  # surrogates cannot be stored; skip past them
        nxt = 0xE000
    return head[:-1] + chr(nxt)


def _where(prefix: str, suffix: str, now: float, database: str, table: str) -> tuple[str, list[Any]]:
    clauses = ["db = ?", "tbl = ?", _LIVE]
    params: list[Any] = [database, table, now]
    for column, text in (("key", prefix), ("rkey", suffix[::-1])):
        if not text:
            continue
        clauses.append(f"{column} >= ?")
        params.append(text)
        upper = _successor(text)
        if upper is not None:
            clauses.append(f"{column} < ?")
            params.append(upper)
    return " AND ".join(clauses), params


def _selection(wanted: KeyFilter, now: float, database: str, table: str) -> tuple[str, list[Any]]:
    """The text after ``WHERE`` that selects ``wanted``, in order and paged, and its parameters."""
    where, params = _where(wanted.prefix, wanted.suffix, now, database, table)
    # LIMIT -1 is SQLite's "no limit".
    limit = -1 if wanted.limit is None else wanted.limit
    return f"{where} ORDER BY key LIMIT ? OFFSET ?", [*params, limit, wanted.offset]


def _row(record: Record, ttl: float | None, now: float, database: str, table: str) -> tuple[Any, ...]:
    return (
        database,
        table,
        record.key,
        record.key[::-1],
        record.value,
        pack_metadata(record.metadata, key=record.key),
        None if ttl is None else now + ttl,
    )


def _record(row: tuple[Any, ...], now: float) -> Record:
    """A record from a ``(key, value, metadata, expires)`` row."""
    key, value, metadata, expires = row
    return Record(
        key=key,
        value=bytes(value),
        metadata=orjson.loads(metadata),
        expiry=None if expires is None else expires - now,
    )


_INSERT: Final = (
    "INSERT OR REPLACE INTO micro_store (db, tbl, key, rkey, value, metadata, expires) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class SQLiteStore(Store):
    """A persistent store in a SQLite file, safe to share between processes."""

    options_type: ClassVar[type[SQLiteStoreOptions]] = SQLiteStoreOptions
    options: SQLiteStoreOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"ttl", "bulk"})

    def __init__(self, options: SQLiteStoreOptions | None = None) -> None:
        super().__init__(options)
        self._db: Database | None = None
        self._pruned = 0.0

    @property
    def path(self) -> str | None:
        """The file in use, once started."""
        return None if self._db is None else self._db.path

    async def start(self) -> None:
        """Open (creating if needed) the file and its schema. Idempotent.

        Raises :class:`~micro.errors.BackendUnavailable` if the file cannot be
        opened, is not a SQLite database, or was written by a newer micro.
        """
        if self._db is not None:
            return
        path = resolve(
            self.options.path, self.options.address, lambda: data_dir() / "store.db", option="MICRO_STORE_PATH"
        )
        db = Database(path, busy_timeout=self.options.busy_timeout, setup=_setup)
        self._db = db
        self._pruned = time.time()
        try:
            await db.open()
        except BaseException:
            self._db = None
            await db.close()
            raise

    async def close(self) -> None:
        """Close the file once the operations already running have finished. Idempotent."""
        db, self._db = self._db, None
        if db is not None:
            await db.close()

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
        if not (prefix or suffix):

            def exact(conn: sqlite3.Connection) -> builtins.list[Record]:
                now = time.time()
                row = conn.execute(
                    "SELECT key, value, metadata, expires FROM micro_store"
                    f" WHERE db = ? AND tbl = ? AND key = ? AND {_LIVE}",
                    (db, tb, key, now),
                ).fetchone()
                if row is None:
                    raise not_found(key, db, tb)
                return [_record(row, now)]

            return await self._database().run(exact)

        wanted = KeyFilter.for_read(key, prefix=prefix, suffix=suffix, limit=limit, offset=offset)

        def matching(conn: sqlite3.Connection) -> builtins.list[Record]:
            now = time.time()
            where, params = _selection(wanted, now, db, tb)
            rows = conn.execute(f"SELECT key, value, metadata, expires FROM micro_store WHERE {where}", params)
            return [_record(row, now) for row in rows]

        return await self._database().run(matching)

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

        def write(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.execute(_INSERT, _row(record, effective, now, db, tb))
            self._prune(conn, now)

        await self._database().run(write)

    async def delete(self, key: str, *, database: str | None = None, table: str | None = None) -> None:
        check_key(key)
        db, tb = self._scope(database, table)

        def delete(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM micro_store WHERE db = ? AND tbl = ? AND key = ?", (db, tb, key))

        await self._database().run(delete)

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

        def keys(conn: sqlite3.Connection) -> builtins.list[str]:
            where, params = _selection(wanted, time.time(), db, tb)
            return [key for (key,) in conn.execute(f"SELECT key FROM micro_store WHERE {where}", params)]

        return await self._database().run(keys)

    async def read_many(
        self, keys: Sequence[str], *, database: str | None = None, table: str | None = None
    ) -> builtins.list[Record | None]:
        checked = check_keys(keys)
        db, tb = self._scope(database, table)

        def read(conn: sqlite3.Connection) -> builtins.list[Record | None]:
            now = time.time()
            found: dict[str, Record] = {}
            wanted = sorted(set(checked))
            # One read transaction: every key is read from the same snapshot.
            conn.execute("BEGIN")
            try:
                for start in range(0, len(wanted), _CHUNK):
                    chunk = wanted[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(
                        "SELECT key, value, metadata, expires FROM micro_store"
                        f" WHERE db = ? AND tbl = ? AND key IN ({marks}) AND {_LIVE}",
                        (db, tb, *chunk, now),
                    )
                    for row in rows:
                        found[row[0]] = _record(row, now)
            finally:
                conn.execute("COMMIT")
            return [found.get(key) for key in checked]

        return await self._database().run(read)

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

        def write(conn: sqlite3.Connection) -> None:
            now = time.time()
            with immediate(conn):
                conn.executemany(_INSERT, [_row(record, effective, now, db, tb) for record, effective in checked])
            self._prune(conn, now)

        await self._database().run(write)

    async def delete_many(self, keys: Sequence[str], *, database: str | None = None, table: str | None = None) -> None:
        checked = check_keys(keys)
        db, tb = self._scope(database, table)

        def delete(conn: sqlite3.Connection) -> None:
            with immediate(conn):
                conn.executemany(
                    "DELETE FROM micro_store WHERE db = ? AND tbl = ? AND key = ?", [(db, tb, k) for k in checked]
                )

        await self._database().run(delete)

    def _database(self) -> Database:
        if self._db is None:
            raise ConnectionClosed("the sqlite store is not started: await store.start() or use async with")
        return self._db

    def _prune(self, conn: sqlite3.Connection, now: float) -> None:
        # Runs on the worker thread only, so _pruned needs no lock.
        if now - self._pruned >= _PRUNE_EVERY:
            self._pruned = now
            conn.execute("DELETE FROM micro_store WHERE expires <= ?", (now,))
