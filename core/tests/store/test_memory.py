"""MemoryStore beyond the shared contract."""

from __future__ import annotations

from micro import create
from micro.store import Record, StoreOptions
from micro.store.memory import MemoryStore


async def test_memory_is_the_default_store() -> None:
    store = create("store", environ={})
    assert isinstance(store, MemoryStore)
    assert store.options == StoreOptions()


async def test_instances_do_not_share_records() -> None:
    async with MemoryStore() as one, MemoryStore() as two:
        await one.write(Record(key="k", value=b"v"))
        assert await two.list() == []
        assert await one.list() == ["k"]
