"""Deliberately broken implementations: one per rule of micro_conformance.rules.

Their own attributes start with ``_bk_`` so that they never shadow a private name of the
implementation they derive from.

Each is an embedded default with one defect, written against the public
interface (it overrides public methods and calls ``super()``), so it keeps
breaking the same rule however the default is implemented inside. The exceptions
are rules the base class enforces for every backend (capability checks, the
lifecycle): an entry for one of those (its docstring starts "Goes round the
base") overrides the public method, or the base's own hook, to skip the check,
as a plugin that overrides the public method would. ``CATALOGUE``
pairs each with the rule it breaks; ``test_catalogue.py`` runs the whole
contract against each and checks that the cases which fail are that rule's,
and that their messages name it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import importlib
import json
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from micro.auth.jwt import JWTAuth
from micro.broker import Event, Message
from micro.broker.memory import MemoryBroker
from micro.codec.json import JSONCodec
from micro.config import ChangeSet
from micro.config.base import SourceWatcher
from micro.config.memory import MemorySource
from micro.errors import (
    BadRequest,
    CodecError,
    ConnectionClosed,
    InvalidToken,
    LockHeld,
    MessageTooLarge,
    MicroError,
    RecordNotFound,
    ServiceNotFound,
    Timeout,
    Unavailable,
)
from micro.network import Route
from micro.network.mucp import MUCPNetwork
from micro.network.router import Table
from micro.registry import Service, Watcher
from micro.registry.base import check_ttl
from micro.registry.memory import MemoryRegistry
from micro.store import Record
from micro.store.memory import MemoryStore
from micro.sync.memory import MemorySync
from micro.transport import Message as Frame
from micro.transport import Socket
from micro.transport.memory import MemoryTransport


@dataclass(frozen=True)
class Entry:
    """One broken implementation: the rule it breaks, and how to build it."""

    #: The rule (micro_conformance.rules) whose cases must catch it, and only them.
    rule: str
    #: What is wrong, in a few words (the parametrize id).
    defect: str
    #: The contract, as ``module:Class`` under micro_conformance.
    contract: str
    #: The healthy built-in it derives from, as registered (``"memory"``).
    name: str
    #: The broken class; built from the healthy instance's options.
    impl: type | None = None
    #: Class attributes of the contract subclass (a shorter ttl, capabilities).
    attrs: dict[str, Any] = field(default_factory=dict)
    #: Instead of ``impl``: ``async make(contract, **options)``.
    make: Callable[..., Awaitable[Any]] | None = None


# -- store -----------------------------------------------------------------------------------------


class StoreTracksStart(MemoryStore):
    """Knows whether it is started, through the public start()/close() only."""

    _bk_up = False

    async def start(self):
        await super().start()
        self._bk_up = True

    async def close(self):
        self._bk_up = False
        await super().close()


class StoreCloseTwiceFails(MemoryStore):
    _bk_closed = False

    async def start(self):
        self._bk_closed = False
        await super().start()

    async def close(self):
        if self._bk_closed:
            raise ConnectionClosed("this store is already closed")
        self._bk_closed = True
        await super().close()


class StoreStartsItself(StoreTracksStart):
    async def _bk_wake(self):
        if not self._bk_up:
            await self.start()

    async def read(self, key, **kw):
        await self._bk_wake()
        return await super().read(key, **kw)

    async def write(self, record, **kw):
        await self._bk_wake()
        return await super().write(record, **kw)

    async def delete(self, key, **kw):
        await self._bk_wake()
        return await super().delete(key, **kw)

    async def list(self, **kw):
        await self._bk_wake()
        return await super().list(**kw)

    async def read_many(self, keys, **kw):
        await self._bk_wake()
        return await super().read_many(keys, **kw)

    async def write_many(self, records, **kw):
        await self._bk_wake()
        return await super().write_many(records, **kw)

    async def delete_many(self, keys, **kw):
        await self._bk_wake()
        return await super().delete_many(keys, **kw)


class StoreTruncatesLargeValues(MemoryStore):
    async def write(self, record, **kw):
        if isinstance(record, Record) and isinstance(record.value, bytes) and len(record.value) > 2**20:
            record = Record(record.key, record.value[: 2**20], record.metadata, record.expiry)
        return await super().write(record, **kw)


class StoreMissWithoutKey(MemoryStore):
    async def read(self, key, **kw):
        try:
            return await super().read(key, **kw)
        except RecordNotFound:
            raise RecordNotFound("record not found") from None


class StoreMergesMetadata(MemoryStore):
    async def write(self, record, **kw):
        with contextlib.suppress(Exception):
            scope = {k: v for k, v in kw.items() if k in ("database", "table")}
            (old,) = await super().read(record.key, **scope)
            record = Record(record.key, record.value, {**old.metadata, **record.metadata}, record.expiry)
        return await super().write(record, **kw)


class StoreSortsCaseInsensitively(MemoryStore):
    async def list(self, **kw):
        return sorted(await super().list(**kw), key=str.lower)


class StoreIgnoresLimit(MemoryStore):
    """Checks limit= like any store, then ignores it."""

    async def list(self, *, limit=None, **kw):
        await super().list(limit=limit, **kw)
        return await super().list(**kw)

    async def read(self, key, *, limit=None, **kw):
        await super().read(key, limit=limit, **kw)
        return await super().read(key, **kw)


class StoreIgnoresTableWithDatabase(MemoryStore):
    @staticmethod
    def _bk_drop_table(kw: dict[str, Any]) -> dict[str, Any]:
        if kw.get("database") is not None:
            kw = {**kw, "table": None}
        return kw

    async def read(self, key, **kw):
        return await super().read(key, **self._bk_drop_table(kw))

    async def write(self, record, **kw):
        return await super().write(record, **self._bk_drop_table(kw))

    async def delete(self, key, **kw):
        return await super().delete(key, **self._bk_drop_table(kw))

    async def list(self, **kw):
        return await super().list(**self._bk_drop_table(kw))


class StoreSharesReadRecords(MemoryStore):
    """Hands out the same Record object again while the stored value is unchanged."""

    def __init__(self, options=None):
        super().__init__(options)
        self._bk_handed: dict[tuple[Any, ...], Record] = {}

    async def read(self, key, **kw):
        records = await super().read(key, **kw)
        if len(records) == 1 and not kw.get("prefix") and not kw.get("suffix"):
            fresh = records[0]
            ident = (key, kw.get("database"), kw.get("table"))
            handed = self._bk_handed.get(ident)
            if handed is not None and handed.value == fresh.value and handed.expiry is None and fresh.expiry is None:
                return [handed]
            self._bk_handed[ident] = fresh
        return records


class StoreStringifiesMetadata(MemoryStore):
    async def write(self, record, **kw):
        try:
            return await super().write(record, **kw)
        except BadRequest:
            metadata = getattr(record, "metadata", None)
            if not (isinstance(metadata, dict) and all(isinstance(k, str) for k in metadata)):
                raise
            if not any(type(v) in (set, object) for v in metadata.values()):
                raise
            fixed = {k: str(v) if type(v) in (set, object) else v for k, v in metadata.items()}
            return await super().write(Record(record.key, record.value, fixed, record.expiry), **kw)


class StoreDropsContendedWrites(MemoryStore):
    _bk_busy = False

    async def write(self, record, **kw):
        if self._bk_busy:
            return None
        self._bk_busy = True
        try:
            await asyncio.sleep(0)
            return await super().write(record, **kw)
        finally:
            self._bk_busy = False


class StoreReadManyDeduplicates(MemoryStore):
    async def read_many(self, keys, **kw):
        if isinstance(keys, list):
            keys = list(dict.fromkeys(keys))
        return await super().read_many(keys, **kw)


class StoreDeletesBatchesOneByOne(MemoryStore):
    async def delete_many(self, keys, **kw):
        await super().read_many(keys, **kw)  # the same argument checks, before anything is deleted
        for key in keys:
            await self.delete(key, **kw)
            await asyncio.sleep(0)


class StoreListsExpiredBySuffix(MemoryStore):
    def __init__(self, options=None):
        super().__init__(options)
        self._bk_expiring: set[str] = set()

    async def write(self, record, *, ttl=None, **kw):
        await super().write(record, ttl=ttl, **kw)
        if ttl is not None or record.expiry is not None:
            self._bk_expiring.add(record.key)

    async def list(self, *, prefix="", suffix="", **kw):
        keys = await super().list(prefix=prefix, suffix=suffix, **kw)
        if suffix and not prefix and not kw:
            keys = sorted({*keys, *(k for k in self._bk_expiring if k.endswith(suffix))})
        return keys


class StoreWithoutTTLHonoursIt(MemoryStore):
    capabilities = frozenset({"bulk"})

    # The store base refuses a TTL the store does not declare; this one goes round that check alone
    # (every other check of the base still applies) and honours the TTL quietly.
    def _require(self, capability):
        if capability != "ttl":
            super()._require(capability)


class StoreBoasts(MemoryStore):
    capabilities = frozenset({"ttl", "bulk", "teleport"})


# -- broker ----------------------------------------------------------------------------------------


class BrokerDropsAfterClose(MemoryBroker):
    _bk_closed = False

    async def start(self):
        self._bk_closed = False
        await super().start()

    async def close(self):
        self._bk_closed = True
        await super().close()

    async def publish(self, topic, message):
        if self._bk_closed:
            return None
        return await super().publish(topic, message)


class BrokerUpcasesHeaders(MemoryBroker):
    async def publish(self, topic, message):
        if isinstance(message, Message) and message.header:
            message = Message(message.body, {k: v.upper() for k, v in message.header.items()})
        return await super().publish(topic, message)


class BrokerReorders(MemoryBroker):
    def __init__(self, options=None):
        super().__init__(options)
        self._bk_later: set[asyncio.Task[None]] = set()

    async def publish(self, topic, message):
        probe = f"{topic}.probe" if isinstance(topic, str) and topic else topic
        await super().publish(probe, message)  # the same checks, on a topic nobody reads

        async def later() -> None:
            await asyncio.sleep(random.uniform(0, 0.003))
            with contextlib.suppress(MicroError):
                await MemoryBroker.publish(self, topic, message)

        task = asyncio.ensure_future(later())
        self._bk_later.add(task)
        task.add_done_callback(self._bk_later.discard)


class BrokerFansOutToTwo(MemoryBroker):
    """Delivers each message to the first two broadcast subscribers of a topic only."""

    def __init__(self, options=None):
        super().__init__(options)
        self._bk_active: dict[str, list[object]] = collections.defaultdict(list)

    async def close(self):
        self._bk_active.clear()
        await super().close()

    async def subscribe(self, topic, handler, *, queue=None, auto_ack=True):
        if queue is not None or not callable(handler):
            return await super().subscribe(topic, handler, queue=queue, auto_ack=auto_ack)
        token = object()

        async def first_two(event: Event) -> None:
            if token in (self._bk_active.get(topic) or [])[:2]:
                await handler(event)

        subscriber = await super().subscribe(topic, first_two, queue=queue, auto_ack=auto_ack)
        self._bk_active[topic].append(token)
        inner = subscriber.unsubscribe

        async def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._bk_active[topic].remove(token)
            await inner()

        subscriber.unsubscribe = unsubscribe  # type: ignore[method-assign]
        return subscriber


class BrokerUnsubscribesLate(MemoryBroker):
    """unsubscribe() of a broadcast subscriber returns at once and takes effect 50 ms later."""

    def __init__(self, options=None):
        super().__init__(options)
        self._bk_later: set[asyncio.Task[None]] = set()
        self._bk_inner: list[Callable[[], Awaitable[None]]] = []

    async def close(self):
        for inner in self._bk_inner:
            await inner()
        self._bk_inner.clear()
        await super().close()

    async def subscribe(self, topic, handler, *, queue=None, auto_ack=True):
        subscriber = await super().subscribe(topic, handler, queue=queue, auto_ack=auto_ack)
        if queue is not None:
            return subscriber
        inner = subscriber.unsubscribe
        self._bk_inner.append(inner)

        async def unsubscribe() -> None:
            async def later() -> None:
                await asyncio.sleep(0.05)
                await inner()

            task = asyncio.ensure_future(later())
            self._bk_later.add(task)
            task.add_done_callback(self._bk_later.discard)

        subscriber.unsubscribe = unsubscribe  # type: ignore[method-assign]
        return subscriber


class BrokerRewrapsHandlerErrors(MemoryBroker):
    async def subscribe(self, topic, handler, *, queue=None, auto_ack=True):
        if not callable(handler):
            return await super().subscribe(topic, handler, queue=queue, auto_ack=auto_ack)

        async def rewrap(event: Event) -> None:
            try:
                await handler(event)
            except Exception as exc:
                raise ValueError(f"handler failed: {exc}") from None

        return await super().subscribe(topic, rewrap, queue=queue, auto_ack=auto_ack)


class BrokerIgnoresQueues(MemoryBroker):
    """Checks queue= like any broker, then subscribes without it."""

    async def subscribe(self, topic, handler, *, queue=None, auto_ack=True):
        if queue is not None and not (isinstance(queue, str) and queue and not any(c.isspace() for c in queue)):
            return await super().subscribe(topic, handler, queue=queue, auto_ack=auto_ack)
        return await super().subscribe(topic, handler, auto_ack=auto_ack)


class BrokerWithoutQueueAcceptsOne(BrokerIgnoresQueues):
    capabilities = frozenset({"ack", "nack", "ordered"})


class BrokerAcksUnsettled(MemoryBroker):
    async def subscribe(self, topic, handler, *, queue=None, auto_ack=True):
        if auto_ack or not callable(handler):
            return await super().subscribe(topic, handler, queue=queue, auto_ack=auto_ack)

        async def settle(event: Event) -> None:
            await handler(event)
            if event.outcome is None:
                await event.ack()

        return await super().subscribe(topic, settle, queue=queue, auto_ack=auto_ack)


class BrokerWithoutAckAcceptsIt(MemoryBroker):
    capabilities = frozenset({"queue", "nack", "ordered"})

    async def subscribe(self, topic, handler, *, queue=None, auto_ack=True):
        return await super().subscribe(topic, handler, queue=queue, auto_ack=True)


class BrokerAllowsSpacesInTopics(MemoryBroker):
    @staticmethod
    def _bk_topic(topic):
        return "-".join(topic.split()) if isinstance(topic, str) and topic.strip() else topic

    async def publish(self, topic, message):
        return await super().publish(self._bk_topic(topic), message)

    async def subscribe(self, topic, handler, *, queue=None, auto_ack=True):
        return await super().subscribe(self._bk_topic(topic), handler, queue=queue, auto_ack=auto_ack)


class BrokerShedsLoad(MemoryBroker):
    """Drops what a queue group has not caught up with, instead of making publish wait."""

    def __init__(self, options=None):
        super().__init__(options)
        self._bk_backlog: collections.Counter[str] = collections.Counter()
        self._bk_grouped: set[str] = set()

    async def subscribe(self, topic, handler, *, queue=None, auto_ack=True):
        if queue is None or not callable(handler):
            return await super().subscribe(topic, handler, queue=queue, auto_ack=auto_ack)
        self._bk_grouped.add(topic)

        async def counted(event: Event) -> None:
            try:
                await handler(event)
            finally:
                self._bk_backlog[topic] -= 1

        return await super().subscribe(topic, counted, queue=queue, auto_ack=auto_ack)

    async def publish(self, topic, message):
        if topic in self._bk_grouped:
            if self._bk_backlog[topic] >= 40:
                return None
            self._bk_backlog[topic] += 1
        return await super().publish(topic, message)


class BrokerClaimsCrossProcess(MemoryBroker):
    """Claims "cross-process", yet each instance keeps to itself (a space of its own, as memory brokers
    had before they shared one per event loop): not even two instances in one process meet."""

    capabilities = frozenset({"queue", "ack", "nack", "ordered", "cross-process"})

    def __init__(self, options=None, **kwargs):
        super().__init__(options, **kwargs)
        self.options = dataclasses.replace(self.options, space=f"alone-{id(self)}")


# -- registry --------------------------------------------------------------------------------------


class RegistryVersionsReversed(MemoryRegistry):
    async def get_service(self, name):
        return list(reversed(await super().get_service(name)))


class RegistryKeepsGhosts(MemoryRegistry):
    """get_service() of a service whose last node was deregistered returns it without nodes."""

    def __init__(self, options=None):
        super().__init__(options)
        self._bk_deregistered: set[str] = set()

    async def deregister(self, service):
        await super().deregister(service)
        if isinstance(service, Service):
            self._bk_deregistered.add(service.name)

    async def get_service(self, name):
        try:
            return await super().get_service(name)
        except ServiceNotFound:
            if name in self._bk_deregistered:
                return [Service(name, "")]
            raise


class RegistryEmptyForUnknown(MemoryRegistry):
    """get_service() of a name never registered returns [] instead of raising."""

    def __init__(self, options=None):
        super().__init__(options)
        self._bk_known: set[str] = set()

    async def register(self, service, *, ttl=None):
        await super().register(service, ttl=ttl)
        self._bk_known.add(service.name)

    async def get_service(self, name):
        try:
            return await super().get_service(name)
        except ServiceNotFound:
            if name in self._bk_known:
                raise
            return []


class RegistryListsOneVersion(MemoryRegistry):
    async def list_services(self):
        seen: dict[str, Service] = {}
        for service in await super().list_services():
            seen.setdefault(service.name, service)
        return list(seen.values())


class RegistrySharesResults(MemoryRegistry):
    """Hands out the same Service objects for 50 ms while nothing was registered."""

    def __init__(self, options=None):
        super().__init__(options)
        self._bk_generation = 0
        self._bk_handed: dict[str, tuple[int, float, list[Service]]] = {}

    async def register(self, service, *, ttl=None):
        self._bk_generation += 1
        await super().register(service, ttl=ttl)

    async def deregister(self, service):
        self._bk_generation += 1
        await super().deregister(service)

    async def get_service(self, name):
        handed = self._bk_handed.get(name)
        if handed is not None and handed[0] == self._bk_generation and time.monotonic() - handed[1] < 0.05:
            return handed[2]
        found = await super().get_service(name)
        self._bk_handed[name] = (self._bk_generation, time.monotonic(), found)
        return found


class RegistryNegativeTTLIsForever(MemoryRegistry):
    async def register(self, service, *, ttl=None):
        if isinstance(ttl, (int, float)) and ttl < 0:
            ttl = 0
        await super().register(service, ttl=ttl)


class RegistryDropsContendedRegistrations(MemoryRegistry):
    _bk_busy = False

    async def register(self, service, *, ttl=None):
        if self._bk_busy:
            return
        self._bk_busy = True
        try:
            await asyncio.sleep(0)
            await super().register(service, ttl=ttl)
        finally:
            self._bk_busy = False


class RegistryRefreshDoesNotExtend(MemoryRegistry):
    async def register(self, service, *, ttl=None):
        if ttl:
            with contextlib.suppress(ServiceNotFound, BadRequest):
                known = {n.id for s in await self.get_service(service.name) for n in s.nodes}
                if known and {n.id for n in service.nodes} <= known:
                    return
        await super().register(service, ttl=ttl)


class RegistryNeverExpires(MemoryRegistry):
    async def register(self, service, *, ttl=None):
        if isinstance(ttl, (int, float)) and ttl > 0:
            ttl = 0
        await super().register(service, ttl=ttl)


class RegistryWithoutTTLHonoursIt(MemoryRegistry):
    """Goes round the base's capability check: honours a ttl it does not declare."""

    capabilities = frozenset({"watch"})

    async def register(self, service, *, ttl=None):
        service.validate()
        await self._open_for_use()
        await self._register(service, check_ttl(ttl, self.options.ttl))


