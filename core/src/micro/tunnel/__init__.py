"""Tunnels: many sessions on named channels, multiplexed over authenticated links between nodes."""

from __future__ import annotations

from .base import Link, LinkLost, Session, Tunnel, TunnelListener
from .options import TunnelOptions

__all__ = ["Link", "LinkLost", "Session", "Tunnel", "TunnelListener", "TunnelOptions"]
