"""The sync contract (:class:`micro.sync.Sync`): cases Y01-Y22.

Two owners are two instances (:meth:`~micro_conformance.base.Contract.another`),
which must share one backend: for a file- or server-backed sync, make every
instance of a test point at the same place. Lock ids start with the test's
unique prefix. The interface defines no capabilities yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
from typing import ClassVar

import pytest
from micro.errors import BadRequest, ConnectionClosed, LockHeld, LockNotFound, LockTimeout
from micro.sync import Leader, Sync

from .base import Contract

__all__ = ["SyncContract"]


class SyncContract(Contract[Sync]):
    """The behaviour every :class:`~micro.sync.Sync` shares; see :mod:`micro.sync.base`."""

    interface = "sync"
    #: The lock TTL, in seconds, used by expiry cases; raise it for a backend whose expiry is coarse.
    ttl: ClassVar[float] = 0.3

    @pytest.fixture
    def sync(self, subject: Sync) -> Sync:
        return subject

    async def _held_elsewhere(self, sync: Sync, id: str) -> bool:
        """Whether ``id`` is held, as seen by a fresh owner (which releases it again if it got it)."""
        probe = await self.another()
        if await probe.try_lock(id, ttl=5):
            await probe.unlock(id)
            return False
        return True

    async def test_y01_owner_locks_and_unlocks(self, sync: Sync) -> None:
        """The owner takes a lock, releases it, and can take it again; so can another owner then."""
        id = self.names("lock")
        await sync.lock(id, ttl=10, wait=1)
        assert await self._held_elsewhere(sync, id)
        await sync.unlock(id)
        assert not await self._held_elsewhere(sync, id)
        assert await sync.try_lock(id, ttl=10)
        await sync.unlock(id)

    async def test_y02_try_lock_on_a_held_lock_returns_false(self, sync: Sync) -> None:
        """try_lock of a held lock returns False without raising, for another owner and for the holder itself."""
        id = self.names("lock")
        other = await self.another()
        assert await sync.try_lock(id, ttl=10) is True
        assert await other.try_lock(id, ttl=10) is False
        assert await sync.try_lock(id, ttl=10) is False, "locks must not be re-entrant"
        await sync.unlock(id)
        assert await other.try_lock(id, ttl=10) is True
        await other.unlock(id)

    async def test_y03_waiting_lock_times_out_after_wait(self, sync: Sync) -> None:
        """lock() of a lock held elsewhere raises LockTimeout once wait has passed, not much sooner or later."""
        id = self.names("lock")
        other = await self.another()
        await other.lock(id, ttl=10, wait=1)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(LockTimeout):
            await sync.lock(id, ttl=10, wait=0.3)
        elapsed = loop.time() - started
        assert 0.25 <= elapsed < 0.3 + 2.0, f"lock(wait=0.3) gave up after {elapsed:.2f}s"
        with pytest.raises(LockTimeout):
            await sync.lock(id, ttl=10, wait=0)

    async def test_y04_unlock_errors_name_the_situation(self, sync: Sync) -> None:
        """unlock of a lock nobody holds raises LockNotFound; of another owner's, LockHeld, and it stays held."""
        id = self.names("lock")
        with pytest.raises(LockNotFound):
            await sync.unlock(id)
        other = await self.another()
        await other.lock(id, ttl=10, wait=1)
        with pytest.raises(LockHeld):
            await sync.unlock(id)
        with pytest.raises(LockHeld):
            await sync.refresh(id, ttl=10)
        assert await sync.try_lock(id, ttl=10) is False, "a failed unlock by a non-owner released the lock"
        await other.unlock(id)
        with pytest.raises(LockNotFound):
            await other.unlock(id)

    async def test_y05_ttl_lapses_and_the_lock_is_free(self, sync: Sync) -> None:
        """A lock taken with a ttl lapses by itself: its former owner's unlock raises LockNotFound; others take it."""
        id = self.names("lock")
        await sync.lock(id, ttl=self.ttl, wait=1)
        other = await self.another()
        assert await other.try_lock(id, ttl=10) is False

        async def lapsed() -> None:
            with pytest.raises(LockNotFound):
                await sync.unlock(id)

        await self.eventually(lapsed, "the lock lapsing after its ttl")
        assert await other.try_lock(id, ttl=10) is True
        await other.unlock(id)

    async def test_y06_refresh_extends_a_held_lock(self, sync: Sync) -> None:
        """refresh() pushes the lapse back; a lapsed lock cannot be refreshed (LockNotFound)."""
        id, short = self.names("lock"), self.names("short")
        await sync.lock(id, ttl=self.ttl, wait=1)
        await sync.refresh(id, ttl=30)
        await asyncio.sleep(self.ttl * 2)  # past the original ttl: the lock must still be held
        assert await self._held_elsewhere(sync, id), "the lock lapsed at its original ttl despite refresh()"
        await sync.unlock(id)
        await sync.lock(short, ttl=self.ttl, wait=1)

        async def lapsed() -> bool:
            return not await self._held_elsewhere(sync, short)

        await self.eventually(lapsed, "the unrefreshed lock lapsing")
        with pytest.raises(LockNotFound):
            await sync.refresh(short, ttl=30)

    async def test_y07_independent_ids_do_not_block_each_other(self, sync: Sync) -> None:
        """Holding one id does not stop another owner from taking a different id."""
        other = await self.another()
        a, b = self.names("a"), self.names("b")
        await sync.lock(a, ttl=10, wait=1)
        await other.lock(b, ttl=10, wait=1)
        assert await sync.try_lock(b, ttl=10) is False
        await sync.unlock(a)
        await other.unlock(b)

    async def test_y08_contenders_never_overlap(self, sync: Sync) -> None:
        """Six owners taking one lock in turn, twice each, are never inside it at the same time."""
        id = self.names("lock")
        owners = [await self.another() for _ in range(6)]
        inside = 0
        most = 0
        turns = 0

        async def worker(owner: Sync) -> None:
            nonlocal inside, most, turns
            for _ in range(2):
                await owner.lock(id, ttl=10, wait=self.timeout * 2)
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0.005)
                inside -= 1
                turns += 1
                await owner.unlock(id)

        await asyncio.gather(*(worker(o) for o in owners))
        assert (most, turns) == (1, 12), f"{most} owners held the lock at once"

    async def test_y09_a_waiter_gets_the_lock_when_it_is_released(self, sync: Sync) -> None:
        """A lock() waiting for a held lock returns soon after the holder unlocks."""
        id = self.names("lock")
        other = await self.another()
        await other.lock(id, ttl=30, wait=1)
        waiting = asyncio.ensure_future(sync.lock(id, ttl=10, wait=self.timeout))
        await self.quiet()
        assert not waiting.done(), "lock() returned while another owner held the lock"
        await other.unlock(id)
        await asyncio.wait_for(waiting, timeout=self.timeout)
        assert await other.try_lock(id, ttl=10) is False, "the waiter returned without holding the lock"
        await sync.unlock(id)

    async def test_y10_cancelled_lock_leaves_nothing_held(self, sync: Sync) -> None:
        """Cancelling a waiting lock() never leaves the lock held by the canceller."""
        id = self.names("lock")
        other = await self.another()
        await other.lock(id, ttl=30, wait=1)
        waiting = asyncio.ensure_future(sync.lock(id, ttl=30, wait=None))
        await asyncio.sleep(0.05)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await other.unlock(id)
        # A lock() that went on in the background would take the lock at its next poll: give it time to.
        await asyncio.sleep(max(self.quiet_period, 0.3))
        assert not await self._held_elsewhere(sync, id), "a cancelled lock() left the lock held"

    async def test_y11_close_releases_the_instances_locks(self, sync: Sync) -> None:
        """close() releases every lock the instance holds, and repeats safely."""
        id = self.names("lock")
        owner = await self.another()
        await owner.lock(id, ttl=30, wait=1)
        await owner.close()
        await owner.close()
        assert await sync.try_lock(id, ttl=10) is True, "close() left the instance's lock held"
        await sync.unlock(id)

    async def test_y12_unstarted_instance_refuses(self) -> None:
        """An instance never started, or closed, raises ConnectionClosed rather than locking."""
        unstarted = await self.make()
        self.later(unstarted.close)
        with pytest.raises(ConnectionClosed):
            await unstarted.try_lock(self.names("lock"), ttl=10)
        closed = await self.another()
        await closed.close()
        with pytest.raises(ConnectionClosed):
            await closed.try_lock(self.names("after"), ttl=10)

    async def test_y13_bad_input_raises_bad_request(self, sync: Sync) -> None:
        """An empty id, a ttl not positive and finite, a wait negative, NaN or not a number: BadRequest."""
        with pytest.raises(BadRequest):
            await sync.try_lock("", ttl=10)
        with pytest.raises(BadRequest):
            await sync.unlock("")
        for ttl in (0, -1, math.inf, math.nan, "5"):
            with pytest.raises(BadRequest):
                await sync.try_lock(self.names("lock"), ttl=ttl)  # type: ignore[arg-type]
            with pytest.raises(BadRequest):
                await sync.lock(self.names("lock"), ttl=ttl, wait=0)  # type: ignore[arg-type]
        for wait in (-1, math.nan, "5s"):
            with pytest.raises(BadRequest):
                await sync.lock(self.names("lock"), ttl=10, wait=wait)  # type: ignore[arg-type]
        with pytest.raises(BadRequest):
            await sync.leader("")
        with pytest.raises(BadRequest):
            await sync.leader(self.names("lock"), ttl=None)  # type: ignore[arg-type]
        with pytest.raises(BadRequest):
            await sync.refresh(self.names("lock"), ttl=0)
        assert not await self._held_elsewhere(sync, self.names("lock"))

    async def test_y14_exactly_one_leader_and_resign_hands_over(self, sync: Sync) -> None:
        """Of three candidates one leads; resigning sets lost and elects another; leader() and lock() contend."""
        id = self.names("election")
        candidates = [await self.another() for _ in range(3)]
        campaigns = [asyncio.ensure_future(c.leader(id, ttl=5)) for c in candidates]
        for campaign in campaigns:
            self.later(functools.partial(_resign, campaign))
        await self.eventually(lambda: any(c.done() for c in campaigns), "a leader being elected")
        await self.quiet()
        elected = [c for c in campaigns if c.done()]
        assert len(elected) == 1, f"{len(elected)} candidates lead at once"
        leader = elected[0].result()
        leading = leader.is_leader
        assert await sync.try_lock(id, ttl=10) is False, "lock() could take an election's lock from its leader"
        await leader.resign()
        await leader.resign()
        assert (leading, leader.lost.is_set(), leader.is_leader) == (True, True, False)
        await self.eventually(lambda: sum(c.done() for c in campaigns) == 2, "the next leader after a resignation")
        assert sum(1 for c in campaigns if c.done() and c.result().is_leader) == 1

    async def test_y15_leader_keeps_its_lease_past_the_ttl(self, sync: Sync) -> None:
        """A leader refreshes its lock in the background: after several ttls it still leads and others are out."""
        id = self.names("election")
        # At least a second: a leader gives up when no refresh got through within 0.9 ttl, and on a
        # loaded machine a process (or the backend) can stall for longer than 0.3 s; that is a lease
        # correctly lost, not what this case is about (refreshing at all).
        ttl = max(self.ttl, 1.0)
        leader = await sync.leader(id, ttl=ttl)
        self.later(leader.resign)
        await asyncio.sleep(ttl * 3)  # the lease must outlive its ttl for this to mean anything
        assert leader.is_leader, "the leader lost its lease while its event loop was free"
        assert await self._held_elsewhere(sync, id)
        await leader.resign()
        assert not await self._held_elsewhere(sync, id), "resign() did not release the election's lock"

    async def test_y16_a_lock_without_ttl_is_held_until_unlocked(self, sync: Sync) -> None:
        """ttl=None holds the lock past any ttl the contract uses, until its owner unlocks it."""
        id = self.names("lock")
        await sync.lock(id, ttl=None, wait=1)
        await asyncio.sleep(self.ttl * 2)  # past the ttls the other cases use: it must still be held
        assert await self._held_elsewhere(sync, id), "a lock taken with ttl=None lapsed"
        await sync.unlock(id)
        assert not await self._held_elsewhere(sync, id)

    async def test_y17_instances_with_one_owner_share_locks_and_owners_default_unique(self) -> None:
        """Two instances given the same `owner` are one owner; instances without one are distinct owners."""
        owner = self.names("owner")
        one, two = await self.another(owner=owner), await self.another(owner=owner)
        assert one.owner == two.owner == owner
        id = self.names("lock")
        await one.lock(id, ttl=10, wait=1)
        assert await two.try_lock(id, ttl=10) is False, "locks must not be re-entrant, even across instances"
        await two.unlock(id)  # the same owner may release it
        assert not await self._held_elsewhere(one, id)
        a, b = await self.another(), await self.another()
        assert a.owner and b.owner and a.owner != b.owner, f"default owners {a.owner!r} and {b.owner!r}"

    async def test_y18_prefixes_separate_lock_spaces(self) -> None:
        """Instances with different `prefix` options never contend for the same id."""
        one = await self.another(prefix=self.names("app1/"))
        two = await self.another(prefix=self.names("app2/"))
        id = "lock"
        await one.lock(id, ttl=10, wait=1)
        assert await two.try_lock(id, ttl=10) is True, "a lock in one prefix blocked the same id in another"
        await one.unlock(id)
        await two.unlock(id)

    async def test_y19_a_leader_learns_when_its_lock_is_taken_away(self, sync: Sync) -> None:
        """If the election's lock is released behind the leader's back and taken, the leader's lost is set."""
        id = self.names("election")
        leader = await sync.leader(id, ttl=self.ttl)
        self.later(leader.resign)
        await sync.unlock(id)  # behind the leader's back
        other = await self.another()
        assert await other.try_lock(id, ttl=30) is True
        await asyncio.wait_for(leader.wait_lost(), self.timeout)
        assert not leader.is_leader
        await leader.resign()  # not an error: the lock is someone else's now
        assert await self._held_elsewhere(sync, id), "resign() released a lock another owner holds"
        await other.unlock(id)

    async def test_y20_close_resigns_leaderships(self) -> None:
        """close() ends the instance's leaderships: lost is set and another candidate is elected."""
        id = self.names("election")
        owner = await self.another()
        leader = await owner.leader(id, ttl=30)
        await owner.close()
        assert leader.lost.is_set() and not leader.is_leader, "close() left the leadership standing"
        successor = await (await self.another()).leader(id, ttl=30, wait=self.timeout)
        self.later(successor.resign)
        assert successor.is_leader

    async def test_y21_leader_as_a_context_manager_resigns_on_exit(self, sync: Sync) -> None:
        """`async with await sync.leader(id)` resigns when the block ends, even on an exception."""
        id = self.names("election")
        with contextlib.suppress(LookupError):
            async with await sync.leader(id, ttl=30) as leader:
                assert leader.is_leader
                raise LookupError("leaving the block by an exception")
        assert leader.lost.is_set()
        assert not await self._held_elsewhere(sync, id), "the block ended but the election's lock is still held"

    async def test_y22_a_cancelled_try_lock_leaves_nothing_held(self, sync: Sync) -> None:
        """A try_lock() cancelled at any point, its outcome unknown to the caller, never leaves the lock held."""
        id = self.names("lock")
        for _ in range(20):
            attempt = asyncio.ensure_future(sync.try_lock(id, ttl=30))
            await asyncio.sleep(0)  # let it start, so it may be cancelled while its outcome is unknown
            attempt.cancel()
            try:
                won = await attempt
            except asyncio.CancelledError:
                won = False
            if won:
                await sync.unlock(id)

        async def free() -> bool:
            return not await self._held_elsewhere(sync, id)

        await self.eventually(free, "the lock being free after cancelled try_lock() calls")


async def _resign(campaign: asyncio.Future[Leader]) -> None:
    if not campaign.done():
        campaign.cancel()
        await asyncio.gather(campaign, return_exceptions=True)
    elif not campaign.cancelled() and campaign.exception() is None:
        await campaign.result().resign()
