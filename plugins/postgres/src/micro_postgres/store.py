"""``postgres``: a store in one PostgreSQL database, shared by every process that points at it.

**Layout.** Each store database/table is one PostgreSQL table in the schema
:attr:`~micro_postgres.options.PostgresStoreOptions.schema` (``micro_store`` by default), named
``<database>/<table>`` with ``%`` written ``%25``, ``/`` written ``%2F`` and ``#`` written ``%23``,
so two scopes never share a table. A name longer than PostgreSQL's 63 bytes becomes its first
40 bytes, ``#`` and 16 hex digits of its SHA-256. Names are always double-quoted in SQL; a
database or table name holding NUL (which no PostgreSQL identifier can) is refused with
:class:`~micro.errors.BadRequest` naming it. A table is created, with its indexes, on its
first write (under an advisory transaction lock, so concurrent first writers do not race);
reading a table that does not exist yet finds nothing. Its columns::

    key         bytea PRIMARY KEY      the key's UTF-8 bytes: byte order is code-point order
    rkey        bytea NOT NULL         the same bytes reversed (indexed: suffix reads)
    value       bytea NOT NULL
    metadata    bytea                  JSON, NULL for none
    expires_at  timestamptz            NULL for never (partially indexed: the sweep)

* **Expiry** is on the server's clock: a write sets ``expires_at = now() + ttl``, and every
  read, list and batch read selects only ``expires_at IS NULL OR expires_at > now()``, so an
  expired record is invisible at once; :attr:`~micro.store.Record.expiry` on read is
  ``expires_at - now()``. A background task deletes expired rows every ``cleanup_interval``
  seconds (and :meth:`PostgresStore.sweep` does it on demand) to reclaim their space.
* **Prefix and suffix** reads and lists are index range scans: a prefix ``p`` selects
  ``key >= p AND key < p'`` (``p'`` is ``p`` with its last byte incremented: UTF-8 never
  holds ``0xFF``), a suffix the same on ``rkey``. Ordering (``ORDER BY key``), ``OFFSET``
  and ``LIMIT`` happen in the same statement.
* **Bulk** operations are one statement each, hence one round trip and atomic:
  ``read_many`` and ``delete_many`` take ``key = ANY($1)``, ``write_many`` one
  ``INSERT ... SELECT FROM unnest(...) ON CONFLICT (key) DO UPDATE`` (a key given twice keeps
  the later record, as writes in order would).
* **Connections** come from an asyncpg pool of ``pool_size``; a statement taking longer than
  ``request_timeout`` fails with :class:`~micro.errors.BackendUnavailable`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import hashlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import asyncpg
import orjson
from micro.errors import BadRequest, ConnectionClosed, MicroError
from micro.store import Record, Store
from micro.store.base import KeyFilter, pack_metadata

from ._client import Server
from .options import PostgresStoreOptions

__all__ = ["PostgresStore", "table_name"]

log = logging.getLogger(__name__)

# PostgreSQL keeps the first 63 bytes of an identifier; a longer name is shortened to this many bytes
# plus "#" and a digest, so distinct long names never meet in their first 63 bytes.
_MAX_IDENTIFIER: Final = 63
_KEEP: Final = 40
# Table names are cached per (database, table); a caller cycling through endless tables only refills it.
_CACHED: Final = 1024
_LIVE: Final = "(expires_at IS NULL OR expires_at > now())"
_TTL: Final = "EXTRACT(EPOCH FROM expires_at - now())::float8"
# Rows one sweep statement deletes at most, so a sweep never holds a huge table's locks for long.
_SWEEP_BATCH: Final = 10_000


def _escape(name: str) -> str:
    return name.replace("%", "%25").replace("/", "%2F").replace("#", "%23")


def table_name(database: str, table: str) -> str:
    """The PostgreSQL table name (unquoted) of a store scope; :class:`BadRequest` for a name holding NUL."""
    for what, name in (("database", database), ("table", table)):
        if "\x00" in name:
            raise BadRequest(f"{what} {name!r} cannot name a PostgreSQL table: it contains NUL")
    name = f"{_escape(database)}/{_escape(table)}"
    raw = name.encode("utf-8")
    if len(raw) <= _MAX_IDENTIFIER:
        return name
    head = raw[:_KEEP].decode("utf-8", "ignore")  # cut on a character boundary
    return f"{head}#{hashlib.sha256(raw).hexdigest()[:16]}"


def quote(identifier: str) -> str:
    """``identifier`` double-quoted for SQL, embedded quotes doubled."""
    return '"' + identifier.replace('"', '""') + '"'


def _after(prefix: bytes) -> bytes:
    """The smallest byte string greater than every string that starts with ``prefix`` (non-empty UTF-8)."""
    return prefix[:-1] + bytes((prefix[-1] + 1,))


def _lock_id(text: str) -> int:
    """A signed 64-bit advisory lock id for ``text``."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


