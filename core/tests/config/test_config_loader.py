"""Config: priority merge, get/scan, watch, and all-or-nothing loading."""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass, field
from typing import Literal

import pytest
from micro.config import (
    Change,
    ChangeSet,
    Config,
    EnvSourceOptions,
    FileSourceOptions,
    MalformedConfig,
    MemorySourceOptions,
    Source,
)
from micro.config.env import EnvSource
from micro.config.file import FileSource
from micro.config.memory import MemorySource
from micro.errors import BackendUnavailable, ConfigError


def memory(data) -> MemorySource:
    return MemorySource(MemorySourceOptions(data=data))


async def next_change(watcher, timeout: float = 5.0) -> Change:
    return await asyncio.wait_for(anext(watcher), timeout)


async def test_later_sources_override_with_deep_merge():
    # Go Micro's TestConfigMerge, plus lists replaced rather than concatenated.
    base = memory({"db": {"host": "a", "port": 1, "opts": {"ssl": False}}, "tags": ["x", "y"], "name": "base"})
    over = memory({"db": {"host": "b", "opts": {"timeout": 3}}, "tags": ["z"]})
    env = EnvSource(EnvSourceOptions(prefix=("APP",)), environ={"APP_NAME": "env", "OTHER": "x"})
    async with Config(base, over, env) as config:
        assert config.data == {
            "db": {"host": "b", "port": 1, "opts": {"ssl": False, "timeout": 3}},
            "tags": ["z"],
            "name": "env",
        }


async def test_get_paths_defaults_copies_and_types():
    async with Config(memory({"db": {"port": "5432", "hosts": "a, b", "ratio": 1}, "servers": [{"n": 1}]})) as config:
        assert config.get("db.port") == "5432"
        assert config.get("db.port", type=int) == 5432
        assert config.get("db.ratio", type=float) == 1.0
        assert config.get("db.hosts", type=list[str]) == ["a", "b"]
        assert config.get("servers.0.n") == 1
        assert config.get("servers.1.n", "none") == "none"
        assert config.get("db.missing") is None
        assert config.get("db.missing", 7, type=int) == 7
        assert config.get("db.port.deeper", "d") == "d"
        assert config.get("")["db"]["port"] == "5432"
        config.get("db")["port"] = "mutated"
        assert config.get("db.port") == "5432"
        with pytest.raises(ConfigError, match=r"db\.hosts: expected an integer"):
            config.get("db.hosts", type=int)


async def test_get_before_load_is_the_default():
    config = Config(memory({"a": 1}))
    assert config.get("a", "unset") == "unset"


class Mode(enum.Enum):
    FAST = "fast"
    SAFE = "safe"


@dataclass
class Database:
    host: str
    port: int = 5432
    replicas: list[str] = field(default_factory=list)


@dataclass
class Settings:
    name: str
    database: Database
    debug: bool = False
    mode: Mode = Mode.SAFE
    level: Literal["info", "debug"] = "info"
    limits: dict[str, int] = field(default_factory=dict)
    owner: str | None = None
    pair: tuple[int, str] = (0, "")


async def test_scan_into_nested_dataclasses():
    data = {
        "name": "svc",
        "database": {"host": "db", "port": "6543", "replicas": "r1,r2", "unknown": 1},
        "debug": "true",
        "mode": "fast",
        "level": "debug",
        "limits": {"cpu": 2},
        "pair": [1, 2],
        "ignored": True,
    }
    async with Config(memory(data)) as config:
        settings = config.scan(Settings)
        assert settings == Settings(
            name="svc",
            database=Database(host="db", port=6543, replicas=["r1", "r2"]),
            debug=True,
            mode=Mode.FAST,
            level="debug",
            limits={"cpu": 2},
            pair=(1, "2"),
        )
        assert config.scan(Database, "database").host == "db"


async def test_scan_errors_name_the_field():
    async with Config(memory({"name": "svc", "database": {"port": 1}, "db2": {"host": "h", "port": "x"}})) as config:
        with pytest.raises(ConfigError, match=r"database\.host: required field of Database is missing"):
            config.scan(Settings)
        with pytest.raises(ConfigError, match=r"db2\.port: expected an integer, got 'x'"):
            config.scan(Database, "db2")
        with pytest.raises(ConfigError, match=r"^absent\.host: required field"):
            config.scan(Database, "absent")
    with pytest.raises(ConfigError, match=r"^name: required field of Settings"):
        Config(memory({"name": "x"})).scan(Settings)  # not loaded yet: empty
    async with Config(memory({"name": ["list"], "database": {"host": "h"}})) as config:
        with pytest.raises(ConfigError, match="name: expected a string"):
            config.scan(Settings)


async def test_scan_into_pydantic_models():
    pydantic = pytest.importorskip("pydantic", reason="pydantic is optional; scan supports it when installed")

    class Db(pydantic.BaseModel):
        host: str
        port: int = 5432

    class App(pydantic.BaseModel):
        name: str
        db: Db

    async with Config(
        memory({"name": "svc", "db": {"host": "h", "port": "1"}, "bad": {"db": {"port": "x"}}})
    ) as config:
        assert config.scan(App) == App(name="svc", db=Db(host="h", port=1))
        with pytest.raises(ConfigError, match=r"bad\.db\.host: Field required") as info:
            config.scan(App, "bad")
        assert "bad.db.port" in str(info.value)
        assert config.scan(Db, "db").port == 1


