"""The built-in selectors: the shared registry cache, with demotion of failing nodes.

Go Micro's ``registry/cache`` plus ``selector/default.go``, with ``mark``
actually doing something:

* ``select`` serves a cached copy of the service from a
  :class:`~micro.registry.cache.RegistryCache` (the one the http broker uses too):
  a warm call does not touch the registry; an entry is kept current by one watch
  over every service and read again after ``options.ttl`` seconds; if the
  registry fails, the stale entry is served, and with nothing cached the error is
  raised as :class:`~micro.errors.BackendUnavailable`.
* ``mark(service, node, error)`` demotes a node for ``options.cooldown``
  seconds; the ``Next`` of every selection skips demoted nodes.
"""

from __future__ import annotations

import itertools
import random as _random
import time
from collections.abc import Iterator, Sequence

from ..component import Make
from ..errors import MicroError, NoneAvailable, ServiceNotFound
from ..registry.base import Node, Registry
from ..registry.cache import RegistryCache
from .base import Filter, Next, Selector, Strategy
from .options import SelectorOptions
from .strategy import random

__all__ = ["CacheSelector", "RandomSelector", "RoundRobinSelector"]

_monotonic = time.monotonic
_rng = _random.Random()


class CacheSelector(Selector):
    """The shared machinery of :class:`RandomSelector` and :class:`RoundRobinSelector`.

    Subclasses choose the default strategy in :meth:`_strategy`.
    """

    def __init__(
        self, options: SelectorOptions | None = None, *, registry: Registry | None = None, make: Make | None = None
    ) -> None:
        super().__init__(options, registry=registry, make=make)
        # The registry is read through the property on every fetch: it is built on first use.
        self._cache = RegistryCache(lambda: self.registry, ttl=self.options.ttl, label="selector")
        #: service -> node id -> monotonic time its demotion ends; shared by every Next of the service.
        self._demoted: dict[str, dict[str, float]] = {}

    # -- the interface --------------------------------------------------------------------------

    async def select(
        self,
        service: str,
        *,
        filters: Sequence[Filter] = (),
        strategy: Strategy | None = None,
    ) -> Next:
        entry = self._cache.peek(service)
        if entry is None or entry.expires <= _monotonic():
            entry = await self._cache.get(service)
            if not entry.services:
                raise ServiceNotFound(f"service {service!r} not found", id="selector")
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
        demoted = self._demoted_of(service)
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
        await self._cache.close()
        self._demoted.clear()
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