@dataclass(frozen=True, slots=True)
class _Table:
    """One store table: its name and the statements on it."""

    name: str
    qualified: str
    read: str
    write: str
    write_many: str
    #: write_many for records without metadata or TTL: two arrays fewer to send, no deadline per row.
    write_many_plain: str
    delete: str
    delete_many: str
    read_many: str
    create: str


def _statements(schema: str, name: str) -> _Table:
    t = f"{quote(schema)}.{quote(name)}"
    upsert = (
        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, metadata = EXCLUDED.metadata,"
        " expires_at = EXCLUDED.expires_at"
    )
    return _Table(
        name=name,
        qualified=t,
        read=f"SELECT value, metadata, {_TTL} FROM {t} WHERE key = $1 AND {_LIVE}",
        write=(
            f"INSERT INTO {t} (key, rkey, value, metadata, expires_at)"
            f" VALUES ($1, $2, $3, $4, now() + $5::float8 * interval '1 second'){upsert}"
        ),
        write_many=(
            f"INSERT INTO {t} (key, rkey, value, metadata, expires_at)"
            " SELECT k, r, v, m, now() + s * interval '1 second'"
            " FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::bytea[], $5::float8[]) AS u(k, r, v, m, s)"
            f"{upsert}"
        ),
        write_many_plain=(
            f"INSERT INTO {t} (key, rkey, value, metadata, expires_at)"
            " SELECT k, r, v, NULL, NULL FROM unnest($1::bytea[], $2::bytea[], $3::bytea[]) AS u(k, r, v)"
            f"{upsert}"
        ),
        delete=f"DELETE FROM {t} WHERE key = $1",
        delete_many=f"DELETE FROM {t} WHERE key = ANY($1::bytea[])",
        read_many=f"SELECT key, value, metadata, {_TTL} FROM {t} WHERE key = ANY($1::bytea[]) AND {_LIVE}",
        create=(
            f"CREATE TABLE IF NOT EXISTS {t} (key bytea PRIMARY KEY, rkey bytea NOT NULL, value bytea NOT NULL,"
            f" metadata bytea, expires_at timestamptz);"
            f" CREATE INDEX ON {t} (rkey);"
            f" CREATE INDEX ON {t} (expires_at) WHERE expires_at IS NOT NULL"
        ),
    )


def _record(key: str, value: bytes, metadata: bytes | None, ttl: float | None) -> Record:
    return Record(key, value, {} if metadata is None else orjson.loads(metadata), ttl)


