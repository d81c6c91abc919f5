"""``redis``: a store in one Redis server, shared by every process that points at it.

**Layout.** A record is one Redis string at ``<key_prefix><database>:<table>:<key>``, by
default ``micro:store:micro:micro:<key>``. In the database and table names ``%`` is written
``%25`` and ``:`` is written ``%3A``, so two scopes never share a key; the record key is kept
as given (UTF-8), so ``redis-cli --scan --pattern 'micro:store:micro:micro:*'`` finds a table.

The string is an *envelope*: one tag byte, then the parts its low bits announce, then the
value as given::

    0xA0 | flags                        1 byte; flags: 0x01 expiry, 0x02 metadata
    [expires at]                        8 bytes, big-endian: ms since the Unix epoch (0x01)
    [metadata length][metadata]         4 bytes, big-endian, then that many bytes of JSON (0x02)
    value                               the rest

so a record without metadata or expiry costs one byte over its value. Tags ``0xA0`` to
``0xA3`` are this format; any other first byte (every ASCII or UTF-8 text starts with
another: ``0xA0``-``0xBF`` only continue a UTF-8 character), a truncated envelope, metadata
that is not a JSON object, or a key of another Redis type (such as a hash of the layout
before this one, in unreleased 0.1.0 builds) is a key someone else wrote under the store's
prefix: reading it raises :class:`~micro.errors.InternalError` naming the key (but see
*Other types* for ``read_many``); its bytes are never returned as a record.

* **Commands.** ``write`` is ``SET <key> <envelope> [PX <ttl>]``, ``read`` one ``GET``,
  ``read_many`` one ``MGET`` and ``delete`` one ``DEL``: no transaction, since each is a
  single command. ``write_many`` is one ``MULTI``/``EXEC`` holding an ``MSET`` (or one
  ``SET ... PX`` per record when some expire), ``delete_many`` one holding a ``DEL``.
* **Expiry** is Redis's own (``PX``, to the millisecond, on the server's clock): an expired
  record is gone for every command at once, and a write without a TTL clears the old one.
  The envelope also carries the deadline on the writer's clock, so
  :attr:`~micro.store.Record.expiry` on read comes with the value, without asking Redis for
  the ``PTTL``: it is off by the difference between the writer's and the reader's clocks
  (nothing within one host), and never reaches zero while Redis still has the record.
* **Prefix and suffix** reads and lists walk the keys with ``SCAN`` (never ``KEYS``, so the
  server is not blocked) and ``MATCH <scope><prefix>*``, the prefix glob-escaped so that
  ``*``, ``?`` and ``[`` in it match only themselves. The cost grows with the number of keys
  in the Redis database, not only in the table. Sorting, suffix filtering and
  ``offset``/``limit`` happen in the client, after the scan; a listing does not read the
  values, so it names a foreign key too (reading it then fails as above).
* **Bulk** operations are atomic: ``read_many`` because ``MGET`` is, the others by their
  ``MULTI``. ``write_many`` and ``delete_many`` also bump a counter per table
  (``<key_prefix><database>:<table>``, a string key that expires a day after the table's
  last batch) in the same transaction; a listing reads it before and after its scan and
  starts over if a batch landed meanwhile, so no reader sees part of a batch. A listing
  that keeps colliding with batches gives up after a few attempts with
  :class:`~micro.errors.Unavailable`. Single writes and deletes do not bump it: a listing
  may or may not see one that lands during its scan, as with any concurrent write.
* **Other types.** ``MGET`` answers nil for a key that is not a string, so ``read_many``
  takes a foreign hash (or list, set, ...) for a miss rather than spend a second command
  on every batch to tell them apart; ``read`` and prefix/suffix reads raise for it.
* **Connections.** Every command is harmless to repeat, so one whose connection broke is
  sent once more on a new connection before the call fails with
  :class:`~micro.errors.BackendUnavailable`.
"""

from __future__ import annotations

import asyncio
import builtins
import random
import struct
import time
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar, Final, TypeAlias, cast

import orjson
from micro.errors import BadRequest, ConnectionClosed, InternalError, MicroError, Unavailable
from micro.store import Record, Store
from micro.store.base import KeyFilter, pack_metadata
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ._client import Server
from ._errors import translate
from .options import RedisStoreOptions

__all__ = ["RedisStore"]

