"""The routing table of a network node (Go Micro ``router.Table``): learned routes, metrics, the best choice.

A node learns routes from its peers' adverts. Each advert is the sender's
*whole* table, so the table keeps, per gateway (the peer an advert came from),
the set of routes that gateway last advertised, each with

* ``metric``: hops to the service's node (1 = the node whose registry holds it);
* ``delay``: the sum of the link delays along the way, in seconds (the
  gateway's own figure plus the delay of our link to the gateway).

The best route to a service node is the one with the fewest hops, then the
least delay, then the gateway id (so the choice is stable). Routes are
withdrawn:

* at once when their gateway sends an advert without them (:meth:`Table.process`);
* at once when the link to their gateway is lost (:meth:`Table.withdraw`);
* ``ttl`` seconds after the gateway's last advert (:meth:`Table.expire`), which
  covers a peer that stops talking without its link failing. Time this node spent
  not running (a stalled event loop) does not count (:meth:`Table.postpone`): the
  adverts are then waiting to be read, not missing.

Routes of ``max_metric`` hops or more are never kept, which ends routing loops.
The table is plain data: no I/O, and the clock is passed in, so its rules are
tested without a network.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .base import Route

__all__ = ["MAX_METRIC", "Advertised", "Table", "best_first"]

#: Routes of this many hops are dropped (RIP's "infinity").
MAX_METRIC = 16


@dataclass(frozen=True, slots=True)
class Advertised:
    """One entry of an advert, as its sender knows it."""

    service: str
    version: str
    address: str
    node: str
    metric: int
    delay: float = 0.0


def best_first(route: Route) -> tuple[int, float, str, str]:
    """The sort key of routes to one service node: fewer hops, then less delay, then gateway and address."""
    return (route.metric, route.delay, route.gateway, route.address)


_Key = tuple[str, str, str, str]  # service, version, address, node


class Table:
    """The routes one node learned, by gateway.

    :param node: this node's id (routes that lead back to it are ignored).
    :param network: the network's name (set on every route).
    :param ttl: seconds a gateway's routes live after its last advert.
    :param clock: the monotonic clock (``time.monotonic``).
    """

    def __init__(
        self,
        node: str,
        network: str,
        *,
        ttl: float,
        max_metric: int = MAX_METRIC,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.node = node
        self.network = network
        self.ttl = ttl
        self.max_metric = max_metric
        self._clock = clock
        #: gateway -> (expiry, routes by key)
        self._gateways: dict[str, tuple[float, dict[_Key, Route]]] = {}

    def process(self, gateway: str, entries: Iterable[Advertised], *, link: str = "", delay: float = 0.0) -> bool:
        """Replace what ``gateway`` advertised with ``entries`` (its whole table); whether anything changed.

        Each entry becomes a route one hop longer, ``delay`` (our link to the gateway) slower. Entries that
        lead back to this node, or reach ``max_metric``, are dropped. What the gateway advertised before and
        left out now is withdrawn.
        """
        routes: dict[_Key, Route] = {}
        for entry in entries:
            if entry.node == self.node or entry.metric + 1 >= self.max_metric:
                continue  # our own route coming back, or a loop
            key = (entry.service, entry.version, entry.address, entry.node)
            route = Route(
                entry.service,
                entry.version,
                entry.address,
                entry.node,
                gateway,
                self.network,
                entry.metric + 1,
                link=link,
                delay=max(0.0, entry.delay) + max(0.0, delay),
            )
            current = routes.get(key)
            if current is None or best_first(route) < best_first(current):
                routes[key] = route
        previous = self._gateways.get(gateway)
        self._gateways[gateway] = (self._clock() + self.ttl, routes)
        if previous is None:
            return bool(routes)
        # A change of delay alone is not news: it would make every advert look like one.
        before = {key: (route.metric, route.link) for key, route in previous[1].items()}
        return before != {key: (route.metric, route.link) for key, route in routes.items()}

    def withdraw(self, gateway: str) -> bool:
        """Drop every route learned from ``gateway`` (its link is gone); whether there were any."""
        dropped = self._gateways.pop(gateway, None)
        return dropped is not None and bool(dropped[1])

    def expire(self) -> bool:
        """Drop the routes of gateways that have not advertised for ``ttl`` seconds; whether any went."""
        now = self._clock()
        stale = [gateway for gateway, (expires, _) in self._gateways.items() if expires < now]
        changed = False
        for gateway in stale:
            changed = self.withdraw(gateway) or changed
        return changed

    def postpone(self, seconds: float) -> None:
        """Push every expiry ``seconds`` later: this node was not running for that long (a stalled event loop),
        so its peers' adverts are waiting to be read, not missing."""
        self._gateways = {g: (expires + seconds, routes) for g, (expires, routes) in self._gateways.items()}

    def gateways(self) -> list[str]:
        """The gateways routes are known through."""
        return sorted(self._gateways)

    def alternatives(self, service: str | None = None) -> list[Route]:
        """Every learned route, through every gateway, best first per service node (expired ones are dropped by
        :meth:`expire`, which the node calls on its own schedule)."""
        found = [
            route
            for _, routes in self._gateways.values()
            for route in routes.values()
            if service is None or route.service == service
        ]
        return sorted(found, key=lambda r: (r.service, r.version, r.node, r.address, *best_first(r)))

    def routes(self, service: str | None = None) -> list[Route]:
        """The best route to each service node, sorted by service, metric, delay, address."""
        chosen: dict[_Key, Route] = {}
        for route in self.alternatives(service):
            key = (route.service, route.version, route.address, route.node)
            if key not in chosen:  # alternatives() lists the best one first
                chosen[key] = route
        return sorted(chosen.values(), key=lambda r: (r.service, r.metric, r.delay, r.address, r.node))

    def best(self, service: str) -> Route | None:
        """The best route to any node of ``service``, or ``None``."""
        found = self.routes(service)
        return min(found, key=best_first) if found else None

    def advert(self, to: str) -> list[Route]:
        """What to tell the peer ``to``: the best routes, except those through ``to`` (split horizon)."""
        return [r for r in self.routes() if r.gateway != to and r.metric + 1 < self.max_metric]

    def clear(self) -> None:
        self._gateways.clear()
