"""The etcd sync beyond the contract: leases behind locks, a killed holder, lease bookkeeping, errors."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from micro.errors import BackendUnavailable, InvalidOption, LockHeld
from micro_etcd.options import EtcdSyncOptions
from micro_etcd.sync import EtcdSync

ROOT = "micro-test/sync/"
#: The ttl the killed holder locks with, and the stated slack past it (etcd checks leases every 500 ms).
TTL = 2.0
SLACK = 3.0


def sync(address: str, **options: object) -> EtcdSync:
    return EtcdSync(EtcdSyncOptions(address=(address,), root=ROOT, **options))  # type: ignore[arg-type]


async def test_a_killed_holders_lock_lapses_with_its_lease(etcd_address: str, unique: Callable[[str], str]) -> None:
    """kill -9 of the process holding a lock with a ttl: another owner takes it within TTL + SLACK."""
    id = unique("lock")
    script = Path(__file__).with_name("lock_holder.py")
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), etcd_address, ROOT, id, str(TTL), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        assert (await asyncio.wait_for(process.stdout.readline(), 30)).strip() == b"locked"
        async with sync(etcd_address) as other:
            assert not await other.try_lock(id, ttl=10)
            os.kill(process.pid, signal.SIGKILL)
            loop = asyncio.get_running_loop()
            killed = loop.time()
            await other.lock(id, ttl=10, wait=TTL + SLACK)
            assert loop.time() - killed <= TTL + SLACK
            await other.unlock(id)
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), 10)


async def test_locks_ride_on_leases_that_refresh_and_unlock_revoke(
    etcd_address: str, unique: Callable[[str], str]
) -> None:
    id, forever = unique("lock"), unique("forever")
    async with sync(etcd_address) as owner:
        client = owner._client()
        key = ROOT + id
        await owner.lock(id, ttl=5, wait=1)
        _, (taken,) = await client.range(key, None, "test")
        assert taken.lease, "a lock with a ttl must be attached to a lease"
        assert taken.value == owner.owner.encode()
        await owner.refresh(id, ttl=30)
        _, (refreshed,) = await client.range(key, None, "test")
        assert refreshed.lease not in (0, taken.lease)
        assert await client.keepalive(taken.lease, "test") == 0, "refresh must revoke the lock's old lease"
        await owner.unlock(id)
        assert await client.keepalive(refreshed.lease, "test") == 0, "unlock must revoke the lock's lease"
        # Without a ttl there is no lease: the lock stays until unlocked.
        await owner.lock(forever, ttl=None, wait=1)
        _, (permanent,) = await client.range(ROOT + forever, None, "test")
        assert permanent.lease == 0
        await owner.unlock(forever)


async def test_a_lock_held_by_another_owner_names_it(etcd_address: str, unique: Callable[[str], str]) -> None:
    id = unique("lock")
    async with sync(etcd_address, owner="first") as first, sync(etcd_address, owner="second") as second:
        await first.lock(id, ttl=10, wait=1)
        with pytest.raises(LockHeld, match="held by first"):
            await second.unlock(id)
        await first.unlock(id)


async def test_close_releases_locks_and_their_leases(etcd_address: str, unique: Callable[[str], str]) -> None:
    id = unique("lock")
    owner = sync(etcd_address)
    await owner.start()
    await owner.lock(id, ttl=30, wait=1)
    client = owner._client()
    _, (kv,) = await client.range(ROOT + id, None, "test")
    await owner.close()
    async with sync(etcd_address) as probe:
        c = probe._client()
        assert (await c.range(ROOT + id, None, "test"))[1] == []
        assert await c.keepalive(kv.lease, "test") == 0


@pytest.mark.offline
async def test_unreachable_server_names_address_and_variable() -> None:
    with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1:1 \(MICRO_SYNC_ADDRESS\)"):
        await sync("127.0.0.1:1", timeout=2).start()


@pytest.mark.offline
def test_bad_options_name_the_option() -> None:
    with pytest.raises(InvalidOption, match="root"):
        EtcdSyncOptions(root="")
    with pytest.raises(InvalidOption, match="timeout"):
        EtcdSyncOptions(timeout=0)
