"""Networks: nodes that exchange the services they know over tunnels."""

from __future__ import annotations

from .base import Network, Peer, Route
from .options import NetworkOptions

__all__ = ["Network", "NetworkOptions", "Peer", "Route"]
