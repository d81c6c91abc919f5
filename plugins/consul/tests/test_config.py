"""The Consul config source beyond the contract: KV layout and decoding, writes that round-trip, watching, faults."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import micro
import pytest
from micro.config import ChangeSet, Config, MalformedConfig
from micro.errors import BackendUnavailable, BadRequest, InvalidOption
from micro_consul import ConsulSourceOptions
from micro_consul.config import ConsulSource

from .conftest import Agent


@pytest.fixture
async def prefix(agent: Agent, unique: Callable[[str], str]) -> AsyncIterator[str]:
    """A KV folder of this test's own, deleted afterwards."""
    folder = f"micro-test/config/{unique('cfg')}/"
    yield folder
    await agent.delete(f"/v1/kv/{folder}?recurse")


@pytest.fixture
async def source(prefix: str) -> AsyncIterator[ConsulSource]:
    async with ConsulSource(ConsulSourceOptions(prefix=prefix, watch_wait=5)) as source:
        yield source


async def put(agent: Agent, key: str, value: str | bytes) -> None:
    # Through a transaction: the key travels in JSON, so even "a//b" reaches Consul as it is.
    raw = value if isinstance(value, bytes) else value.encode()
    operation = {"KV": {"Verb": "set", "Key": key, "Value": base64.b64encode(raw).decode()}}
    status, _ = await agent.put("/v1/txn", [operation])
    assert status == 200


# -- options and faults ------------------------------------------------------------------------------------


@pytest.mark.offline
def test_selected_by_name_with_options_from_the_environment() -> None:
    environ = {
        "MICRO_CONFIG": "consul",
        "MICRO_CONFIG_ADDRESS": "127.0.0.1:8500",
        "MICRO_CONFIG_PREFIX": "/apps/orders",
        "MICRO_CONFIG_TIMEOUT": "2s",
        "MICRO_CONFIG_WATCH_WAIT": "1m",
    }
    source = micro.get_manager().create("config", environ=environ)
    assert isinstance(source, ConsulSource)
    assert source.prefix == "apps/orders/", "the prefix is not normalised to a folder"
    assert source.source == "consul:apps/orders/"
    assert (source.options.timeout, source.options.watch_wait) == (2.0, 60.0)
    assert source.capabilities == {"watch", "write"}
    assert ConsulSource().prefix == "micro/config/"


@pytest.mark.offline
def test_a_bad_address_names_its_variable() -> None:
    with pytest.raises(InvalidOption, match="MICRO_CONFIG_ADDRESS"):
        micro.get_manager().create("config", environ={"MICRO_CONFIG": "consul", "MICRO_CONFIG_ADDRESS": "nope"})


@pytest.mark.offline
async def test_unreachable_agent_names_address_and_variable() -> None:
    source = ConsulSource(ConsulSourceOptions(address=("127.0.0.1:1",), timeout=1))
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1:1 \(MICRO_CONFIG_ADDRESS\)"):
        await source.read()
    assert time.monotonic() - started < 2
    await source.close()


# -- reading -----------------------------------------------------------------------------------------------


async def test_keys_become_a_nested_mapping_of_decoded_values(source: ConsulSource, agent: Agent, prefix: str) -> None:
    await put(agent, f"{prefix}database/host", "db.local")
    await put(agent, f"{prefix}database/port", "5432")
    await put(agent, f"{prefix}database/options", '{"ssl": true, "pool": {"size": 4}}')
    await put(agent, f"{prefix}database/options/pool/timeout", "2.5")
    await put(agent, f"{prefix}debug", "true")
    await put(agent, f"{prefix}tags", '["a", "b"]')
    await put(agent, f"{prefix}quoted", '"123"')
    await put(agent, f"{prefix}greeting", "grüß dich {not json}")
    await put(agent, f"{prefix}empty", "")
    await put(agent, f"{prefix}folder/", "")  # a folder marker, as the Consul UI makes
    await put(agent, f"{prefix.rstrip('/')}-sibling/outside", "not ours")
    changeset = await source.read()
    assert changeset.data == {
        "database": {"host": "db.local", "port": 5432, "options": {"ssl": True, "pool": {"size": 4, "timeout": 2.5}}},
        "debug": True,
        "tags": ["a", "b"],
        "quoted": "123",
        "greeting": "grüß dich {not json}",
        "empty": "",
    }
    assert changeset.source == f"consul:{prefix}"
    await agent.delete(f"/v1/kv/{prefix.rstrip('/')}-sibling?recurse")


