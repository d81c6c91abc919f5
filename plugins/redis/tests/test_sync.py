"""RedisSync against the real Redis: the Sync contract's rules, plus key layout, faults and other processes."""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Callable

import pytest
import redis.asyncio as redis
from micro.errors import (
    BackendUnavailable,
    BadRequest,
    ConnectionClosed,
    InvalidOption,
    LockHeld,
    LockNotFound,
    LockTimeout,
    Unauthorized,
)
from micro.plugins import get_manager
from micro.sync import Leader, Sync
from micro_redis import RedisSyncOptions
from micro_redis.sync import RedisSync

from .conftest import ADDRESS, eventually, kill_clients

Make = Callable[..., "asyncio.Future[RedisSync]"]


@pytest.fixture
async def make(prefix: str) -> AsyncIterator[Callable[..., object]]:
    made: list[RedisSync] = []

    async def started(**options: object) -> RedisSync:
        options.setdefault("key_prefix", prefix)
        options.setdefault("poll_interval", 0.02)
        sync = RedisSync(RedisSyncOptions(**options))  # type: ignore[arg-type]
        made.append(sync)
        await sync.start()
        return sync

    yield started
    for sync in made:
        await sync.close()


@pytest.fixture
async def a(make: Callable[..., object]) -> RedisSync:
    return await make()  # type: ignore[no-any-return,misc]


@pytest.fixture
async def b(make: Callable[..., object]) -> RedisSync:
    return await make()  # type: ignore[no-any-return,misc]


# -- locks -----------------------------------------------------------------------------------------------


async def test_a_lock_is_a_key_naming_its_owner_with_redis_expiry(a: RedisSync, prefix: str, raw: redis.Redis):
    await a.lock("x", ttl=20)
    value = await raw.get(f"{prefix}x")
    assert value is not None
    owner, _, token = value.decode().rpartition("|")
    assert owner == a.owner
    assert len(token) == 16
    assert 19_000 < await raw.pttl(f"{prefix}x") <= 20_000
    await a.lock("forever", ttl=None)
    assert await raw.pttl(f"{prefix}forever") == -1


async def test_owner_locks_and_unlocks(a: RedisSync, b: RedisSync):
    await a.lock("x")
    assert await b.try_lock("x") is False
    assert await a.try_lock("x") is False  # not re-entrant
    await a.unlock("x")
    assert await b.try_lock("x")


async def test_lock_raises_lock_timeout_after_wait(a: RedisSync, b: RedisSync):
    await a.lock("x")
    started = time.monotonic()
    with pytest.raises(LockTimeout, match="'x'"):
        await b.lock("x", wait=0.2)
    assert 0.2 <= time.monotonic() - started < 2.0
    with pytest.raises(LockTimeout):
        await b.lock("x", wait=0)


async def test_unlock_by_another_owner_is_lock_held_naming_the_holder(a: RedisSync, b: RedisSync):
    await a.lock("x")
    with pytest.raises(LockHeld, match=f"held by {a.owner}$"):
        await b.unlock("x")
    with pytest.raises(LockHeld):
        await b.refresh("x")
    assert not await b.try_lock("x")
    await a.unlock("x")


async def test_unlock_or_refresh_of_a_missing_lock_is_lock_not_found(a: RedisSync):
    with pytest.raises(LockNotFound, match="nobody holds it"):
        await a.unlock("never")
    with pytest.raises(LockNotFound):
        await a.refresh("never")
    await a.lock("x")
    await a.unlock("x")
    with pytest.raises(LockNotFound):
        await a.unlock("x")


async def test_ttl_lapses_and_another_owner_can_take_it(a: RedisSync, b: RedisSync):
    await a.lock("x", ttl=0.2)
    assert not await b.try_lock("x")
    await b.lock("x", wait=3)
    with pytest.raises(LockHeld):
        await a.unlock("x")  # a's lapsed hold cannot release b's
    with pytest.raises(LockHeld):
        await a.refresh("x")
    await b.unlock("x")