class RegistryHeartbeatIsNews(MemoryRegistry):
    async def register(self, service, *, ttl=None):
        with contextlib.suppress(ServiceNotFound, BadRequest):
            for current in await self.get_service(service.name):
                if current.version == service.version and current.nodes == service.nodes:
                    await super().deregister(current)
        await super().register(service, ttl=ttl)


class NeverStoppedWatcher(Watcher):
    def __init__(self, inner: Watcher) -> None:
        self.inner = inner

    async def __anext__(self):
        return await self.inner.__anext__()

    async def stop(self) -> None:
        await self.inner.stop()

    @property
    def stopped(self) -> bool:
        return False


class RegistryWatcherNeverStopped(MemoryRegistry):
    def watch(self, service=None):
        return NeverStoppedWatcher(super().watch(service))


class RegistryWithoutWatchWatches(MemoryRegistry):
    capabilities = frozenset({"ttl"})

    def watch(self, service=None):
        type(self).capabilities = frozenset({"ttl", "watch"})
        try:
            return super().watch(service)
        finally:
            type(self).capabilities = frozenset({"ttl"})


class RegistryNeedsStart(MemoryRegistry):
    _bk_up = False

    async def start(self):
        await super().start()
        self._bk_up = True

    async def close(self):
        self._bk_up = False
        await super().close()

    async def register(self, service, *, ttl=None):
        if not self._bk_up:
            raise ConnectionClosed("registry not started")
        await super().register(service, ttl=ttl)


