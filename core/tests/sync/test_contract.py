"""The Sync contract, run against every embedded implementation (memory, file)."""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from micro.errors import (
    BackendUnavailable,
    BadRequest,
    Conflict,
    ConnectionClosed,
    LockHeld,
    LockNotFound,
    LockTimeout,
    NotFound,
)
from micro.sync import Leader, Sync

from .conftest import Maker, eventually

# -- lock / try_lock / unlock --------------------------------------------------------------------------


async def test_owner_locks_and_unlocks(a: Sync, b: Sync) -> None:
    await a.lock("x")
    assert not await b.try_lock("x")
    await a.unlock("x")
    assert await b.try_lock("x")


async def test_try_lock_on_a_held_lock_is_false_without_raising(a: Sync, b: Sync) -> None:
    assert await a.try_lock("x")
    assert await b.try_lock("x") is False
    assert await a.try_lock("x") is False  # not re-entrant, even for the owner


async def test_lock_raises_lock_timeout_after_wait(a: Sync, b: Sync) -> None:
    await a.lock("x")
    started = time.monotonic()
    with pytest.raises(LockTimeout, match="'x'") as info:
        await b.lock("x", wait=0.2)
    elapsed = time.monotonic() - started
    assert 0.2 <= elapsed < 2.0
    assert isinstance(info.value, TimeoutError)
    assert info.value.code == 408


async def test_wait_zero_makes_one_attempt(a: Sync, b: Sync) -> None:
    await b.lock("free", wait=0)
    await a.lock("x")
    with pytest.raises(LockTimeout):
        await b.lock("x", wait=0)


async def test_unlock_by_another_owner_is_lock_held_and_leaves_it(a: Sync, b: Sync) -> None:
    await a.lock("x")
    with pytest.raises(LockHeld) as info:
        await b.unlock("x")
    assert isinstance(info.value, Conflict)
    assert info.value.code == 409
    assert not await b.try_lock("x")
    await a.unlock("x")


async def test_unlock_of_a_missing_lock_is_lock_not_found(a: Sync) -> None:
    with pytest.raises(LockNotFound) as info:
        await a.unlock("never")
    assert isinstance(info.value, NotFound)
    await a.lock("x")
    await a.unlock("x")
    with pytest.raises(LockNotFound):
        await a.unlock("x")


async def test_ttl_lapses_and_another_owner_can_take_it(a: Sync, b: Sync) -> None:
    await a.lock("x", ttl=0.2)
    assert not await b.try_lock("x")
    await b.lock("x", wait=3)  # succeeds once a's hold lapses
    with pytest.raises(LockHeld):
        await a.unlock("x")
    await b.unlock("x")


async def test_a_lapsed_lock_no_longer_exists(a: Sync) -> None:
    await a.lock("x", ttl=0.1)
    await asyncio.sleep(0.15)  # past the deadline the TTL sets; nothing else has to happen meanwhile
    with pytest.raises(LockNotFound):
        await a.unlock("x")
    with pytest.raises(LockNotFound):
        await a.refresh("x")


async def test_ttl_none_holds_until_unlocked(a: Sync, b: Sync) -> None:
    await a.lock("x", ttl=None)
    assert not await b.try_lock("x")
    await a.unlock("x")
    assert await b.try_lock("x")


async def test_a_waiter_gets_the_lock_soon_after_unlock(a: Sync, b: Sync) -> None:
    await a.lock("x")
    waiter = asyncio.create_task(b.lock("x", wait=5))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    released = time.monotonic()
    await a.unlock("x")
    await asyncio.wait_for(waiter, 2)
    assert time.monotonic() - released < 1.0
    with pytest.raises(LockHeld):
        await a.unlock("x")


async def test_independent_ids_do_not_block_each_other(a: Sync, b: Sync) -> None:
    await a.lock("one")
    await b.lock("two", wait=0)
    assert await a.try_lock("three")
    await a.unlock("one")
    await b.unlock("two")


async def test_contending_tasks_never_overlap(make: Maker) -> None:
    syncs = [await make.started() for _ in range(3)]
    inside = 0
    entries = 0

    async def worker(sync: Sync) -> None:
        nonlocal inside, entries
        for _ in range(5):
            await sync.lock("shared", ttl=10, wait=10)
            try:
                inside += 1
                entries += 1
                assert inside == 1
                await asyncio.sleep(0.002)
                assert inside == 1
            finally:
                inside -= 1
                await sync.unlock("shared")

    await asyncio.wait_for(asyncio.gather(*(worker(s) for s in syncs)), 20)
    assert entries == 15


async def test_refresh_extends_only_the_owners_live_lock(a: Sync, b: Sync) -> None:
    await a.lock("x", ttl=0.3)
    await a.refresh("x", ttl=60)
    with pytest.raises(LockTimeout):
        await b.lock("x", wait=0.5)  # would have lapsed after 0.3 s without the refresh
    with pytest.raises(LockHeld):
        await b.refresh("x")
    with pytest.raises(LockNotFound):
        await a.refresh("missing")


async def test_cancelled_lock_leaves_nothing_held(a: Sync, b: Sync, make: Maker) -> None:
    await a.lock("x")
    waiter = asyncio.create_task(b.lock("x", wait=None))
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await a.unlock("x")
    c = await make.started()
    assert await c.try_lock("x")


