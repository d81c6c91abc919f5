"""What a registry says, kept current by one watch: the cache the selectors and the http broker share.

Go Micro's ``registry/cache``. A :class:`RegistryCache` serves copies of services
without a registry round trip:

* An entry is fetched on first use (:meth:`RegistryCache.get`), then kept current
  by one registry watch (of every service, or of the one named by ``service``),
  and fetched again after ``ttl`` seconds in case the watch missed something.
* Concurrent misses for one service share a single ``get_service`` call, and a
  watch result that arrives while that call is in flight is applied over its answer.
* If the registry fails, the stale entry is served (and the registry retried at
  most once a second); with nothing cached the error is raised (a driver error as
  :class:`~micro.errors.BackendUnavailable`).
* A watch that ends (an error, a registry restart) is opened again with a backoff,
  and every entry is fetched again on its next use, since changes may have been
  missed meanwhile. A registry that cannot watch at all (``NotSupported``) leaves
  the ``ttl`` as the only bound on staleness.

Entries are immutable snapshots (:class:`CacheEntry`): replaced, never changed, so
a reader keeps a stable view. ``on_change(name)`` is called after the entry of
``name`` is replaced or dropped, for a user that derives an index from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Final

from ..errors import BackendUnavailable, BadRequest, MicroError, NotSupported, ServiceNotFound
from .base import Node, Registry, Result, Service, Watcher

__all__ = ["STALE_RETRY", "WATCH_BACKOFF", "CacheEntry", "RegistryCache", "apply_result"]

logger = logging.getLogger("micro.registry.cache")

_monotonic = time.monotonic

#: Seconds between registry attempts while a stale entry is being served, and the most an entry
#: fetched while no watch ran is kept.
STALE_RETRY: Final = 1.0
#: Bounds, in seconds, of the pause before the registry watch is opened again after it failed.
WATCH_BACKOFF: Final = (0.1, 5.0)


class CacheEntry:
    """One service as last seen: its versions sorted, their nodes in order, and when to read it again."""

    __slots__ = ("expires", "nodes", "services")

    def __init__(self, services: list[Service], expires: float) -> None:
        self.services = services
        self.nodes: tuple[Node, ...] = tuple(node for service in services for node in service.nodes)
        #: Monotonic time after which :meth:`RegistryCache.get` reads the registry again.
        self.expires = expires


class RegistryCache:
    """The services of ``registry``, cached and followed by a watch. See the module docstring.

    :param registry: the registry, or a function returning it (read on every fetch and watch,
        for a component whose registry is built on first use).
    :param ttl: seconds an entry is served before it is read again, watch or not.
    :param poll: seconds an entry is served when the registry cannot watch at all; ``ttl`` when omitted.
    :param service: follow this one service only (``registry.watch(service)``); ``None``: all.
    :param keep_empty: cache "no such service" too (as an entry with no versions); otherwise a
        service that is not found is asked for again on every :meth:`get`.
    :param on_change: called with a service's name after its entry changed.
    :param label: names the user in log lines.
    """

    def __init__(
        self,
        registry: Registry | Callable[[], Registry],
        *,
        ttl: float,
        poll: float | None = None,
        service: str | None = None,
        keep_empty: bool = False,
        on_change: Callable[[str], None] | None = None,
        label: str = "registry cache",
    ) -> None:
        self._registry = registry if callable(registry) and not isinstance(registry, Registry) else None
        self._fixed = registry if isinstance(registry, Registry) else None
        self.ttl = ttl
        self.poll = ttl if poll is None else min(poll, ttl)
        self.service = service
        self._keep_empty = keep_empty
        self._on_change = on_change
        self._label = label
        self._entries: dict[str, CacheEntry] = {}
        self._fetches: dict[str, asyncio.Task[CacheEntry]] = {}
        #: Watch results that arrived while a fetch of their service was in flight, replayed over its result.
        self._pending: dict[str, list[Result]] = {}
        self._watcher: Watcher | None = None
        self._follower: asyncio.Task[None] | None = None
        #: Whether changes reach the cache: a watch is running, or the registry cannot watch at all.
        self._watching = False
        #: Whether the registry said it cannot watch (``NotSupported``): entries live ``poll`` seconds.
        self._blind = False
        #: Counts watches opened, so a fetch can tell whether one was running throughout.
        self._epoch = 0

    @property
    def registry(self) -> Registry:
        if self._fixed is not None:
            return self._fixed
        assert self._registry is not None
        return self._registry()

    @property
    def watching(self) -> bool:
        """Whether a watch is running (or the registry cannot watch, so the ttl is all there is)."""
        return self._watching

    # -- reading --------------------------------------------------------------------------------

    def peek(self, name: str) -> CacheEntry | None:
        """The cached entry of ``name``, expired or not, without any I/O."""
        return self._entries.get(name)

    async def get(self, name: str) -> CacheEntry:
        """The entry of ``name``: the cached one while fresh, else read from the registry.

        An entry with no services means the registry does not know ``name`` (only kept with
        ``keep_empty``).

        :raises ~micro.errors.BadRequest: ``name`` is empty.
        :raises ~micro.errors.BackendUnavailable: the registry failed and nothing is cached
            (a :class:`~micro.errors.MicroError` from the registry is raised as it is).
        """
        entry = self._entries.get(name)
        if entry is not None and entry.expires > _monotonic():
            return entry
        if not isinstance(name, str) or not name.strip():
            raise BadRequest(f"service name must be a non-empty string, got {name!r}")
        fetch = self._fetches.get(name)
        if fetch is None:
            self.follow()
            self._pending[name] = []
            fetch = asyncio.ensure_future(self._fetch(name, entry))
            fetch.add_done_callback(_consume)
            self._fetches[name] = fetch
        # Shielded: one caller giving up must not cancel the fetch the others wait for.
        return await asyncio.shield(fetch)

    # -- changing -------------------------------------------------------------------------------

    def invalidate(self, name: str | None = None) -> None:
        """Make the next :meth:`get` of ``name`` (``None``: of every service) read the registry."""
        entries = self._entries.values() if name is None else [e for e in (self._entries.get(name),) if e]
        for entry in entries:
            entry.expires = 0.0

    def drop_node(self, name: str, node_id: str) -> None:
        """Forget one node of ``name`` until the registry reports it again (a node found dead)."""
        entry = self._entries.get(name)
        if entry is None or all(node.id != node_id for node in entry.nodes):
            return
        services = []
        for service in entry.services:
            copy = service.copy()
            copy.nodes = [node for node in service.nodes if node.id != node_id]
            services.append(copy)
        self._replace(name, services, entry.expires)

    # -- lifecycle ------------------------------------------------------------------------------

    def follow(self) -> None:
        """Start following the registry, if not already; the watcher exists before any fetch begins."""
        if self._follower is not None and not self._follower.done():
            return
        self._follower = asyncio.ensure_future(self._run_watch(self._open_watch()))

    async def close(self) -> None:
        """Stop the watch and drop every entry; the cache can be used again afterwards. Idempotent."""
        follower, self._follower = self._follower, None
        watcher, self._watcher = self._watcher, None
        if watcher is not None:
            with contextlib.suppress(Exception):
                await watcher.stop()
        tasks = [t for t in (follower, *self._fetches.values()) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._entries.clear()
        self._fetches.clear()
        self._pending.clear()
        self._watching = self._blind = False

    # -- the cache ------------------------------------------------------------------------------

    async def _fetch(self, name: str, stale: CacheEntry | None) -> CacheEntry:
        epoch = self._epoch if self._watching else None
        try:
            try:
                services = await self.registry.get_service(name)
            except ServiceNotFound:
                services = []
            except Exception as exc:
                if stale is not None:
                    stale.expires = _monotonic() + min(STALE_RETRY, self.ttl)
                    logger.debug(
                        "%s: registry lookup of %r failed (%r); serving the last answer", self._label, name, exc
                    )
                    return stale
                if isinstance(exc, MicroError):
                    raise
                raise BackendUnavailable(f"registry lookup of {name!r} failed: {exc!r}", id="registry") from exc
            for result in self._pending.get(name, ()):
                services = apply_result(services, result)
            ttl = self.poll if self._blind else self.ttl
            if epoch is None or epoch != self._epoch or not self._watching:
                # No watch covered the whole lookup, so a change may have slipped past: keep it briefly.
                ttl = min(ttl, STALE_RETRY)
            if not services and not self._keep_empty:
                if self._entries.pop(name, None) is not None:
                    self._changed(name)
                return CacheEntry([], 0.0)
            return self._replace(name, services, _monotonic() + ttl)
        finally:
            self._fetches.pop(name, None)
            self._pending.pop(name, None)

    def _replace(self, name: str, services: list[Service], expires: float) -> CacheEntry:
        entry = self._entries[name] = CacheEntry(sorted(services, key=_version), expires)
        self._changed(name)
        return entry

    def _changed(self, name: str) -> None:
        if self._on_change is not None:
            self._on_change(name)

    # -- the watch ------------------------------------------------------------------------------

    def _open_watch(self) -> Watcher | None:
        """A new registry watcher, or ``None`` if it cannot be had (now, or ever: see ``_watching``)."""
        try:
            watcher = self.registry.watch(self.service)
        except NotSupported:
            self._watching = self._blind = True  # nothing better than polling is possible
            return None
        except Exception as exc:
            logger.debug("%s: cannot watch the registry (%r); will try again", self._label, exc)
            return None
        self._watcher = watcher
        self._epoch += 1
        if not self._watching:
            # Entries fetched while no watch ran may have missed changes.
            self.invalidate()
        self._watching = True
        return watcher

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
            except Exception as exc:
                logger.warning("%s: registry watch failed: %s", self._label, exc)
            finally:
                with contextlib.suppress(Exception):
                    await watcher.stop()
            if self._watcher is not watcher:
                return  # close() stopped it
            # The watch ended on its own (an error, or the registry was closed).
            self._watcher = watcher = None
            self._watching = False
            self.invalidate()

    def _on_result(self, result: Result) -> None:
        name = result.service.name
        pending = self._pending.get(name)
        if pending is not None:
            pending.append(result)
        entry = self._entries.get(name)
        if entry is None:
            return
        services = apply_result(entry.services, result)
        if services or self._keep_empty:
            self._replace(name, services, entry.expires)
        else:
            del self._entries[name]
            self._changed(name)


def apply_result(services: list[Service], result: Result) -> list[Service]:
    """``services`` with one watch result applied (a result carries the whole state of a version)."""
    version = result.service.version
    kept = [s for s in services if s.version != version]
    if result.action != "delete" and result.service.nodes:
        kept.append(result.service)
    return kept


def _version(service: Service) -> str:
    return service.version


def _consume(task: asyncio.Task[CacheEntry]) -> None:
    # A fetch whose every waiter was cancelled must not log "exception was never retrieved".
    if not task.cancelled():
        task.exception()
