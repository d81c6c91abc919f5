"""An in-process registry: for tests and single-process systems (Go Micro ``registry/memory.go``)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import ClassVar

from ..errors import ServiceNotFound
from .base import Endpoint, Node, Registry, Service, Watcher
from .options import RegistryOptions
from .watch import Watchers, check_name, check_ttl, diff

__all__ = ["MemoryRegistry"]


@dataclass(slots=True)
class _Version:
    metadata: dict[str, str]
    endpoints: list[Endpoint]
    #: node id -> (node, monotonic expiry or None)
    nodes: dict[str, tuple[Node, float | None]] = field(default_factory=dict)


class MemoryRegistry(Registry):
    """Services held in this object; nothing is shared with other instances or processes.

    Nodes registered with a ttl are invisible from the moment it lapses, and
    watchers hear of it (``update`` or ``delete``) within a few milliseconds.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({"ttl", "watch"})

    def __init__(self, options: RegistryOptions | None = None) -> None:
        super().__init__(options)
        self._services: dict[str, dict[str, _Version]] = {}
        self._watchers = Watchers()
        #: What watchers were last told about each version, so every change is reported exactly once.
        self._published: dict[tuple[str, str], Service] = {}
        self._reaper: asyncio.TimerHandle | None = None
        self._reap_at = float("inf")

    async def close(self) -> None:
        """Stop every watcher and forget every service. Idempotent."""
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None
            self._reap_at = float("inf")
        self._services.clear()
        self._published.clear()
        await self._watchers.stop_all()

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

    # -- the interface --------------------------------------------------------------------------

    async def register(self, service: Service, *, ttl: float | None = None) -> None:
        service.validate()
        lifetime = check_ttl(ttl, self.options.ttl)
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

    async def deregister(self, service: Service) -> None:
        name = check_name(service.name)
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

    async def get_service(self, name: str) -> list[Service]:
        check_name(name)
        now = time.monotonic()
        found = [s for v in sorted(self._services.get(name, {})) if (s := self._snapshot(name, v, now)) is not None]
        if not found:
            raise ServiceNotFound(f"service {name!r} not found", id="registry")
        return found

    async def list_services(self) -> list[Service]:
        now = time.monotonic()
        return [
            s
            for name in sorted(self._services)
            for version in sorted(self._services[name])
            if (s := self._snapshot(name, version, now)) is not None
        ]

    def watch(self, service: str | None = None) -> Watcher:
        if service is not None:
            check_name(service)
        asyncio.get_running_loop()  # fail here, not in the first push, when called without a loop
        return self._watchers.add(service)
