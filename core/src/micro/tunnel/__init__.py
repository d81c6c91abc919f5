"""Tunnels: many sessions on named channels, multiplexed over authenticated links between nodes."""

from __future__ import annotations

from .base import MODES, Link, LinkLost, Mode, Session, Tunnel, TunnelListener
from .options import TunnelOptions

__all__ = ["MODES", "Link", "LinkLost", "Mode", "Session", "Tunnel", "TunnelListener", "TunnelOptions"]