class PostgresStore(Store):
    """Records in one PostgreSQL table per scope; see the module docstring for the layout and guarantees."""

    options_type: ClassVar[type[PostgresStoreOptions]] = PostgresStoreOptions
    options: PostgresStoreOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"ttl", "bulk"})

    def __init__(self, options: PostgresStoreOptions | None = None) -> None:
        super().__init__(options)
        self._server = Server.of(self.options, "store")
        self._pool: asyncpg.Pool | None = None
        self._tables: dict[tuple[str, str], _Table] = {}
        self._sweeper: asyncio.Task[None] | None = None
        #: The ``application_name`` its connections give PostgreSQL (``pg_stat_activity``).
        self.client_name = f"micro-store-{uuid.uuid4().hex[:8]}"

    @property
    def address(self) -> str:
        """The server, without credentials: ``127.0.0.1:5432/test``."""
        return self._server.address

    async def _start(self) -> None:
        """Connect, check the server answers, create the schema if missing and start the sweeper.

        Raises :class:`~micro.errors.BackendUnavailable` naming the address and
        ``MICRO_STORE_ADDRESS`` if it does not within ``connect_timeout``,
        :class:`~micro.errors.Unauthorized` if it refuses the credentials, and
        :class:`~micro.errors.Forbidden` if the role may not create the schema.
        """
        # Every statement of the store is one plain statement or a transaction with transaction-scoped
        # locks: it leaves nothing on the connection, so releasing one skips asyncpg's reset round trip.
        pool = await self._server.pool(self.client_name, self.options.pool_size, stateless=True)
        try:
            await self._create_schema(pool)
        except BaseException as exc:
            await pool.close()
            # start() does not pass through the base's translation: a role that may not create the schema
            # gets Forbidden here, not the driver's exception.
            micro = self._translate(exc) if isinstance(exc, Exception) else None
            if micro is None:
                raise
            raise micro from None
        self._pool = pool
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever(), name="micro-postgres-sweeper")

    async def _close(self) -> None:
        """Stop the sweeper and close the connections; the records stay on the server."""
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    def _translate(self, exc: Exception) -> MicroError | None:
        return self._server.translate(exc)

    # -- tables ----------------------------------------------------------------------------------

    def _client(self) -> asyncpg.Pool:
        # The base refuses calls before start() and after close(); a hook still running when close()
        # takes the pool away finds it gone here.
        if self._pool is None:
            raise ConnectionClosed("the PostgresStore is closed")
        return self._pool

    def _table(self, database: str, table: str) -> _Table:
        found = self._tables.get((database, table))
        if found is None:
            if len(self._tables) >= _CACHED:
                self._tables.clear()
            found = self._tables[database, table] = _statements(self.options.schema, table_name(database, table))
        return found

    async def _create_schema(self, pool: asyncpg.Pool) -> None:
        async with pool.acquire() as conn, conn.transaction():
            # CREATE ... IF NOT EXISTS still fails when two sessions run it at once: serialise them.
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1)", _lock_id(f"micro_postgres.store:{self.options.schema}")
            )
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(self.options.schema)}")

    async def _create(self, table: _Table) -> None:
        async with self._client().acquire() as conn, conn.transaction():
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1)", _lock_id(f"micro_postgres.store:{self.options.schema}")
            )
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(self.options.schema)}")
            exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table.qualified)
            if not exists:
                await conn.execute(table.create)

    async def _writing(self, table: _Table, sql: str, *args: Any) -> None:
        """Run a write statement, creating the table first if it does not exist yet."""
        try:
            await self._client().execute(sql, *args)
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            await self._create(table)
            await self._client().execute(sql, *args)

    # -- reading ---------------------------------------------------------------------------------

    async def _read(self, key: str, database: str, table: str) -> Record | None:
        t = self._table(database, table)
        try:
            row = await self._client().fetchrow(t.read, key.encode())
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            return None
        return None if row is None else _record(key, row[0], row[1], row[2])

    async def _read_matching(self, wanted: KeyFilter, database: str, table: str) -> builtins.list[Record]:
        rows = await self._select(wanted, database, table, f"key, value, metadata, {_TTL}")
        return [_record(row[0].decode(), row[1], row[2], row[3]) for row in rows]

    async def _list(self, wanted: KeyFilter, database: str, table: str) -> builtins.list[str]:
        return [row[0].decode() for row in await self._select(wanted, database, table, "key")]

    async def _select(self, wanted: KeyFilter, database: str, table: str, columns: str) -> builtins.list[Any]:
        t = self._table(database, table)
        where = [_LIVE]
        args: builtins.list[Any] = []
        if wanted.prefix:
            prefix = wanted.prefix.encode()
            args += [prefix, _after(prefix)]
            where.append(f"key >= ${len(args) - 1} AND key < ${len(args)}")
        if wanted.suffix:
            reverse = wanted.suffix.encode()[::-1]
            args += [reverse, _after(reverse)]
            where.append(f"rkey >= ${len(args) - 1} AND rkey < ${len(args)}")
        args += [wanted.offset, wanted.limit]
        sql = (
            f"SELECT {columns} FROM {t.qualified} WHERE {' AND '.join(where)}"
            f" ORDER BY key OFFSET ${len(args) - 1}::bigint LIMIT ${len(args)}::bigint"
        )
        try:
            return await self._client().fetch(sql, *args)
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            return []

    async def _read_many(self, keys: builtins.list[str], database: str, table: str) -> builtins.list[Record | None]:
        if not keys:
            return []
        t = self._table(database, table)
        encoded = [key.encode() for key in keys]
        try:
            rows = await self._client().fetch(t.read_many, encoded)
        except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            return [None] * len(keys)
        # Rows come back in no particular order; the hot loop below is _record inlined.
        found = {row[0]: row for row in rows}
        loads = orjson.loads
        result: builtins.list[Record | None] = []
        append = result.append
        for key, raw in zip(keys, encoded, strict=True):
            row = found.get(raw)
            if row is None:
                append(None)
            else:
                _, value, metadata, ttl = row
                append(Record(key, value, {} if metadata is None else loads(metadata), ttl))
        return result

    # -- writing ---------------------------------------------------------------------------------

    async def _write(self, record: Record, ttl: float | None, database: str, table: str) -> None:
        t = self._table(database, table)
        key = record.key.encode()
        metadata = pack_metadata(record.metadata, key=record.key) if record.metadata else None
        await self._writing(t, t.write, key, key[::-1], record.value, metadata, ttl)

    async def _write_many(self, records: builtins.list[tuple[Record, float | None]], database: str, table: str) -> None:
        if not records:
            return
        t = self._table(database, table)
        # ON CONFLICT cannot touch a row twice in one statement: keep the last record of each key, as
        # writes in order would.
        latest = {record.key: (record, ttl) for record, ttl in records}
        keys = [key.encode() for key in latest]
        rkeys = [key[::-1] for key in keys]
        values = [record.value for record, _ in latest.values()]
        if not any(ttl is not None or record.metadata for record, ttl in latest.values()):
            await self._writing(t, t.write_many_plain, keys, rkeys, values)
            return
        metadata = [pack_metadata(r.metadata, key=r.key) if r.metadata else None for r, _ in latest.values()]
        ttls = [ttl for _, ttl in latest.values()]
        await self._writing(t, t.write_many, keys, rkeys, values, metadata, ttls)

    async def _delete(self, key: str, database: str, table: str) -> None:
        t = self._table(database, table)
        with contextlib.suppress(asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            await self._client().execute(t.delete, key.encode())

    async def _delete_many(self, keys: builtins.list[str], database: str, table: str) -> None:
        if not keys:
            return
        t = self._table(database, table)
        with contextlib.suppress(asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
            await self._client().execute(t.delete_many, [key.encode() for key in keys])

    # -- expiry ----------------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Delete the expired records of every store table in the schema now; returns how many.

        The background task does this every ``cleanup_interval`` seconds; expired records are
        invisible either way, so this only reclaims space.
        """
        self._check_open()
        try:
            return await self._sweep()
        except Exception as exc:
            self._fail(exc)

    async def _sweep(self) -> int:
        pool = self._client()
        names = await pool.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = $1 AND c.relkind = 'r' AND strpos(c.relname, '/') > 0",
            self.options.schema,
        )
        removed = 0
        for (name,) in names:
            t = f"{quote(self.options.schema)}.{quote(name)}"
            while True:
                status = await pool.execute(
                    f"DELETE FROM {t} WHERE ctid = ANY(ARRAY("
                    f"SELECT ctid FROM {t} WHERE expires_at <= now() LIMIT {_SWEEP_BATCH}))"
                )
                count = int(status.rpartition(" ")[2] or 0)
                removed += count
                if count < _SWEEP_BATCH:
                    break
        return removed

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.options.cleanup_interval)
            try:
                removed = await self._sweep()
            except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
                continue  # a table dropped between the listing and its sweep
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError, MicroError) as exc:
                # The next sweep tries again; reads hide expired records meanwhile.
                log.warning("%s: sweeping expired records failed: %s", self._server.where, self._translate(exc) or exc)
                continue
            if removed:
                log.debug("%s: swept %d expired records", self._server.where, removed)
