"""``redis``: a store in one Redis server, shared by every process that points at it.

**Layout.** A record is a Redis hash at ``<key_prefix><database>:<table>:<key>``, by
default ``micro:store:micro:micro:<key>``, with the fields ``value`` (the bytes as given)
and ``metadata`` (JSON). In the database and table names ``%`` is written ``%25`` and
``:`` is written ``%3A``, so two scopes never share a key; the record key is kept as
given (UTF-8), so ``redis-cli --scan --pattern 'micro:store:micro:micro:*'`` finds a table.

* **Writes** are one ``MULTI``/``EXEC`` of ``DEL``, ``HSET`` and ``PEXPIRE``: value,
  metadata and expiry are replaced together, and a rewrite without a TTL is permanent.
* **Expiry** is Redis's own, to the millisecond: an expired record is gone for every
  command at once, and :attr:`~micro.store.Record.expiry` on read is its ``PTTL``.
* **Prefix and suffix** reads and lists walk the keys with ``SCAN`` (never ``KEYS``, so the
  server is not blocked) and ``MATCH <scope><prefix>*``, the prefix glob-escaped so that
  ``*``, ``?`` and ``[`` in it match only themselves. The cost grows with the number of keys
  in the Redis database, not only in the table. Sorting, suffix filtering and
  ``offset``/``limit`` happen in the client, after the scan.
* **Bulk** operations are one ``MULTI``/``EXEC`` each, hence atomic. ``write_many`` and
  ``delete_many`` also bump a counter per table (``<key_prefix><database>:<table>``, a
  string key that expires a day after the table's last batch); a listing reads it before
  and after its scan and starts over if a batch landed meanwhile, so no reader sees part
  of a batch. A listing that keeps colliding with batches gives up after a few attempts
  with :class:`~micro.errors.Unavailable`.
* **Connections.** Every command is harmless to repeat, so one whose connection broke is
  sent once more on a new connection before the call fails with
  :class:`~micro.errors.BackendUnavailable`.
"""

from __future__ import annotations

import asyncio
import builtins
import random
import uuid
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar, Final

import orjson
from micro.errors import ConnectionClosed, InternalError, Unavailable
from micro.store import Record, Store
from micro.store.base import (
    KeyFilter,
    check_key,
    check_keys,
    check_list,
    check_read,
    check_record,
    not_found,
    pack_metadata,
)
from redis.asyncio import Redis

from ._client import Server
from ._errors import translated
from .options import RedisStoreOptions

__all__ = ["RedisStore"]

_FIELDS: Final = ("value", "metadata")
# How often a listing is tried again when a batch lands during its scan, before it gives up.
_ATTEMPTS: Final = 8
_SCAN_COUNT: Final = 1000
# Seconds the batch counter of a table lives after its last batch.
_COUNTER_TTL: Final = 86_400
_GLOB_SPECIAL: Final = frozenset(b"\\*?[]")


def _quote(name: str) -> str:
    return name.replace("%", "%25").replace(":", "%3A")


def _glob_escape(text: bytes) -> bytes:
    """``text`` as a Redis glob pattern that matches only itself."""
    return bytes(b for c in text for b in ((0x5C, c) if c in _GLOB_SPECIAL else (c,)))


def _milliseconds(ttl: float) -> int:
    # Redis expiries are whole milliseconds; a positive TTL must never become "no expiry" or "expired now".
    return max(1, round(ttl * 1000))


