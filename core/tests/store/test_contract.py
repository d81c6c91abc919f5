"""The Store contract, run against every embedded implementation (memory, sqlite)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from micro.errors import BadRequest, ConnectionClosed, NotFound, NotSupported, RecordNotFound
from micro.store import Record, Store

from .conftest import eventually, make_store


def rec(key: str, value: bytes = b"v", **kw: object) -> Record:
    return Record(key=key, value=value, **kw)  # type: ignore[arg-type]


# -- exact reads, writes, deletes ------------------------------------------------------------------


async def test_write_then_read_round_trips_value_and_metadata(store: Store) -> None:
    meta = {"type": "order", "n": 3, "ratio": 0.5, "ok": True, "none": None, "tags": ["a", "b"], "nested": {"x": 1}}
    await store.write(rec("k1", b"\x00\xffbinary", metadata=meta))
    (got,) = await store.read("k1")
    assert got == Record(key="k1", value=b"\x00\xffbinary", metadata=meta, expiry=None)


async def test_empty_and_large_values(store: Store) -> None:
    big = bytes(range(256)) * 4096 + b"end"  # > 1 MiB
    await store.write(rec("empty", b""))
    await store.write(rec("big", big))
    assert (await store.read("empty"))[0].value == b""
    assert (await store.read("big"))[0].value == big


async def test_exact_read_of_missing_key_raises_record_not_found_naming_it(store: Store) -> None:
    with pytest.raises(RecordNotFound, match="nope") as info:
        await store.read("nope")
    assert isinstance(info.value, NotFound)
    assert isinstance(info.value, LookupError)
    assert info.value.code == 404


async def test_overwrite_replaces_value_and_metadata(store: Store) -> None:
    await store.write(rec("k", b"one", metadata={"a": 1}))
    await store.write(rec("k", b"two", metadata={"b": 2}))
    (got,) = await store.read("k")
    assert (got.value, got.metadata) == (b"two", {"b": 2})
    assert await store.list() == ["k"]


async def test_delete_removes_and_missing_delete_is_a_no_op(store: Store) -> None:
    await store.write(rec("k"))
    await store.delete("k")
    with pytest.raises(RecordNotFound):
        await store.read("k")
    await store.delete("k")
    await store.delete("never-written")


async def test_records_are_copied_in_and_out(store: Store) -> None:
    meta: dict[str, object] = {"list": [1]}
    record = rec("k", b"v", metadata=meta)
    await store.write(record)
    record.value = b"changed"
    meta["list"].append(2)  # type: ignore[attr-defined]
    (got,) = await store.read("k")
    assert (got.value, got.metadata) == (b"v", {"list": [1]})
    got.metadata["list"].append(3)
    assert (await store.read("k"))[0].metadata == {"list": [1]}


async def test_metadata_reads_back_as_json_would(store: Store) -> None:
    await store.write(rec("k", metadata={"t": (1, 2)}))
    assert (await store.read("k"))[0].metadata == {"t": [1, 2]}


async def test_keys_with_wildcards_separators_and_unicode(store: Store) -> None:
    keys = ["a%b", "a_b", "a*b", "a?b", "a[b]", "a\\b", "a/b", "ä€😀", "a\x00b", "A"]
    for key in keys:
        await store.write(rec(key, key.encode()))
    for key in keys:
        assert (await store.read(key))[0].value == key.encode()
    assert await store.list() == sorted(keys)
    # A LIKE-based backend that forgot to escape would match "a_b" and "a%b" for these.
    assert await store.list(prefix="a_") == ["a_b"]
    assert await store.list(prefix="a%") == ["a%b"]
    assert await store.list(suffix="%b") == ["a%b"]
    assert [r.key for r in await store.read("a*", prefix=True)] == ["a*b"]
    assert await store.list(prefix="a") == sorted(k for k in keys if k.startswith("a"))


# -- prefix / suffix reads and lists -----------------------------------------------------------------


@pytest.fixture
async def filled(store: Store) -> Store:
    for key in ["user/1/name", "user/1/mail", "user/2/name", "user/10/name", "order/1", "zzz"]:
        await store.write(rec(key, key.encode()))
    return store


async def test_prefix_read_returns_matches_sorted(filled: Store) -> None:
    got = await filled.read("user/1", prefix=True)
    assert [r.key for r in got] == ["user/1/mail", "user/1/name", "user/10/name"]
    assert [r.value for r in got] == [b"user/1/mail", b"user/1/name", b"user/10/name"]


async def test_suffix_read_and_both(filled: Store) -> None:
    assert [r.key for r in await filled.read("/name", suffix=True)] == ["user/1/name", "user/10/name", "user/2/name"]
    assert [r.key for r in await filled.read("zzz", prefix=True, suffix=True)] == ["zzz"]
    assert await filled.read("user", prefix=True, suffix=True) == []


async def test_pattern_read_with_no_match_is_empty_not_an_error(filled: Store) -> None:
    assert await filled.read("nothing/", prefix=True) == []
    assert await filled.read("/nothing", suffix=True) == []


async def test_empty_prefix_reads_the_whole_table(filled: Store) -> None:
    assert len(await filled.read("", prefix=True)) == 6


async def test_read_limit_and_offset_page_after_filtering(filled: Store) -> None:
    keys = ["user/1/mail", "user/1/name", "user/10/name", "user/2/name"]
    pages = [[r.key for r in await filled.read("user/", prefix=True, limit=2, offset=o)] for o in (0, 2, 4, 99)]
    assert pages == [keys[:2], keys[2:], [], []]
    assert [r.key for r in await filled.read("user/", prefix=True, limit=0)] == []
    assert [r.key for r in await filled.read("user/", prefix=True, offset=3)] == keys[3:]


async def test_list_filters_sorts_and_pages(filled: Store) -> None:
    assert await filled.list() == sorted(
        ["user/1/name", "user/1/mail", "user/2/name", "user/10/name", "order/1", "zzz"]
    )
    assert await filled.list(prefix="user/1") == ["user/1/mail", "user/1/name", "user/10/name"]
    assert await filled.list(suffix="/name") == ["user/1/name", "user/10/name", "user/2/name"]
    assert await filled.list(prefix="user/1", suffix="name") == ["user/1/name", "user/10/name"]
    assert await filled.list(prefix="user/", limit=2, offset=1) == ["user/1/name", "user/10/name"]
    assert await filled.list(offset=100) == []
    assert await filled.list(prefix="none") == []


async def test_list_of_an_empty_table_is_empty(store: Store) -> None:
    assert await store.list(table="empty") == []


async def test_exact_read_ignores_limit_and_offset(store: Store) -> None:
    await store.write(rec("k"))
    assert [r.key for r in await store.read("k", limit=0, offset=5)] == ["k"]


# -- databases and tables ----------------------------------------------------------------------------


async def test_tables_and_databases_isolate_keys(store: Store) -> None:
    await store.write(rec("k", b"default"))
    await store.write(rec("k", b"t2"), table="t2")
    await store.write(rec("k", b"db2"), database="db2")
    await store.write(rec("k", b"db2t2"), database="db2", table="t2")
    assert (await store.read("k"))[0].value == b"default"
    assert (await store.read("k", table="t2"))[0].value == b"t2"
    assert (await store.read("k", database="db2"))[0].value == b"db2"
    assert (await store.read("k", database="db2", table="t2"))[0].value == b"db2t2"
    await store.delete("k", table="t2")
    assert (await store.read("k"))[0].value == b"default"
    with pytest.raises(RecordNotFound):
        await store.read("k", table="t2")
    assert await store.list(database="db2") == ["k"]
    assert await store.list(table="other") == []


async def test_explicit_default_scope_is_the_same_as_none(store: Store) -> None:
    await store.write(rec("k"), database="micro", table="micro")
    assert await store.list() == ["k"]


async def test_options_choose_the_default_scope(kind: str, tmp_path: Path) -> None:
    async with make_store(kind, tmp_path, database="app", table="orders") as s:
        await s.write(rec("k"))
        assert await s.list(database="app", table="orders") == ["k"]
        assert await s.list(database="micro", table="micro") == []


# -- expiry --------------------------------------------------------------------------------------------


async def test_ttl_reports_time_left_then_expires_on_read_and_list(store: Store) -> None:
    await store.write(rec("short"), ttl=0.3)
    await store.write(rec("long"), ttl=600)
    (got,) = await store.read("short")
    assert got.expiry is not None
    assert 0 < got.expiry <= 0.3

    async def gone() -> None:
        try:
            await store.read("short")
        except RecordNotFound:
            return
        raise AssertionError("still there")

    await eventually(gone)
    assert await store.list() == ["long"]
    assert [r.key for r in await store.read("", prefix=True)] == ["long"]
    (long,) = await store.read("long")
    assert long.expiry is not None
    assert 590 < long.expiry <= 600


async def test_record_expiry_is_the_ttl_and_the_argument_wins(store: Store) -> None:
    await store.write(rec("a", expiry=100.0))
    await store.write(rec("b", expiry=100.0), ttl=500)
    a = (await store.read("a"))[0].expiry
    b = (await store.read("b"))[0].expiry
    assert a is not None
    assert b is not None
    assert 90 < a <= 100
    assert 490 < b <= 500


async def test_rewrite_without_ttl_clears_expiry(store: Store) -> None:
    await store.write(rec("k"), ttl=0.2)
    await store.write(rec("k", b"permanent"))
    assert (await store.read("k"))[0].expiry is None
    assert (await store.read("k"))[0].value == b"permanent"


async def test_no_ttl_means_no_expiry(store: Store) -> None:
    await store.write(rec("k"))
    assert (await store.read("k"))[0].expiry is None


async def test_a_read_record_can_be_written_back(store: Store) -> None:
    await store.write(rec("k", b"v", metadata={"m": 1}), ttl=100)
    (got,) = await store.read("k")
    await store.write(got, table="copy")
    (copy,) = await store.read("k", table="copy")
    assert (copy.value, copy.metadata) == (b"v", {"m": 1})
    assert copy.expiry is not None
    assert copy.expiry <= 100


# -- bulk ------------------------------------------------------------------------------------------------


async def test_bulk_write_read_delete(store: Store) -> None:
    assert {"bulk", "ttl"} <= store.capabilities
    await store.write_many([rec(f"k{i}", str(i).encode()) for i in range(5)], table="bulk")
    got = await store.read_many(["k3", "missing", "k0", "k3"], table="bulk")
    assert [None if r is None else r.value for r in got] == [b"3", None, b"0", b"3"]
    await store.delete_many(["k0", "k1", "missing"], table="bulk")
    assert await store.list(table="bulk") == ["k2", "k3", "k4"]


async def test_bulk_many_keys_and_empty_batches(store: Store) -> None:
    await store.write_many([rec(f"{i:04d}") for i in range(1200)])
    got = await store.read_many([f"{i:04d}" for i in range(1200)])
    assert all(r is not None for r in got)
    assert len(await store.list()) == 1200
    assert await store.read_many([]) == []
    await store.write_many([])
    await store.delete_many([])


async def test_bulk_write_with_ttl_and_later_duplicate_winning(store: Store) -> None:
    await store.write_many([rec("a", b"1"), rec("a", b"2")], ttl=100)
    (got,) = await store.read("a")
    assert got.value == b"2"
    assert got.expiry is not None


async def test_bulk_write_with_one_bad_record_writes_nothing(store: Store) -> None:
    with pytest.raises(BadRequest):
        await store.write_many([rec("good"), rec("bad", "not bytes")])  # type: ignore[arg-type]
    assert await store.list() == []


async def test_default_bulk_helpers_loop_over_single_operations(tmp_path: Path) -> None:
    """The base-class helpers (used by backends without "bulk") give the same results."""
    inner = make_store("memory", tmp_path)

    class Plain(Store):
        capabilities = frozenset({"ttl"})
        _read = inner._read
        _read_matching = inner._read_matching
        _write = inner._write
        _delete = inner._delete
        _list = inner._list

    plain = Plain()
    async with inner, plain:
        await plain.write_many([rec("a"), rec("b")], ttl=50)
        got = await plain.read_many(["b", "x"])
        assert got[0] is not None
        assert got[0].key == "b"
        assert got[1] is None
        await plain.delete_many(["a", "x"])
        assert await plain.list() == ["b"]
        with pytest.raises(BadRequest):
            await plain.write_many([rec("ok"), rec("")])
        assert await plain.list() == ["b"]
        Plain.capabilities = frozenset()
        with pytest.raises(NotSupported, match="'ttl'"):
            await plain.write_many([rec("ok")], ttl=5)
        assert await plain.list() == ["b"]


# -- bad input --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "ttl", "message"),
    [
        (rec(""), None, "key must not be empty"),
        (rec("k", "text"), None, "must be bytes, not str"),  # type: ignore[arg-type]
        (rec("k", bytearray(b"x")), None, "must be bytes, not bytearray"),  # type: ignore[arg-type]
        (rec("\ud800"), None, "lone surrogate"),
        (rec("k", metadata={"s": {1, 2}}), None, "not JSON-compatible"),
        (rec("k", metadata={1: "int key"}), None, "not JSON-compatible"),
        (rec("k", metadata=["not", "a", "dict"]), None, "must be a dict"),
        (rec("k"), -1, "positive"),
        (rec("k"), 0, "positive"),
        (rec("k"), math.nan, "positive"),
        (rec("k"), math.inf, "positive"),
        (rec("k"), "5s", "number of seconds"),
        (rec("k", expiry=-3.0), None, "record expiry must be a positive"),
        ("not a record", None, "expected a micro.store.Record"),
    ],
)
async def test_bad_writes_raise_bad_request_and_write_nothing(
    store: Store, record: object, ttl: object, message: str
) -> None:
    with pytest.raises(BadRequest, match=message):
        await store.write(record, ttl=ttl)  # type: ignore[arg-type]
    assert await store.list() == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": ""}, "must not be empty"),
        ({"key": 5}, "must be a str"),
        ({"key": "k", "prefix": True, "limit": -1}, "limit must not be negative"),
        ({"key": "k", "prefix": True, "offset": -1}, "offset must not be negative"),
        ({"key": "k", "prefix": True, "limit": 1.5}, "limit must be an int"),
        ({"key": "k", "prefix": "yes"}, "prefix must be a bool"),
        ({"key": "k", "table": ""}, "table must not be empty"),
        ({"key": "k", "database": ""}, "database must not be empty"),
    ],
)
async def test_bad_reads_raise_bad_request(store: Store, kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        await store.read(**kwargs)  # type: ignore[arg-type]


async def test_bad_list_delete_and_bulk_arguments(store: Store) -> None:
    with pytest.raises(BadRequest, match="limit must not be negative"):
        await store.list(limit=-1)
    with pytest.raises(BadRequest, match="prefix must be a str"):
        await store.list(prefix=None)  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="key must not be empty"):
        await store.delete("")
    with pytest.raises(BadRequest, match="keys must be a list"):
        await store.read_many("abc")
    with pytest.raises(BadRequest, match="key must not be empty"):
        await store.delete_many(["ok", ""])


async def test_operations_need_a_started_store(kind: str, tmp_path: Path) -> None:
    s = make_store(kind, tmp_path)
    with pytest.raises(ConnectionClosed, match="not started"):
        await s.write(rec("k"))
    async with s:
        await s.write(rec("k"))
    with pytest.raises(ConnectionClosed):
        await s.read("k")
    await s.close()  # idempotent
    async with s:  # restartable, data kept
        assert await s.list() == ["k"]