async def test_an_empty_prefix_reads_as_empty_data(source: ConsulSource) -> None:
    assert (await source.read()).data == {}


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("blob", b"\xff\xfe", "not UTF-8"),
        ("a//b", "x", "empty path segment"),
        ("database", "scalar", "holds a value"),
        ("database/host/deeper", "x", "holds a value"),
    ],
)
async def test_content_that_is_not_one_mapping_is_malformed(
    source: ConsulSource, agent: Agent, prefix: str, key: str, value: str | bytes, message: str
) -> None:
    await put(agent, f"{prefix}database/host", "db.local")
    await put(agent, f"{prefix}{key}", value)
    with pytest.raises(MalformedConfig, match=message) as caught:
        await source.read()
    assert caught.value.source == f"consul:{prefix}"


# -- writing -----------------------------------------------------------------------------------------------


async def test_writes_read_back_exactly(source: ConsulSource, agent: Agent, prefix: str) -> None:
    data: dict[str, Any] = {
        "numbers": {"int": 1, "float": 0.5, "string that looks like one": "42"},
        "flags": {"on": True, "string true": "true", "null": None},
        "list": [1, "two", {"three": 3}],
        "empty": {},
        "text": "plain ü",
        "quoted": '"already quoted"',
    }
    await put(agent, f"{prefix}stale/key", "removed by the write")
    await source.write(ChangeSet.of(data, "test"))
    assert (await source.read()).data == data
    status, raw = await agent.get(f"/v1/kv/{prefix}text")
    assert status == 200
    assert base64.b64decode(raw[0]["Value"]).decode() == "plain ü", "plain strings are stored raw"


async def test_large_writes_are_batched(source: ConsulSource) -> None:
    data = {"group": {f"k{i:03d}": i for i in range(150)}}
    await source.write(ChangeSet.of(data, "test"))
    assert (await source.read()).data == data
    smaller = {"group": {f"k{i:03d}": i for i in range(0, 150, 2)}}
    await source.write(ChangeSet.of(smaller, "test"))
    assert (await source.read()).data == smaller


async def test_writes_that_consul_keys_cannot_hold_are_refused(source: ConsulSource) -> None:
    with pytest.raises(BadRequest, match="'/'"):
        await source.write(ChangeSet.of({"a/b": 1}, "test"))
    with pytest.raises(BadRequest, match="JSON"):
        await source.write(ChangeSet.of({"when": object()}, "test"))
    everything = ConsulSource(ConsulSourceOptions(prefix=""))
    with pytest.raises(BadRequest, match="whole Consul KV store"):
        await everything.write(ChangeSet.of({"x": 1}, "test"))
    await everything.close()


# -- watching ----------------------------------------------------------------------------------------------


async def test_a_watcher_sees_edits_from_elsewhere_but_not_unrelated_ones(
    source: ConsulSource, agent: Agent, prefix: str
) -> None:
    await put(agent, f"{prefix}level", "1")
    async with await source.watch() as watcher:
        pending = asyncio.ensure_future(watcher.__anext__())
        await put(agent, f"{prefix.rstrip('/')}-other/level", "9")  # beside the prefix: not ours
        await put(agent, f"{prefix}level", "1")  # rewritten with the same value: no change
        await asyncio.sleep(0.2)
        assert not pending.done()
        await put(agent, f"{prefix}level", "2")
        changeset = await asyncio.wait_for(pending, 5)
        assert changeset.data == {"level": 2}
        await agent.delete(f"/v1/kv/{prefix}level")
        assert (await asyncio.wait_for(watcher.__anext__(), 5)).data == {}
    await agent.delete(f"/v1/kv/{prefix.rstrip('/')}-other?recurse")


async def test_a_slow_reader_gets_the_latest_data(source: ConsulSource, agent: Agent, prefix: str) -> None:
    async with await source.watch() as watcher:
        for value in ("1", "2", "3"):
            await put(agent, f"{prefix}level", value)
        assert (await asyncio.wait_for(watcher.__anext__(), 5)).data == {"level": 3}


async def test_the_config_loader_follows_consul(source: ConsulSource, agent: Agent, prefix: str) -> None:
    """The way services use it: micro.config.Config over the source, watching one path."""
    await put(agent, f"{prefix}database/host", "db.local")
    async with Config(source) as config:
        await config.load()
        assert config.get("database.host") == "db.local"
        changes = config.watch("database.host")
        await put(agent, f"{prefix}database/host", "db.remote")
        change = await asyncio.wait_for(changes.__anext__(), 10)
        assert (change.path, change.old, change.new) == ("database.host", "db.local", "db.remote")
        assert config.get("database.host") == "db.remote"
