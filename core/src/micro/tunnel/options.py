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
    #: Seconds before the first attempt to re-link to a node that is not linked; each failed attempt
    #: doubles the wait (with jitter) up to ``reconnect_max``. A link that drops is retried at once.
    reconnect: float = 1.0
    #: The longest wait between attempts to re-link to a node (``MICRO_TUNNEL_RECONNECT_MAX``).
    reconnect_max: float = 30.0
    #: Seconds between keepalive pings on every link (``MICRO_TUNNEL_KEEPALIVE``); they also measure delay.
    keepalive: float = 1.0
    #: A link that brings no frame for this many seconds is dead (``MICRO_TUNNEL_LINK_TIMEOUT``): it is
    #: closed and its sessions fail with :class:`~micro.tunnel.LinkLost`. It is noticed within
    #: ``link_timeout + keepalive`` seconds of the last frame.
    link_timeout: float = 5.0
    #: Sessions one peer may have open on a link at once (``MICRO_TUNNEL_MAX_SESSIONS``); past it, its ``open``
    #: is refused (the dialler gets ``NotFound`` naming this option) and new multicast sessions are dropped.
    max_sessions: int = 1024

    def __post_init__(self) -> None:
        if not self.token:
            raise InvalidOption("must not be empty", option="token")
        if self.id is not None and not self.id.strip():
            raise InvalidOption("must not be blank", option="id")
        for name in ("dial_timeout", "reconnect", "reconnect_max", "keepalive", "link_timeout"):
            value = getattr(self, name)
            if not value > 0:
                raise InvalidOption(f"must be a positive number of seconds, got {value!r}", option=name)
        if isinstance(self.max_sessions, bool) or not isinstance(self.max_sessions, int) or self.max_sessions < 1:
            raise InvalidOption(f"must be a positive integer, got {self.max_sessions!r}", option="max_sessions")
        if self.reconnect_max < self.reconnect:
            raise InvalidOption(
                f"must be at least reconnect ({self.reconnect:g}s), got {self.reconnect_max!r}", option="reconnect_max"
            )
        if self.link_timeout <= self.keepalive:
            raise InvalidOption(
                f"must be longer than keepalive ({self.keepalive:g}s) or idle links look dead, "
                f"got {self.link_timeout!r}",
                option="link_timeout",
            )
