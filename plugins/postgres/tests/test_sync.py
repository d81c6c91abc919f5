"""The PostgreSQL sync beyond the contract: holders named, TTL lapses, lost sessions free their locks at once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from micro.errors import LockHeld, LockNotFound
from micro_postgres import PostgresSync, PostgresSyncOptions

from .conftest import ADDRESS, eventually


@pytest.fixture
def prefix() -> str:
    return f"micro-test-{uuid.uuid4().hex[:12]}/"


@pytest.fixture
async def pair(prefix: str) -> AsyncIterator[tuple[PostgresSync, PostgresSync]]:
    a = PostgresSync(PostgresSyncOptions(address=(ADDRESS,), prefix=prefix, owner=f"owner-a-{uuid.uuid4().hex[:6]}"))
    b = PostgresSync(PostgresSyncOptions(address=(ADDRESS,), prefix=prefix))
    async with a, b:
        yield a, b


async def test_lock_held_names_the_holder(pair: tuple[PostgresSync, PostgresSync]) -> None:
    a, b = pair
    await a.lock("job", ttl=None)
    with pytest.raises(LockHeld, match=a.owner):
        await b.unlock("job")
    with pytest.raises(LockHeld, match=a.owner):
        await b.refresh("job")


async def test_a_lapsed_lock_is_free_and_its_former_owner_cannot_release_it(
    pair: tuple[PostgresSync, PostgresSync],
) -> None:
    a, b = pair
    assert await a.try_lock("job", ttl=0.1)

    async def taken() -> None:
        assert await b.try_lock("job", ttl=30)

    await eventually(taken)
    with pytest.raises(LockHeld):
        await a.unlock("job")
    await b.unlock("job")
    with pytest.raises(LockNotFound):
        await a.unlock("job")


async def test_retaking_after_a_lapse_holds_the_lock_once(pair: tuple[PostgresSync, PostgresSync]) -> None:
    """Advisory locks are re-entrant on the server: a lapse and a re-take must not leave a second grant behind."""
    a, b = pair
    for _ in range(5):
        assert await a.try_lock("job", ttl=0.02)
        await asyncio.sleep(0.03)  # the lapse timer fires; its release may not have run yet
        assert await a.try_lock("job", ttl=30)
        await a.unlock("job")
        assert await b.try_lock("job", ttl=30), "the lock stayed held after its one unlock"
        await b.unlock("job")


async def test_a_lost_session_frees_its_locks_at_once(pair: tuple[PostgresSync, PostgresSync]) -> None:
    a, b = pair
    leader = await a.leader("lead", ttl=3)
    await a.lock("forever", ttl=None)
    assert await kill(a.owner) == 1

    async def free() -> None:
        assert await b.try_lock("forever", ttl=30)

    await eventually(free)  # a ttl=None lock, and no waiting for any TTL
    await asyncio.wait_for(leader.wait_lost(), timeout=10)
    with pytest.raises(LockHeld):
        await a.unlock("forever")  # a reconnected: the lock is b's now
    assert await b.try_lock("lead", ttl=30)


async def kill(owner: str) -> int:
    """Terminate, server-side, the connection whose application_name is ``owner``; returns how many."""
    conn = await asyncpg.connect(ADDRESS)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", owner
            )
        )
    finally:
        await conn.close()


async def test_after_a_lost_session_the_former_holder_can_take_its_lock_again(
    pair: tuple[PostgresSync, PostgresSync],
) -> None:
    a, _ = pair
    await a.lock("job", ttl=None)
    assert await kill(a.owner) == 1

    async def retaken() -> None:
        assert await a.try_lock("job", ttl=30), "a still believed it held a lock its lost session had released"

    await eventually(retaken)
    await a.unlock("job")


async def test_a_cancelled_unlock_still_releases(pair: tuple[PostgresSync, PostgresSync]) -> None:
    a, b = pair
    for _ in range(5):
        await a.lock("job", ttl=None)
        unlocking = asyncio.ensure_future(a.unlock("job"))
        await asyncio.sleep(0)  # the unlock has started
        unlocking.cancel()
        await asyncio.gather(unlocking, return_exceptions=True)

        async def free() -> None:
            assert await b.try_lock("job", ttl=30)

        await eventually(free)
        await b.unlock("job")


async def test_close_releases_before_returning(prefix: str) -> None:
    a = PostgresSync(PostgresSyncOptions(address=(ADDRESS,), prefix=prefix))
    b = PostgresSync(PostgresSyncOptions(address=(ADDRESS,), prefix=prefix))
    async with b:
        await a.start()
        await a.lock("job", ttl=None)
        await a.close()
        assert await b.try_lock("job", ttl=30)
