"""What the built-in syncs add to the contract: error wording, the leader's refresh failure, reprs.

The contract itself (cases Y01-Y22) is micro-conformance's ``SyncContract``, run
for memory and file by ``core/tests/test_conformance.py``.
"""

from __future__ import annotations

import asyncio
import math
import time

import pytest
from micro.errors import BackendUnavailable, BadRequest, ConnectionClosed
from micro.sync import Leader, Sync

from .conftest import Maker


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


async def test_leader_as_context_manager_resigns_on_exit(a: Sync, b: Sync) -> None:
    async with await a.leader("election") as leader:
        assert isinstance(leader, Leader)
        assert "leading" in repr(leader)
    assert "lost" in repr(leader)
    assert await b.try_lock("election")