class RegistryRestartsAfterClose(MemoryRegistry):
    """Goes round the base's lifecycle rule: a closed registry starts itself again on use."""

    async def _open_for_use(self):
        if self._component_state != "started":
            await self.start()


# -- sync ------------------------------------------------------------------------------------------


class SyncReentrant(MemorySync):
    def __init__(self, options=None):
        super().__init__(options)
        self._bk_mine: set[str] = set()

    async def try_lock(self, id, *, ttl=30.0):
        if id in self._bk_mine:
            return True
        won = await super().try_lock(id, ttl=ttl)
        if won:
            self._bk_mine.add(id)
        return won

    async def unlock(self, id):
        self._bk_mine.discard(id)
        await super().unlock(id)


class SyncForeverIsShort(MemorySync):
    async def lock(self, id, *, ttl=30.0, wait=None):
        return await super().lock(id, ttl=0.2 if ttl is None else ttl, wait=wait)


class SyncWaitsHalf(MemorySync):
    async def lock(self, id, *, ttl=30.0, wait=30.0):
        if isinstance(wait, (int, float)) and wait > 0:
            wait = wait / 2
        return await super().lock(id, ttl=ttl, wait=wait)


class SyncUnlocksQuietly(MemorySync):
    async def unlock(self, id):
        with contextlib.suppress(LockHeld):
            await super().unlock(id)