async def test_refresh_extends_and_ttl_none_makes_permanent(a: RedisSync, b: RedisSync, prefix: str, raw: redis.Redis):
    await a.lock("x", ttl=0.3)
    await a.refresh("x", ttl=60)
    assert await raw.pttl(f"{prefix}x") > 50_000
    await a.refresh("x", ttl=None)
    assert await raw.pttl(f"{prefix}x") == -1
    with pytest.raises(LockTimeout):
        await b.lock("x", wait=0.4)


async def test_a_waiter_gets_the_lock_soon_after_unlock(a: RedisSync, b: RedisSync):
    await a.lock("x")
    waiter = asyncio.create_task(b.lock("x", wait=5))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    await a.unlock("x")
    # Timed from when unlock() returned: its own round trip to a loaded server is not what is measured.
    released = time.monotonic()
    await asyncio.wait_for(waiter, 2)
    assert time.monotonic() - released < 0.5  # poll_interval is 20 ms in these tests


async def test_contending_instances_never_overlap(make: Callable[..., object]):
    syncs: list[Sync] = [await make() for _ in range(3)]  # type: ignore[misc]
    inside = entries = 0

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


async def test_cancelled_try_lock_leaves_nothing_held(a: RedisSync, b: RedisSync):
    for _ in range(20):
        attempt = asyncio.create_task(a.try_lock("x"))
        await asyncio.sleep(0)  # it may be cancelled while its outcome is unknown
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


async def test_cancelled_waiting_lock_leaves_nothing_held(a: RedisSync, b: RedisSync, make: Callable[..., object]):
    await a.lock("x")
    waiter = asyncio.create_task(b.lock("x", wait=None))
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await a.unlock("x")
    c: RedisSync = await make()  # type: ignore[misc]
    assert await c.try_lock("x")


async def test_close_releases_only_what_this_instance_holds(a: RedisSync, b: RedisSync, make: Callable[..., object]):
    await a.lock("x")
    await a.lock("y", ttl=None)
    await b.lock("z")
    await a.close()
    assert await b.try_lock("x")
    assert await b.try_lock("y")
    c: RedisSync = await make()  # type: ignore[misc]
    assert not await c.try_lock("z")


async def test_same_owner_instances_share_locks_and_prefixes_separate(make: Callable[..., object], prefix: str):
    one: RedisSync = await make(owner="worker-1")  # type: ignore[misc]
    two: RedisSync = await make(owner="worker-1")  # type: ignore[misc]
    await one.lock("x")
    assert not await two.try_lock("x")
    await two.unlock("x")
    app1: RedisSync = await make(prefix="app1/")  # type: ignore[misc]
    app2: RedisSync = await make(prefix="app2/")  # type: ignore[misc]
    await app1.lock("x")
    await app2.lock("x", wait=0)


async def test_operations_need_a_started_instance(prefix: str):
    sync = RedisSync(RedisSyncOptions(key_prefix=prefix))
    with pytest.raises(ConnectionClosed, match="not started"):
        await sync.try_lock("x")
    await sync.start()
    await sync.start()
    await sync.lock("x")
    await sync.close()
    await sync.close()
    with pytest.raises(ConnectionClosed):
        await sync.unlock("x")


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.lock(""), "must not be empty"),
        (lambda s: s.try_lock("\udc00"), "lone surrogate"),
        (lambda s: s.lock("x", ttl=0), "positive"),
        (lambda s: s.try_lock("x", ttl=math.nan), "positive"),
        (lambda s: s.lock("x", wait=-1), "zero or more"),
        (lambda s: s.refresh("x", ttl=math.inf), "positive"),
        (lambda s: s.leader("x", ttl=None), "ttl must be a number"),
    ],
)
async def test_bad_input_is_bad_request(a: RedisSync, b: RedisSync, call: Callable[[Sync], object], message: str):
    with pytest.raises(BadRequest, match=message):
        await call(a)  # type: ignore[misc]
    assert await b.try_lock("x")


# -- leader election -------------------------------------------------------------------------------------