# How often a listing is tried again when a batch lands during its scan, before it gives up.
_ATTEMPTS: Final = 8
_SCAN_COUNT: Final = 1000
# Seconds the batch counter of a table lives after its last batch.
_COUNTER_TTL: Final = 86_400
_GLOB_SPECIAL: Final = frozenset(b"\\*?[]")

# The envelope (module docstring): a tag byte 0xA0 | flags, then what the flags announce.
_TAG: Final = 0xA0
_PLAIN: Final = b"\xa0"
_EXPIRES: Final = 0x01
_METADATA: Final = 0x02
_U64: Final = struct.Struct(">Q")
_U32: Final = struct.Struct(">I")
_HEAD_EXPIRES: Final = struct.Struct(">BQ")
_HEAD_METADATA: Final = struct.Struct(">BI")
_HEAD_BOTH: Final = struct.Struct(">BQI")
# Redis refuses an expiry whose deadline does not fit a signed 64-bit count of milliseconds;
# refuse it before anything is sent, with room for the clock.
_MAX_TTL_MS: Final = 2**62
# A record of the hash layout of unreleased 0.1.0 builds reads as this, as does any non-string key.
_NOT_A_STRING: Final = "it is not a Redis string (a hash may be a record of the earlier hash layout)"
# The client is made without decode_responses, so GET and MGET answer bytes (or nil for a miss).
_Replies: TypeAlias = "builtins.list[bytes | None]"
# Scope keys are cached per (database, table); a caller cycling through endless tables only refills it.
_SCOPES_CACHED: Final = 1024


def _quote(name: str) -> str:
    return name.replace("%", "%25").replace(":", "%3A")


def _glob_escape(text: bytes) -> bytes:
    """``text`` as a Redis glob pattern that matches only itself."""
    return bytes(b for c in text for b in ((0x5C, c) if c in _GLOB_SPECIAL else (c,)))


def _milliseconds(ttl: float, key: str) -> int:
    # Redis expiries are whole milliseconds; a positive TTL must never become "no expiry" or "expired now".
    ms = max(1, round(ttl * 1000))
    if ms >= _MAX_TTL_MS:
        raise BadRequest(f"ttl of {key!r} is too long for Redis: {ttl!r} seconds")
    return ms


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _envelope(record: Record, ttl_ms: int | None) -> bytes:
    """``record`` (already checked) as the string the store writes; the expiry counts from now."""
    if record.metadata:
        metadata = pack_metadata(record.metadata, key=record.key)
        if ttl_ms is None:
            return _HEAD_METADATA.pack(_TAG | _METADATA, len(metadata)) + metadata + record.value
        return _HEAD_BOTH.pack(_TAG | _EXPIRES | _METADATA, _now_ms() + ttl_ms, len(metadata)) + metadata + record.value
    if ttl_ms is None:
        return _PLAIN + record.value
    return _HEAD_EXPIRES.pack(_TAG | _EXPIRES, _now_ms() + ttl_ms) + record.value


class _Foreign(Exception):
    """An envelope that is not one: the reason, for :meth:`RedisStore._foreign`."""


def _record(key: str, data: bytes) -> Record:
    """The record in the envelope ``data``; :class:`_Foreign` if it is not an envelope."""
    if data[:1] == _PLAIN:  # the common case: no metadata, no expiry
        return Record(key, data[1:])
    if not data:
        raise _Foreign("it is empty")
    flags = data[0] ^ _TAG
    if flags > (_EXPIRES | _METADATA):
        raise _Foreign(f"its first byte is 0x{data[0]:02x}, not a tag 0xa0-0xa3")
    at = 1
    expiry = None
    metadata: Any = {}
    try:
        if flags & _EXPIRES:
            (deadline,) = _U64.unpack_from(data, at)
            at += 8
            # Redis still has it, so it is live: at least a millisecond left, whatever the clocks say.
            expiry = max(deadline - time.time() * 1000, 1.0) / 1000
        if flags & _METADATA:
            (length,) = _U32.unpack_from(data, at)
            at += 4
            if at + length > len(data):
                raise _Foreign(f"its metadata ({length} bytes) runs past its end")
            metadata = orjson.loads(data[at : at + length])
            at += length
    except struct.error:
        raise _Foreign(f"it ends inside its header ({len(data)} bytes)") from None
    except orjson.JSONDecodeError as exc:
        raise _Foreign(f"its metadata is not JSON: {exc}") from None
    if not isinstance(metadata, dict):
        raise _Foreign(f"its metadata is not a JSON object but {type(metadata).__name__}")
    return Record(key, data[at:], metadata, expiry)


