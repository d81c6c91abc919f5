"""The built-in selectors: a registry cache kept current by a watch, with demotion of failing nodes.

Go Micro's ``registry/cache`` plus ``selector/default.go``, with ``mark``
actually doing something:

* ``select`` serves a cached copy of the service: a warm call does not touch
  the registry. An entry is fetched on first use, then kept current by one
  registry watch over every service, and fetched again after ``options.ttl``
  seconds in case the watch missed something.
* Concurrent misses for one service share a single ``get_service`` call.
* If the registry fails, the stale entry is served (and the registry retried at
  most once a second); with nothing cached the error is raised as
  :class:`~micro.errors.BackendUnavailable`.
* ``mark(service, node, error)`` demotes a node for ``options.cooldown``
  seconds; the ``Next`` of every selection skips demoted nodes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random as _random
import time
from collections.abc import Iterator, Sequence
from typing import Final

from ..component import Make
from ..errors import BackendUnavailable, BadRequest, MicroError, NoneAvailable, NotSupported, ServiceNotFound
from ..registry.base import Node, Registry, Result, Service, Watcher
from .base import Filter, Next, Selector, Strategy
from .options import SelectorOptions
from .strategy import random

__all__ = ["CacheSelector", "RandomSelector", "RoundRobinSelector"]

_monotonic = time.monotonic
_rng = _random.Random()

#: Seconds between registry attempts while a stale entry is being served.
STALE_RETRY: Final = 1.0
#: Bounds, in seconds, of the pause before the registry watch is re-established after it failed.
WATCH_BACKOFF: Final = (0.1, 5.0)


class _Entry:
    """An immutable snapshot of one service: replaced, never changed, so a ``Next`` keeps a stable view."""

    __slots__ = ("demoted", "expires", "nodes", "services")

    def __init__(self, services: list[Service], expires: float, demoted: dict[str, float]) -> None:
        self.services = services
        self.nodes: tuple[Node, ...] = tuple(node for service in services for node in service.nodes)
        self.expires = expires
        #: node id -> monotonic time its demotion ends; shared by every entry of the service.
        self.demoted = demoted


class CacheSelector(Selector):
    """The shared machinery of :class:`RandomSelector` and :class:`RoundRobinSelector`.

    Subclasses choose the default strategy in :meth:`_strategy`.
    """

    def __init__(
        self, options: SelectorOptions | None = None, *, registry: Registry | None = None, make: Make | None = None
    ) -> None:
        super().__init__(options, registry=registry, make=make)
        self._entries: dict[str, _Entry] = {}
        self._demoted: dict[str, dict[str, float]] = {}
        self._fetches: dict[str, asyncio.Task[_Entry]] = {}
        #: Watch results that arrived while a fetch of their service was in flight, replayed over its result.
        self._pending: dict[str, list[Result]] = {}
        self._watcher: Watcher | None = None
        self._follower: asyncio.Task[None] | None = None
        #: Whether changes reach the cache: a watch is running, or the registry cannot watch at all.
        self._watching = False
        #: Counts watches opened, so a fetch can tell whether one was running throughout.
        self._epoch = 0

    # -- the interface --------------------------------------------------------------------------

    async def select(
        self,
        service: str,
        *,
        filters: Sequence[Filter] = (),
        strategy: Strategy | None = None,
    ) -> Next:
        entry = self._entries.get(service)
        if entry is None or entry.expires <= _monotonic():
            entry = await self._load(service, entry)
        if filters:
            services = entry.services
            for keep in filters:
                services = keep(services)
            nodes = tuple(node for s in services for node in s.nodes)
        else:
            nodes = entry.nodes
        if not nodes:
            raise NoneAvailable(f"service {service!r} has no node that passes the filters", id="selector")
        pick = strategy(nodes) if strategy is not None else self._strategy(service, nodes)
        demoted = entry.demoted
        fail_open = self.options.fail_open

        def next_node() -> Node:
            if not demoted:
                return pick()
            return _avoid(service, pick, nodes, demoted, fail_open)

        return next_node

    def mark(self, service: str, node: Node, error: BaseException | None) -> None:
        if error is None:
            demoted = self._demoted.get(service)
            if demoted:
                demoted.pop(node.id, None)
            return
        if isinstance(error, MicroError) and 400 <= error.code < 500 and error.code != 408:
            return  # the request's fault, not the node's
        self._demoted_of(service)[node.id] = _monotonic() + self.options.cooldown

    def reset(self, service: str) -> None:
        demoted = self._demoted.get(service)
        if demoted:
            demoted.clear()  # in place: entries and live Next callables share this dict

    async def close(self) -> None:
        """Stop the watch, drop the cache and marks, and close the registry if the selector built it. Idempotent."""
        follower, self._follower = self._follower, None
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            await watcher.stop()
        tasks = [t for t in (follower, *self._fetches.values()) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._entries.clear()
        self._demoted.clear()
        self._fetches.clear()
        self._pending.clear()
        self._watching = False
        await self._close_parts()

    # -- strategy -------------------------------------------------------------------------------

    def _strategy(self, service: str, nodes: Sequence[Node]) -> Next:
        """The :data:`Next` used when ``select`` gets no strategy."""
        return random(nodes)

    # -- the cache ------------------------------------------------------------------------------

    def _demoted_of(self, service: str) -> dict[str, float]:
        demoted = self._demoted.get(service)
        if demoted is None:
            demoted = self._demoted[service] = {}
        return demoted

    async def _load(self, service: str, stale: _Entry | None) -> _Entry:
        if not isinstance(service, str) or not service.strip():
            raise BadRequest(f"service name must be a non-empty string, got {service!r}")
        fetch = self._fetches.get(service)
        if fetch is None:
            self._follow()
            self._pending[service] = []
            fetch = asyncio.ensure_future(self._fetch(service, stale))
            fetch.add_done_callback(_consume)
            self._fetches[service] = fetch
        # Shielded: one caller giving up must not cancel the fetch the others wait for.
        return await asyncio.shield(fetch)

    async def _fetch(self, service: str, stale: _Entry | None) -> _Entry:
        epoch = self._epoch if self._watching else None
        try:
            try:
                services = await self.registry.get_service(service)
            except ServiceNotFound:
                services = []
            except Exception as exc:
                if stale is not None:
                    stale.expires = _monotonic() + min(STALE_RETRY, self.options.ttl)
                    return stale
                if isinstance(exc, MicroError):
                    raise
                raise BackendUnavailable(f"registry lookup of {service!r} failed: {exc!r}", id="selector") from exc
            for result in self._pending.get(service, ()):
                services = _apply(services, result)
            if not services:
                self._entries.pop(service, None)
                raise ServiceNotFound(f"service {service!r} not found", id="selector")
            ttl = self.options.ttl
            if epoch is None or epoch != self._epoch or not self._watching:
                # No watch covered the whole lookup, so a change may have slipped past: keep it briefly.
                ttl = min(ttl, STALE_RETRY)
            entry = self._entries[service] = _Entry(_sorted(services), _monotonic() + ttl, self._demoted_of(service))
            return entry
        finally:
            self._fetches.pop(service, None)
            self._pending.pop(service, None)

    # -- the watch ------------------------------------------------------------------------------

    def _follow(self) -> None:
        """Start following the registry, if not already; the watcher exists before any fetch begins."""
        if self._follower is not None and not self._follower.done():
            return
        self._follower = asyncio.ensure_future(self._run_watch(self._open_watch()))

    def _open_watch(self) -> Watcher | None:
        """A new registry watcher, or ``None`` if it cannot be had (now, or ever: see ``_watching``)."""
        try:
            watcher = self.registry.watch()
        except NotSupported:
            self._watching = True  # nothing better than the ttl is possible
            return None
        except Exception:
            return None
        self._watcher = watcher
        self._epoch += 1
        if not self._watching:
            # Entries fetched while no watch ran may have missed changes.
            self._expire_all()
        self._watching = True
        return watcher

    def _expire_all(self) -> None:
        for entry in self._entries.values():
            entry.expires = 0.0

    async def _run_watch(self, watcher: Watcher | None) -> None:
        delay = WATCH_BACKOFF[0]
        while True:
            if watcher is None:
                if self._watching:
                    return  # the registry cannot watch
                await asyncio.sleep(delay)
                delay = min(delay * 2, WATCH_BACKOFF[1])
                watcher = self._open_watch()
                continue
            try:
                async for result in watcher:
                    delay = WATCH_BACKOFF[0]
                    self._on_result(result)
            except Exception:
                pass  # handled below like a watch that ended on its own
            finally:
                await watcher.stop()
            if self._watcher is not watcher:
                return  # close() stopped it
            # The watch ended on its own (an error, or the registry was closed).
            self._watcher = watcher = None
            self._watching = False
            self._expire_all()

    def _on_result(self, result: Result) -> None:
        name = result.service.name
        pending = self._pending.get(name)
        if pending is not None:
            pending.append(result)
        entry = self._entries.get(name)
        if entry is None:
            return
        services = _apply(entry.services, result)
        if services:
            self._entries[name] = _Entry(_sorted(services), entry.expires, entry.demoted)
        else:
            del self._entries[name]


class RandomSelector(CacheSelector):
    """Picks a node at random for every ``next()`` (the default, ``random``)."""


class RoundRobinSelector(CacheSelector):
    """Cycles through the nodes (``roundrobin``).

    The position is shared by every selection of a service and starts at a
    random node, so successive requests, not only the retries of one, take
    turns, and clients started together do not all begin with the same node.
    """

    def __init__(
        self, options: SelectorOptions | None = None, *, registry: Registry | None = None, make: Make | None = None
    ) -> None:
        super().__init__(options, registry=registry, make=make)
        self._positions: dict[str, Iterator[int]] = {}

    def _strategy(self, service: str, nodes: Sequence[Node]) -> Next:
        position = self._positions.get(service)
        if position is None:
            position = self._positions[service] = itertools.count(_rng.randrange(1 << 30))
        size = len(nodes)
        return lambda: nodes[next(position) % size]

    async def close(self) -> None:
        await super().close()
        self._positions.clear()


def _avoid(service: str, pick: Next, nodes: Sequence[Node], demoted: dict[str, float], fail_open: bool) -> Node:
    """``pick()`` skipping demoted nodes; when all are demoted, ``pick()`` anyway or NoneAvailable."""
    now = _monotonic()
    for _ in range(len(nodes)):
        node = pick()
        until = demoted.get(node.id)
        if until is None:
            return node
        if until <= now:
            demoted.pop(node.id, None)
            return node
    # A random pick can miss the healthy nodes len(nodes) times in a row; choose among them directly.
    healthy = [node for node in nodes if demoted.get(node.id, 0.0) <= now]
    if healthy:
        return _rng.choice(healthy)
    if fail_open:
        return pick()
    raise NoneAvailable(f"every node of {service!r} is demoted after failed calls", id="selector")


def _apply(services: list[Service], result: Result) -> list[Service]:
    """``services`` with one watch result applied (results carry the whole state of a version)."""
    version = result.service.version
    kept = [s for s in services if s.version != version]
    if result.action != "delete" and result.service.nodes:
        kept.append(result.service)
    return kept


def _sorted(services: list[Service]) -> list[Service]:
    return sorted(services, key=lambda s: s.version)


def _consume(task: asyncio.Task[_Entry]) -> None:
    # A fetch whose every waiter was cancelled must not log "exception was never retrieved".
    if not task.cancelled():
        task.exception()
