"""What the built-in stores add to the contract: their error messages, the base's bulk helpers, restarts.

The contract itself (cases S01-S35) is micro-conformance's ``StoreContract``, run
for memory and sqlite by ``core/tests/test_conformance.py``; these check the
wording of the built-ins' errors and what the contract leaves to each store.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from micro.errors import BadRequest, ConnectionClosed, NotSupported
from micro.store import Record, Store

from .conftest import make_store


def rec(key: str, value: bytes = b"v", **kw: object) -> Record:
    return Record(key=key, value=value, **kw)  # type: ignore[arg-type]


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
