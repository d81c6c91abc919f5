"""Redis-specific behaviour of RedisStore: key layout, envelope, escaping, SCAN, batches, connection faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis
from micro.errors import (
    BackendUnavailable,
    BadRequest,
    ConnectionClosed,
    InternalError,
    InvalidOption,
    Unauthorized,
    Unavailable,
)
from micro.plugins import get_manager
from micro.store import Record
from micro_redis import RedisStoreOptions
from micro_redis.store import RedisStore
from redis.asyncio.client import Pipeline

from .conftest import kill_clients


@pytest.fixture
async def store(prefix: str) -> AsyncIterator[RedisStore]:
    s = RedisStore(RedisStoreOptions(key_prefix=prefix))
    await s.start()
    yield s
    await s.close()


async def test_a_record_is_one_string_under_prefix_database_table_key(store: RedisStore, prefix: str, raw: redis.Redis):
    before = time.time() * 1000
    await store.write(Record("a/b c", b"\x00v", metadata={"n": 1}), ttl=30)
    after = time.time() * 1000
    await store.write(Record("k", b"x"), database="db", table="tb")
    name = f"{prefix}micro:micro:a/b c".encode()
    assert await raw.type(name) == b"string"
    envelope = await raw.get(name)
    # Tag 0xA3 (expiry and metadata), the deadline in ms since the epoch, the metadata's length and JSON, the value.
    assert envelope[:1] == b"\xa3"
    assert before + 30_000 - 1 <= int.from_bytes(envelope[1:9], "big") <= after + 30_000
    assert envelope[9:] == (7).to_bytes(4, "big") + b'{"n":1}' + b"\x00v"
    assert 29_000 < await raw.pttl(name) <= 30_000
    # No metadata and no expiry: one tag byte, then the value.
    assert await raw.get(f"{prefix}db:tb:k") == b"\xa0x"
    assert await raw.pttl(f"{prefix}db:tb:k") == -1
    # A batch bumps the table's counter, a plain string next to the records that lapses a day later.
    await store.write_many([Record("b1", b""), Record("b2", b"")], database="db", table="tb")
    await store.delete_many(["b1"], database="db", table="tb")
    assert await raw.get(f"{prefix}db:tb") == b"2"
    assert 86_000 < await raw.ttl(f"{prefix}db:tb") <= 86_400
    assert await store.list(database="db", table="tb") == ["b2", "k"]


@pytest.mark.parametrize(
    ("metadata", "ttl", "tag"),
    [({}, None, 0xA0), ({}, 60, 0xA1), ({"a": [1, "\xa0"], "b": None}, None, 0xA2), ({"x": {"y": 1.5}}, 60, 0xA3)],
)
async def test_every_envelope_reads_back_as_written(
    store: RedisStore, prefix: str, raw: redis.Redis, metadata: dict[str, object], ttl: float | None, tag: int
):
    # Values that look like envelopes themselves must come back untouched.
    for value in (b"", b"\xa0", b"\xa3\x00\x00", b"plain"):
        await store.write(Record("k", value, metadata=metadata), ttl=ttl)
        assert (await raw.get(f"{prefix}micro:micro:k"))[0] == tag
        ((record,), (many,)) = await store.read("k"), await store.read_many(["k"])
        assert many is not None
        for got in (record, many):
            assert (got.value, got.metadata) == (value, metadata)
            assert got.expiry is None if ttl is None else (got.expiry is not None and 59 < got.expiry <= 60)


async def test_single_operations_are_one_plain_command_each(store: RedisStore, monkeypatch: pytest.MonkeyPatch):
    sent: list[str] = []
    real = redis.Redis.execute_command

    async def recording(self: redis.Redis, *args: object, **options: object) -> object:
        sent.append(str(args[0]))
        return await real(self, *args, **options)

    def no_pipeline(self: redis.Redis, *args: object, **kwargs: object) -> object:
        raise AssertionError("a single-record operation needs neither a pipeline nor MULTI")

    monkeypatch.setattr(redis.Redis, "execute_command", recording)
    monkeypatch.setattr(redis.Redis, "pipeline", no_pipeline)
    await store.write(Record("k", b"v"), ttl=5)
    await store.write(Record("k", b"v", metadata={"m": 1}))
    await store.read("k")
    await store.read_many(["k", "missing", "k"])
    await store.delete("k")
    assert sent == ["SET", "SET", "GET", "MGET", "DEL"]


async def test_write_many_is_one_mset_without_ttls_and_sets_with_them(
    store: RedisStore, prefix: str, raw: redis.Redis, monkeypatch: pytest.MonkeyPatch
):
    queued: list[str] = []
    real = Pipeline.execute_command

    def recording(self: Pipeline, *args: object, **options: object) -> object:
        queued.append(str(args[0]))
        return real(self, *args, **options)

    monkeypatch.setattr(Pipeline, "execute_command", recording)
    await store.write(Record("b", b"old"), ttl=30)
    await store.write_many([Record("a", b"1"), Record("b", b"2"), Record("a", b"3")])
    assert queued == ["MSET", "INCRBY", "EXPIRE"]
    # MSET replaces an expiring key by a permanent one, and the later of two duplicates wins.
    assert [(r.key, r.value, r.expiry) for r in await store.read("", prefix=True)] == [
        ("a", b"3", None),
        ("b", b"2", None),
    ]
    queued.clear()
    await store.write_many([Record("a", b"4", expiry=30), Record("b", b"5"), Record("a", b"6", expiry=60)])
    assert queued == ["SET", "SET", "SET", "INCRBY", "EXPIRE"]
    assert 59_000 < await raw.pttl(f"{prefix}micro:micro:a") <= 60_000
    assert await raw.pttl(f"{prefix}micro:micro:b") == -1
    assert [r.value for r in await store.read_many(["a", "b"])] == [b"6", b"5"]  # type: ignore[union-attr]


async def test_expiry_comes_from_the_envelope_and_never_reaches_zero(store: RedisStore, prefix: str, raw: redis.Redis):
    name = f"{prefix}micro:micro:k"
    # The deadline in the envelope is what read reports, with no PTTL asked: 100 s here, though Redis gives it 5.
    deadline = int(time.time() * 1000) + 100_000
    await raw.set(name, b"\xa1" + deadline.to_bytes(8, "big") + b"v", px=5_000)
    ((record,), (many,)) = await store.read("k"), await store.read_many(["k"])
    for got in (record, many):
        assert got is not None
        assert got.value == b"v"
        assert got.expiry is not None
        assert 99 < got.expiry <= 100
    # A deadline already past on the reader's clock (a writer whose clock runs behind) while Redis still
    # holds the record: it is live, with a millisecond left rather than zero or less.
    await raw.set(name, b"\xa1" + (deadline - 200_000).to_bytes(8, "big") + b"v", px=5_000)
    (record,) = await store.read("k")
    assert record.expiry == 0.001


async def test_a_ttl_too_long_for_redis_is_bad_request_and_writes_nothing(store: RedisStore):
    # Refused by the store base (MAX_TTL, 100 years), before Redis's own limit on milliseconds comes into play.
    for ttl in (2.0**62, 1e300):
        with pytest.raises(BadRequest, match=r"^ttl must be a positive number of seconds up to"):
            await store.write(Record("k", b"v"), ttl=ttl)
        with pytest.raises(BadRequest, match=r"^record expiry must be a positive number of seconds up to"):
            await store.write_many([Record("ok", b"v"), Record("k", b"v", expiry=ttl)])
    assert await store.list() == []
    await store.write(Record("k", b"v"), ttl=10 * 365 * 86_400.0)  # ten years is fine
    (record,) = await store.read("k")
    assert record.expiry is not None
    assert record.expiry > 9 * 365 * 86_400


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
    await raw.set(f"{prefix}micro:micro:".encode() + b"\xff\xfe", b"\xa0x")
    assert await store.list() == ["good"]


@pytest.mark.parametrize(
    ("stored", "why"),
    [
        (b"not a record", "first byte is 0x6e, not a tag 0xa0-0xa3"),
        (b"", "it is empty"),
        (b'{"json": "text"}', "first byte is 0x7b"),
        (b"\xa4v", "first byte is 0xa4"),
        (b"\xa1\x00\x01", r"ends inside its header \(3 bytes\)"),
        (b"\xa2\x00\x00", r"ends inside its header"),
        (b"\xa2\x00\x00\x00\x09{}", r"metadata \(9 bytes\) runs past its end"),
        (b"\xa2\x00\x00\x00\x04{no}v", "metadata is not JSON"),
        (b"\xa2\x00\x00\x00\x02[]v", "metadata is not a JSON object but list"),
    ],
)
async def test_a_foreign_or_garbled_string_is_an_internal_error_naming_the_key(
    store: RedisStore, prefix: str, raw: redis.Redis, stored: bytes, why: str
):
    await store.write(Record("good", b"v"))
    await raw.set(f"{prefix}micro:micro:odd", stored)
    with pytest.raises(InternalError, match=rf"micro/micro key 'odd' is not a micro-redis record: .*{why}"):
        await store.read("odd")
    with pytest.raises(InternalError, match=rf"'odd' is not a micro-redis record: .*{why}"):
        await store.read_many(["good", "odd"])
    with pytest.raises(InternalError, match=rf"'odd' is not a micro-redis record: .*{why}"):
        await store.read("", prefix=True)
    assert await store.list() == ["good", "odd"]  # a listing does not read values
    await store.delete("odd")
    assert [r.key for r in await store.read("", prefix=True)] == ["good"]


async def test_a_key_of_another_type_such_as_an_old_hash_record_is_an_internal_error(
    store: RedisStore, prefix: str, raw: redis.Redis
):
    # The layout of unreleased 0.1.0 builds: a hash with the fields value and metadata.
    await raw.hset(f"{prefix}micro:micro:old", mapping={"value": b"v", "metadata": b"{}"})
    with pytest.raises(InternalError, match=r"'old' is not a micro-redis record: it is not a Redis string") as info:
        await store.read("old")
    assert "WRONGTYPE" in str(info.value.__cause__)
    with pytest.raises(InternalError, match=r"'old' is not a micro-redis record: it is a Redis hash, not a string"):
        await store.read("o", prefix=True)
    # MGET answers nil for it: read_many takes it for a miss rather than pay a second command per batch.
    assert await store.read_many(["old"]) == [None]
    await store.write(Record("old", b"new"))  # SET replaces it, whatever it was
    assert [r.value for r in await store.read("old")] == [b"new"]


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
        ("MICRO_STORE_POOL_SIZE", "0", "integer from 1 to 1024"),
        ("MICRO_STORE_CONNECT_TIMEOUT", "-1s", "number of seconds from 0 to 86400"),
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


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("redis://user:s3cret@example.com:notaport", "port is not a number"),
        ("redis://:s3cret", "port is not a number"),  # the @host forgotten: the password reads as a port
        ("redis://user:s3c@ret@example.com:99999", "port is not a number"),  # an @ in the password
        ("http://user:s3cret@example.com:1", "unknown scheme 'http'"),
        ("redis://user:s3cret@", "names no host"),
        ("redis://user:s3cret@example.com:0", "port 0"),
        ("redis://example.com:bad/0?password=s3cret", "port is not a number"),
        ("redis://a:s3cret@h1:1,redis://b:s3cret@h2:2", "one Redis server"),
    ],
)
def test_malformed_addresses_are_refused_without_echoing_the_password(address: str, message: str):
    with pytest.raises(InvalidOption, match=message) as info:
        get_manager().create("store", environ={"MICRO_STORE": "redis", "MICRO_STORE_ADDRESS": address})
    assert "s3cret" not in str(info.value)
    assert "s3c" not in str(info.value)
    assert "MICRO_STORE_ADDRESS" in str(info.value)
    assert "***" in str(info.value)


def test_driver_messages_are_shown_without_credentials():
    # redis-py puts what it was given into some messages; whatever URL one holds loses its user information.
    from micro_redis._errors import translated
    from redis.exceptions import ConnectionError as RedisConnectionError

    with pytest.raises(BackendUnavailable) as info, translated("redis at h:1 (MICRO_STORE_ADDRESS)"):
        raise RedisConnectionError("cannot use redis://user:s3c@ret@h:1/0 now")
    assert "s3c" not in str(info.value)
    assert "redis://***@h:1/0" in str(info.value)
