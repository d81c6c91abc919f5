"""The etcd config source beyond the contract: layout, atomic writes, limits, the loader, errors."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from collections.abc import AsyncIterator, Callable

import pytest
from micro.config import ChangeSet, Config, MalformedConfig
from micro.errors import BackendUnavailable, BadRequest, InvalidOption
from micro_etcd._client import prefix_end
from micro_etcd.config import MAX_OPERATIONS, EtcdSource
from micro_etcd.options import EtcdSourceOptions


@pytest.fixture
async def source(etcd_address: str, unique: Callable[[str], str]) -> AsyncIterator[EtcdSource]:
    prefix = f"micro-test/config/{unique('cfg')}/"
    async with EtcdSource(EtcdSourceOptions(address=(etcd_address,), prefix=prefix)) as source:
        yield source
        client = await source._client()
        await client.delete(prefix, prefix_end(prefix), "cleaning up")


async def test_keys_are_paths_and_values_json(source: EtcdSource) -> None:
    client = await source._client()
    p = source.prefix
    for key, value in [("database/host", "db"), ("database/port", "5432"), ("flags", '{"a": true}'), ("x/", "")]:
        await client.put(p + key, value, "seeding")
    await client.put("micro-test/config/elsewhere", "1", "seeding")  # outside the prefix
    data = (await source.read()).data
    assert data == {"database": {"host": "db", "port": 5432}, "flags": {"a": True}}


async def test_write_is_one_change_for_a_watcher(source: EtcdSource) -> None:
    """A write deletes stale keys and puts new ones in one transaction: a watcher never sees a half-written state."""
    await source.write(ChangeSet.of({"a": {"b": 1, "c": 2}, "old": "x"}, "test"))
    watcher = await source.watch()
    try:
        await source.write(ChangeSet.of({"a": {"b": 3}, "new": "y"}, "test"))
        changed = await asyncio.wait_for(anext(watcher), 10)
        assert changed.data == {"a": {"b": 3}, "new": "y"}
        client = await source._client()
        _, kvs = await client.range(source.prefix, prefix_end(source.prefix), "test")
        assert len({kv.mod_revision for kv in kvs}) == 1, "the write took more than one revision"
    finally:
        await watcher.stop()


async def test_strings_that_look_like_json_read_back_as_strings(source: EtcdSource) -> None:
    data = {"port": "5432", "flag": "true", "text": "plain", "n": 5, "nothing": None}
    await source.write(ChangeSet.of(data, "test"))
    assert (await source.read()).data == data


async def test_a_write_over_the_transaction_limit_is_refused_whole(source: EtcdSource) -> None:
    await source.write(ChangeSet.of({"keep": 1}, "test"))
    with pytest.raises(BadRequest, match="operations"):
        await source.write(ChangeSet.of({f"k{i}": i for i in range(MAX_OPERATIONS + 1)}, "test"))
    with pytest.raises(BadRequest, match="'/'"):
        await source.write(ChangeSet.of({"a/b": 1}, "test"))
    assert (await source.read()).data == {"keep": 1}


async def test_a_key_that_is_not_utf8_is_malformed(source: EtcdSource) -> None:
    client = await source._client()
    await client.put(source.prefix + "bad", b"\xff\xfe", "seeding")
    with pytest.raises(MalformedConfig, match="bad"):
        await source.read()


async def test_the_loader_follows_the_source(source: EtcdSource) -> None:
    """micro's Config loader reads the source and sees a later write through its watcher."""
    await source.write(ChangeSet.of({"database": {"host": "a"}}, "test"))
    config = Config(source)
    await config.load()
    try:
        assert config.get("database.host") == "a"
        async with config.watch("database.host") as changes:
            await source.write(ChangeSet.of({"database": {"host": "b"}}, "test"))
            change = await asyncio.wait_for(anext(changes), 10)
        assert (change.old, change.new) == ("a", "b")
        assert config.get("database.host") == "b"
    finally:
        await config.close()


@pytest.mark.offline
async def test_unreachable_server_names_address_and_variable() -> None:
    source = EtcdSource(EtcdSourceOptions(address=("127.0.0.1:1",), timeout=2))
    with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1:1 \(MICRO_CONFIG_ADDRESS\)"):
        await source.read()


async def test_a_watcher_reports_a_lost_server(private_etcd: tuple[str, subprocess.Popen[bytes]]) -> None:
    """kill -9 of the server under a waiting config watcher: __anext__ raises BackendUnavailable, not a hang."""
    address, server = private_etcd
    async with EtcdSource(EtcdSourceOptions(address=(address,), timeout=2)) as source:
        watcher = await source.watch()
        try:
            waiting = asyncio.ensure_future(anext(watcher))
            await asyncio.sleep(0.2)
            server.send_signal(signal.SIGKILL)
            with pytest.raises(BackendUnavailable, match=address):
                await asyncio.wait_for(waiting, 15)
        finally:
            await watcher.stop()


@pytest.mark.offline
def test_options_refuse_the_whole_keyspace_and_name_the_option() -> None:
    assert EtcdSourceOptions(prefix="/app/config").prefix == "app/config/"
    with pytest.raises(InvalidOption, match="prefix"):
        EtcdSourceOptions(prefix="")
    with pytest.raises(InvalidOption, match="timeout"):
        EtcdSourceOptions(timeout=-1)
    with pytest.raises(InvalidOption, match=r"\*\*\*@") as caught:
        EtcdSourceOptions(address=("https://user:hunter2@etcd:2379",))
    assert "hunter2" not in str(caught.value)