async def test_exactly_one_leader_and_resign_hands_over(a: RedisSync, b: RedisSync):
    first = await a.leader("election", ttl=5)
    with pytest.raises(LockTimeout):
        await b.leader("election", wait=0.1)
    campaign = asyncio.create_task(b.leader("election", ttl=5))
    await asyncio.sleep(0.05)
    assert not campaign.done()
    await first.resign()
    assert not first.is_leader
    second = await asyncio.wait_for(campaign, 3)
    assert second.is_leader
    await second.resign()
    assert await a.try_lock("election")


async def test_the_leader_keeps_its_lock_past_the_ttl(a: RedisSync, b: RedisSync):
    leader = await a.leader("election", ttl=0.3)
    with pytest.raises(LockTimeout):
        await b.leader("election", wait=0.8)
    assert leader.is_leader
    await leader.resign()


async def test_loss_is_signalled_when_the_key_disappears(a: RedisSync, b: RedisSync, prefix: str, raw: redis.Redis):
    leader = await a.leader("election", ttl=0.3)
    await raw.delete(f"{prefix}election")  # as if an operator (or a failover) dropped it
    assert await b.try_lock("election", ttl=10)
    await asyncio.wait_for(leader.wait_lost(), 2)
    await leader.resign()
    assert not await a.try_lock("election")


async def test_loss_is_signalled_when_redis_cannot_be_reached(a: RedisSync, monkeypatch: pytest.MonkeyPatch):
    leader = await a.leader("election", ttl=0.3)
    real_run = RedisSync._run

    async def unreachable(self: RedisSync, script: str, *args: str) -> object:
        if script == "settle":
            raise BackendUnavailable("redis at 127.0.0.1:6379 (MICRO_SYNC_ADDRESS): down")
        return await real_run(self, script, *args)

    monkeypatch.setattr(RedisSync, "_run", unreachable)
    started = time.monotonic()
    await asyncio.wait_for(leader.lost.wait(), 2)
    assert time.monotonic() - started <= 0.5  # no later than the lock itself lapses


async def test_resign_ends_a_refresh_that_swallowed_its_cancellation(
    a: RedisSync, b: RedisSync, monkeypatch: pytest.MonkeyPatch
):
    # redis-py wraps every command in asyncio.wait_for, which on Python 3.11 returns the reply instead of
    # raising when the cancel arrives just as the command finishes: resign() then waited for good.
    real_refresh = RedisSync.refresh
    refreshing = asyncio.Event()
    swallowed = 0

    async def swallowing(self: RedisSync, id: str, *, ttl: float | None = 30.0) -> None:
        nonlocal swallowed
        refreshing.set()
        try:
            await asyncio.sleep(10)  # a command in flight
        except asyncio.CancelledError:
            swallowed += 1
        await real_refresh(self, id, ttl=ttl)

    monkeypatch.setattr(RedisSync, "refresh", swallowing)
    leader = await a.leader("election", ttl=3)
    await asyncio.wait_for(refreshing.wait(), 3)
    resigning = asyncio.create_task(leader.resign())
    done, _ = await asyncio.wait({resigning}, timeout=2)
    assert resigning in done, "resign() waited for a refresh loop that never ends"
    resigning.result()
    assert swallowed >= 1
    assert not leader.is_leader
    assert await b.try_lock("election", ttl=10), "resign() did not release the election's lock"


async def test_close_resigns_and_another_is_elected(a: RedisSync, b: RedisSync):
    async with await a.leader("election", ttl=5) as leader:
        assert isinstance(leader, Leader)
        await a.close()
        assert leader.lost.is_set()
    other = await b.leader("election", wait=1)
    assert other.is_leader


# -- faults and other processes --------------------------------------------------------------------------


async def test_killed_connections_cost_no_error(a: RedisSync, b: RedisSync, raw: redis.Redis):
    async def kill_both() -> int:
        return await kill_clients(raw, a.client_name) + await kill_clients(raw, b.client_name)

    await a.lock("x")
    assert await kill_both() == 2
    assert not await b.try_lock("x")
    await a.refresh("x")
    assert await kill_both() == 2
    await a.unlock("x")
    assert await kill_both() == 1  # a's: b has not connected again yet
    assert await b.try_lock("x")


