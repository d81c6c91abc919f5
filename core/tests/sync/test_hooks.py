"""The Sync base enforces the contract: a backend that implements only the three hooks gets it for free.

Each test fails if the base stops enforcing one shared rule (checks, prefix, lifecycle, waiting,
translation, resigning on close).
"""

from __future__ import annotations

from typing import Any

import pytest
from micro.errors import (
    BackendUnavailable,
    BadRequest,
    ConnectionClosed,
    LockHeld,
    LockNotFound,
    LockTimeout,
    MicroError,
)
from micro.sync import Sync, SyncOptions


class DriverError(Exception):
    pass


class Bare(Sync):
    """Locks in a dict, no checks of its own."""

    def __init__(self, options: SyncOptions | None = None) -> None:
        super().__init__(options)
        self.holds: dict[str, str] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.fail_with: Exception | None = None

    def _called(self, *call: Any) -> None:
        self.calls.append(call)
        if self.fail_with is not None:
            raise self.fail_with

    async def _try_lock(self, name: str, ttl: float | None) -> bool:
        self._called("try_lock", name, ttl)
        if name in self.holds:  # not re-entrant: held by this owner counts as held
            return False
        self.holds[name] = self.owner
        return True

    async def _unlock(self, name: str) -> None:
        self._called("unlock", name)
        if name not in self.holds:
            raise LockNotFound(f"cannot unlock lock {name!r}: nobody holds it")
        if self.holds[name] != self.owner:
            raise LockHeld(f"cannot unlock lock {name!r}")
        del self.holds[name]

    async def _refresh(self, name: str, ttl: float | None) -> None:
        self._called("refresh", name, ttl)

    def _translate(self, exc: Exception) -> MicroError | None:
        return BackendUnavailable(f"bare: {exc}") if isinstance(exc, DriverError) else None


async def test_operations_before_start_and_after_close_raise_without_reaching_a_hook() -> None:
    sync = Bare()
    with pytest.raises(ConnectionClosed, match="Bare is not started"):
        await sync.try_lock("a")
    async with sync:
        assert await sync.try_lock("a")
    for call in (sync.lock("a"), sync.try_lock("a"), sync.unlock("a"), sync.refresh("a"), sync.leader("a")):
        with pytest.raises(ConnectionClosed, match="Bare is closed"):
            await call
    assert sync.calls == [("try_lock", "a", 30.0)]


async def test_bad_input_is_refused_before_a_hook_runs() -> None:
    async with Bare() as sync:
        for call in (
            sync.try_lock(""),
            sync.try_lock(3),  # type: ignore[arg-type]
            sync.try_lock("a", ttl=0),
            sync.try_lock("a", ttl=float("nan")),
            sync.lock("a", wait=-1),
            sync.unlock("\ud800"),
            sync.refresh("a", ttl=True),  # type: ignore[arg-type]
            sync.leader("a", ttl=None),  # type: ignore[arg-type]
        ):
            with pytest.raises(BadRequest):
                await call
        assert sync.calls == []


async def test_hooks_get_the_prefixed_name() -> None:
    async with Bare(SyncOptions(prefix="app/")) as sync:
        await sync.try_lock("a", ttl=None)
        await sync.refresh("a", ttl=5)
        await sync.unlock("a")
    assert sync.calls == [("try_lock", "app/a", None), ("refresh", "app/a", 5.0), ("unlock", "app/a")]


async def test_lock_polls_the_try_lock_hook_and_times_out_naming_the_id() -> None:
    async with Bare(SyncOptions(prefix="app/", poll_interval=0.01)) as sync:
        await sync.lock("a", wait=0)  # the first attempt wins
        with pytest.raises(LockTimeout, match=r"lock 'a' is held by another owner; gave up after 0.05s"):
            await sync.lock("a", wait=0.05)
        assert len(sync.calls) >= 3  # polled, not given up after one attempt


async def test_driver_errors_are_translated_and_micro_errors_pass_through() -> None:
    async with Bare() as sync:
        sync.fail_with = DriverError("gone")
        with pytest.raises(BackendUnavailable, match="bare: gone") as caught:
            await sync.try_lock("a")
        assert isinstance(caught.value.__cause__, DriverError)
        sync.fail_with = None
        with pytest.raises(LockNotFound):
            await sync.unlock("never")


async def test_close_resigns_leaderships_before_the_backend_closes() -> None:
    sync = Bare()
    await sync.start()
    leader = await sync.leader("lead", ttl=30)
    assert sync.holds == {"lead": sync.owner}
    await sync.close()
    assert leader.lost.is_set()
    assert sync.holds == {}  # released through the unlock hook while the instance was still open
