"""The built-in sources: env, flags, memory (the file source has its own module)."""

from __future__ import annotations

import asyncio

import micro
import pytest
from micro.config import ChangeSet, EnvSourceOptions, FlagSourceOptions, MalformedConfig, MemorySourceOptions
from micro.config.env import EnvSource
from micro.config.flags import FlagSource, parse_flags
from micro.config.memory import MemorySource
from micro.errors import InvalidOption, NotSupported


async def test_env_nests_and_parses_values_like_go():
    environ = {
        "MYAPP_DATABASE_HOST": "db.local",
        "MYAPP_DATABASE_PORT": "5432",
        "MYAPP_DEBUG": "true",
        "MYAPP_RATIO": "0.25",
        "MYAPP_NAME": "1_000",
        "MYAPP_FLAG__X": "F",
        "OTHER_THING": "x",
    }
    source = EnvSource(EnvSourceOptions(prefix=("MYAPP",)), environ=environ)
    changeset = await source.read()
    assert changeset.data == {
        "database": {"host": "db.local", "port": 5432},
        "debug": True,
        "ratio": 0.25,
        "name": "1_000",
        "flag": {"x": False},
    }
    assert changeset.source == "env"
    assert changeset == ChangeSet(changeset.data, changeset.checksum, "env", changeset.timestamp)


async def test_env_prefixes_stripped_kept_and_several():
    # Go Micro's TestEnvvar_Prefixes: WithStrippedPrefix drops the prefix, WithPrefix keeps it.
    environ = {"GOMICRO_A": "1", "MICRO_B": "2", "NOPE_C": "3"}
    stripped = await EnvSource(EnvSourceOptions(prefix=("GOMICRO_", "micro")), environ=environ).read()
    assert stripped.data == {"a": 1, "b": 2}
    kept = await EnvSource(EnvSourceOptions(prefix=("GOMICRO",), strip_prefix=False), environ=environ).read()
    assert kept.data == {"gomicro": {"a": 1}}
    everything = await EnvSource(environ=environ).read()
    assert everything.data == {"gomicro": {"a": 1}, "micro": {"b": 2}, "nope": {"c": 3}}


async def test_env_scalar_and_mapping_on_one_key_is_deterministic():
    source = EnvSource(environ={"A_B": "2", "A": "1"})
    assert (await source.read()).data == {"a": {"b": 2}}


async def test_env_prefix_from_a_string_and_from_micro_variables():
    assert EnvSourceOptions(prefix="APP").prefix == ("APP",)  # type: ignore[arg-type]
    source = micro.create("config", "env", environ={"MICRO_CONFIG_PREFIX": "APP,SVC"})
    assert isinstance(source, EnvSource)
    assert source.options.prefix == ("APP", "SVC")


async def test_env_cannot_watch_or_write():
    source = EnvSource(environ={})
    assert source.capabilities == frozenset()
    with pytest.raises(NotSupported):
        await source.watch()
    with pytest.raises(NotSupported):
        await source.write(ChangeSet.of({}, "x"))


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--database-host=db", "--database.port", "5432"], {"database": {"host": "db", "port": 5432}}),
        (["--debug", "--level", "-3", "--ratio=1.5"], {"debug": True, "level": -3, "ratio": 1.5}),
        (["serve", "-v", "--a_b", "x", "--last"], {"a": {"b": "x"}, "last": True}),
        (["--x=1", "--", "--y=2"], {"x": 1}),
        (["--x=1", "--x=2", "--Upper-Case=ok"], {"x": 2, "upper": {"case": "ok"}}),
        (["--empty=", "--", "--"], {"empty": ""}),
    ],
)
def test_parse_flags(argv, expected):
    assert parse_flags(argv) == expected


def test_parse_flags_prefix():
    assert parse_flags(["--app-db-host=x", "--other=1"], prefix="app-") == {"db": {"host": "x"}}


async def test_flag_source_reads_argv_and_defaults_to_sys_argv(monkeypatch):
    source = FlagSource(FlagSourceOptions(prefix="svc-"), argv=["--svc-port=8080", "--ignored"])
    assert (await source.read()).data == {"port": 8080}
    monkeypatch.setattr("sys.argv", ["prog", "--from-sys=yes"])
    assert (await FlagSource().read()).data == {"from": {"sys": "yes"}}
    assert (await FlagSource().read()).source == "flags"


async def test_memory_source_copies_its_data():
    initial = {"a": {"b": 1}}
    source = MemorySource(MemorySourceOptions(data=initial))
    initial["a"]["b"] = 2
    assert (await source.read()).data == {"a": {"b": 1}}
    data = {"c": [1]}
    source.set(data)
    data["c"].append(2)
    assert (await source.read()).data == {"c": [1]}
    with pytest.raises(MalformedConfig, match="memory: expected a mapping"):
        source.set([1, 2])  # type: ignore[arg-type]


async def test_memory_watch_yields_changes_only_and_latest_wins():
    source = MemorySource(MemorySourceOptions(data={"v": 0}))
    watcher = await source.watch()
    source.set({"v": 0})  # same data: nothing to report
    source.set({"v": 1})
    source.set({"v": 2})
    changeset = await asyncio.wait_for(anext(watcher), 1)
    assert changeset.data == {"v": 2}
    await source.write(ChangeSet.of({"v": 3}, "test"))
    assert (await asyncio.wait_for(anext(watcher), 1)).data == {"v": 3}
    await watcher.stop()
    await watcher.stop()
    with pytest.raises(StopAsyncIteration):
        await anext(watcher)


async def test_memory_watcher_stop_wakes_a_waiting_reader_and_close_stops_all():
    source = MemorySource()
    first, second = await source.watch(), await source.watch()
    waiting = asyncio.create_task(anext(first))
    await asyncio.sleep(0)
    await first.stop()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 1)
    async with second:
        pass
    with pytest.raises(StopAsyncIteration):
        await anext(second)
    third = await source.watch()
    await source.close()
    with pytest.raises(StopAsyncIteration):
        await anext(third)


def test_sources_are_registered_under_their_names():
    manager = micro.get_manager()
    assert {"env", "file", "memory", "flags"} <= set(manager.names("config"))
    assert isinstance(micro.create("config", "memory", environ={}), MemorySource)
    assert isinstance(micro.create("config", "flags", environ={}), FlagSource)


def test_options_are_checked():
    with pytest.raises(InvalidOption, match="path"):
        micro.create("config", "file", environ={})
    with pytest.raises(InvalidOption, match="MICRO_CONFIG_POLL_INTERVAL"):
        micro.create(
            "config", "file", environ={"MICRO_CONFIG": "file", "MICRO_CONFIG_POLL_INTERVAL": "0"}, path="a.json"
        )
    with pytest.raises(InvalidOption, match="format"):
        micro.create("config", "file", environ={}, path="settings.ini")
