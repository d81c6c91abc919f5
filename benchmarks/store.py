"""Store: N writes then N reads, single and batched, through micro's stores, raw ``redis.asyncio`` and raw ``asyncpg``.

Single operations run from ``CONCURRENCY`` tasks (a service handling
concurrent requests); batched ones use ``write_many``/``read_many`` in
batches of ``BATCH`` (a pipeline of SETs and one MGET for raw redis; one
``INSERT ... SELECT FROM unnest ... ON CONFLICT`` and one ``= ANY`` select for raw
asyncpg, the statements a careful hand-written store would send). Each phase stops
at its deadline and reports the rate of what it completed.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from _harness import Context, Row, unavailable

GROUP = "store"
REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES_URL = "postgresql://127.0.0.1:5432/test"
#: Connections of both PostgreSQL clients (micro-postgres's default pool size).
POSTGRES_POOL = 10
CONCURRENCY = 16
BATCH = 100
VALUE = b'{"user":"u-12345","cart":[1,2,3],"total":19.99}'

Op = Callable[[int], Awaitable[Any]]


async def timed(op: Op, n: int, concurrency: int, deadline: float) -> tuple[int, float]:
    """Run ``op(0..n-1)`` from ``concurrency`` tasks until done or ``deadline`` seconds; (ops done, seconds)."""
    counter = iter(range(n))
    done = 0
    start = time.perf_counter()
    stop = start + deadline

    async def worker() -> None:
        nonlocal done
        for i in counter:
            if time.perf_counter() >= stop:
                return
            await op(i)
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, time.perf_counter() - start


class Phases:
    """The four phases (write, read, write batch, read batch) of one store, as ``op(i)`` functions.

    A write phase may stop at its deadline before writing every key: ``written``
    holds how many it did (single records, batches), and the read phases cycle
    over those keys only.
    """

    def __init__(self, write: Op, read: Op, write_many: Op, read_many: Op) -> None:
        self.written = [0, 0]
        self.ops: dict[str, Op] = {
            "write": write,
            "read": lambda i: read(i % max(self.written[0], 1)),
            "write batch": write_many,
            "read batch": lambda b: read_many(b % max(self.written[1], 1)),
        }


def micro_phases(store: Any, table: str) -> Phases:
    from micro.store import Record

    async def write(i: int) -> None:
        await store.write(Record(f"k{i}", VALUE), table=table)

    async def read(i: int) -> None:
        (record,) = await store.read(f"k{i}", table=table)
        if record.value != VALUE:
            raise AssertionError(f"wrong value for k{i}: {record.value!r}")

    async def write_many(b: int) -> None:
        await store.write_many([Record(f"b{b * BATCH + j}", VALUE) for j in range(BATCH)], table=table)

    async def read_many(b: int) -> None:
        records = await store.read_many([f"b{b * BATCH + j}" for j in range(BATCH)], table=table)
        if records[-1] is None:
            raise AssertionError(f"missing record b{b * BATCH + BATCH - 1}")

    return Phases(write, read, write_many, read_many)


def redis_phases(client: Any, prefix: str) -> Phases:
    async def write(i: int) -> None:
        await client.set(f"{prefix}k{i}", VALUE)

    async def read(i: int) -> None:
        value = await client.get(f"{prefix}k{i}")
        if value != VALUE:
            raise AssertionError(f"wrong value for k{i}: {value!r}")

    async def write_many(b: int) -> None:
        async with client.pipeline(transaction=False) as pipe:
            for j in range(BATCH):
                pipe.set(f"{prefix}b{b * BATCH + j}", VALUE)
            await pipe.execute()

    async def read_many(b: int) -> None:
        values = await client.mget([f"{prefix}b{b * BATCH + j}" for j in range(BATCH)])
        if values[-1] is None:
            raise AssertionError(f"missing record b{b * BATCH + BATCH - 1}")

    return Phases(write, read, write_many, read_many)


def asyncpg_phases(pool: Any, table: str) -> Phases:
    """Raw asyncpg on a table shaped like micro-postgres's, without its TTL, metadata or suffix columns."""
    upsert = f"INSERT INTO {table} (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
    select = f"SELECT value FROM {table} WHERE key = $1"
    upsert_many = (
        f"INSERT INTO {table} (key, value) SELECT * FROM unnest($1::bytea[], $2::bytea[])"
        " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
    )
    select_many = f"SELECT key, value FROM {table} WHERE key = ANY($1::bytea[])"

    async def write(i: int) -> None:
        await pool.execute(upsert, f"k{i}".encode(), VALUE)

    async def read(i: int) -> None:
        value = await pool.fetchval(select, f"k{i}".encode())
        if value != VALUE:
            raise AssertionError(f"wrong value for k{i}: {value!r}")

    async def write_many(b: int) -> None:
        keys = [f"b{b * BATCH + j}".encode() for j in range(BATCH)]
        await pool.execute(upsert_many, keys, [VALUE] * BATCH)

    async def read_many(b: int) -> None:
        keys = [f"b{b * BATCH + j}".encode() for j in range(BATCH)]
        found = {row[0]: row[1] for row in await pool.fetch(select_many, keys)}
        if found.get(keys[-1]) is None:
            raise AssertionError(f"missing record b{b * BATCH + BATCH - 1}")

    return Phases(write, read, write_many, read_many)


