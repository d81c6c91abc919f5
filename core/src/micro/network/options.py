"""Options of the network building block (``MICRO_NETWORK_*``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidOption
from ..options import Options

__all__ = ["NetworkOptions"]


@dataclass(frozen=True, kw_only=True, slots=True)
class NetworkOptions(Options):
    """How a node joins a network (Go Micro ``network.Options``)."""

    #: The network's name; adverts from another network are ignored.
    name: str = "micro"
    #: This node's id; a random one when unset. Also the id of the tunnel the network creates.
    id: str | None = None
    #: Where the node's tunnel accepts links (``MICRO_NETWORK_ADDRESS``). Loopback unless set.
    address: str = "127.0.0.1:0"
    #: Peers to join, ``host:port`` of their tunnels (``MICRO_NETWORK_NODES``).
    nodes: tuple[str, ...] = ()
    #: The tunnel's shared secret.
    token: str = "micro.tunnel"
    #: Seconds between route adverts to every peer; a learned route expires after three missed adverts.
    interval: float = 5.0

    def __post_init__(self) -> None:
        if not self.name or "," in self.name:
            raise InvalidOption(f"must be a non-empty name without commas, got {self.name!r}", option="name")
        if not self.interval > 0:
            raise InvalidOption(f"must be a positive number of seconds, got {self.interval!r}", option="interval")
        if self.id is not None and not self.id.strip():
            raise InvalidOption("must not be blank", option="id")
