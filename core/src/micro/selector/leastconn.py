"""The ``leastconn`` selector: the node with the fewest calls in flight from this client.

A call is *in flight* from the moment a ``next()`` of this selector returns its node
until the caller reports how it ended: :meth:`~micro.selector.Selector.mark` (any
outcome) or :meth:`~micro.selector.Selector.release` (cancelled, no outcome). The
client does both (see :mod:`micro.client.rpc`); code that calls ``next()`` itself must
too, or the node looks busy for good. Ties are broken at random, so idle clients
started together spread out, and with no calls in flight it picks like ``random``.

Counts are per selector instance (one client), per service and node id; a node that
leaves the registry keeps its count only until its last call is marked. Demotion,
filters and the registry cache are :class:`~micro.selector.cache.CacheSelector`'s.
"""

from __future__ import annotations

import random as _random
from collections.abc import Sequence

from ..component import Make
from ..registry.base import Node, Registry
from .base import Filter, Next, Strategy
from .cache import CacheSelector
from .options import SelectorOptions

__all__ = ["LeastConnSelector"]

_rng = _random.Random()


class LeastConnSelector(CacheSelector):
    """Picks the node with the fewest calls in flight from this selector (``leastconn``), ties at random."""

    def __init__(
        self, options: SelectorOptions | None = None, *, registry: Registry | None = None, make: Make | None = None
    ) -> None:
        super().__init__(options, registry=registry, make=make)
        #: (service, node id) -> calls in flight; absent means none.
        self._in_flight: dict[tuple[str, str], int] = {}

    def in_flight(self, service: str, node: Node | str) -> int:
        """How many calls to ``node`` (a node or its id) of ``service`` this selector counts as in flight."""
        return self._in_flight.get((service, node if isinstance(node, str) else node.id), 0)

    async def select(
        self,
        service: str,
        *,
        filters: Sequence[Filter] = (),
        strategy: Strategy | None = None,
    ) -> Next:
        pick = await super().select(service, filters=filters, strategy=strategy)
        counts = self._in_flight

        # Every node handed out counts, whichever strategy chose it, so that mark() always has one to undo.
        def next_node() -> Node:
            node = pick()
            key = (service, node.id)
            counts[key] = counts.get(key, 0) + 1
            return node

        return next_node

    def mark(self, service: str, node: Node, error: BaseException | None) -> None:
        self._done(service, node)
        super().mark(service, node, error)

    def release(self, service: str, node: Node) -> None:
        self._done(service, node)

    def _done(self, service: str, node: Node) -> None:
        key = (service, node.id)
        count = self._in_flight.get(key, 0)
        # A mark without a pick (a caller reporting on its own) must not drive the count below zero.
        if count > 1:
            self._in_flight[key] = count - 1
        elif count:
            del self._in_flight[key]

    def _strategy(self, service: str, nodes: Sequence[Node]) -> Next:
        counts = self._in_flight

        def least() -> Node:
            fewest = min(counts.get((service, node.id), 0) for node in nodes)
            idle = [node for node in nodes if counts.get((service, node.id), 0) == fewest]
            return idle[0] if len(idle) == 1 else _rng.choice(idle)

        return least

    async def close(self) -> None:
        await super().close()
        self._in_flight.clear()
