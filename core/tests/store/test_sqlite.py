"""SQLiteStore beyond the shared contract: persistence, several processes, files, query plans."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from micro import create
from micro.errors import BackendUnavailable, InvalidOption, RecordNotFound
from micro.store import Record, SQLiteStoreOptions
from micro.store.sqlite import SQLiteStore, _successor, _where


def run_python(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> str:
    out, err = proc.communicate(timeout=timeout)  # also closes stdin
    assert proc.returncode == 0, err
    return out


WRITER = """
    import asyncio, sys
    from micro.store import Record, SQLiteStoreOptions
    from micro.store.sqlite import SQLiteStore

    async def main(path, name, count, barrier):
        async with SQLiteStore(SQLiteStoreOptions(path=path)) as store:
            if barrier:  # start writing together with the other writer
                print("ready", flush=True)
                sys.stdin.readline()
            for i in range(count):
                await store.write(Record(key=f"{name}/{i:04d}", value=name.encode(), metadata={"i": i}))
            await store.write_many([Record(key=f"{name}/bulk/{i}", value=b"b") for i in range(count)])
            await store.write(Record(key=f"{name}/done", value=b"1"), ttl=600)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), len(sys.argv) > 4))
"""

READER = """
    import asyncio, sys
    from micro.store import SQLiteStoreOptions
    from micro.store.sqlite import SQLiteStore

    async def main(path):
        async with SQLiteStore(SQLiteStoreOptions(path=path)) as store:
            for record in await store.read("", prefix=True):
                print(record.key, record.value.decode(), record.metadata, record.expiry is not None)

    asyncio.run(main(sys.argv[1]))