async def test_cancelled_try_lock_leaves_nothing_held(a: Sync, b: Sync) -> None:
    for _ in range(20):
        attempt = asyncio.create_task(a.try_lock("x"))
        await asyncio.sleep(0)  # let it start, so it may be cancelled while its outcome is unknown
        attempt.cancel()
        try:
            won = await attempt
        except asyncio.CancelledError:
            won = False
        if won:
            await a.unlock("x")

    async def free() -> None:
        assert await b.try_lock("x")

    await eventually(free)


async def test_close_releases_the_owners_locks(a: Sync, b: Sync) -> None:
    await a.lock("x")
    await a.lock("y", ttl=None)
    await a.close()
    assert await b.try_lock("x")
    assert await b.try_lock("y")


async def test_instances_with_the_same_owner_share_locks(make: Maker) -> None:
    one = await make.started(owner="worker-1")
    two = await make.started(owner="worker-1")
    assert one.owner == two.owner == "worker-1"
    await one.lock("x")
    assert not await two.try_lock("x")
    await two.unlock("x")


async def test_owners_are_unique_by_default(a: Sync, b: Sync) -> None:
    assert a.owner != b.owner
    assert a.owner


async def test_prefixes_separate_lock_spaces(make: Maker) -> None:
    one = await make.started(prefix=make.prefix + "app1/")
    two = await make.started(prefix=make.prefix + "app2/")
    await one.lock("x")
    await two.lock("x", wait=0)


async def test_operations_need_a_started_instance(make: Maker) -> None:
    sync = make()
    with pytest.raises(ConnectionClosed, match="not started"):
        await sync.try_lock("x")
    await sync.start()
    await sync.start()  # idempotent
    await sync.lock("x")
    await sync.close()
    await sync.close()  # idempotent
    with pytest.raises(ConnectionClosed):
        await sync.unlock("x")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.lock(""), "must not be empty"),
        (lambda s: s.lock(3), "must be a str"),
        (lambda s: s.try_lock("\udc00"), "lone surrogate"),
        (lambda s: s.lock("x", ttl=0), "positive"),
        (lambda s: s.lock("x", ttl=-1), "positive"),
        (lambda s: s.try_lock("x", ttl=math.nan), "positive"),
        (lambda s: s.try_lock("x", ttl=math.inf), "positive"),
        (lambda s: s.lock("x", wait=-1), "zero or more"),
        (lambda s: s.lock("x", wait=math.nan), "zero or more"),
        (lambda s: s.lock("x", wait="5s"), "number of seconds"),
        (lambda s: s.unlock(""), "must not be empty"),
        (lambda s: s.refresh("x", ttl=0), "positive"),
        (lambda s: s.leader("x", ttl=None), "ttl must be a number"),
        (lambda s: s.leader(""), "must not be empty"),
    ],
)
async def test_bad_input_is_bad_request(a: Sync, b: Sync, call: object, message: str) -> None:
    with pytest.raises(BadRequest, match=message):
        await call(a)  # type: ignore[operator]
    assert await b.try_lock("x")  # nothing was taken


# -- leader election ------------------------------------------------------------------------------------


async def test_exactly_one_leader_and_resign_hands_over(a: Sync, b: Sync) -> None:
    first = await a.leader("election", ttl=5)
    assert first.is_leader
    with pytest.raises(LockTimeout):
        await b.leader("election", wait=0.1)
    campaign = asyncio.create_task(b.leader("election", ttl=5))
    await asyncio.sleep(0.05)
    assert not campaign.done()
    await first.resign()
    assert first.lost.is_set()
    assert not first.is_leader
    second = await asyncio.wait_for(campaign, 3)
    assert second.is_leader
    assert not await a.try_lock("election")
    await first.resign()  # idempotent
    await second.resign()
    assert await a.try_lock("election")


async def test_the_leader_keeps_its_lock_past_the_ttl(a: Sync, b: Sync) -> None:
    leader = await a.leader("election", ttl=0.3)
    with pytest.raises(LockTimeout):
        await b.leader("election", wait=0.8)  # over two TTLs: only refreshes keep it
    assert leader.is_leader
    await leader.resign()


async def test_loss_is_signalled_when_the_lock_is_taken_away(a: Sync, b: Sync) -> None:
    leader = await a.leader("election", ttl=0.3)
    await a.unlock("election")  # behind the leader's back
    assert await b.try_lock("election", ttl=10)
    await asyncio.wait_for(leader.wait_lost(), 2)
    assert not leader.is_leader
    await leader.resign()  # not an error: the lock is someone else's now
    assert not await a.try_lock("election")


async def test_loss_is_signalled_when_the_backend_cannot_be_reached(a: Sync, monkeypatch: pytest.MonkeyPatch) -> None:
    leader = await a.leader("election", ttl=0.3)
    refreshes = 0

    async def unreachable(id: str, *, ttl: float | None = 30.0) -> None:
        nonlocal refreshes
        refreshes += 1
        raise BackendUnavailable("down")

    monkeypatch.setattr(a, "refresh", unreachable)
    started = time.monotonic()
    await asyncio.wait_for(leader.lost.wait(), 2)
    assert refreshes >= 1
    assert time.monotonic() - started <= 0.5  # no later than the lock itself lapses


async def test_close_resigns_and_signals_loss(a: Sync, b: Sync) -> None:
    leader = await a.leader("election", ttl=5)
    await a.close()
    assert leader.lost.is_set()
    other = await b.leader("election", wait=1)
    assert other.is_leader


async def test_leader_as_context_manager_resigns_on_exit(a: Sync, b: Sync) -> None:
    async with await a.leader("election") as leader:
        assert isinstance(leader, Leader)
        assert "leading" in repr(leader)
    assert "lost" in repr(leader)
    assert await b.try_lock("election")
