"""``etcd``: locks and leader election on etcd keys, leases and transactions (v3 API, through its gateway).

A lock is the key ``<root><prefix><id>`` (by default ``micro/sync/<id>``), whose
value is its holder's :attr:`~micro.sync.Sync.owner`.

* **Taking** a lock is one transaction: "if the key does not exist, create it".
  etcd serialises transactions, so two owners never both win. A lock with a
  ttl is attached to a lease of its own granted just before (whole seconds,
  rounded up; etcd's minimum is 2 s), so etcd deletes it when the lease lapses,
  also when the process that took it was killed.
* **Releasing and refreshing** are transactions that compare the value with
  this owner: a lock that lapsed and was taken by someone else is never
  released or extended by its former owner (:class:`~micro.errors.LockHeld`),
  a missing one raises :class:`~micro.errors.LockNotFound`. A refresh moves the
  lock to a new lease of the new ttl and revokes the old one; a release revokes
  the lock's lease.
* **TTL precision.** Because leases are whole seconds and at least etcd's
  minimum, a lock with a short ttl is held *longer* than asked, never shorter:
  it lapses between ``ttl`` and ``max(ceil(ttl), 2 s) + 0.5 s`` after it was
  taken or refreshed.
* **Waiting** :meth:`~micro.sync.Sync.lock` is the base's: it polls with
  jittered backoff up to :attr:`~micro.sync.SyncOptions.poll_interval`.
* **Leader election** is :class:`micro.sync.Leader`: the leader refreshes its
  lock every ``ttl / 3`` and loses it when a refresh finds it gone or taken.
* **Cancellation.** An acquisition cancelled while its transaction was in
  flight gives the lock back once the transaction's outcome is known.
* **Close** releases the locks this instance took and still holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import Any, ClassVar

from micro.errors import ConnectionClosed, LockHeld, LockNotFound, MicroError
from micro.sync import Sync

from ._client import Etcd, KeyValue, b64
from .options import EtcdSyncOptions
from .registry import lease_seconds

__all__ = ["EtcdSync"]


class EtcdSync(Sync):
    """Distributed locks with TTLs and leader election on etcd; see the module docstring."""

    options_type: ClassVar[type[EtcdSyncOptions]] = EtcdSyncOptions
    options: EtcdSyncOptions

    def __init__(self, options: EtcdSyncOptions | None = None) -> None:
        super().__init__(options)
        self._etcd = Etcd(self.options.address, variable="MICRO_SYNC_ADDRESS", timeout=self.options.timeout)
        #: Lock key -> its lease (0: none), for the locks this instance took and has not released.
        self._held: dict[str, int] = {}
        #: Acquisitions still running after their caller was cancelled, and the releases that undo them.
        self._in_flight: set[asyncio.Future[Any]] = set()

    @property
    def address(self) -> str:
        """The etcd server in use."""
        return self._etcd.address

    async def _start(self) -> None:
        """Find the first server that answers; :class:`~micro.errors.BackendUnavailable` (naming it) if none does."""
        await self._etcd.open()

    async def _close(self) -> None:
        """Release this instance's locks (best effort: what cannot be released lapses with its lease), disconnect."""
        for key in list(self._held):
            with contextlib.suppress(MicroError):
                await self._release(key)
        self._held.clear()
        if self._in_flight:
            await asyncio.wait(list(self._in_flight), timeout=self.options.timeout)
        for straggler in list(self._in_flight):
            straggler.cancel()
        await self._etcd.close()

    def _client(self) -> Etcd:
        if not self._etcd.is_open:
            raise ConnectionClosed(f"the {type(self).__name__} is closed")
        return self._etcd

    def _key(self, name: str) -> str:
        return self.options.root + name

    def _mine(self, key: str) -> dict[str, Any]:
        return {"key": b64(key), "target": "VALUE", "result": "EQUAL", "value": b64(self.owner)}

    # -- hooks --------------------------------------------------------------------------------

    async def _try_lock(self, name: str, ttl: float | None) -> bool:
        key = self._key(name)
        attempt = asyncio.ensure_future(self._acquire(key, ttl))
        try:
            lease = await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # The transaction runs to its end on the server; if it took the lock, give it back.
            self._track(attempt)
            attempt.add_done_callback(functools.partial(self._give_back, key))
            raise
        if lease is None:
            return False
        self._held[key] = lease
        return True

    async def _acquire(self, key: str, ttl: float | None) -> int | None:
        client = self._client()
        doing = f"taking lock {key!r}"
        lease = 0 if ttl is None else await client.grant(lease_seconds(ttl), doing)
        put: dict[str, Any] = {"key": b64(key), "value": b64(self.owner)}
        if lease:
            put["lease"] = str(lease)
        try:
            won, _ = await client.txn(
                [{"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}],
                [{"request_put": put}],
                [],
                doing,
            )
        except BaseException:
            if lease:  # an unattached lease holds nothing; revoking just tidies up
                with contextlib.suppress(MicroError):
                    await client.revoke(lease, doing)
            raise
        if not won:
            if lease:
                await client.revoke(lease, doing)
            return None
        return lease

    async def _unlock(self, name: str) -> None:
        await self._release(self._key(name))

    async def _release(self, key: str) -> None:
        client = self._client()
        doing = f"releasing lock {key!r}"
        won, responses = await client.txn(
            [self._mine(key)],
            [{"request_delete_range": {"key": b64(key), "prev_kv": True}}],
            [{"request_range": {"key": b64(key)}}],
            doing,
        )
        lease = self._held.pop(key, 0)
        if not won:
            self._refuse("unlock", key, responses)
        deleted = ((responses[0] if responses else {}).get("response_delete_range") or {}).get("prev_kvs") or []
        lease = lease or (KeyValue.of(deleted[0]).lease if deleted else 0)
        if lease:
            await client.revoke(lease, doing)

    async def _refresh(self, name: str, ttl: float | None) -> None:
        key = self._key(name)
        client = self._client()
        doing = f"refreshing lock {key!r}"
        lease = 0 if ttl is None else await client.grant(lease_seconds(ttl), doing)
        put: dict[str, Any] = {"key": b64(key), "value": b64(self.owner), "prev_kv": True}
        if lease:
            put["lease"] = str(lease)
        try:
            won, responses = await client.txn(
                [self._mine(key)], [{"request_put": put}], [{"request_range": {"key": b64(key)}}], doing
            )
        except BaseException:
            if lease:
                with contextlib.suppress(MicroError):
                    await client.revoke(lease, doing)
            raise
        if not won:
            if lease:
                await client.revoke(lease, doing)
            self._refuse("refresh", key, responses)
        previous = ((responses[0] if responses else {}).get("response_put") or {}).get("prev_kv")
        old = KeyValue.of(previous).lease if previous else self._held.get(key, 0)
        self._held[key] = lease
        if old and old != lease:
            await client.revoke(old, doing)  # the key moved to the new lease: the old one holds nothing

    def _refuse(self, verb: str, key: str, responses: list[dict[str, Any]]) -> None:
        """Raise why this owner could not ``verb`` ``key``: nobody holds it, or someone else does."""
        name = key[len(self.options.root) :]  # the id with its prefix, as the caller knows it
        kvs = ((responses[0] if responses else {}).get("response_range") or {}).get("kvs") or []
        if not kvs:
            raise LockNotFound(f"cannot {verb} lock {name!r}: nobody holds it")
        holder = KeyValue.of(kvs[0]).value.decode("utf-8", "replace")
        raise LockHeld(f"cannot {verb} lock {name!r}: it is held by {holder}")

    # -- cancelled acquisitions ---------------------------------------------------------------

    def _give_back(self, key: str, attempt: asyncio.Future[int | None]) -> None:
        if attempt.cancelled() or attempt.exception() is not None or attempt.result() is None:
            return
        if not self._etcd.is_open:
            return  # closed meanwhile: the lock lapses with its lease (or stays, without a ttl)
        self._track(asyncio.ensure_future(self._give_back_now(key, attempt.result() or 0)))

    async def _give_back_now(self, key: str, lease: int) -> None:
        """Delete ``key`` if this very acquisition (this owner, this lease) still holds it, and revoke the lease."""
        client = self._client()
        doing = f"giving back lock {key!r} (its taker was cancelled)"
        with contextlib.suppress(MicroError):
            same = {"key": b64(key), "target": "LEASE", "result": "EQUAL", "lease": str(lease)}
            await client.txn([self._mine(key), same], [{"request_delete_range": {"key": b64(key)}}], [], doing)
            if lease:
                await client.revoke(lease, doing)

    def _track(self, future: asyncio.Future[Any]) -> None:
        self._in_flight.add(future)
        future.add_done_callback(self._in_flight.discard)
