"""The store contract (:class:`micro.store.Store`): cases S01-S35.

Every key a case writes starts with the test's unique prefix, and every
listing is restricted to it, so a store shared with other data (or another run)
is tested safely. Capabilities: ``ttl`` and ``bulk``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest
from micro.errors import BadRequest, ConnectionClosed, NotSupported, RecordNotFound
from micro.store import Record, Store
from micro.store.base import MAX_PAGE, MAX_TTL

from .base import Contract, absent, requires

__all__ = ["StoreContract"]


class StoreContract(Contract[Store]):
    """The behaviour every :class:`~micro.store.Store` shares; see :mod:`micro.store.base` for the rules."""

    interface = "store"
    known_capabilities = frozenset({"ttl", "bulk"})
    #: The TTL, in seconds, used by expiry cases; raise it for a store whose expiry is coarse.
    ttl: ClassVar[float] = 0.5

    @pytest.fixture
    def store(self, subject: Store) -> Store:
        self.clean_up(subject)
        return subject

    def clean_up(self, store: Store, *, database: str | None = None, table: str | None = None) -> None:
        """When the test ends, delete every key of this test in one scope, so a shared store is left as found."""

        async def delete() -> None:
            keys = await store.list(database=database, table=table, prefix=self.names.prefix)
            await store.delete_many(keys, database=database, table=table)

        self.later(delete)

    async def write_all(self, store: Store, keys: list[str], **kwargs: Any) -> None:
        for key in keys:
            await store.write(Record(key, key.encode()), **kwargs)

    # -- lifecycle -------------------------------------------------------------------------

    async def test_s01_start_and_close_are_idempotent(self, store: Store) -> None:
        """start() twice, close() twice, and a store closed then started again works."""
        key = self.names("k")
        await store.start()
        await store.write(Record(key, b"v"))
        await store.close()
        await store.close()
        await store.start()
        await store.write(Record(key, b"again"))
        assert [r.value for r in await store.read(key)] == [b"again"]

    # -- values ----------------------------------------------------------------------------

    async def test_s02_values_round_trip_exactly(self, store: Store) -> None:
        """Empty, binary (every byte value) and 1 MiB values come back byte for byte."""
        values = {"empty": b"", "binary": bytes(range(256)) * 4, "large": bytes(range(256)) * 4096 + b"!"}
        for label, value in values.items():
            await store.write(Record(self.names(label), value))
        for label, value in values.items():
            (record,) = await store.read(self.names(label))
            assert record.key == self.names(label)
            assert record.value == value, f"{label} value changed: {len(record.value)} bytes, expected {len(value)}"

    async def test_s03_metadata_round_trips(self, store: Store) -> None:
        """JSON-compatible metadata (nested, unicode, numbers, null) comes back equal."""
        metadata = {"a": "b", "n": 3, "f": 1.5, "yes": True, "none": None, "list": [1, "x"], "nested": {"é": "ü"}}
        key = self.names("m")
        await store.write(Record(key, b"v", metadata=metadata))
        (record,) = await store.read(key)
        assert record.metadata == metadata

    async def test_s04_exact_read_of_missing_key_raises_record_not_found(self, store: Store) -> None:
        """An exact read of a key never written raises RecordNotFound, and its message names the key."""
        key = self.names("missing")
        with pytest.raises(RecordNotFound) as caught:
            await store.read(key)
        assert key in str(caught.value), f"RecordNotFound does not name the key: {caught.value}"

    async def test_s05_overwrite_replaces_value_and_metadata(self, store: Store) -> None:
        """Writing a key again replaces its value and its metadata (no merge)."""
        key = self.names("k")
        await store.write(Record(key, b"one", metadata={"a": 1, "b": 2}))
        await store.write(Record(key, b"two", metadata={"c": 3}))
        (record,) = await store.read(key)
        assert (record.value, record.metadata) == (b"two", {"c": 3})

    async def test_s06_delete_removes_and_missing_delete_is_a_no_op(self, store: Store) -> None:
        """delete() removes the key; deleting it again, or a key never written, does not raise."""
        key = self.names("k")
        await store.write(Record(key, b"v"))
        await store.delete(key)
        with pytest.raises(RecordNotFound):
            await store.read(key)
        await store.delete(key)
        await store.delete(self.names("never"))
        assert await store.list(prefix=self.names.prefix) == []

    # -- prefix, suffix, order, paging -----------------------------------------------------

    async def test_s07_prefix_and_suffix_reads_filter_and_sort(self, store: Store) -> None:
        """prefix=, suffix= and both select the right records, sorted by key; no match gives []."""
        p = self.names.prefix
        keys = [p + k for k in ("b.json", "a.json", "a.yaml", "c.txt", "ab.json")]
        await self.write_all(store, keys)
        assert [r.key for r in await store.read(p + "a", prefix=True)] == [p + "a.json", p + "a.yaml", p + "ab.json"]
        assert [r.key for r in await store.read(".json", suffix=True) if r.key.startswith(p)] == [
            p + "a.json",
            p + "ab.json",
            p + "b.json",
        ]
        assert [r.key for r in await store.read(p + "a", prefix=True, suffix=True)] == []
        both = await store.read(p + "a", prefix=True, suffix=False)
        assert all(r.value == r.key.encode() for r in both)
        assert await store.read(p + "zzz", prefix=True) == []
        assert await store.read(p + "nothing-ends-like-this", suffix=True) == []

    async def test_s08_prefix_with_suffix_requires_both(self, store: Store) -> None:
        """With prefix=True and suffix=True a key must start *and* end with the key given."""
        p = self.names.prefix
        await self.write_all(store, [p + "x" + p, p + "y"])
        assert [r.key for r in await store.read(p, prefix=True, suffix=True)] == [p + "x" + p]

    async def test_s09_keys_sort_by_code_point(self, store: Store) -> None:
        """Listing and prefix reads sort by code point: upper case before lower case, ASCII before 'é'."""
        p = self.names.prefix
        keys = [p + k for k in ("é", "b", "B", "a", "~", "A", "0")]
        await self.write_all(store, keys)
        assert await store.list(prefix=p) == sorted(keys)
        assert [r.key for r in await store.read(p, prefix=True)] == sorted(keys)

    async def test_s10_limit_and_offset_page_reads_and_lists(self, store: Store) -> None:
        """limit and offset page through the sorted result; an offset past the end gives []; limit=0 gives []."""
        p = self.names.prefix
        keys = [f"{p}{i:02d}" for i in range(10)]
        await self.write_all(store, list(reversed(keys)))
        assert await store.list(prefix=p, limit=3) == keys[:3]
        assert await store.list(prefix=p, limit=3, offset=8) == keys[8:]
        assert await store.list(prefix=p, offset=4) == keys[4:]
        assert await store.list(prefix=p, offset=10) == []
        assert await store.list(prefix=p, offset=50, limit=5) == []
        assert await store.list(prefix=p, limit=0) == []
        assert [r.key for r in await store.read(p, prefix=True, limit=4, offset=2)] == keys[2:6]
        assert [r.key for r in await store.read(p, prefix=True, offset=9)] == keys[9:]
        assert await store.read(p, prefix=True, offset=12) == []

    async def test_s11_exact_read_ignores_limit_and_offset(self, store: Store) -> None:
        """An exact read returns the record whatever limit and offset say."""
        key = self.names("k")
        await store.write(Record(key, b"v"))
        assert [r.key for r in await store.read(key, limit=5, offset=3)] == [key]

    async def test_s12_list_returns_bare_keys_filtered_by_prefix_and_suffix(self, store: Store) -> None:
        """list() returns the keys as written (no database or table in them), filtered by prefix and suffix."""
        p = self.names.prefix
        keys = [p + "one.txt", p + "two.txt", p + "three.bin"]
        await self.write_all(store, keys)
        assert await store.list(prefix=p) == sorted(keys)
        assert await store.list(prefix=p, suffix=".txt") == [p + "one.txt", p + "two.txt"]
        assert [k for k in await store.list(suffix=".bin") if k.startswith(p)] == [p + "three.bin"]
        assert await store.list(prefix=p + "nope") == []

    async def test_s13_unusual_keys_round_trip(self, store: Store) -> None:
        """Keys with slashes, spaces, SQL/glob/regex wildcards, NUL and non-ASCII text are kept and matched exactly."""
        p = self.names.prefix
        keys = [p + k for k in ("a/b/c", "with space", "dot.dot", "100%", "quote'\"", "日本語", "emoji-🎉", "_%")]
        keys += [p + k for k in ("g*b", "g?b", "g[b]", "g\\b", "g\x00b", "g^b$", "g.+")]
        await self.write_all(store, keys)
        assert await store.list(prefix=p) == sorted(keys)
        for key in keys:
            assert [r.value for r in await store.read(key)] == [key.encode()]
        # Characters that are wildcards in SQL LIKE or glob patterns must match only themselves.
        assert [r.key for r in await store.read(p + "_", prefix=True)] == [p + "_%"]
        assert await store.list(prefix=p + "%") == []
        # ... and so must glob (Redis MATCH, fnmatch) and regular-expression characters.
        for special in ("g*", "g?", "g[", "g\\", "g^", "g."):
            assert await store.list(prefix=p + special) == [k for k in sorted(keys) if k.startswith(p + special)]
        assert [k for k in await store.list(suffix="*b") if k.startswith(p)] == [p + "g*b"]

    # -- scoping ---------------------------------------------------------------------------

    async def test_s14_database_and_table_isolate_keys(self, store: Store) -> None:
        """The same key in two tables, or two databases, is two records; each scope lists only its own."""
        key = self.names("k")
        t1, t2, db = self.names("t1"), self.names("t2"), self.names("db")
        for scope in ({"table": t1}, {"table": t2}, {"database": db, "table": t1}):
            self.clean_up(store, **scope)
        await store.write(Record(key, b"default"))
        await store.write(Record(key, b"t1"), table=t1)
        await store.write(Record(key, b"t2"), table=t2)
        await store.write(Record(key, b"db"), database=db, table=t1)
        assert [r.value for r in await store.read(key)] == [b"default"]
        assert [r.value for r in await store.read(key, table=t1)] == [b"t1"]
        assert [r.value for r in await store.read(key, table=t2)] == [b"t2"]
        assert [r.value for r in await store.read(key, database=db, table=t1)] == [b"db"]
        await store.delete(key, table=t1)
        with pytest.raises(RecordNotFound):
            await store.read(key, table=t1)
        assert [r.value for r in await store.read(key, table=t2)] == [b"t2"]
        assert [r.value for r in await store.read(key, database=db, table=t1)] == [b"db"]
        assert await store.list(table=t2) == [key]
        assert await store.list(database=db, table=t2) == []

    async def test_s15_options_choose_the_default_scope(self, store: Store) -> None:
        """An instance built with database= and table= options uses them when a call names neither."""
        db, table = self.names("db"), self.names("tb")
        key, other = self.names("k"), self.names("other")
        scoped = await self.another(database=db, table=table)
        self.clean_up(scoped)
        self.clean_up(scoped, database=other, table=other)
        await scoped.write(Record(key, b"scoped"))
        assert [r.value for r in await scoped.read(key, database=db, table=table)] == [b"scoped"]
        assert await scoped.list(database=db, table=table) == [key]
        assert await scoped.list() == [key]
        with pytest.raises(RecordNotFound):
            await scoped.read(key, database=other, table=other)
        await scoped.write(Record(key, b"elsewhere"), database=other, table=other)
        assert [r.value for r in await scoped.read(key)] == [b"scoped"]
        await scoped.delete(key)
        assert await scoped.list() == []
        assert [r.value for r in await scoped.read(key, database=other, table=other)] == [b"elsewhere"]

    # -- copies and bad input --------------------------------------------------------------

    async def test_s16_records_are_copied_in_and_out(self, store: Store) -> None:
        """Changing a record after writing it, or after reading it, does not change the store."""
        key = self.names("k")
        record = Record(key, b"v", metadata={"list": [1], "map": {"a": "b"}})
        await store.write(record)
        record.value = b"changed"
        record.metadata["list"].append(2)
        record.metadata["new"] = True
        (read,) = await store.read(key)
        assert (read.value, read.metadata) == (b"v", {"list": [1], "map": {"a": "b"}})
        read.metadata["map"]["a"] = "changed"
        read.metadata["list"].append(3)
        (again,) = await store.read(key)
        assert again.metadata == {"list": [1], "map": {"a": "b"}}

    async def test_s17_bad_input_raises_bad_request_and_writes_nothing(self, store: Store) -> None:
        """Empty or non-UTF-8 keys, non-bytes values, non-JSON metadata and bad paging raise BadRequest."""
        key = self.names("k")
        bad_records: list[Any] = [
            Record("", b"v"),
            Record(self.names("\udc80"), b"v"),
            Record(key, "text"),  # type: ignore[arg-type]
            Record(key, b"v", metadata={"x": object()}),
            Record(key, b"v", metadata={"x": {1, 2}}),
            "not a record",
        ]
        for record in bad_records:
            with pytest.raises(BadRequest):
                await store.write(record)
        assert await store.list(prefix=self.names.prefix) == []
        with pytest.raises(BadRequest):
            await store.read("")
        for paging in ({"limit": -1}, {"offset": -1}, {"limit": 1.5}, {"offset": "1"}):
            with pytest.raises(BadRequest):
                await store.list(prefix=self.names.prefix, **paging)
            with pytest.raises(BadRequest):
                await store.read(self.names.prefix, prefix=True, **paging)

    async def test_s18_concurrent_writers_all_land(self, store: Store) -> None:
        """Fifty tasks writing distinct keys at once, and ten writing one key, leave a consistent store."""
        p = self.names.prefix
        await asyncio.gather(*(store.write(Record(f"{p}{i:03d}", str(i).encode())) for i in range(50)))
        assert await store.list(prefix=p) == [f"{p}{i:03d}" for i in range(50)]
        shared = self.names("shared")
        values = [str(i).encode() for i in range(10)]
        await asyncio.gather(*(store.write(Record(shared, v)) for v in values))
        (record,) = await store.read(shared)
        assert record.value in values

    # -- many ------------------------------------------------------------------------------

    async def test_s19_read_many_keeps_order_and_marks_misses_with_none(self, store: Store) -> None:
        """read_many returns one entry per key in order, None for a miss, duplicates repeated."""
        a, b, missing = self.names("a"), self.names("b"), self.names("missing")
        await store.write_many([Record(a, b"1"), Record(b, b"2"), Record(a, b"1-again")])
        found = await store.read_many([b, missing, a, b])
        assert [None if r is None else (r.key, r.value) for r in found] == [
            (b, b"2"),
            None,
            (a, b"1-again"),
            (b, b"2"),
        ]
        await store.delete_many([a, missing])
        assert await store.list(prefix=self.names.prefix) == [b]
        with pytest.raises(BadRequest):
            await store.read_many(a)
        with pytest.raises(BadRequest):
            await store.write_many([Record(self.names("c"), b"ok"), Record("", b"bad")])
        assert await store.list(prefix=self.names.prefix) == [b], "a batch with a bad record wrote something"

    @requires("bulk")
    async def test_s20_bulk_writes_and_deletes_are_atomic(self, store: Store) -> None:
        """With "bulk", a reader running alongside write_many/delete_many sees none or all of the batch."""
        p = self.names.prefix
        records = [Record(f"{p}{i:03d}", b"v") for i in range(200)]
        seen: set[int] = set()
        done = asyncio.Event()

        async def watch() -> None:
            while not done.is_set():
                seen.add(len(await store.list(prefix=p)))
                await asyncio.sleep(0)

        reader = asyncio.create_task(watch())
        try:
            await store.write_many(records)
            seen.add(len(await store.list(prefix=p)))
            await store.delete_many([r.key for r in records])
        finally:
            done.set()
            await reader
        seen.add(len(await store.list(prefix=p)))
        assert seen <= {0, len(records)}, f"a reader saw part of a batch: {sorted(seen)} records"

    # -- ttl -------------------------------------------------------------------------------

    @requires("ttl")
    async def test_s21_ttl_record_reports_expiry_then_vanishes(self, store: Store) -> None:
        """A record written with ttl reads back with 0 < expiry <= ttl, then disappears from read and list."""
        key, other = self.names("k"), self.names("permanent")
        await store.write(Record(key, b"v"), ttl=self.ttl)
        await store.write(Record(other, b"v"))
        (record,) = await store.read(key)
        assert record.expiry is not None and 0 < record.expiry <= self.ttl, f"expiry is {record.expiry!r}"
        (permanent,) = await store.read(other)
        assert permanent.expiry is None, f"a record written without ttl has expiry {permanent.expiry!r}"

        async def gone() -> None:
            with pytest.raises(RecordNotFound):
                await store.read(key)
            assert await store.list(prefix=self.names.prefix) == [other]
            assert [r.key for r in await store.read(self.names.prefix, prefix=True)] == [other]

        await self.eventually(gone, "the expired record disappearing")

    @requires("ttl")
    async def test_s22_record_expiry_field_is_a_ttl(self, store: Store) -> None:
        """Record.expiry on write is a TTL when ttl= is not given; ttl= wins over it."""
        key, longer = self.names("k"), self.names("longer")
        await store.write(Record(key, b"v", expiry=self.ttl))
        await store.write(Record(longer, b"v", expiry=self.ttl), ttl=60)
        (record,) = await store.read(key)
        assert record.expiry is not None and record.expiry <= self.ttl
        (record,) = await store.read(longer)
        assert record.expiry is not None and self.ttl < record.expiry <= 60
        await self.eventually(lambda: self._missing(store, key), "the record written with expiry= expiring")
        assert [r.key for r in await store.read(longer)] == [longer]

    @requires("ttl")
    async def test_s23_rewrite_without_ttl_makes_record_permanent(self, store: Store) -> None:
        """Writing a key again without a TTL clears its expiry."""
        key = self.names("k")
        await store.write(Record(key, b"v"), ttl=self.ttl)
        await store.write(Record(key, b"w"))
        (record,) = await store.read(key)
        assert record.expiry is None
        await asyncio.sleep(self.ttl + self.quiet_period)  # the old deadline must pass for this check to mean anything
        assert [r.value for r in await store.read(key)] == [b"w"]

    @requires("ttl")
    async def test_s24_bad_ttl_raises_bad_request(self, store: Store) -> None:
        """A TTL that is zero, negative, infinite, NaN or not a number raises BadRequest and writes nothing."""
        key = self.names("k")
        for ttl in (0, -1, math.inf, math.nan, "5", True):
            with pytest.raises(BadRequest):
                await store.write(Record(key, b"v"), ttl=ttl)  # type: ignore[arg-type]
            with pytest.raises(BadRequest):
                await store.write(Record(key, b"v", expiry=ttl))  # type: ignore[arg-type]
        assert await store.list(prefix=self.names.prefix) == []

    @absent("ttl")
    async def test_s25_ttl_without_capability_raises_not_supported(self, store: Store) -> None:
        """Without "ttl", a write with ttl= or Record.expiry raises NotSupported and writes nothing."""
        key = self.names("k")
        with pytest.raises(NotSupported):
            await store.write(Record(key, b"v"), ttl=5)
        with pytest.raises(NotSupported):
            await store.write(Record(key, b"v", expiry=5))
        with pytest.raises(NotSupported):
            await store.write_many([Record(key, b"v")], ttl=5)
        assert await store.list(prefix=self.names.prefix) == []

    # -- numeric bounds --------------------------------------------------------------------

    async def test_s26_limit_and_offset_past_64_bits_raise_bad_request_naming_them(self, store: Store) -> None:
        """limit/offset above 2**63 - 1 raise BadRequest naming the argument (not OverflowError); the max works."""
        p = self.names.prefix
        await self.write_all(store, [p + "a", p + "b"])
        for name in ("limit", "offset"):
            for value in (MAX_PAGE + 1, 2**64, 10**30):
                paging: dict[str, Any] = {name: value}
                with pytest.raises(BadRequest) as listed:
                    await store.list(prefix=p, **paging)
                with pytest.raises(BadRequest) as read:
                    await store.read(p, prefix=True, **paging)
                for caught in (listed, read):
                    assert name in str(caught.value), f"BadRequest for {name}={value} does not name it: {caught.value}"
        assert await store.list(prefix=p, limit=MAX_PAGE) == [p + "a", p + "b"]
        assert await store.list(prefix=p, offset=MAX_PAGE, limit=MAX_PAGE) == []
        assert [r.key for r in await store.read(p, prefix=True, limit=MAX_PAGE, offset=1)] == [p + "b"]
        assert await store.read(p, prefix=True, offset=MAX_PAGE) == []

    @requires("ttl")
    async def test_s27_ttl_past_max_ttl_raises_bad_request_and_writes_nothing(self, store: Store) -> None:
        """A TTL above MAX_TTL (100 years), or too big for a float, raises BadRequest naming it and writes nothing."""
        key = self.names("k")
        for ttl in (MAX_TTL * 2, 1e300, 2**70, 10**400):
            with pytest.raises(BadRequest) as caught:
                await store.write(Record(key, b"v"), ttl=ttl)
            shown = str(ttl)[:12]
            assert "ttl" in str(caught.value), f"BadRequest for ttl={shown} does not name it: {caught.value}"
            with pytest.raises(BadRequest) as caught:
                await store.write(Record(key, b"v", expiry=ttl))
            assert "expiry" in str(caught.value), f"BadRequest for expiry={shown} does not name it: {caught.value}"
            with pytest.raises(BadRequest):
                await store.write_many([Record(self.names("ok"), b"v"), Record(key, b"v")], ttl=ttl)
        assert await store.list(prefix=self.names.prefix) == []
        await store.write(Record(key, b"v"), ttl=MAX_TTL)
        (record,) = await store.read(key)
        assert record.expiry is not None and MAX_TTL - 3600 < record.expiry <= MAX_TTL, f"expiry {record.expiry!r}"

    # -- lifecycle, scope and arguments ----------------------------------------------------

    async def test_s28_use_before_start_and_after_close_raises_connection_closed(self) -> None:
        """Every operation on a store never started, or closed, raises ConnectionClosed and touches nothing."""
        key = self.names("k")
        unstarted = await self.make()
        self.later(unstarted.close)
        record = Record(key, b"v")
        operations: dict[str, Callable[[Store], Awaitable[Any]]] = {
            "read": lambda s: s.read(key),
            "write": lambda s: s.write(record),
            "delete": lambda s: s.delete(key),
            "list": lambda s: s.list(prefix=self.names.prefix),
            "read_many": lambda s: s.read_many([key]),
            "write_many": lambda s: s.write_many([record]),
            "delete_many": lambda s: s.delete_many([key]),
        }
        for name, call in operations.items():
            with pytest.raises(ConnectionClosed):
                await call(unstarted)
                pytest.fail(f"{name}() on a store never started did not raise ConnectionClosed")
        closed = await self.another()
        self.clean_up(closed)
        await closed.write(Record(key, b"kept"))
        await closed.close()
        for name, call in operations.items():
            with pytest.raises(ConnectionClosed):
                await call(closed)
                pytest.fail(f"{name}() on a closed store did not raise ConnectionClosed")
        await closed.start()
        assert [r.value for r in await closed.read(key)] == [b"kept"], "a write after close() changed the store"

    @requires("ttl")
    async def test_s29_an_expired_record_is_invisible_to_every_operation(self, store: Store) -> None:
        """Once expired, a record is gone from exact, prefix and suffix reads, list, read_many and its table."""
        p = self.names.prefix
        key, other = self.names("short.x"), self.names("long.x")
        await store.write(Record(key, b"v"), ttl=self.ttl)
        await store.write(Record(other, b"v"), ttl=600)
        await self.eventually(lambda: self._missing(store, key), "the record expiring")
        assert [r.key for r in await store.read(p, prefix=True)] == [other], "a prefix read returned it"
        assert [r.key for r in await store.read("short.x", suffix=True) if r.key.startswith(p)] == [], (
            "a suffix read returned it"
        )
        assert [r.key for r in await store.read(p, prefix=True, suffix=False, limit=5)] == [other]
        assert await store.list(prefix=p) == [other], "list() returned it"
        assert [k for k in await store.list(suffix="short.x") if k.startswith(p)] == [], "list(suffix=) returned it"
        found = [None if r is None else r.key for r in await store.read_many([key, other])]
        assert found == [None, other], f"read_many() returned the expired record: {found}"
        await store.delete(key)  # deleting what expired is deleting a missing key: no error

    async def test_s30_bad_scope_and_arguments_raise_bad_request_naming_them(self, store: Store) -> None:
        """An empty database or table, non-bool prefix/suffix flags, non-str patterns, bad key lists: BadRequest."""
        key = self.names("k")
        await store.write(Record(key, b"v"))
        named: list[tuple[str, Any]] = [
            ("table", lambda: store.read(key, table="")),
            ("table", lambda: store.write(Record(key, b"w"), table="")),
            ("table", lambda: store.list(table="")),
            ("database", lambda: store.read(key, database="")),
            ("database", lambda: store.write(Record(key, b"w"), database="")),
            ("database", lambda: store.delete(key, database="")),
            ("prefix", lambda: store.read(key, prefix="yes")),  # type: ignore[arg-type]
            ("suffix", lambda: store.read(key, suffix=1)),  # type: ignore[arg-type]
            ("prefix", lambda: store.list(prefix=None)),  # type: ignore[arg-type]
            ("suffix", lambda: store.list(suffix=3)),  # type: ignore[arg-type]
            ("key", lambda: store.delete("")),
            ("keys", lambda: store.read_many(key)),
            ("keys", lambda: store.delete_many(key)),
        ]
        for argument, call in named:
            with pytest.raises(BadRequest) as caught:
                await call()
            assert argument in str(caught.value), f"BadRequest does not name {argument!r}: {caught.value}"
        with pytest.raises(BadRequest):
            await store.delete_many([key, ""])
        for record in (
            Record(key, bytearray(b"w")),  # type: ignore[arg-type]
            Record(key, b"w", metadata=["not", "a", "dict"]),  # type: ignore[arg-type]
            Record(key, b"w", metadata={1: "int key"}),  # type: ignore[dict-item]
        ):
            with pytest.raises(BadRequest):
                await store.write(record)
        assert [r.value for r in await store.read(key)] == [b"v"], "a refused call changed the record"

    async def test_s31_naming_the_default_scope_is_the_same_as_none(self, store: Store) -> None:
        """database=/table= equal to the store's defaults name the same records as leaving them out."""
        key = self.names("k")
        database, table = store.options.database, store.options.table
        await store.write(Record(key, b"v"), database=database, table=table)
        assert [r.value for r in await store.read(key)] == [b"v"]
        assert await store.list(prefix=self.names.prefix) == [key]
        await store.delete(key)
        assert await store.list(prefix=self.names.prefix, database=database, table=table) == []

    @requires("ttl")
    async def test_s32_a_record_read_back_can_be_written_again_with_its_time_left(self, store: Store) -> None:
        """A record read from the store, expiry included, can be written back; it keeps at most its time left."""
        key, table = self.names("k"), self.names("copy")
        self.clean_up(store, table=table)
        await store.write(Record(key, b"v", metadata={"m": 1}), ttl=100)
        (read,) = await store.read(key)
        await store.write(read, table=table)
        (copy,) = await store.read(key, table=table)
        assert (copy.value, copy.metadata) == (b"v", {"m": 1})
        assert copy.expiry is not None and 0 < copy.expiry <= 100, f"copy's expiry is {copy.expiry!r}"

    async def test_s33_batches_of_any_size_and_empty_ones(self, store: Store) -> None:
        """write_many/read_many/delete_many take 1200 keys in one call, and empty batches do nothing."""
        p = self.names.prefix
        keys = [f"{p}{i:04d}" for i in range(1200)]
        await store.write_many([Record(k, k.encode()) for k in keys])
        found = await store.read_many(keys)
        assert [None if r is None else r.value for r in found] == [k.encode() for k in keys]
        assert await store.list(prefix=p) == keys
        assert await store.read_many([]) == []
        await store.write_many([])
        await store.delete_many([])
        await store.delete_many(keys)
        assert await store.list(prefix=p) == []

    async def test_s34_metadata_reads_back_as_json_would(self, store: Store) -> None:
        """Metadata comes back as JSON would return it: a tuple is read back as a list."""
        key = self.names("k")
        await store.write(Record(key, b"v", metadata={"t": (1, 2), "n": [(3,)]}))
        (record,) = await store.read(key)
        assert record.metadata == {"t": [1, 2], "n": [[3]]}

    @requires("ttl")
    async def test_s35_write_many_applies_its_ttl_to_every_record(self, store: Store) -> None:
        """write_many(records, ttl=) gives every record that TTL; of two records with one key the later wins."""
        a, b = self.names("a"), self.names("b")
        await store.write_many([Record(a, b"1"), Record(b, b"x"), Record(a, b"2")], ttl=self.ttl)
        (record,) = await store.read(a)
        assert record.value == b"2"
        for key in (a, b):
            (record,) = await store.read(key)
            assert record.expiry is not None and 0 < record.expiry <= self.ttl, f"{key}: expiry {record.expiry!r}"

        async def expired() -> bool:
            return await store.list(prefix=self.names.prefix) == []

        await self.eventually(expired, "the batch expiring")

    async def _missing(self, store: Store, key: str) -> bool:
        try:
            await store.read(key)
        except RecordNotFound:
            return True
        return False
