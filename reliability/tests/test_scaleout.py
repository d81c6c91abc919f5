"""End to end on the scale-out backends: the greeter demo with etcd, NATS and PostgreSQL, then also over NATS.

``contrib/greeter/demo.py`` (what ``nox -s demo`` runs) starts the greeter in a process of its own and
calls, streams and publishes to it from another, both configured only by ``MICRO_*`` variables:
``MICRO_REGISTRY=etcd MICRO_BROKER=nats MICRO_STORE=postgres``, and the same with
``MICRO_TRANSPORT=nats``, where the greeter opens no port at all. The greeter keeps the greetings it
receives in the store, so the demo's last step reads them back from PostgreSQL; a second pair of
processes checks the store alone: one writes through ``MICRO_STORE=postgres``, the other reads it.
Every name (etcd prefix, subjects, stream, schema) is the test's own and removed afterwards. A
backend or plugin that is missing is a skip here and a failure under ``CI=true``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import sys
import textwrap
import uuid

import pytest
from conftest import REPO, need

ETCD = "127.0.0.1:2379"
NATS = "nats://127.0.0.1:4222"
POSTGRES = "postgresql://127.0.0.1:5432/test"


def _plugins() -> None:
    missing = [p for p in ("micro_etcd", "micro_nats", "micro_postgres") if importlib.util.find_spec(p) is None]
    if not missing:
        return
    message = f"plugins not installed: {', '.join(missing)}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message}: under CI a missing plugin is a failure, not a skip")
    pytest.skip(message)


@pytest.fixture
def backends() -> dict[str, str]:
    """The environment that selects etcd, NATS and PostgreSQL, with names nobody else uses."""
    _plugins()
    need("etcd", 2379)
    need("NATS", 4222)
    need("PostgreSQL", 5432)
    run = uuid.uuid4().hex[:10]
    return {
        "MICRO_REGISTRY": "etcd",
        "MICRO_REGISTRY_ADDRESS": ETCD,
        "MICRO_REGISTRY_PREFIX": f"micro-test/scaleout-{run}/",
        "MICRO_BROKER": "nats",
        "MICRO_BROKER_ADDRESS": NATS,
        "MICRO_BROKER_SUBJECT_PREFIX": f"so{run}.b",
        "MICRO_BROKER_STREAM": f"so{run}_B",
        "MICRO_STORE": "postgres",
        "MICRO_STORE_ADDRESS": POSTGRES,
        "MICRO_STORE_SCHEMA": f"so{run}",
    }


async def _cleanup(env: dict[str, str]) -> int:
    """Check no node is left in etcd, drop the stream and the schema; the store records the schema held."""
    import asyncpg
    import nats
    from micro_etcd._client import Etcd, prefix_end

    etcd = Etcd((ETCD,), variable="test", timeout=5)
    await etcd.open()
    try:
        prefix = env["MICRO_REGISTRY_PREFIX"]
        left = (await etcd.range(prefix, prefix_end(prefix), "test"))[1]
    finally:
        await etcd.close()
    nc = await nats.connect(NATS)
    try:
        try:
            await nc.jetstream().delete_stream(env["MICRO_BROKER_STREAM"])
        except nats.js.errors.NotFoundError:
            pass
    finally:
        await nc.close()
    schema = env["MICRO_STORE_SCHEMA"]
    conn = await asyncpg.connect(POSTGRES)
    try:
        tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", schema)
        records = 0
        for row in tables:
            records += await conn.fetchval(f'SELECT count(*) FROM "{schema}"."{row[0]}"')
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()
    assert left == [], f"the greeter left {len(left)} node(s) in etcd after stopping"
    return int(records)


async def _run(args: list[str], env: dict[str, str], timeout: float = 90) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        out, _ = await process.communicate()
        return -1, out.decode(errors="replace") + f"\n(killed after {timeout}s)"
    assert process.returncode is not None
    return process.returncode, out.decode(errors="replace")


@pytest.mark.parametrize("transport", ["tcp", "nats"])
async def test_the_demo_runs_on_etcd_nats_and_postgres(backends: dict[str, str], transport: str) -> None:
    env = {**os.environ, **backends, "MICRO_TRANSPORT": transport}
    if transport == "nats":
        env["MICRO_TRANSPORT_SERVERS"] = NATS
        env["MICRO_TRANSPORT_SUBJECT_PREFIX"] = f"{backends['MICRO_BROKER_SUBJECT_PREFIX']}.t"
    records = -1
    try:
        code, out = await _run([sys.executable, str(REPO / "contrib" / "greeter" / "demo.py")], env)
    finally:
        records = await _cleanup(backends)
    assert code == 0, out
    assert records == 1, f"the greeter should have kept Bob's greeting in PostgreSQL, found {records} record(s)"
    assert "-> 'Hello Alice'" in out, out
    assert "-> received [1, 2, 3]" in out, out
    assert "BadRequest" in out, out
    assert "the greeter's subscriber received it: ['Bob']" in out, out
    serving = next(line for line in out.splitlines() if "is serving on" in line)
    # Over NATS the greeter registers a name, not a port of this machine.
    assert ("serving on nats-" in serving) == (transport == "nats"), serving


_STORE = """
import asyncio, sys
import micro
from micro.store import Record

async def main():
    store = micro.create("store")
    await store.start()
    try:
        if sys.argv[1] == "write":
            await store.write(Record("greeting", b"hello from another process"))
        else:
            print((await store.read("greeting"))[0].value.decode())
    finally:
        await store.close()

asyncio.run(main())
"""


async def test_two_processes_share_the_postgres_store(backends: dict[str, str]) -> None:
    env = {**os.environ, **backends}
    code = textwrap.dedent(_STORE)
    try:
        written = await _run([sys.executable, "-c", code, "write"], env, timeout=60)
        read = await _run([sys.executable, "-c", code, "read"], env, timeout=60)
    finally:
        await _cleanup(backends)
    assert written[0] == 0, written[1]
    assert read == (0, "hello from another process\n"), read