async def test_watch_path_and_every_leaf():
    source = memory({"db": {"host": "a", "port": 1}, "keep": True})
    async with Config(source) as config:
        host = config.watch("db.host")
        db = config.watch("db")
        everything = config.watch()
        source.set({"db": {"host": "b", "port": 1, "user": "u"}, "new": 1})
        assert await next_change(host) == Change("db.host", "a", "b")
        assert await next_change(db) == Change("db", {"host": "a", "port": 1}, {"host": "b", "port": 1, "user": "u"})
        leaves = [await next_change(everything) for _ in range(4)]
        assert leaves == [
            Change("db.host", "a", "b"),
            Change("db.user", None, "u"),
            Change("keep", True, None),
            Change("new", None, 1),
        ]
        assert config.get("db.host") == "b"
        await host.stop()
        source.set({"db": {"host": "c"}})
        assert await next_change(db) == Change("db", {"host": "b", "port": 1, "user": "u"}, {"host": "c"})
        with pytest.raises(StopAsyncIteration):
            await anext(host)


async def test_watch_before_load_sees_the_first_load():
    config = Config(memory({"a": {"b": 1}}))
    watcher = config.watch()
    await config.load()
    assert await next_change(watcher) == Change("a.b", None, 1)
    await config.close()


async def test_change_values_are_copies():
    source = memory({"a": {"list": [1]}})
    async with Config(source) as config:
        watcher = config.watch("a")
        source.set({"a": {"list": [1, 2]}})
        change = await next_change(watcher)
        change.new["list"].append(3)
        assert config.get("a.list") == [1, 2]


async def test_a_file_edited_on_disk_reaches_a_watcher(tmp_path):
    path = tmp_path / "app.yaml"
    path.write_text("db:\n  host: a\n")
    source = FileSource(FileSourceOptions(path=str(path), poll_interval=0.02))
    async with Config(source) as config:
        watcher = config.watch("db.host")
        path.write_text("db:\n  host: b\n")
        assert await next_change(watcher) == Change("db.host", "a", "b")
        assert config.get("db.host") == "b"


async def test_malformed_edit_keeps_previous_values_and_feeds_no_watcher(tmp_path, caplog):
    path = tmp_path / "app.toml"
    path.write_text('[db]\nhost = "a"\n')
    source = FileSource(FileSourceOptions(path=str(path), poll_interval=0.02))
    async with Config(source) as config:
        watcher = config.watch()
        with caplog.at_level(logging.WARNING, logger="micro.config"):
            path.write_text('[db]\nhost = "b\n')
            deadline = asyncio.get_running_loop().time() + 5
            while "previous values kept" not in caplog.text:
                assert asyncio.get_running_loop().time() < deadline, "the bad edit was never reported"
                await asyncio.sleep(0.01)
        assert "line 2" in caplog.text
        assert config.get("db.host") == "a"
        with pytest.raises(MalformedConfig, match=r"app\.toml, line 2"):
            await config.load()
        assert config.get("db.host") == "a"
        path.write_text('[db]\nhost = "c"\n')
        # The first change the watcher gets is the good edit: nothing from the bad one.
        assert await next_change(watcher) == Change("db.host", "a", "c")


async def test_failed_load_changes_nothing(tmp_path):
    good = memory({"a": 1})
    path = tmp_path / "bad.json"
    path.write_text('{"a": 1}')
    config = Config(good, FileSource(FileSourceOptions(path=str(path))), watch_sources=False)
    await config.load()
    watcher = config.watch()
    good.set({"a": 2, "b": 2})
    path.write_text('{"a": 3,\n"b": }')
    with pytest.raises(MalformedConfig) as info:
        await config.load()
    assert info.value.line == 2
    assert config.data == {"a": 1}
    assert watcher._queue.empty()
    await config.close()


class Unreachable(Source):
    async def read(self) -> ChangeSet:
        raise BackendUnavailable("cannot reach the server")


class Broken(Source):
    async def read(self) -> ChangeSet:
        return {"not": "a changeset"}  # type: ignore[return-value]


async def test_first_load_failure_leaves_nothing_loaded():
    config = Config(memory({"a": 1}), Unreachable())
    with pytest.raises(BackendUnavailable):
        await config.load()
    assert config.data == {}
    with pytest.raises(MalformedConfig, match="Broken"):
        await Config(Broken()).load()
    await config.close()


async def test_without_watching_sources_reload_is_explicit():
    source = memory({"v": 1})
    async with Config(source, watch_sources=False) as config:
        watcher = config.watch("v")
        source.set({"v": 2})
        await asyncio.sleep(0.05)  # gives a (wrongly) running follower the chance to deliver
        assert config.get("v") == 1
        await config.load()
        assert await next_change(watcher) == Change("v", 1, 2)


class Counting(MemorySource):
    starts = 0
    closes = 0

    async def start(self) -> None:
        self.starts += 1

    async def close(self) -> None:
        self.closes += 1
        await super().close()


async def test_close_is_idempotent_concurrent_and_closes_sources():
    source = Counting(MemorySourceOptions(data={"a": 1}))
    config = Config(source)
    await config.load()
    watcher = config.watch()
    waiting = asyncio.create_task(anext(watcher))
    await asyncio.sleep(0)
    await asyncio.gather(config.close(), config.close())
    await config.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 1)
    assert source.starts == 1
    assert source.closes >= 1
    assert not any(not task.done() for task in asyncio.all_tasks() if task.get_name().startswith("micro.config"))
