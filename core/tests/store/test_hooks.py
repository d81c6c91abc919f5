"""The Store base enforces the contract: a backend that implements only the hooks gets it for free.

``Bare`` below is the smallest possible backend: a dict, the five abstract hooks and a translation,
no checks of its own. Each test fails if the base stops enforcing one shared rule.
"""

from __future__ import annotations

import asyncio
import builtins
from typing import Any

import pytest
from micro.errors import BackendUnavailable, BadRequest, ConnectionClosed, MicroError, NotSupported, RecordNotFound
from micro.store import Record, Store, StoreOptions
from micro.store.base import KeyFilter


class DriverError(Exception):
    """What a backend's driver raises."""


class Bare(Store):
    capabilities = frozenset({"ttl"})

    def __init__(self, options: StoreOptions | None = None) -> None:
        super().__init__(options)
        self.rows: dict[tuple[str, str, str], Record] = {}
        self.calls: builtins.list[tuple[Any, ...]] = []
        self.starts = 0
        self.closes = 0
        self.fail_with: Exception | None = None

    async def _start(self) -> None:
        self.starts += 1
        await asyncio.sleep(0)  # concurrent start() calls overlap here

    async def _close(self) -> None:
        self.closes += 1

    def _called(self, *call: Any) -> None:
        self.calls.append(call)
        if self.fail_with is not None:
            raise self.fail_with

    async def _read(self, key: str, database: str, table: str) -> Record | None:
        self._called("read", key, database, table)
        return self.rows.get((database, table, key))

    async def _read_matching(self, wanted: KeyFilter, database: str, table: str) -> builtins.list[Record]:
        keys = await self._list(wanted, database, table)
        return [self.rows[database, table, k] for k in keys]

    async def _write(self, record: Record, ttl: float | None, database: str, table: str) -> None:
        self._called("write", record.key, ttl, database, table)
        self.rows[database, table, record.key] = Record(record.key, record.value)

    async def _delete(self, key: str, database: str, table: str) -> None:
        self._called("delete", key, database, table)
        self.rows.pop((database, table, key), None)

    async def _list(self, wanted: KeyFilter, database: str, table: str) -> builtins.list[str]:
        self._called("list", wanted, database, table)
        return wanted.select(k for d, t, k in self.rows if (d, t) == (database, table))

    def _translate(self, exc: Exception) -> MicroError | None:
        return BackendUnavailable(f"bare: {exc}") if isinstance(exc, DriverError) else None


async def test_operations_before_start_and_after_close_raise_without_reaching_a_hook() -> None:
    store = Bare()
    with pytest.raises(ConnectionClosed, match="Bare is not started"):
        await store.write(Record("k", b"v"))
    with pytest.raises(ConnectionClosed, match="not started"):
        await store.read_many(["k"])
    await store.start()
    await store.write(Record("k", b"v"))
    await store.close()
    for call in (
        store.read("k"),
        store.read("", prefix=True),
        store.write(Record("k", b"v")),
        store.delete("k"),
        store.list(),
        store.read_many(["k"]),
        store.write_many([Record("k", b"v")]),
        store.delete_many(["k"]),
    ):
        with pytest.raises(ConnectionClosed, match="Bare is closed; start"):
            await call
    assert store.calls == [("write", "k", None, "micro", "micro")]
    await store.start()  # restartable
    assert [r.key for r in await store.read("k")] == ["k"]


async def test_start_and_close_run_their_hooks_once() -> None:
    store = Bare()
    await store.close()  # closing a store never started does not reach the hook
    await asyncio.gather(store.start(), store.start(), store.start())
    await store.start()
    assert store.starts == 1
    await asyncio.gather(store.close(), store.close())
    assert store.closes == 1
    async with store:
        assert store.starts == 2
    assert store.closes == 2


async def test_bad_input_is_refused_before_a_hook_runs() -> None:
    async with Bare() as store:
        bad = [
            store.read(""),
            store.read("k", limit=-1),
            store.read(3, prefix=True),  # type: ignore[arg-type]
            store.write(Record("k", "text")),  # type: ignore[arg-type]
            store.write(Record("k", b"v"), ttl=0),
            store.write(Record("k", b"v", metadata={"x": {1}})),
            store.delete("\ud800"),
            store.list(suffix=None),  # type: ignore[arg-type]
            store.read_many("ab"),
            store.write_many([Record("ok", b"v"), Record("", b"v")]),
            store.delete_many(["ok", ""]),
            store.read("k", database=""),
            store.write(Record("k", b"v"), table=7),  # type: ignore[arg-type]
        ]
        for call in bad:
            with pytest.raises(BadRequest):
                await call
        assert store.calls == []


async def test_hooks_get_the_scope_with_the_defaults_filled_in() -> None:
    async with Bare(StoreOptions(database="db", table="tb")) as store:
        await store.write(Record("k", b"v"))
        await store.write(Record("k", b"v"), database="other")
        await store.delete("k", table="t2")
    assert store.calls == [
        ("write", "k", None, "db", "tb"),
        ("write", "k", None, "other", "tb"),
        ("delete", "k", "db", "t2"),
    ]


async def test_an_exact_miss_raises_record_not_found_naming_key_and_scope() -> None:
    async with Bare() as store:
        with pytest.raises(RecordNotFound, match=r"record 'nope' not found in micro/micro"):
            await store.read("nope")
        assert await store.read("nope", prefix=True) == []


async def test_the_effective_ttl_reaches_the_hook_and_needs_the_capability() -> None:
    async with Bare() as store:
        await store.write(Record("a", b"v", expiry=5))
        await store.write(Record("b", b"v", expiry=5), ttl=9)
        assert [c[2] for c in store.calls] == [5.0, 9.0]
        store.calls.clear()
        type(store).capabilities = frozenset()
        try:
            with pytest.raises(NotSupported, match="Bare does not support 'ttl'"):
                await store.write(Record("k", b"v"), ttl=5)
            with pytest.raises(NotSupported, match="'ttl'"):
                await store.write_many([Record("k", b"v"), Record("e", b"v", expiry=1)])
            await store.write(Record("k", b"v"))  # no TTL: fine without the capability
        finally:
            type(store).capabilities = frozenset({"ttl"})
        assert store.calls == [("write", "k", None, "micro", "micro")]


async def test_driver_errors_are_translated_and_others_pass_through() -> None:
    async with Bare() as store:
        store.fail_with = DriverError("socket gone")
        for call in (store.read("k"), store.write(Record("k", b"v")), store.delete("k"), store.list()):
            with pytest.raises(BackendUnavailable, match="bare: socket gone") as caught:
                await call
            assert isinstance(caught.value.__cause__, DriverError)
        store.fail_with = KeyError("a bug")
        with pytest.raises(KeyError):
            await store.read("k")
        store.fail_with = RecordNotFound("micro's own")
        with pytest.raises(RecordNotFound, match="micro's own"):
            await store.delete("k")


async def test_batch_hooks_default_to_one_key_at_a_time() -> None:
    async with Bare() as store:
        await store.write_many([Record("a", b"1"), Record("b", b"2"), Record("a", b"3")])
        found = await store.read_many(["a", "x", "a"])
        assert [r and r.value for r in found] == [b"3", None, b"3"]
        await store.delete_many(["a", "x"])
        assert await store.list() == ["b"]
        assert [c[0] for c in store.calls].count("write") == 3