class RedisStore(Store):
    """Records in Redis hashes with Redis expiry; see the module docstring for the layout and guarantees."""

    options_type: ClassVar[type[RedisStoreOptions]] = RedisStoreOptions
    options: RedisStoreOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"ttl", "bulk"})

    def __init__(self, options: RedisStoreOptions | None = None) -> None:
        super().__init__(options)
        self._server = Server.of(self.options, "store")
        self._redis: Redis | None = None
        self._starting = asyncio.Lock()
        self._prefix = self.options.key_prefix.encode()
        #: The name its connections give Redis (``CLIENT LIST``).
        self.client_name = f"micro-store-{uuid.uuid4().hex[:8]}"

    @property
    def address(self) -> str:
        """The server, without credentials: ``127.0.0.1:6379``."""
        return self._server.address

    async def start(self) -> None:
        """Connect and check the server answers. Idempotent.

        Raises :class:`~micro.errors.BackendUnavailable` naming the address and
        ``MICRO_STORE_ADDRESS`` if it does not within ``connect_timeout``, and
        :class:`~micro.errors.Unauthorized` if it refuses the credentials.
        """
        async with self._starting:
            if self._redis is None:
                # Every store command is harmless to repeat, so one lost connection costs no error.
                self._redis = await self._server.connect(self.client_name, retries=1)

    async def close(self) -> None:
        """Close the connections. Idempotent; the records stay on the server."""
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()

    # -- keys ------------------------------------------------------------------------------------

    def _table_key(self, database: str, table: str) -> bytes:
        return self._prefix + f"{_quote(database)}:{_quote(table)}:".encode()

    def _batch_key(self, database: str, table: str) -> bytes:
        """The counter ``write_many`` and ``delete_many`` bump; it never matches a record's key."""
        return self._prefix + f"{_quote(database)}:{_quote(table)}".encode()

    def _client(self) -> Redis:
        if self._redis is None:
            raise ConnectionClosed("the redis store is not started: await store.start() or use async with")
        return self._redis

    # -- reading ---------------------------------------------------------------------------------

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
        client = self._client()
        scope = self._table_key(db, tb)
        if not (prefix or suffix):
            with translated(self._server.where):
                found, _ = await self._fetch(client, scope, [key])
            record = found.get(key)
            if record is None:
                raise not_found(key, db, tb)
            return [record]
        wanted = KeyFilter.for_read(key, prefix=prefix, suffix=suffix, limit=limit, offset=offset)
        batch_key = self._batch_key(db, tb)
        for attempt in range(_ATTEMPTS):
            with translated(self._server.where):
                before = await client.get(batch_key)
                page = await self._scan(client, scope, wanted)
                found, after = await self._fetch(client, scope, page, counter=batch_key)
            # A batch landing during the scan, or a record vanishing (deleted, expired) between the scan
            # and the fetch, would leave the page wrong: take it again.
            if before == after and len(found) == len(page):
                return [found[k] for k in page]
            await self._pause(attempt)
        raise self._busy(db, tb)

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
        client = self._client()
        batch_key = self._batch_key(db, tb)
        for attempt in range(_ATTEMPTS):
            with translated(self._server.where):
                before = await client.get(batch_key)
                keys = await self._scan(client, self._table_key(db, tb), wanted)
                after = await client.get(batch_key)
            if before == after:
                return keys
            await self._pause(attempt)
        raise self._busy(db, tb)

    async def read_many(
        self, keys: Sequence[str], *, database: str | None = None, table: str | None = None
    ) -> builtins.list[Record | None]:
        checked = check_keys(keys)
        db, tb = self._scope(database, table)
        client = self._client()
        with translated(self._server.where):
            found, _ = await self._fetch(client, self._table_key(db, tb), checked)
        return [found.get(key) for key in checked]

    async def _scan(self, client: Redis, scope: bytes, wanted: KeyFilter) -> builtins.list[str]:
        """The keys of live records in ``scope`` that ``wanted`` selects: sorted and paged."""
        head = scope + wanted.prefix.encode()
        keys: set[str] = set()
        # SCAN may return a key twice (the set absorbs it) and skips keys that have expired.
        async for raw in client.scan_iter(match=_glob_escape(head) + b"*", count=_SCAN_COUNT):
            if not raw.startswith(head):
                continue
            try:
                key = raw[len(scope) :].decode("utf-8")
            except UnicodeDecodeError:
                continue  # not written by a store: every record key is UTF-8
            keys.add(key)
        return wanted.select(keys)

    async def _fetch(
        self, client: Redis, scope: bytes, keys: Sequence[str], *, counter: bytes | None = None
    ) -> tuple[dict[str, Record], bytes | None]:
        """The live records at ``keys`` by key (missing ones left out), read in one transaction.

        Also returns the value of the key ``counter`` read in the same transaction
        (``None`` without one).
        """
        unique = builtins.list(dict.fromkeys(keys))
        async with client.pipeline(transaction=True) as pipe:
            for key in unique:
                name = scope + key.encode()
                pipe.hmget(name, _FIELDS)
                pipe.pttl(name)
            if counter is not None:
                pipe.get(counter)
            replies = await pipe.execute()
        found: dict[str, Record] = {}
        for index, key in enumerate(unique):
            (value, metadata), pttl = replies[2 * index], replies[2 * index + 1]
            if value is not None:
                found[key] = self._record(key, value, metadata, pttl)
        return found, (replies[-1] if counter is not None else None)

    def _record(self, key: str, value: bytes, metadata: bytes | None, pttl: int) -> Record:
        try:
            meta = orjson.loads(metadata) if metadata is not None else {}
        except orjson.JSONDecodeError as exc:
            raise InternalError(f"{self._server.where}: the metadata of record {key!r} is not JSON: {exc}") from exc
        # PTTL is -1 for a key without expiry; 0 means less than a millisecond is left, still live.
        expiry = None if pttl < 0 else max(pttl, 1) / 1000
        return Record(key=key, value=value, metadata=meta, expiry=expiry)

    async def _pause(self, attempt: int) -> None:
        await asyncio.sleep(random.uniform(0, 0.002 * 2**attempt))

    def _busy(self, database: str, table: str) -> Unavailable:
        return Unavailable(
            f"{self._server.where}: {database}/{table} changed by a write_many or delete_many during each of "
            f"{_ATTEMPTS} attempts to list it; try again"
        )

    # -- writing ---------------------------------------------------------------------------------

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
        client = self._client()
        scope = self._table_key(db, tb)
        with translated(self._server.where):
            async with client.pipeline(transaction=True) as pipe:
                self._queue_write(pipe, scope, record, effective)
                await pipe.execute()

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
        client = self._client()
        if not checked:
            return
        scope = self._table_key(db, tb)
        with translated(self._server.where):
            async with client.pipeline(transaction=True) as pipe:
                for record, effective in checked:
                    self._queue_write(pipe, scope, record, effective)
                self._queue_batch_mark(pipe, db, tb)
                await pipe.execute()

    def _queue_batch_mark(self, pipe: Any, database: str, table: str) -> None:
        counter = self._batch_key(database, table)
        pipe.incr(counter)
        # The counter only has to outlive a listing that runs alongside the batch; a table that
        # stops taking batches should not leave it behind for good.
        pipe.expire(counter, _COUNTER_TTL)

    def _queue_write(self, pipe: Any, scope: bytes, record: Record, ttl: float | None) -> None:
        name = scope + record.key.encode()
        pipe.delete(name)
        pipe.hset(name, mapping={"value": record.value, "metadata": pack_metadata(record.metadata, key=record.key)})
        if ttl is not None:
            pipe.pexpire(name, _milliseconds(ttl))

    async def delete(self, key: str, *, database: str | None = None, table: str | None = None) -> None:
        check_key(key)
        db, tb = self._scope(database, table)
        client = self._client()
        with translated(self._server.where):
            await client.delete(self._table_key(db, tb) + key.encode())

    async def delete_many(self, keys: Sequence[str], *, database: str | None = None, table: str | None = None) -> None:
        checked = check_keys(keys)
        db, tb = self._scope(database, table)
        client = self._client()
        if not checked:
            return
        scope = self._table_key(db, tb)
        with translated(self._server.where):
            async with client.pipeline(transaction=True) as pipe:
                pipe.delete(*(scope + key.encode() for key in dict.fromkeys(checked)))
                self._queue_batch_mark(pipe, db, tb)
                await pipe.execute()