async def test_a_repeated_acquisition_recognises_its_own_first_attempt(a: RedisSync, b: RedisSync, prefix: str):
    # The first attempt takes the lock but its reply is lost with the connection; the repeat must say "won".
    script = a._scripts["acquire"]
    calls = 0

    async def lost_reply(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        result = await script(*args, **kwargs)  # type: ignore[arg-type]
        if calls == 1:
            raise redis.ConnectionError("Connection closed by server.")
        return result

    a._scripts["acquire"] = lost_reply  # type: ignore[assignment]
    assert await a.try_lock("x")
    assert calls == 2
    assert not await b.try_lock("x")
    await a.unlock("x")


async def test_a_repeated_release_whose_first_attempt_worked_is_not_an_error(a: RedisSync):
    await a.lock("x")
    script = a._scripts["settle"]
    calls = 0

    async def lost_reply(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        result = await script(*args, **kwargs)  # type: ignore[arg-type]
        if calls == 1:
            raise redis.ConnectionError("Connection closed by server.")
        return result

    a._scripts["settle"] = lost_reply  # type: ignore[assignment]
    await a.unlock("x")
    assert calls == 2
    with pytest.raises(LockNotFound):
        await a.unlock("x")


async def test_unreachable_server_fails_start_naming_address_and_variable():
    sync = RedisSync(RedisSyncOptions(address=("127.0.0.1:1",), connect_timeout=2))
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"redis at 127\.0\.0\.1:1 \(MICRO_SYNC_ADDRESS\)"):
        await sync.start()
    assert time.monotonic() - started < 2.5


async def test_wrong_credentials_are_unauthorized():
    with pytest.raises(Unauthorized, match="authentication failed"):
        await RedisSync(RedisSyncOptions(address=("redis://bad:bad@127.0.0.1:6379",))).start()


_HOLDER = """
import asyncio, sys
from micro_redis import RedisSync, RedisSyncOptions

async def main():
    sync = RedisSync(RedisSyncOptions(address=(sys.argv[1],), key_prefix=sys.argv[2]))
    await sync.start()
    await sync.lock("x", ttl=0.5, wait=0)
    print("locked", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_a_lock_of_a_killed_process_lapses_after_its_ttl(a: RedisSync, prefix: str):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER, ADDRESS, prefix, stdout=asyncio.subprocess.PIPE, env=dict(os.environ)
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.strip() == b"locked"
        assert not await a.try_lock("x")
        proc.kill()  # no close(): only the TTL frees the lock
        await a.lock("x", wait=5)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


def test_options_come_from_micro_sync_variables():
    environ = {"MICRO_SYNC": "redis", "MICRO_SYNC_ADDRESS": "redis://127.0.0.1:6379/2", "MICRO_SYNC_PREFIX": "app/"}
    sync = get_manager().create("sync", environ=environ)
    assert isinstance(sync, RedisSync)
    assert sync.address == "127.0.0.1:6379/2"
    assert sync.options.prefix == "app/"
    with pytest.raises(InvalidOption, match="MICRO_SYNC_ADDRESS"):
        get_manager().create("sync", environ={"MICRO_SYNC": "redis", "MICRO_SYNC_ADDRESS": "a:1,b:2"})


async def test_close_waits_for_commands_in_flight_only_for_request_timeout(make: Callable[..., object]):
    sync: RedisSync = await make(request_timeout=0.3)  # type: ignore[misc]
    # A give-back that never finishes, as when Redis stops answering while an interrupted acquisition returns its lock.
    stuck = asyncio.ensure_future(asyncio.Event().wait())
    sync._track(stuck)
    started = time.monotonic()
    await asyncio.wait_for(sync.close(), 5)
    assert time.monotonic() - started < 2
    await asyncio.sleep(0)
    assert stuck.cancelled()