"""


def test_data_survives_a_process_restart(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    finish(run_python(WRITER, path, "p", "3"))
    out = finish(run_python(READER, path)).splitlines()
    assert out == [
        "p/0000 p {'i': 0} False",
        "p/0001 p {'i': 1} False",
        "p/0002 p {'i': 2} False",
        "p/bulk/0 b {} False",
        "p/bulk/1 b {} False",
        "p/bulk/2 b {} False",
        "p/done 1 {} True",
    ]


async def test_two_processes_writing_concurrently_lose_nothing(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    count = 150
    writers = [run_python(WRITER, path, name, str(count), "barrier") for name in ("a", "b")]
    for proc in writers:
        assert proc.stdout is not None
        assert await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30) == "ready\n"
    for proc in writers:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    for proc in writers:
        await asyncio.to_thread(finish, proc)
    async with SQLiteStore(SQLiteStoreOptions(path=path)) as store:
        for name in ("a", "b"):
            assert len(await store.list(prefix=f"{name}/0")) == count
            assert len(await store.list(prefix=f"{name}/bulk/")) == count
            (done,) = await store.read(f"{name}/done")
            assert done.value == b"1"
        assert len(await store.list()) == 2 * (2 * count + 1)


async def test_two_instances_in_one_process_share_the_file(tmp_path: Path) -> None:
    options = SQLiteStoreOptions(path=str(tmp_path / "shared.db"))
    async with SQLiteStore(options) as one, SQLiteStore(options) as two:
        await one.write(Record(key="k", value=b"from one"))
        assert (await two.read("k"))[0].value == b"from one"
        await two.delete("k")
        with pytest.raises(RecordNotFound):
            await one.read("k")


async def test_memory_path_is_private_to_the_instance() -> None:
    options = SQLiteStoreOptions(path=":memory:")
    async with SQLiteStore(options) as one, SQLiteStore(options) as two:
        await one.write(Record(key="k", value=b"v"))
        assert await two.list() == []


async def test_default_file_is_under_xdg_data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    async with SQLiteStore() as store:
        assert store.path == str(tmp_path / "data" / "micro" / "store.db")
        await store.write(Record(key="k", value=b"v"))
    assert (tmp_path / "data" / "micro" / "store.db").is_file()


async def test_address_names_the_file_when_path_is_unset(tmp_path: Path) -> None:
    target = tmp_path / "nested" / "dir" / "s.db"
    async with SQLiteStore(SQLiteStoreOptions(address=(str(target),))) as store:
        await store.write(Record(key="k", value=b"v"))
    assert target.is_file()


async def test_selected_with_micro_variables(tmp_path: Path) -> None:
    environ = {
        "MICRO_STORE": "sqlite",
        "MICRO_STORE_PATH": str(tmp_path / "env.db"),
        "MICRO_STORE_BUSY_TIMEOUT": "250ms",
        "MICRO_STORE_TABLE": "orders",
    }
    store = create("store", environ=environ)
    assert isinstance(store, SQLiteStore)
    assert store.options == SQLiteStoreOptions(path=str(tmp_path / "env.db"), busy_timeout=0.25, table="orders")
    async with store:
        await store.write(Record(key="k", value=b"v"))
        assert await store.list(table="orders") == ["k"]


def test_a_bad_variable_is_named() -> None:
    with pytest.raises(InvalidOption, match="MICRO_STORE_BUSY_TIMEOUT"):
        create("store", environ={"MICRO_STORE": "sqlite", "MICRO_STORE_BUSY_TIMEOUT": "-1"})


async def test_a_file_that_is_not_a_database_is_backend_unavailable(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.db"
    bogus.write_bytes(b"this is not a sqlite database, not even close" * 100)
    store = SQLiteStore(SQLiteStoreOptions(path=str(bogus)))
    with pytest.raises(BackendUnavailable, match=r"bogus\.db"):
        await store.start()
    await store.close()


async def test_a_directory_path_is_backend_unavailable(tmp_path: Path) -> None:
    store = SQLiteStore(SQLiteStoreOptions(path=str(tmp_path)))
    with pytest.raises(BackendUnavailable):
        await store.start()


async def test_a_file_from_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(BackendUnavailable, match="newer"):
        await SQLiteStore(SQLiteStoreOptions(path=str(path))).start()


async def test_a_write_blocked_past_busy_timeout_is_backend_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "busy.db"
    async with SQLiteStore(SQLiteStoreOptions(path=str(path), busy_timeout=0.05)) as store:
        blocker = sqlite3.connect(path, isolation_level=None)
        try:
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(BackendUnavailable, match="locked"):
                await store.write(Record(key="k", value=b"v"))
            assert await store.list() == []  # readers are not blocked by a writer under WAL
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        await store.write(Record(key="k", value=b"v"))


async def test_expired_rows_are_pruned_on_start(tmp_path: Path) -> None:
    path = tmp_path / "prune.db"
    async with SQLiteStore(SQLiteStoreOptions(path=str(path))) as store:
        await store.write(Record(key="old", value=b"v"), ttl=0.01)
        await store.write(Record(key="new", value=b"v"))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE micro_store SET expires = 1 WHERE key = 'old'")  # long expired
    conn.close()
    async with SQLiteStore(SQLiteStoreOptions(path=str(path))):
        pass
    conn = sqlite3.connect(path)
    try:
        assert [k for (k,) in conn.execute("SELECT key FROM micro_store")] == ["new"]
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("options", "option"),
    [({"path": ""}, "path"), ({"busy_timeout": 0}, "busy_timeout"), ({"table": ""}, "table")],
)
def test_bad_options(options: dict[str, object], option: str) -> None:
    with pytest.raises(InvalidOption) as info:
        SQLiteStoreOptions(**options)  # type: ignore[arg-type]
    assert info.value.option == option


def test_successor_bounds_every_string_with_the_prefix() -> None:
    assert _successor("ab") == "ac"
    assert _successor("a\U0010ffff") == "b"
    assert _successor("\U0010ffff") is None
    assert _successor("a\ud7ff") == "a\ue000"
    for prefix in ["ab", "a\U0010ffff", "a\ud7ff", "z"]:
        upper = _successor(prefix)
        assert upper is not None
        for tail in ["", "\x00", "zzz", "\U0010ffff\U0010ffff"]:
            assert prefix <= prefix + tail < upper


def test_prefix_and_suffix_queries_use_indexes(tmp_path: Path) -> None:
    async def create_schema() -> None:
        async with SQLiteStore(SQLiteStoreOptions(path=str(tmp_path / "plan.db"))):
            pass

    asyncio.run(create_schema())
    conn = sqlite3.connect(tmp_path / "plan.db")
    try:
        for prefix, suffix, index, column in [
            ("user/", "", "PRIMARY KEY", "key"),
            ("", "/name", "micro_store_rkey", "rkey"),
        ]:
            where, params = _where(prefix, suffix, 0.0, "micro", "micro")
            plan = " ".join(
                row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN SELECT key FROM micro_store WHERE {where}", params)
            )
            assert plan.startswith("SEARCH")
            assert index in plan
            assert f"{column}>? AND {column}<?" in plan
    finally:
        conn.close()