class RedisStore(Store):
    """Records in Redis strings with Redis expiry; see the module docstring for the layout and guarantees."""

    options_type: ClassVar[type[RedisStoreOptions]] = RedisStoreOptions
    options: RedisStoreOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"ttl", "bulk"})

    def __init__(self, options: RedisStoreOptions | None = None) -> None:
        super().__init__(options)
        self._server = Server.of(self.options, "store")
        self._where = self._server.where
        self._redis: Redis | None = None
        self._prefix = self.options.key_prefix.encode()
        self._scopes: dict[tuple[str, str], bytes] = {}
        #: The name its connections give Redis (``CLIENT LIST``).
        self.client_name = f"micro-store-{uuid.uuid4().hex[:8]}"

    @property
    def address(self) -> str:
        """The server, without credentials: ``127.0.0.1:6379``."""
        return self._server.address

    async def _start(self) -> None:
        """Connect and check the server answers.

        Raises :class:`~micro.errors.BackendUnavailable` naming the address and
        ``MICRO_STORE_ADDRESS`` if it does not within ``connect_timeout``, and
        :class:`~micro.errors.Unauthorized` if it refuses the credentials.
        """
        # Every store command is harmless to repeat, so one lost connection costs no error.
        self._redis = await self._server.connect(self.client_name, retries=1)

    async def _close(self) -> None:
        """Close the connections; the records stay on the server."""
        client, self._redis = self._redis, None
        if client is not None:
            await client.aclose()

    def _translate(self, exc: Exception) -> MicroError | None:
        return translate(exc, self._where)

    # -- keys ------------------------------------------------------------------------------------

    def _table_key(self, database: str, table: str) -> bytes:
        scope = self._scopes.get((database, table))
        if scope is None:
            if len(self._scopes) >= _SCOPES_CACHED:
                self._scopes.clear()
            scope = self._scopes[database, table] = self._prefix + f"{_quote(database)}:{_quote(table)}:".encode()
        return scope

    def _batch_key(self, database: str, table: str) -> bytes:
        """The counter ``write_many`` and ``delete_many`` bump; it never matches a record's key."""
        return self._prefix + f"{_quote(database)}:{_quote(table)}".encode()

    def _client(self) -> Redis:
        # The base refuses calls before start() and after close(); a hook still running when close()
        # takes the client away finds it gone here.
        if self._redis is None:
            raise ConnectionClosed("the RedisStore is closed")
        return self._redis

    # -- reading ---------------------------------------------------------------------------------

    async def _read(self, key: str, database: str, table: str) -> Record | None:
        client = self._client()
        try:
            data = cast("bytes | None", await client.get(self._table_key(database, table) + key.encode()))
        except ResponseError as exc:
            if str(exc).startswith("WRONGTYPE"):
                raise self._foreign(key, database, table, _NOT_A_STRING) from exc
            raise
        return None if data is None else self._decode(key, data, database, table)

    async def _read_matching(self, wanted: KeyFilter, database: str, table: str) -> builtins.list[Record]:
        client = self._client()
        scope = self._table_key(database, table)
        batch_key = self._batch_key(database, table)
        for attempt in range(_ATTEMPTS):
            before = await client.get(batch_key)
            page = await self._scan(client, scope, wanted)
            # The counter rides in the same MGET, so it is read at the same instant as the records.
            *values, after = cast(_Replies, await client.mget([scope + k.encode() for k in page] + [batch_key]))
            missing = [k for k, v in zip(page, values, strict=True) if v is None]
            if missing:
                await self._check_strings(client, scope, missing, database, table)
            # A batch landing during the scan, or a record vanishing (deleted, expired) between the scan
            # and the fetch, would leave the page wrong: take it again.
            if before == after and not missing:
                return [self._decode(k, v, database, table) for k, v in zip(page, values, strict=True) if v is not None]
            await self._pause(attempt)
        raise self._busy(database, table)

    async def _list(self, wanted: KeyFilter, database: str, table: str) -> builtins.list[str]:
        client = self._client()
        batch_key = self._batch_key(database, table)
        for attempt in range(_ATTEMPTS):
            before = await client.get(batch_key)
            keys = await self._scan(client, self._table_key(database, table), wanted)
            after = await client.get(batch_key)
            if before == after:
                return keys
            await self._pause(attempt)
        raise self._busy(database, table)

    async def _read_many(self, keys: builtins.list[str], database: str, table: str) -> builtins.list[Record | None]:
        client = self._client()
        if not keys:
            return []
        scope = self._table_key(database, table)
        values = cast(_Replies, await client.mget([scope + key.encode() for key in keys]))
        found: builtins.list[Record | None] = []
        for key, data in zip(keys, values, strict=True):
            if data is None:
                found.append(None)
            elif data[:1] == _PLAIN:  # inline of _record's first case: the batch's hot path
                found.append(Record(key, data[1:]))
            else:
                found.append(self._decode(key, data, database, table))
        return found

    async def _check_strings(self, client: Redis, scope: bytes, keys: Sequence[str], database: str, table: str) -> None:
        """:class:`~micro.errors.InternalError` if one of ``keys`` holds something other than a string."""
        async with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.type(scope + key.encode())
            kinds = await pipe.execute()
        for key, kind in zip(keys, kinds, strict=True):
            kind = kind.decode() if isinstance(kind, bytes) else kind
            if kind not in ("string", "none"):  # "none": deleted or expired since the scan
                raise self._foreign(key, database, table, f"it is a Redis {kind}, not a string")

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

    def _decode(self, key: str, data: bytes, database: str, table: str) -> Record:
        try:
            return _record(key, data)
        except _Foreign as exc:
            raise self._foreign(key, database, table, str(exc)) from None

    def _foreign(self, key: str, database: str, table: str, why: str) -> InternalError:
        return InternalError(
            f"{self._where}: {database}/{table} key {key!r} is not a micro-redis record: {why} "
            "(something else wrote it under the store's key prefix)"
        )

    async def _pause(self, attempt: int) -> None:
        await asyncio.sleep(random.uniform(0, 0.002 * 2**attempt))

    def _busy(self, database: str, table: str) -> Unavailable:
        return Unavailable(
            f"{self._where}: {database}/{table} changed by a write_many or delete_many during each of "
            f"{_ATTEMPTS} attempts to list it; try again"
        )

    # -- writing ---------------------------------------------------------------------------------

    async def _write(self, record: Record, ttl: float | None, database: str, table: str) -> None:
        client = self._client()
        name = self._table_key(database, table) + record.key.encode()
        # execute_command rather than set(): set() sorts through a dozen options on every call, a few
        # percent of a write here (redis-py leaves execute_command untyped).
        if ttl is None:
            await client.execute_command("SET", name, _envelope(record, None))  # type: ignore[no-untyped-call]
        else:
            ms = _milliseconds(ttl, record.key)
            await client.execute_command("SET", name, _envelope(record, ms), "PX", ms)  # type: ignore[no-untyped-call]

    async def _write_many(self, records: builtins.list[tuple[Record, float | None]], database: str, table: str) -> None:
        client = self._client()
        if not records:
            return
        scope = self._table_key(database, table)
        expiring = [(r, None if t is None else _milliseconds(t, r.key)) for r, t in records]
        async with client.pipeline(transaction=True) as pipe:
            if all(ms is None for _, ms in expiring):
                # One MSET; the dict keeps the later of two duplicate keys, as SETs in order would.
                pipe.mset({scope + record.key.encode(): _envelope(record, None) for record, _ in expiring})
            else:
                for record, ms in expiring:
                    name = scope + record.key.encode()
                    if ms is None:
                        pipe.set(name, _envelope(record, None))
                    else:
                        pipe.set(name, _envelope(record, ms), px=ms)
            self._queue_batch_mark(pipe, database, table)
            await pipe.execute()

    def _queue_batch_mark(self, pipe: Any, database: str, table: str) -> None:
        counter = self._batch_key(database, table)
        pipe.incr(counter)
        # The counter only has to outlive a listing that runs alongside the batch; a table that
        # stops taking batches should not leave it behind for good.
        pipe.expire(counter, _COUNTER_TTL)

    async def _delete(self, key: str, database: str, table: str) -> None:
        await self._client().delete(self._table_key(database, table) + key.encode())

    async def _delete_many(self, keys: builtins.list[str], database: str, table: str) -> None:
        client = self._client()
        if not keys:
            return
        scope = self._table_key(database, table)
        async with client.pipeline(transaction=True) as pipe:
            pipe.delete(*(scope + key.encode() for key in dict.fromkeys(keys)))
            self._queue_batch_mark(pipe, database, table)
            await pipe.execute()