class SyncShieldsLock(MemorySync):
    async def lock(self, id, *, ttl=30.0, wait=30.0):
        return await asyncio.shield(asyncio.ensure_future(super().lock(id, ttl=ttl, wait=wait)))


class SyncCloseKeepsLocks(MemorySync):
    _bk_closed = False

    async def start(self):
        self._bk_closed = False
        await super().start()

    async def close(self):
        self._bk_closed = True  # but the locks stay held and the leaders keep leading

    async def try_lock(self, id, *, ttl=30.0):
        if self._bk_closed:
            raise ConnectionClosed("closed")
        return await super().try_lock(id, ttl=ttl)


class SyncStartsItself(MemorySync):
    _bk_up = False

    async def start(self):
        await super().start()
        self._bk_up = True

    async def close(self):
        self._bk_up = False
        await super().close()

    async def try_lock(self, id, *, ttl=30.0):
        if not self._bk_up:
            await self.start()
        return await super().try_lock(id, ttl=ttl)


class SyncNegativeWaitIsZero(MemorySync):
    async def lock(self, id, *, ttl=30.0, wait=30.0):
        if isinstance(wait, (int, float)) and wait < 0:
            wait = 0
        return await super().lock(id, ttl=ttl, wait=wait)


class SyncLeaderNeverLearns(MemorySync):
    def __init__(self, options=None):
        super().__init__(options)
        self._bk_elections: set[str] = set()

    async def leader(self, id, *, ttl=30.0, wait=None):
        if isinstance(id, str):
            self._bk_elections.add(id)
        return await super().leader(id, ttl=ttl, wait=wait)

    async def refresh(self, id, *, ttl=30.0):
        try:
            await super().refresh(id, ttl=ttl)
        except LockHeld:
            if id not in self._bk_elections:
                raise


# -- transport -------------------------------------------------------------------------------------


class Wrapped(Socket):
    """A socket that delegates everything; subclasses change one thing."""

    def __init__(self, inner: Socket) -> None:
        self.inner = inner

    @property
    def local(self) -> str:
        return self.inner.local

    @property
    def remote(self) -> str:
        return self.inner.remote

    async def send(self, message):
        await self.inner.send(message)

    async def recv(self, *, timeout=None):
        return await self.inner.recv(timeout=timeout)

    async def close_send(self):
        await self.inner.close_send()

    async def close(self):
        await self.inner.close()


class WrappingTransport(MemoryTransport):
    socket_type: type[Wrapped] = Wrapped

    async def dial(self, address, *, timeout=None):
        return self.socket_type(await super().dial(address, timeout=timeout))


