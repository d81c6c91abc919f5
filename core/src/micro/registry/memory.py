"""An in-process registry: for tests and single-process systems (Go Micro ``registry/memory.go``).

Every memory registry on one event loop shares one table of services (as the
memory transport shares one address table), so two Services built from
``MICRO_REGISTRY=memory`` in one process find each other. Closing a registry
withdraws the nodes it registered and stops its own watchers, nothing else.
Registries given different ``space`` names (``MICRO_REGISTRY_SPACE``) are
separate worlds: simulated machines, or tests that must not meet.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass, field
from typing import ClassVar

from ..errors import InvalidOption
from .base import Endpoint, Node, Registry, Service, Watcher
from .options import RegistryOptions
from .watch import QueueWatcher, Watchers, diff

__all__ = ["MemoryRegistry", "MemoryRegistryOptions"]


@dataclass(frozen=True, kw_only=True, slots=True)
class MemoryRegistryOptions(RegistryOptions):
    """Settings of the ``memory`` registry."""

    #: Which table of services this registry shares with the others on its event loop
    #: (``MICRO_REGISTRY_SPACE``); registries in different spaces never see each other.
    space: str = "default"

    def __post_init__(self) -> None:
        RegistryOptions.__post_init__(self)
        if not isinstance(self.space, str) or not self.space:
            raise InvalidOption(f"must be a non-empty string, got {self.space!r}", option="space")


@dataclass(slots=True)
class _Version:
    metadata: dict[str, str]
    endpoints: list[Endpoint]
    #: node id -> (node, monotonic expiry or None)
    nodes: dict[str, tuple[Node, float | None]] = field(default_factory=dict)


class _Space:
    """The services every memory registry on one event loop shares, and their watchers."""

    def __init__(self) -> None:
        self._services: dict[str, dict[str, _Version]] = {}
        self._watchers = Watchers()
        #: What watchers were last told about each version, so every change is reported exactly once.
        self._published: dict[tuple[str, str], Service] = {}
        self._reaper: asyncio.TimerHandle | None = None
        self._reap_at = float("inf")

    # -- state ----------------------------------------------------------------------------------

    def _snapshot(self, name: str, version: str, now: float) -> Service | None:
        entry = self._services.get(name, {}).get(version)
        if entry is None:
            return None
        nodes = [node for node, expires in entry.nodes.values() if expires is None or expires > now]
        if not nodes:
            return None
        nodes.sort(key=lambda n: n.id)
        return Service(name, version, dict(entry.metadata), list(entry.endpoints), nodes).copy()

    def _drop_expired(self, name: str, version: str, now: float) -> None:
        versions = self._services.get(name)
        if versions is None or version not in versions:
            return
        entry = versions[version]
        for node_id in [i for i, (_, expires) in entry.nodes.items() if expires is not None and expires <= now]:
            del entry.nodes[node_id]
        if not entry.nodes:
            del versions[version]
            if not versions:
                del self._services[name]

    def _schedule_reap(self, expires: float) -> None:
        # One timer for the earliest expiry: reads already hide lapsed nodes, the timer tells watchers.
        if expires >= self._reap_at:
            return
        if self._reaper is not None:
            self._reaper.cancel()
        loop = asyncio.get_running_loop()
        self._reap_at = expires
        self._reaper = loop.call_at(loop.time() + max(0.0, expires - time.monotonic()), self._reap)

    def _reap(self) -> None:
        self._reaper = None
        self._reap_at = float("inf")
        now = time.monotonic()
        upcoming = float("inf")
        for name, versions in list(self._services.items()):
            for version, entry in list(versions.items()):
                expiries = [e for _, e in entry.nodes.values() if e is not None]
                if expiries and min(expiries) <= now:
                    self._drop_expired(name, version, now)
                    self._publish(name, version, now)
                upcoming = min(upcoming, *(e for e in expiries if e > now), float("inf"))
        if upcoming != float("inf"):
            self._schedule_reap(upcoming)

    def _publish(self, name: str, version: str, now: float) -> None:
        key = (name, version)
        current = self._snapshot(name, version, now)
        result = diff(self._published.get(key), current)
        if result is None:
            return
        if current is None:
            del self._published[key]
        else:
            self._published[key] = current
        self._watchers.publish([result])

    # -- the operations -------------------------------------------------------------------------

    def register(self, service: Service, lifetime: float | None) -> None:
        now = time.monotonic()
        name, version = service.name, service.version
        self._drop_expired(name, version, now)
        copy = service.copy()
        entry = self._services.setdefault(name, {}).get(version)
        if entry is None:
            entry = self._services[name][version] = _Version(copy.metadata, copy.endpoints)
        entry.metadata, entry.endpoints = copy.metadata, copy.endpoints
        expires = None if lifetime is None else now + lifetime
        for node in copy.nodes:
            entry.nodes[node.id] = (node, expires)
        if not entry.nodes:
            # A registration without nodes leaves nothing to find; do not keep an empty version around.
            del self._services[name][version]
            if not self._services[name]:
                del self._services[name]
        if expires is not None and copy.nodes:
            self._schedule_reap(expires)
        self._publish(name, version, now)

    def deregister(self, service: Service) -> None:
        name = service.name
        version = service.version
        now = time.monotonic()
        entry = self._services.get(name, {}).get(version)
        if entry is None:
            return
        for node in service.nodes:
            entry.nodes.pop(node.id, None)
        if not entry.nodes:
            del self._services[name][version]
            if not self._services[name]:
                del self._services[name]
        self._drop_expired(name, version, now)
        self._publish(name, version, now)

    def get_service(self, name: str) -> list[Service]:
        now = time.monotonic()
        return [s for v in sorted(self._services.get(name, {})) if (s := self._snapshot(name, v, now)) is not None]

    def list_services(self) -> list[Service]:
        now = time.monotonic()
        return [
            s
            for name in sorted(self._services)
            for version in sorted(self._services[name])
            if (s := self._snapshot(name, version, now)) is not None
        ]

    def watch(self, service: str | None) -> QueueWatcher:
        return self._watchers.add(service)


# One space per loop: the reaper is a timer of one loop, and a loop is what "in process" means here.
_SPACES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Space]] = weakref.WeakKeyDictionary()


class MemoryRegistry(Registry):
    """Services shared by every memory registry on the running event loop; nothing leaves the process.

    Nodes registered with a ttl are invisible from the moment it lapses, and
    watchers hear of it (``update`` or ``delete``) within a few milliseconds.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({"ttl", "watch"})
    options_type: ClassVar[type[RegistryOptions]] = MemoryRegistryOptions
    options: MemoryRegistryOptions

    def __init__(self, options: RegistryOptions | None = None) -> None:
        super().__init__(options)
        self._space: _Space | None = None
        #: (name, version) -> node ids this registry registered and has not deregistered, withdrawn on close.
        self._mine: dict[tuple[str, str], set[str]] = {}
        # Weak: a watcher that stopped leaves the space's list and may go; stopping it again is harmless.
        self._watching: weakref.WeakSet[QueueWatcher] = weakref.WeakSet()

    def _world(self) -> _Space:
        # Bound on first use, to the loop that uses it first.
        if self._space is None:
            spaces = _SPACES.setdefault(asyncio.get_running_loop(), {})
            space = spaces.get(self.options.space)
            if space is None:
                space = spaces[self.options.space] = _Space()
            self._space = space
        return self._space

    @property
    def _watchers(self) -> Watchers:
        """Every watcher of this registry's space (tests fail them to play a broken backend)."""
        return self._world()._watchers

    async def _close(self) -> None:
        """Withdraw the nodes this registry registered and stop its watchers."""
        mine, self._mine = self._mine, {}
        if self._space is not None:
            for (name, version), ids in mine.items():
                self._space.deregister(Service(name, version, nodes=[Node(i, "-") for i in ids]))
        for watcher in tuple(self._watching):
            await watcher.stop()

    async def _register(self, service: Service, ttl: float | None) -> None:
        self._world().register(service, ttl)
        if service.nodes:
            self._mine.setdefault((service.name, service.version), set()).update(n.id for n in service.nodes)

    async def _deregister(self, service: Service) -> None:
        self._world().deregister(service)
        ids = self._mine.get((service.name, service.version))
        if ids is not None:
            ids.difference_update(n.id for n in service.nodes)
            if not ids:
                del self._mine[(service.name, service.version)]

    async def _get_service(self, name: str) -> list[Service]:
        return self._world().get_service(name)

    async def _list_services(self) -> list[Service]:
        return self._world().list_services()

    def _watch(self, service: str | None) -> Watcher:
        space = self._world()  # fails here, not in the first push, when called without a loop
        watcher = space.watch(service)
        self._watching.add(watcher)
        return watcher
