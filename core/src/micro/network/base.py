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

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "version": self.version,
            "address": self.address,
            "node": self.node,
            "gateway": self.gateway,
            "network": self.network,
            "metric": self.metric,
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
        """Every route this node knows, local ones first, then by service, metric and address.

        :param service: only the routes of this service.
        """
