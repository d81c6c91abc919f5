"""The PostgreSQL store beyond the contract: table layout and names, server-side expiry and the sweep, indexes,
batches and errors; against the real server, each test in its own schema."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from micro.errors import (
    BackendUnavailable,
    BadRequest,
    Forbidden,
    InternalError,
    InvalidOption,
    RecordNotFound,
    Unauthorized,
)
from micro.store import Record
from micro_postgres import PostgresStore, PostgresStoreOptions
from micro_postgres.store import table_name

from .conftest import ADDRESS, eventually


@pytest.fixture
async def store(schema: str) -> AsyncIterator[PostgresStore]:
    s = PostgresStore(PostgresStoreOptions(address=(ADDRESS,), schema=schema, cleanup_interval=3600))
    await s.start()
    yield s
    await s.close()


async def rows(raw: asyncpg.Connection, schema: str, database: str, table: str) -> int:
    name = table_name(database, table).replace('"', '""')
    return int(await raw.fetchval(f'SELECT count(*) FROM "{schema}"."{name}"'))


async def test_one_table_per_scope_and_names_never_meet(store: PostgresStore, raw: asyncpg.Connection, schema: str):
    scopes = [("a/b", "c"), ("a", "b/c"), ("a%2Fb", "c"), ('x"; DROP TABLE t; --', "t#1"), ("db", "é")]
    for n, (database, table) in enumerate(scopes):
        await store.write(Record("k", str(n).encode()), database=database, table=table)
    for n, (database, table) in enumerate(scopes):
        assert [r.value for r in await store.read("k", database=database, table=table)] == [str(n).encode()]
    tables = await raw.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1 ORDER BY 1", schema)
    assert sorted(t[0] for t in tables) == sorted(table_name(d, t) for d, t in scopes)
    assert len({table_name(d, t) for d, t in scopes}) == len(scopes)


async def test_long_names_are_shortened_without_colliding(store: PostgresStore) -> None:
    long_a, long_b = "t" * 80 + "a", "t" * 80 + "b"
    assert table_name("db", long_a) != table_name("db", long_b)
    assert all(len(table_name("db", n).encode()) <= 63 for n in (long_a, long_b))
    await store.write(Record("k", b"a"), database="db", table=long_a)
    await store.write(Record("k", b"b"), database="db", table=long_b)
    assert (await store.read("k", database="db", table=long_a))[0].value == b"a"
    assert (await store.read("k", database="db", table=long_b))[0].value == b"b"


async def test_a_name_with_nul_is_a_bad_request_naming_it(store: PostgresStore) -> None:
    with pytest.raises(BadRequest, match="table"):
        await store.write(Record("k", b"v"), table="a\x00b")
    with pytest.raises(BadRequest, match="database"):
        await store.read("k", database="a\x00b")


async def test_keys_with_nul_and_any_unicode_round_trip(store: PostgresStore) -> None:
    keys = ["a\x00b", "é", "日本", "\U0001f600", "plain"]
    await store.write_many([Record(k, k.encode()) for k in keys])
    assert [r.value if r else None for r in await store.read_many(keys)] == [k.encode() for k in keys]
    assert await store.list() == sorted(keys)
    assert [r.key for r in await store.read("", suffix=True, prefix=True)] == sorted(keys)


async def test_reading_a_table_never_written_creates_nothing(
    store: PostgresStore, raw: asyncpg.Connection, schema: str
) -> None:
    with pytest.raises(RecordNotFound):
        await store.read("k", table="never")
    assert await store.list(table="never") == []
    assert await store.read_many(["k"], table="never") == [None]
    await store.delete("k", table="never")
    assert await raw.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = $1", schema) == 0


async def test_expired_records_are_invisible_before_the_sweep_and_gone_after(
    store: PostgresStore, raw: asyncpg.Connection, schema: str
) -> None:
    await store.write(Record("short", b"v"), ttl=0.05)
    await store.write(Record("long", b"v"), ttl=3600)
    await raw.execute("SELECT pg_sleep(0.1)")
    assert await rows(raw, schema, "micro", "micro") == 2  # the expired row is still there ...
    with pytest.raises(RecordNotFound):
        await store.read("short")  # ... but no operation sees it
    assert await store.list() == ["long"]
    assert [r.key for r in await store.read("", prefix=True)] == ["long"]
    assert [r.key for r in await store.read("t", suffix=True)] == []
    assert [r and r.key for r in await store.read_many(["short", "long"])] == [None, "long"]
    expiry = (await store.read("long"))[0].expiry
    assert expiry is not None
    assert 3500 < expiry <= 3600
    assert await store.sweep() == 1
    assert await rows(raw, schema, "micro", "micro") == 1


async def test_the_background_sweep_removes_expired_rows(raw: asyncpg.Connection, schema: str) -> None:
    store = PostgresStore(PostgresStoreOptions(address=(ADDRESS,), schema=schema, cleanup_interval=0.05))
    async with store:
        await store.write_many([Record(f"k{i}", b"v") for i in range(5)], ttl=0.05)
        await store.write(Record("kept", b"v"))

        async def swept() -> None:
            assert await rows(raw, schema, "micro", "micro") == 1

        await eventually(swept)


async def test_prefix_and_suffix_reads_use_the_indexes(
    store: PostgresStore, raw: asyncpg.Connection, schema: str
) -> None:
    await store.write(Record("k", b"v"))
    t = f'"{schema}"."{table_name("micro", "micro")}"'
    indexes = [r[0] for r in await raw.fetch("SELECT indexdef FROM pg_indexes WHERE schemaname = $1", schema)]
    assert any("(key)" in i for i in indexes), indexes
    assert any("(rkey)" in i for i in indexes), indexes
    assert any("(expires_at) WHERE (expires_at IS NOT NULL)" in i for i in indexes), indexes
    async with raw.transaction():
        await raw.execute("SET LOCAL enable_seqscan = off")
        for column in ("key", "rkey"):
            plan = "\n".join(
                r[0]
                for r in await raw.fetch(
                    f"EXPLAIN SELECT key FROM {t} WHERE {column} >= $1 AND {column} < $2", b"a", b"b"
                )
            )
            assert "Index" in plan, plan
            assert column in plan, plan


async def test_write_many_keeps_the_last_of_a_duplicate_key(store: PostgresStore) -> None:
    await store.write_many([Record("k", b"1"), Record("j", b"x", {"m": 1}), Record("k", b"2", expiry=60)])
    (k,) = await store.read("k")
    assert k.value == b"2"
    assert k.expiry is not None
    assert (await store.read("j"))[0].metadata == {"m": 1}
    await store.delete_many(["k", "j", "k", "missing"])
    assert await store.list() == []


async def test_an_unreachable_server_is_backend_unavailable_without_the_password() -> None:
    store = PostgresStore(PostgresStoreOptions(address=("postgresql://u:s3cret@127.0.0.1:1/db",), connect_timeout=2))
    with pytest.raises(BackendUnavailable, match="MICRO_STORE_ADDRESS") as caught:
        await store.start()
    assert "s3cret" not in str(caught.value)
    assert caught.value.__cause__ is None or "s3cret" not in str(caught.value.__cause__)


async def test_a_missing_database_is_reported_without_the_password() -> None:
    store = PostgresStore(PostgresStoreOptions(address=("postgresql://root:s3cret@127.0.0.1:5432/no_such_db_x",)))
    with pytest.raises(InternalError, match="no_such_db_x") as caught:
        await store.start()
    assert "s3cret" not in str(caught.value)


async def test_an_unknown_role_is_unauthorized_without_the_password() -> None:
    address = "postgresql://micro_no_such_role:s3cret@127.0.0.1:5432/test"
    store = PostgresStore(PostgresStoreOptions(address=(address,)))
    with pytest.raises(Unauthorized, match="MICRO_STORE_ADDRESS") as caught:
        await store.start()
    assert "s3cret" not in str(caught.value)


async def test_an_address_the_driver_refuses_is_an_invalid_option_without_the_password() -> None:
    store = PostgresStore(PostgresStoreOptions(address=("postgresql://u:s3cret@127.0.0.1:5432/test?sslmode=bogus",)))
    with pytest.raises(InvalidOption, match="sslmode") as caught:
        await store.start()
    assert "s3cret" not in str(caught.value)


async def test_a_role_that_may_not_create_the_schema_is_forbidden(raw: asyncpg.Connection, schema: str) -> None:
    role = f"micro_test_{schema[-12:]}"
    await raw.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        store = PostgresStore(
            PostgresStoreOptions(address=(f"postgresql://{role}@127.0.0.1:5432/test",), schema=schema)
        )
        with pytest.raises(Forbidden, match="permission denied"):
            await store.start()
    finally:
        await raw.execute(f'DROP ROLE "{role}"')


async def test_a_plain_batch_clears_the_metadata_and_expiry_it_replaces(store: PostgresStore) -> None:
    await store.write(Record("k", b"old", {"m": 1}), ttl=60)
    await store.write_many([Record("k", b"new"), Record("j", b"new")])  # the statement for plain records
    (record,) = await store.read("k")
    assert (record.value, record.metadata, record.expiry) == (b"new", {}, None)
    await store.write_many([Record("k", b"again", {"m": 2}), Record("j", b"again")], ttl=60)  # the full one
    (record,) = await store.read("k")
    assert (record.value, record.metadata) == (b"again", {"m": 2})
    assert record.expiry is not None