class TruncatingSocket(Wrapped):
    """Cuts bodies over 512 KiB short."""

    async def send(self, message):
        body = message.body
        if isinstance(body, (bytes, bytearray)) and len(body) > 512 * 1024:
            message = Frame(message.header, bytes(body[: 512 * 1024]))
        await self.inner.send(message)


class DroppingOversizeSocket(Wrapped):
    async def send(self, message):
        with contextlib.suppress(MessageTooLarge):
            await self.inner.send(message)


class NoHalfCloseSocket(Wrapped):
    async def close_send(self):
        return None


class UntypedTimeoutSocket(Wrapped):
    async def recv(self, *, timeout=None):
        try:
            return await self.inner.recv(timeout=timeout)
        except Timeout as exc:
            raise TimeoutError(str(exc)) from None


class SharedRecvSocket(Wrapped):
    """Concurrent recv() calls all get the message the first of them receives."""

    _bk_pending: asyncio.Future[Frame] | None = None

    async def recv(self, *, timeout=None):
        if self._bk_pending is None or self._bk_pending.done():
            self._bk_pending = asyncio.ensure_future(self.inner.recv(timeout=timeout))
        return await asyncio.shield(self._bk_pending)


class CloseOnceSocket(Wrapped):
    _bk_closed = False

    async def close(self):
        if self._bk_closed:
            raise ConnectionClosed("socket already closed")
        self._bk_closed = True
        await self.inner.close()


class CoercingHeaderSocket(Wrapped):
    async def send(self, message):
        header = {str(k): str(v) for k, v in message.header.items()} if isinstance(message.header, dict) else {}
        await self.inner.send(Frame(header, message.body))


class SwappedAddressSocket(Wrapped):
    @property
    def remote(self) -> str:
        return self.inner.local


def transport_with(socket_type: type[Wrapped]) -> type[WrappingTransport]:
    return type(f"TransportWith{socket_type.__name__}", (WrappingTransport,), {"socket_type": socket_type})


class TransportListenIgnoresTheOption(MemoryTransport):
    async def listen(self, address, handler):
        return await super().listen(address if address is not None else "127.0.0.1:0", handler)


class TransportDialsAfterClose(MemoryTransport):
    """Goes round the base's lifecycle rule: dials and listens on a closed transport."""

    async def dial(self, address, *, timeout=None):
        return await self._dial(address, timeout)

    async def listen(self, address, handler):
        return await self._listen(address, handler)


class TransportExchangeReadsToTheEnd(MemoryTransport):
    """exchange() reads the socket to its end and returns the last message, not the first answer."""

    async def _exchange(self, address, message, timeout):
        socket = await self.dial(address, timeout=timeout)
        try:
            await socket.send_last(message)
            reply = await socket.recv()
            with contextlib.suppress(ConnectionClosed):
                while True:
                    reply = await socket.recv()
            return reply
        finally:
            await socket.close()


class TransportHandlerFailureStopsListener(MemoryTransport):
    async def listen(self, address, handler):
        listeners: list[Any] = []

        async def guarded(socket: Socket) -> None:
            try:
                await handler(socket)
            except Exception:
                for listener in listeners:
                    await listener.close()
                raise

        listener = await super().listen(address, guarded)
        listeners.append(listener)
        return listener


# -- codec, config, auth ---------------------------------------------------------------------------


class CatalogueCodec(JSONCodec):
    """The JSON codec under a content type of its own, so that it does not clash with the real one."""

    name = "catalogue"
    content_type = "application/x-catalogue"
    aliases = ()


class CodecBareContentType(JSONCodec):
    content_type = "json"  # type: ignore[assignment]


class CodecRaisesTypeError(CatalogueCodec):
    def marshal(self, value):
        try:
            return super().marshal(value)
        except CodecError as exc:
            raise TypeError(str(exc)) from None


class CodecWithoutValuesAcceptsThem(CatalogueCodec):
    capabilities = frozenset({"typed"})


class CodecRefusesMemoryview(CatalogueCodec):
    def unmarshal(self, data, into=None):
        if isinstance(data, memoryview):
            raise CodecError("expected bytes")
        return super().unmarshal(data, into)


def _whole_floats_to_ints(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_whole_floats_to_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _whole_floats_to_ints(v) for k, v in value.items()}
    return value


class CodecWholeFloatsBecomeInts(CatalogueCodec):
    def unmarshal(self, data, into=None):
        decoded = super().unmarshal(data, into)
        return _whole_floats_to_ints(decoded) if into is None else decoded


class CodecTypedGivesDicts(CatalogueCodec):
    def unmarshal(self, data, into=None):
        if into is not None and dataclasses.is_dataclass(into):
            return super().unmarshal(data, None)
        return super().unmarshal(data, into)


class CodecSharesItsBuffer(CatalogueCodec):
    """Keeps its output on the instance between encoding and returning it."""

    def marshal(self, value):
        self._bk_out = super().marshal(value)
        time.sleep(0.0005)  # another thread may encode meanwhile, and overwrite _out
        return self._bk_out


class CodecClaimsBinary(CatalogueCodec):
    capabilities = frozenset({"values", "typed", "binary"})


class CodecClaimsEnvelope(CatalogueCodec):
    capabilities = frozenset({"values", "typed", "envelope"})


class SourceWithoutWriteWrites(MemorySource):
    capabilities = frozenset({"watch"})


class AuthLeaksSecret(JWTAuth):
    async def inspect(self, token):
        return dataclasses.replace(await super().inspect(token), secret="s3cret-leaked")


class AuthNeverRevokes(JWTAuth):
    async def revoke(self, rule):
        return None


class AuthWithoutTokensEnforcesThem(JWTAuth):
    capabilities = frozenset({"rules"})


class AuthWithoutRulesEnforcesThem(JWTAuth):
    capabilities = frozenset({"tokens"})


class FirstReadingWatcher(SourceWatcher):
    """Delivers the reading at watch() time first, then the real changes."""

    def __init__(self, source: MemorySource, inner: SourceWatcher) -> None:
        self.source, self.inner, self.first = source, inner, True

    async def __anext__(self):
        if self.first:
            self.first = False
            return await self.source.read()
        return await self.inner.__anext__()

    async def stop(self):
        await self.inner.stop()


class SourceReplaysFirstReading(MemorySource):
    async def watch(self):
        return FirstReadingWatcher(self, await super().watch())


class AuthNonPositiveExpiryIsDefault(JWTAuth):
    async def token(self, **kw):
        expiry = kw.get("expiry")
        if isinstance(expiry, (int, float)) and expiry <= 0:
            del kw["expiry"]
        return await super().token(**kw)


