"""Options of the tunnel building block (``MICRO_TUNNEL_*``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidOption
from ..options import Options

__all__ = ["TunnelOptions"]


@dataclass(frozen=True, kw_only=True, slots=True)
class TunnelOptions(Options):
    """How a tunnel links to its peers (Go Micro ``tunnel.Options``)."""

    #: This node's id, sent to peers; a random one when unset.
    id: str | None = None
    #: Where to accept links from other tunnels (``MICRO_TUNNEL_ADDRESS``). Loopback unless set.
    address: str = "127.0.0.1:0"
    #: Peers to link to, ``host:port`` each (``MICRO_TUNNEL_NODES=a:8085,b:8085``).
    nodes: tuple[str, ...] = ()
    #: The shared secret: links authenticate with an HMAC of it, and payloads are encrypted with a key from it.
    token: str = "micro.tunnel"
    #: Encrypt session payloads (AES-GCM). A link is encrypted when either end asks for it.
    encrypt: bool = True
    #: Seconds to wait for a link handshake, or for a peer to accept a session.
    dial_timeout: float = 5.0
    #: Seconds between attempts to re-link to ``nodes`` that are not linked.
    reconnect: float = 5.0

    def __post_init__(self) -> None:
        if not self.token:
            raise InvalidOption("must not be empty", option="token")
        if self.id is not None and not self.id.strip():
            raise InvalidOption("must not be blank", option="id")
        for name in ("dial_timeout", "reconnect"):
            value = getattr(self, name)
            if not value > 0:
                raise InvalidOption(f"must be a positive number of seconds, got {value!r}", option=name)
