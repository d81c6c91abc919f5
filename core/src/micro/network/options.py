"""Options of the network building block (``MICRO_NETWORK_*``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidOption
from ..options import Options

__all__ = ["RESOLVERS", "NetworkOptions"]

#: The built-in resolvers of peers (Go Micro ``network/resolver``).
RESOLVERS: tuple[str, ...] = ("static", "dns", "registry")


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
    #: A change (a route withdrawn, a link lost) is advertised at once, without waiting for the next round.
    interval: float = 5.0
    #: Where the node's proxy accepts calls from local clients (``MICRO_NETWORK_PROXY_ADDRESS``; clients
    #: point ``MICRO_PROXY`` here). Loopback unless set. The listener has the transport's limits.
    proxy_address: str = "127.0.0.1:0"
    #: Register the node in its registry as the service ``micro.network`` at its proxy address, so that
    #: ``MICRO_PROXY=micro.network`` finds it (``MICRO_NETWORK_REGISTER=false`` to opt out).
    register: bool = True
    #: Calls the proxy forwards at once, local and from peers together; one more is refused with
    #: ``Unavailable`` (``MICRO_NETWORK_MAX_CALLS``).
    max_calls: int = 1024
    #: Seconds a proxied call may wait for its first message, and to reach the next node.
    dial_timeout: float = 5.0
    #: Where peers come from besides ``nodes``: ``static`` (``nodes`` only), ``dns`` (each of ``nodes`` is a
    #: host name whose A/AAAA records are peers, ``host:port``), or ``registry`` (the tunnel addresses of the
    #: ``micro.network`` nodes in the registry). Re-resolved every ``resolve_interval`` seconds.
    resolver: str = "static"
    #: Seconds between resolutions of the peers (``MICRO_NETWORK_RESOLVE_INTERVAL``).
    resolve_interval: float = 30.0

    def __post_init__(self) -> None:
        if not self.name or "," in self.name:
            raise InvalidOption(f"must be a non-empty name without commas, got {self.name!r}", option="name")
        if not self.interval > 0:
            raise InvalidOption(f"must be a positive number of seconds, got {self.interval!r}", option="interval")
        if self.id is not None and not self.id.strip():
            raise InvalidOption("must not be blank", option="id")
        for name in ("dial_timeout", "resolve_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise InvalidOption(f"must be a positive number of seconds, got {value!r}", option=name)
        if isinstance(self.max_calls, bool) or not isinstance(self.max_calls, int) or self.max_calls < 1:
            raise InvalidOption(f"must be a positive integer, got {self.max_calls!r}", option="max_calls")
        if self.resolver not in RESOLVERS:
            raise InvalidOption(f"must be one of {', '.join(RESOLVERS)}, got {self.resolver!r}", option="resolver")