class SourceNamesNoSource(MemorySource):
    async def read(self):
        changeset = await super().read()
        return ChangeSet(changeset.data, changeset.checksum, "")


class SourceFirstReadForever(MemorySource):
    _bk_first: ChangeSet | None = None

    async def read(self):
        if self._bk_first is None:
            self._bk_first = await super().read()
        return self._bk_first


class SourceWithoutWatchWatches(MemorySource):
    capabilities = frozenset({"write"})

    def watch(self):
        type(self).capabilities = frozenset({"watch", "write"})
        try:
            return super().watch()
        finally:
            type(self).capabilities = frozenset({"write"})


class AuthDropsProvider(JWTAuth):
    async def generate(self, id, **kw):
        account = await super().generate(id, **kw)
        account.metadata.pop("provider", None)
        return account


class AuthAcceptsExpired(JWTAuth):
    async def inspect(self, token):
        try:
            return await super().inspect(token)
        except InvalidToken as exc:
            if "expired" not in str(exc):
                raise
            import jwt
            from micro.auth import Account

            claims = jwt.decode(token, options={"verify_signature": False})
            return Account(id=claims["sub"], issuer=claims["iss"])


# -- selector and server ---------------------------------------------------------------------------


async def _flattening_server(contract: Any, **options: Any) -> Any:
    from micro_conformance.rpc import RPCContract

    def flatten(next: Any) -> Any:
        async def handler(request: Any) -> Any:
            try:
                return await next(request)
            except MicroError as exc:
                raise RuntimeError(str(exc)) from None

        return handler

    server = await RPCContract.make(contract, **options)
    server.wrap(flatten)
    return server


# -- network ---------------------------------------------------------------------------------------


class NetworkConnectTwiceFails(MUCPNetwork):
    """connect() is not idempotent: a second call raises."""

    _bk_connected = False

    async def connect(self) -> None:
        if self._bk_connected:
            raise ConnectionClosed("already connected")
        self._bk_connected = True
        await super().connect()


class NetworkReportsGatewayAddress(MUCPNetwork):
    """Learned routes name the gateway's tunnel address instead of the service node's address."""

    async def routes(self, *, service: str | None = None) -> list[Route]:
        peers = {peer.id: peer.address for peer in self.nodes()}
        return [
            dataclasses.replace(r, address=peers.get(r.gateway, r.address)) if r.gateway else r
            for r in await super().routes(service=service)
        ]


class NetworkKeepsGhostRoutes(MUCPNetwork):
    """Never forgets a route it once reported."""

    async def routes(self, *, service: str | None = None) -> list[Route]:
        seen: dict[tuple[str, str, str], Route] = self.__dict__.setdefault("_bk_seen", {})
        for route in await super().routes():
            seen[(route.service, route.address, route.node)] = route
        return [r for r in seen.values() if service is None or r.service == service]


class _EchoingTable(Table):
    """No split horizon, and routes that lead back to this node are kept."""

    def process(self, gateway: str, entries: Any, *, link: str = "", delay: float = 0.0) -> bool:
        node, self.node = self.node, "\x00nobody"
        try:
            return super().process(gateway, entries, link=link, delay=delay)
        finally:
            self.node = node

    def advert(self, to: str) -> list[Route]:
        return [r for r in self.routes() if r.metric + 1 < self.max_metric]


class NetworkEchoesRoutes(MUCPNetwork):
    """Tells every peer everything (no split horizon) and takes its own routes back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._table = _EchoingTable(self.id, self.options.name, ttl=self._table.ttl)


class NetworkIgnoresNetworkName(MUCPNetwork):
    """Takes adverts from any network as its own."""

    def _learn(self, body: bytes, link_id: str) -> bool:
        try:
            advert = json.loads(body)
            advert["network"] = self.options.name
            body = json.dumps(advert).encode()
        except (ValueError, TypeError):
            pass
        return super()._learn(body, link_id)


class NetworkProxyUnavailableForUnknown(MUCPNetwork):
    """Answers a call to a service it has no route to with Unavailable (the client retries, and waits)."""

    async def _upstream(self, service: str, header: Any, hops: int) -> Any:
        try:
            return await super()._upstream(service, header, hops)
        except ServiceNotFound as exc:
            raise Unavailable(str(exc)) from None


class NetworkPublishesLocallyOnly(MUCPNetwork):
    """Delivers a published message on its own node and never passes it on."""

    async def _flood_out(self, topic: str, body: bytes, header: Any, hops: int) -> None:
        return None


def _network(impl: type[MUCPNetwork]) -> Callable[..., Awaitable[Any]]:
    """``make`` for a broken network: the contract's machine (registry, broker space), the broken class."""

    async def make(contract: Any, **options: Any) -> Any:
        from micro.broker.memory import MemoryBrokerOptions
        from micro_conformance.network import NetworkContract

        healthy = await NetworkContract.make(contract, **options)
        machines = contract._machines()
        registry, space = machines.pop(id(healthy))
        broken = impl(healthy.options, registry=registry, broker=MemoryBroker(MemoryBrokerOptions(space=space)))
        machines[id(broken)] = (registry, space)
        return broken

    return make


def _keys() -> dict[str, Any]:
    return {"key_dir": os.environ["MICRO_CATALOGUE_KEYS"]}


STORE, BROKER, REGISTRY, SYNC = (
    "store:StoreContract",
    "broker:BrokerContract",
    "registry:RegistryContract",
    "sync:SyncContract",
)
TRANSPORT, CODEC, CONFIG, AUTH = (
    "transport:TransportContract",
    "codec:CodecContract",
    "config:ConfigSourceContract",
    "auth:AuthContract",
)
NETWORK = "network:NetworkContract"
#: A registry whose expiry is quick to see, so the catalogue does not wait on the default ttl.
FAST_TTL = {"ttl": 0.3, "ttl_slack": 1.0}

