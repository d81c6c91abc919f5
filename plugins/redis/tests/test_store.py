"""Redis-specific behaviour of RedisStore: key layout, escaping, SCAN, batches, connection faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from micro.errors import BackendUnavailable, ConnectionClosed, InternalError, InvalidOption, Unauthorized, Unavailable
from micro.plugins import get_manager
from micro.store import Record
from micro_redis import RedisStoreOptions
from micro_redis.store import RedisStore

from .conftest import kill_clients


@pytest.fixture
async def store(prefix: str) -> AsyncIterator[RedisStore]:
    s = RedisStore(RedisStoreOptions(key_prefix=prefix))
    await s.start()
    yield s
    await s.close()


async def test_a_record_is_a_hash_under_prefix_database_table_key(store: RedisStore, prefix: str, raw: redis.Redis):
    await store.write(Record("a/b c", b"\x00v", metadata={"n": 1}), ttl=30)
    await store.write(Record("k", b"x"), database="db", table="tb")
    name = f"{prefix}micro:micro:a/b c".encode()
    assert await raw.type(name) == b"hash"
    assert await raw.hgetall(name) == {b"value": b"\x00v", b"metadata": b'{"n":1}'}
    assert 29_000 < await raw.pttl(name) <= 30_000
    assert await raw.hget(f"{prefix}db:tb:k", "value") == b"x"
    assert await raw.pttl(f"{prefix}db:tb:k") == -1
    # A batch bumps the table's counter, a plain string next to the records that lapses a day later.
    await store.write_many([Record("b1", b""), Record("b2", b"")], database="db", table="tb")
    await store.delete_many(["b1"], database="db", table="tb")
    assert await raw.get(f"{prefix}db:tb") == b"2"
    assert 86_000 < await raw.ttl(f"{prefix}db:tb") <= 86_400
    assert await store.list(database="db", table="tb") == ["b2", "k"]


async def test_colons_and_percents_in_scope_names_never_collide(store: RedisStore, prefix: str, raw: redis.Redis):
    scopes = [("a:b", "c"), ("a", "b:c"), ("a%3Ab", "c"), ("a", "b%3Ac")]
    for database, table in scopes:
        await store.write(Record("k", f"{database}/{table}".encode()), database=database, table=table)
    for database, table in scopes:
        assert [r.value for r in await store.read("k", database=database, table=table)] == [
            f"{database}/{table}".encode()
        ]
        assert await store.list(database=database, table=table) == ["k"]
    assert await raw.exists(f"{prefix}a%3Ab:c:k", f"{prefix}a%253Ab:c:k") == 2


async def test_glob_characters_in_a_prefix_match_only_themselves(store: RedisStore):
    keys = ["[ab]1", "a1", "b1", "*x", "yx", "?z", "qz", "\\w", "w", "h[^a]", "hb"]
    await store.write_many([Record(k, k.encode()) for k in keys])
    assert await store.list(prefix="[ab]") == ["[ab]1"]
    assert await store.list(prefix="*") == ["*x"]
    assert await store.list(prefix="?") == ["?z"]
    assert await store.list(prefix="\\") == ["\\w"]
    assert [r.key for r in await store.read("h[^", prefix=True)] == ["h[^a]"]
    assert await store.list(suffix="]1") == ["[ab]1"]


async def test_prefix_and_suffix_may_overlap_in_the_key(store: RedisStore):
    await store.write_many([Record("ab", b""), Record("abb", b""), Record("b", b"")])
    assert [r.key for r in await store.read("ab", prefix=True, suffix=True)] == ["ab"]
    assert await store.list(prefix="ab", suffix="b") == ["ab", "abb"]


async def test_listing_scans_and_never_uses_keys(store: RedisStore, monkeypatch: pytest.MonkeyPatch):
    scans = 0
    real_scan = redis.Redis.scan

    async def forbidden(self: redis.Redis, *args: object, **kwargs: object) -> object:
        raise AssertionError("KEYS blocks the server; the store must SCAN")

    async def counting(self: redis.Redis, *args: object, **kwargs: object) -> object:
        nonlocal scans
        scans += 1
        return await real_scan(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(redis.Redis, "keys", forbidden)
    monkeypatch.setattr(redis.Redis, "scan", counting)
    await store.write(Record("k", b"v"))
    assert await store.list() == ["k"]
    assert [r.key for r in await store.read("", prefix=True)] == ["k"]
    assert scans >= 2


async def test_keys_that_are_not_utf8_are_left_out_of_listings(store: RedisStore, prefix: str, raw: redis.Redis):
    await store.write(Record("good", b"v"))
    await raw.hset(f"{prefix}micro:micro:".encode() + b"\xff\xfe", mapping={"value": b"x", "metadata": b"{}"})
    assert await store.list() == ["good"]


async def test_a_foreign_value_in_the_namespace_is_an_internal_error(store: RedisStore, prefix: str, raw: redis.Redis):
    await raw.set(f"{prefix}micro:micro:plain", b"not a hash")
    with pytest.raises(InternalError, match="WRONGTYPE"):
        await store.read("plain")
    await raw.hset(f"{prefix}micro:micro:badmeta", mapping={"value": b"v", "metadata": b"{not json"})
    with pytest.raises(InternalError, match=r"'badmeta'.*not JSON"):
        await store.read("badmeta")


async def test_sub_millisecond_ttls_still_expire_and_report_time_left(store: RedisStore):
    await store.write(Record("k", b"v"), ttl=0.0004)

    async def gone() -> bool:
        return await store.list() == []

    deadline = time.monotonic() + 2
    while not await gone():
        assert time.monotonic() < deadline, "a 0.4 ms TTL never expired"
        await asyncio.sleep(0.005)
    await store.write(Record("k", b"v"), ttl=10)
    (record,) = await store.read("k")
    assert record.expiry is not None
    assert 9 < record.expiry <= 10


async def test_a_listing_that_overlaps_a_batch_is_taken_again(store: RedisStore, monkeypatch: pytest.MonkeyPatch):
    await store.write_many([Record(f"k{i}", b"v") for i in range(3)])
    real_scan = RedisStore._scan
    calls = 0

    async def scan_then_batch(self: RedisStore, *args: object) -> list[str]:
        nonlocal calls
        calls += 1
        keys = await real_scan(self, *args)  # type: ignore[arg-type]
        if calls == 1:  # a batch lands after the first scan: what it saw is stale
            await self.write_many([Record(f"n{i}", b"v") for i in range(3)])
        return keys

    monkeypatch.setattr(RedisStore, "_scan", scan_then_batch)
    assert await store.list() == ["k0", "k1", "k2", "n0", "n1", "n2"]
    assert calls == 2


async def test_a_listing_that_always_overlaps_batches_gives_up(store: RedisStore, monkeypatch: pytest.MonkeyPatch):
    real_scan = RedisStore._scan

    async def scan_during_batches(self: RedisStore, *args: object) -> list[str]:
        keys = await real_scan(self, *args)  # type: ignore[arg-type]
        await self.delete_many(["whatever"])
        return keys

    monkeypatch.setattr(RedisStore, "_scan", scan_during_batches)
    with pytest.raises(Unavailable, match="try again"):
        await store.list()
    with pytest.raises(Unavailable, match="micro/micro changed"):
        await store.read("", prefix=True)


async def test_operations_need_a_started_store(prefix: str):
    store = RedisStore(RedisStoreOptions(key_prefix=prefix))
    with pytest.raises(ConnectionClosed, match="not started"):
        await store.read("k")
    await store.start()
    await store.start()
    await store.write(Record("k", b"v"))
    await store.close()
    await store.close()
    with pytest.raises(ConnectionClosed):
        await store.list()


# -- faults ----------------------------------------------------------------------------------------------


async def test_unreachable_server_fails_start_naming_address_and_variable():
    store = RedisStore(RedisStoreOptions(address=("127.0.0.1:1",), connect_timeout=2))
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"redis at 127\.0\.0\.1:1 \(MICRO_STORE_ADDRESS\)"):
        await store.start()
    assert time.monotonic() - started < 2.5
    with pytest.raises(ConnectionClosed):
        await store.read("k")


async def test_a_server_that_never_answers_fails_start_within_connect_timeout():
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never replies
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        store = RedisStore(RedisStoreOptions(address=(f"redis://127.0.0.1:{port}",), connect_timeout=0.3))
        started = time.monotonic()
        with pytest.raises(BackendUnavailable, match=f"127.0.0.1:{port}.*no answer within 0.3s"):
            await store.start()
        assert time.monotonic() - started < 1.5
    finally:
        server.close()
        await server.wait_closed()


async def test_wrong_credentials_are_unauthorized_without_echoing_the_password():
    store = RedisStore(RedisStoreOptions(address=("redis://bad:s3cret@127.0.0.1:6379",)))
    with pytest.raises(Unauthorized, match="authentication failed") as info:
        await store.start()
    assert "s3cret" not in str(info.value)
    assert "127.0.0.1:6379 (MICRO_STORE_ADDRESS)" in str(info.value)


async def test_killed_connections_are_replaced_on_next_use(store: RedisStore, raw: redis.Redis):
    await store.write(Record("k", b"v"))
    assert await kill_clients(raw, store.client_name) == 1
    assert [r.value for r in await store.read("k")] == [b"v"]
    await store.write(Record("k", b"w"))
    assert await store.list() == ["k"]


# -- options ---------------------------------------------------------------------------------------------


def test_options_come_from_micro_store_variables():
    environ = {
        "MICRO_STORE": "redis",
        "MICRO_STORE_ADDRESS": "localhost:6380",
        "MICRO_STORE_REQUEST_TIMEOUT": "250ms",
        "MICRO_STORE_POOL_SIZE": "4",
        "MICRO_STORE_KEY_PREFIX": "app:",
    }
    store = get_manager().create("store", environ=environ)
    assert isinstance(store, RedisStore)
    assert store.options.request_timeout == 0.25
    assert store.options.pool_size == 4
    assert store.address == "localhost:6380"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MICRO_STORE_ADDRESS", "a:1,b:2", "one Redis server"),
        ("MICRO_STORE_ADDRESS", "http://h:1", "unknown scheme 'http'"),
        ("MICRO_STORE_ADDRESS", "redis://h:notaport", "not a Redis address"),
        ("MICRO_STORE_ADDRESS", "unix://", "no socket path"),
        ("MICRO_STORE_POOL_SIZE", "0", "integer >= 1"),
        ("MICRO_STORE_CONNECT_TIMEOUT", "-1s", "positive"),
        ("MICRO_STORE_TABLES", "x", "unknown option"),
    ],
)
def test_bad_options_name_their_variable(variable: str, value: str, message: str):
    with pytest.raises(InvalidOption, match=message) as info:
        get_manager().create("store", environ={"MICRO_STORE": "redis", variable: value})
    assert variable in str(info.value)


def test_addresses_are_shown_without_credentials():
    def shown(address: str) -> str:
        return RedisStore(RedisStoreOptions(address=(address,))).address

    assert RedisStore().address == "127.0.0.1:6379"
    assert shown("redis://user:pw@example.com:7000/3") == "example.com:7000/3"
    assert shown("rediss://:pw@[::1]") == "rediss://[::1]:6379"
    assert shown("unix:///run/redis.sock") == "/run/redis.sock"