async def measure(name: str, phases: Phases, n: int, deadline: float) -> list[Row]:
    rows = []
    for phase, op in phases.ops.items():
        batched = phase.endswith("batch")
        count, seconds = await timed(op, n // BATCH if batched else n, 4 if batched else CONCURRENCY, deadline)
        if phase == "write":
            phases.written[0] = count
        elif phase == "write batch":
            phases.written[1] = count
        records = count * BATCH if batched else count
        capped = "" if count == (n // BATCH if batched else n) else " (time cap)"
        rows.append(Row(f"{GROUP} {phase}", name, records / seconds, "rec/s", note=f"{records} records{capped}"))
    return rows


async def run(ctx: Context) -> list[Row]:
    import micro
    from micro.store import Store

    n = ctx.pick(1_000, 100_000)
    deadline = ctx.pick(2.0, 8.0)
    table = f"bench_{uuid.uuid4().hex[:8]}"
    redis_down = None if _up(6379) else "Redis is not reachable on 127.0.0.1:6379"
    postgres_down = None if _up(5432) else "PostgreSQL is not reachable on 127.0.0.1:5432"

    async def micro_store(name: str, **options: Any) -> list[Row]:
        if name not in micro.get_manager().names("store"):
            raise LookupError(f"store {name!r} is not installed (micro-{name} plugin missing)")
        store = micro.create("store", name, cls=Store, **options)
        await store.start()
        try:
            label = f"micro-{name}" if name in ("redis", "postgres") else f"micro {name}"
            return await measure(label, micro_phases(store, table), n, deadline)
        finally:
            try:
                await _cleanup_micro(store, table)
            finally:
                await store.close()

    async def raw_redis() -> list[Row]:
        import redis.asyncio as redis

        client = redis.Redis.from_url(REDIS_URL, max_connections=64)
        prefix = f"{table}:"
        try:
            return await measure("redis.asyncio", redis_phases(client, prefix), n, deadline)
        finally:
            keys = [k async for k in client.scan_iter(match=f"{prefix}*", count=1000)]
            for i in range(0, len(keys), 1000):
                await client.delete(*keys[i : i + 1000])
            await client.aclose()

    async def micro_postgres() -> list[Row]:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        try:
            return await micro_store("postgres", address=(POSTGRES_URL,), schema=schema, pool_size=POSTGRES_POOL)
        finally:
            await _drop_postgres(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')

    async def raw_asyncpg() -> list[Row]:
        import asyncpg

        pool = await asyncpg.create_pool(POSTGRES_URL, min_size=1, max_size=POSTGRES_POOL)  # as micro-postgres opens it
        name = f"bench_raw_{uuid.uuid4().hex[:8]}"
        try:
            await pool.execute(f"CREATE TABLE {name} (key bytea PRIMARY KEY, value bytea NOT NULL)")
            return await measure("asyncpg", asyncpg_phases(pool, name), n, deadline)
        finally:
            await pool.execute(f"DROP TABLE IF EXISTS {name}")
            await pool.close()

    systems: list[tuple[str, str | None, Callable[[], Awaitable[list[Row]]]]] = [
        ("micro-redis", redis_down, lambda: micro_store("redis", address=("127.0.0.1:6379",))),
        ("redis.asyncio", redis_down, raw_redis),
        ("micro-postgres", postgres_down, micro_postgres),
        ("asyncpg", postgres_down, raw_asyncpg),
        ("micro memory", None, lambda: micro_store("memory")),
        ("micro sqlite", None, lambda: micro_store("sqlite", path=str(ctx.scratch / "bench-store.db"))),
    ]
    rows: list[Row] = []
    for name, reason, measure_system in systems:
        ctx.log(f"  store: {name}")
        if reason is None:
            try:
                rows += await measure_system()
                continue
            except Exception as exc:  # one broken store must not hide the others
                reason = f"{type(exc).__name__}: {exc}"
        rows += [unavailable(f"{GROUP} {phase}", name, reason, "rec/s") for phase in _PHASES]
    return rows


_PHASES = ("write", "read", "write batch", "read batch")


async def _cleanup_micro(store: Any, table: str) -> None:
    keys = await store.list(table=table)
    for i in range(0, len(keys), 1000):
        await store.delete_many(keys[i : i + 1000], table=table)


def _up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


async def _drop_postgres(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()