CATALOGUE: list[Entry] = [
    Entry("any.capabilities", "declares-an-unknown-capability", STORE, "memory", StoreBoasts),
    Entry("store.lifecycle", "second-close-raises", STORE, "memory", StoreCloseTwiceFails),
    Entry("store.started", "starts-itself-on-use", STORE, "memory", StoreStartsItself),
    Entry("store.values", "truncates-large-values", STORE, "memory", StoreTruncatesLargeValues),
    Entry("store.misses", "miss-does-not-name-the-key", STORE, "memory", StoreMissWithoutKey),
    Entry("store.overwrite", "merges-metadata", STORE, "memory", StoreMergesMetadata),
    Entry("store.ordering", "sorts-case-insensitively", STORE, "memory", StoreSortsCaseInsensitively),
    Entry("store.ordering", "ignores-limit", STORE, "memory", StoreIgnoresLimit),
    Entry("store.scope", "ignores-table-when-database-given", STORE, "memory", StoreIgnoresTableWithDatabase),
    Entry("store.copies", "shares-read-records", STORE, "memory", StoreSharesReadRecords),
    Entry("store.bad-input", "stringifies-bad-metadata", STORE, "memory", StoreStringifiesMetadata),
    Entry("store.concurrency", "drops-contended-writes", STORE, "memory", StoreDropsContendedWrites),
    Entry("store.batches", "read-many-deduplicates", STORE, "memory", StoreReadManyDeduplicates),
    Entry("store.bulk", "deletes-batches-one-by-one", STORE, "memory", StoreDeletesBatchesOneByOne),
    Entry("store.expiry", "lists-expired-keys-by-suffix", STORE, "memory", StoreListsExpiredBySuffix),
    Entry("store.ttl-absent", "honours-ttl-without-declaring-it", STORE, "memory", StoreWithoutTTLHonoursIt),
    Entry("broker.lifecycle", "publish-after-close-is-dropped", BROKER, "memory", BrokerDropsAfterClose),
    Entry("broker.delivery", "changes-headers", BROKER, "memory", BrokerUpcasesHeaders),
    Entry("broker.ordered", "reorders", BROKER, "memory", BrokerReorders),
    Entry("broker.broadcast", "fans-out-to-two-only", BROKER, "memory", BrokerFansOutToTwo),
    Entry("broker.unsubscribe", "unsubscribes-late", BROKER, "memory", BrokerUnsubscribesLate),
    Entry("broker.isolation", "rewraps-handler-errors", BROKER, "memory", BrokerRewrapsHandlerErrors),
    Entry("broker.queue", "queue-members-all-get-everything", BROKER, "memory", BrokerIgnoresQueues),
    Entry("broker.queue-absent", "accepts-queue-without-declaring-it", BROKER, "memory", BrokerWithoutQueueAcceptsOne),
    Entry("broker.settlement", "acks-unsettled", BROKER, "memory", BrokerAcksUnsettled),
    Entry("broker.ack-absent", "accepts-manual-ack-without-declaring-it", BROKER, "memory", BrokerWithoutAckAcceptsIt),
    Entry("broker.bad-input", "allows-spaces-in-topics", BROKER, "memory", BrokerAllowsSpacesInTopics),
    Entry("broker.back-pressure", "sheds-load", BROKER, "memory", BrokerShedsLoad),
    Entry("broker.cross-process", "claims-cross-process", BROKER, "memory", BrokerClaimsCrossProcess),
    Entry("registry.register", "versions-reversed", REGISTRY, "memory", RegistryVersionsReversed, FAST_TTL),
    Entry("registry.deregister", "keeps-ghost-versions", REGISTRY, "memory", RegistryKeepsGhosts, FAST_TTL),
    Entry("registry.not-found", "empty-for-unknown", REGISTRY, "memory", RegistryEmptyForUnknown, FAST_TTL),
    Entry("registry.list", "lists-one-version", REGISTRY, "memory", RegistryListsOneVersion, FAST_TTL),
    Entry("registry.copies", "shares-results", REGISTRY, "memory", RegistrySharesResults, FAST_TTL),
    Entry("registry.bad-input", "negative-ttl-is-forever", REGISTRY, "memory", RegistryNegativeTTLIsForever, FAST_TTL),
    Entry(
        "registry.concurrency",
        "drops-contended-registrations",
        REGISTRY,
        "memory",
        RegistryDropsContendedRegistrations,
        FAST_TTL,
    ),
    Entry("registry.ttl", "refresh-does-not-extend", REGISTRY, "memory", RegistryRefreshDoesNotExtend, FAST_TTL),
    Entry("registry.ttl", "never-expires", REGISTRY, "memory", RegistryNeverExpires, FAST_TTL),
    Entry("registry.ttl-absent", "honours-ttl-without-declaring-it", REGISTRY, "memory", RegistryWithoutTTLHonoursIt),
    Entry("registry.watch", "heartbeat-is-news", REGISTRY, "memory", RegistryHeartbeatIsNews, FAST_TTL),
    Entry("registry.watch-stop", "watcher-never-stopped", REGISTRY, "memory", RegistryWatcherNeverStopped, FAST_TTL),
    Entry(
        "registry.watch-absent",
        "watches-without-declaring-it",
        REGISTRY,
        "memory",
        RegistryWithoutWatchWatches,
        FAST_TTL,
    ),
    Entry("registry.lifecycle", "needs-start", REGISTRY, "memory", RegistryNeedsStart, FAST_TTL),
    Entry("registry.started", "restarts-after-close", REGISTRY, "memory", RegistryRestartsAfterClose, FAST_TTL),
    Entry("sync.exclusive", "re-entrant", SYNC, "memory", SyncReentrant),
    Entry("sync.ttl", "no-ttl-lapses", SYNC, "memory", SyncForeverIsShort),
    Entry("sync.waiting", "waits-half", SYNC, "memory", SyncWaitsHalf),
    Entry("sync.release", "unlock-of-anothers-lock-is-quiet", SYNC, "memory", SyncUnlocksQuietly),
    Entry("sync.cancellation", "cancelled-lock-still-taken", SYNC, "memory", SyncShieldsLock),
    Entry("sync.close", "close-keeps-locks", SYNC, "memory", SyncCloseKeepsLocks),
    Entry("sync.started", "starts-itself-on-use", SYNC, "memory", SyncStartsItself),
    Entry("sync.bad-input", "negative-wait-is-zero", SYNC, "memory", SyncNegativeWaitIsZero),
    Entry("sync.leader", "leader-never-learns-of-loss", SYNC, "memory", SyncLeaderNeverLearns),
    Entry("transport.listen", "listen-none-ignores-the-option", TRANSPORT, "memory", TransportListenIgnoresTheOption),
    Entry("transport.integrity", "truncates-large-messages", TRANSPORT, "memory", transport_with(TruncatingSocket)),
    Entry("transport.size", "drops-oversized-messages", TRANSPORT, "memory", transport_with(DroppingOversizeSocket)),
    Entry("transport.end-of-stream", "close-send-does-nothing", TRANSPORT, "memory", transport_with(NoHalfCloseSocket)),
    Entry("transport.failure", "untyped-timeout", TRANSPORT, "memory", transport_with(UntypedTimeoutSocket)),
    Entry(
        "transport.sockets",
        "concurrent-receivers-share-messages",
        TRANSPORT,
        "memory",
        transport_with(SharedRecvSocket),
    ),
    Entry("transport.close", "second-close-raises", TRANSPORT, "memory", transport_with(CloseOnceSocket)),
    Entry(
        "transport.handler", "handler-failure-stops-listener", TRANSPORT, "memory", TransportHandlerFailureStopsListener
    ),
    Entry("transport.started", "dials-after-close", TRANSPORT, "memory", TransportDialsAfterClose),
    Entry("transport.exchange", "returns-the-last-message", TRANSPORT, "memory", TransportExchangeReadsToTheEnd),
    Entry("transport.bad-input", "coerces-headers", TRANSPORT, "memory", transport_with(CoercingHeaderSocket)),
    Entry("transport.addresses", "remote-is-local", TRANSPORT, "memory", transport_with(SwappedAddressSocket)),
    Entry("codec.content-type", "bare-content-type", CODEC, "json", CodecBareContentType),
    Entry("codec.errors", "raises-type-error", CODEC, "json", CodecRaisesTypeError),
    Entry("codec.round-trip", "refuses-memoryview", CODEC, "json", CodecRefusesMemoryview),
    Entry("codec.values", "whole-floats-become-ints", CODEC, "json", CodecWholeFloatsBecomeInts),
    Entry("codec.typed", "typed-gives-dicts", CODEC, "json", CodecTypedGivesDicts),
    Entry("codec.concurrency", "shares-its-buffer", CODEC, "json", CodecSharesItsBuffer),
    Entry("codec.binary", "claims-binary", CODEC, "json", CodecClaimsBinary),
    Entry("codec.envelope", "claims-envelope", CODEC, "json", CodecClaimsEnvelope),
    Entry("codec.values-absent", "encodes-values-without-declaring-it", CODEC, "json", CodecWithoutValuesAcceptsThem),
    Entry("config.read", "says-no-source", CONFIG, "memory", SourceNamesNoSource),
    Entry("config.change", "first-read-forever", CONFIG, "memory", SourceFirstReadForever),
    Entry("config.watch", "replays-the-first-reading", CONFIG, "memory", SourceReplaysFirstReading),
    Entry("config.watch-absent", "watches-without-declaring-it", CONFIG, "memory", SourceWithoutWatchWatches),
    Entry("config.write-absent", "writes-without-declaring-it", CONFIG, "memory", SourceWithoutWriteWrites),
    Entry("auth.tokens", "inspect-leaks-the-secret", AUTH, "jwt", AuthLeaksSecret),
    Entry("auth.rules", "never-revokes", AUTH, "jwt", AuthNeverRevokes),
    Entry("auth.tokens-absent", "enforces-tokens-without-declaring-them", AUTH, "jwt", AuthWithoutTokensEnforcesThem),
    Entry("auth.rules-absent", "enforces-rules-without-declaring-them", AUTH, "jwt", AuthWithoutRulesEnforcesThem),
    Entry("auth.bad-input", "non-positive-expiry-is-the-default", AUTH, "jwt", AuthNonPositiveExpiryIsDefault),
    Entry("auth.generate", "drops-the-provider", AUTH, "jwt", AuthDropsProvider),
    Entry("auth.expiry", "accepts-expired-tokens", AUTH, "jwt", AuthAcceptsExpired, {"timeout": 2.5}),
    Entry("network.lifecycle", "second-connect-raises", NETWORK, "mucp", None, {}, _network(NetworkConnectTwiceFails)),
    Entry(
        "network.routes",
        "reports-the-gateway-address",
        NETWORK,
        "mucp",
        None,
        {},
        _network(NetworkReportsGatewayAddress),
    ),
    Entry("network.withdrawal", "keeps-ghost-routes", NETWORK, "mucp", None, {}, _network(NetworkKeepsGhostRoutes)),
    Entry("network.chain", "echoes-routes-back", NETWORK, "mucp", None, {}, _network(NetworkEchoesRoutes)),
    Entry(
        "network.isolation", "ignores-the-network-name", NETWORK, "mucp", None, {}, _network(NetworkIgnoresNetworkName)
    ),
    Entry(
        "network.proxy",
        "unknown-service-is-unavailable",
        NETWORK,
        "mucp",
        None,
        {},
        _network(NetworkProxyUnavailableForUnknown),
    ),
    Entry(
        "network.publish", "publishes-locally-only", NETWORK, "mucp", None, {}, _network(NetworkPublishesLocallyOnly)
    ),
    Entry(
        "server.errors",
        "loses-error-codes",
        "rpc:RPCContract",
        "mucp",
        None,
        {"transports": ("memory",), "content_types": ("application/json",)},
        _flattening_server,
    ),
]


def class_name(entry: Entry) -> str:
    """The test class that runs the contract against ``entry``'s implementation."""
    return "TestBroken_" + "".join(c if c.isalnum() else "_" for c in f"{entry.rule}__{entry.defect}")


def contract_class(entry: Entry) -> type:
    """A contract subclass whose ``make()`` builds ``entry``'s broken implementation."""
    module, _, name = entry.contract.partition(":")
    base = getattr(importlib.import_module(f"micro_conformance.{module}"), name)
    attrs: dict[str, Any] = {"name": entry.name, **entry.attrs}
    if entry.name == "jwt":
        attrs["options"] = {"key_dir": os.environ["MICRO_CATALOGUE_KEYS"]}
    custom, impl = entry.make, entry.impl

    async def make(self: Any, **options: Any) -> Any:
        if custom is not None:
            return await custom(self, **options)
        assert impl is not None
        healthy = await base.make(self, **options)
        return impl(healthy.options)

    attrs["make"] = make
    return type(class_name(entry), (base,), attrs)


def classes() -> dict[str, type]:
    """Every entry's contract class, by name: ``globals().update(classes())`` in a test module."""
    return {class_name(entry): contract_class(entry) for entry in CATALOGUE}
