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
from typing import Any, ClassVar, Final

import orjson

from .._sqlite import Database, data_dir, immediate, resolve
from ..errors import ConnectionClosed
from .base import KeyFilter, Record, Store, pack_metadata
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

    async def _start(self) -> None:
        """Open (creating if needed) the file and its schema.

        Raises :class:`~micro.errors.BackendUnavailable` if the file cannot be
        opened, is not a SQLite database, or was written by a newer micro.
        """
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

    async def _close(self) -> None:
        """Close the file once the operations already running have finished."""
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    async def _read(self, key: str, database: str, table: str) -> Record | None:
        def exact(conn: sqlite3.Connection) -> Record | None:
            now = time.time()
            row = conn.execute(
                "SELECT key, value, metadata, expires FROM micro_store"
                f" WHERE db = ? AND tbl = ? AND key = ? AND {_LIVE}",
                (database, table, key, now),
            ).fetchone()
            return None if row is None else _record(row, now)

        return await self._database().run(exact)

    async def _read_matching(self, wanted: KeyFilter, database: str, table: str) -> builtins.list[Record]:
        def matching(conn: sqlite3.Connection) -> builtins.list[Record]:
            now = time.time()
            where, params = _selection(wanted, now, database, table)
            rows = conn.execute(f"SELECT key, value, metadata, expires FROM micro_store WHERE {where}", params)
            return [_record(row, now) for row in rows]

        return await self._database().run(matching)

    async def _write(self, record: Record, ttl: float | None, database: str, table: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            now = time.time()
            conn.execute(_INSERT, _row(record, ttl, now, database, table))
            self._prune(conn, now)

        await self._database().run(write)

    async def _delete(self, key: str, database: str, table: str) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM micro_store WHERE db = ? AND tbl = ? AND key = ?", (database, table, key))

        await self._database().run(delete)

    async def _list(self, wanted: KeyFilter, database: str, table: str) -> builtins.list[str]:
        def keys(conn: sqlite3.Connection) -> builtins.list[str]:
            where, params = _selection(wanted, time.time(), database, table)
            return [key for (key,) in conn.execute(f"SELECT key FROM micro_store WHERE {where}", params)]

        return await self._database().run(keys)

    async def _read_many(self, keys: builtins.list[str], database: str, table: str) -> builtins.list[Record | None]:
        def read(conn: sqlite3.Connection) -> builtins.list[Record | None]:
            now = time.time()
            found: dict[str, Record] = {}
            wanted = sorted(set(keys))
            # One read transaction: every key is read from the same snapshot.
            conn.execute("BEGIN")
            try:
                for start in range(0, len(wanted), _CHUNK):
                    chunk = wanted[start : start + _CHUNK]
                    marks = ",".join("?" * len(chunk))
                    rows = conn.execute(
                        "SELECT key, value, metadata, expires FROM micro_store"
                        f" WHERE db = ? AND tbl = ? AND key IN ({marks}) AND {_LIVE}",
                        (database, table, *chunk, now),
                    )
                    for row in rows:
                        found[row[0]] = _record(row, now)
            finally:
                conn.execute("COMMIT")
            return [found.get(key) for key in keys]

        return await self._database().run(read)

    async def _write_many(self, records: builtins.list[tuple[Record, float | None]], database: str, table: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            now = time.time()
            with immediate(conn):
                conn.executemany(_INSERT, [_row(record, ttl, now, database, table) for record, ttl in records])
            self._prune(conn, now)

        await self._database().run(write)

    async def _delete_many(self, keys: builtins.list[str], database: str, table: str) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            with immediate(conn):
                conn.executemany(
                    "DELETE FROM micro_store WHERE db = ? AND tbl = ? AND key = ?", [(database, table, k) for k in keys]
                )

        await self._database().run(delete)

    def _database(self) -> Database:
        # The base refuses calls before start() and after close(); a hook still running when close()
        # takes the handle away finds it gone here.
        if self._db is None:
            raise ConnectionClosed(f"the {type(self).__name__} is closed")
        return self._db

    def _prune(self, conn: sqlite3.Connection, now: float) -> None:
        # Runs on the worker thread only, so _pruned needs no lock.
        if now - self._pruned >= _PRUNE_EVERY:
            self._pruned = now
            conn.execute("DELETE FROM micro_store WHERE expires <= ?", (now,))
