"""The network interface: nodes that share what services they can reach (Go Micro ``network``).

Each node of a :class:`Network` runs a tunnel to its peers and tells them,
on a control channel, which services its registry knows; in turn it learns
theirs. :meth:`Network.routes` then answers "where does service X run?"
across every node, not only the local registry.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any, ClassVar

from ..component import Component
from .options import NetworkOptions

__all__ = ["Network", "Peer", "Route"]


@dataclass(frozen=True, slots=True)
class Route:
    """Where one node of a service can be reached (Go Micro ``router.Route``)."""

    service: str
    version: str
    #: The service node's own address (what a client dials).
    address: str
    #: The id of the network node whose registry holds it.
    node: str
    #: The peer this route was learned from; ``""`` for a local route.
    gateway: str
    #: The network's name.
    network: str
    #: Hops: 1 for a local route, one more per node it passed through.
    metric: int
    #: The id of the tunnel link to ``gateway`` (``""`` for a local route).
    link: str = ""
    #: Seconds of link delay along the way (the sum of each hop's measured round trip; 0 when unmeasured).
    delay: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "version": self.version,
            "address": self.address,
            "node": self.node,
            "gateway": self.gateway,
            "network": self.network,
            "metric": self.metric,
            "link": self.link,
            "delay": self.delay,
        }


@dataclass(frozen=True, slots=True)
class Peer:
    """Another node of the network that this one hears from."""

    id: str
    #: Its tunnel's address.
    address: str


class Network(Component, abc.ABC):
    """One node of a network. The network's name is ``options.name`` (``name`` is the
    implementation's selection name, as on every component).

    :meth:`connect` (also :meth:`start`) links to the peers and starts
    exchanging routes; :meth:`close` leaves. Both are idempotent.
    """

    options: NetworkOptions
    interface: ClassVar[str] = "network"
    options_type: ClassVar[type[NetworkOptions]] = NetworkOptions

    @property
    @abc.abstractmethod
    def id(self) -> str:
        """This node's id."""

    @property
    @abc.abstractmethod
    def address(self) -> str:
        """Where this node's tunnel accepts links."""

    @property
    def proxy_address(self) -> str:
        """Where this node's proxy accepts calls (``MICRO_PROXY`` of its local clients); ``""`` without one."""
        return ""

    @abc.abstractmethod
    async def connect(self) -> None:
        """Join: link to the configured peers and advertise this node's routes.

        :raises ~micro.errors.Unauthorized: a peer does not share the token.
        """

    async def start(self) -> None:
        await self.connect()

    @abc.abstractmethod
    def nodes(self) -> list[Peer]:
        """The peers heard from recently, sorted by id."""

    @abc.abstractmethod
    async def routes(self, *, service: str | None = None) -> list[Route]:
        """The best route to every service node this node knows: local ones first, then by service, metric,
        delay and address. A route is withdrawn when its service node leaves the registry that holds it, when
        a node on the way stops advertising it, or when a link on the way is lost (see the implementation for
        the times).

        :param service: only the routes of this service.
        """

    async def services(self) -> list[str]:
        """The names of the services reachable from this node (its own and through the network), sorted."""
        return sorted({route.service for route in await self.routes()})

    def graph(self) -> dict[str, Any]:
        """The network as this node sees it: ``{node id: {"peers": [ids], "hops": n}}``, this node at 0 hops."""
        return {self.id: {"peers": [peer.id for peer in self.nodes()], "hops": 0}}
