"""Transports: message streams between processes, dialled and listened on by address.

See :mod:`micro.transport.base` for the contract; ``tcp`` (the default,
multiplexed) and ``memory`` (in-process) are embedded.
"""

from __future__ import annotations

from .base import Handler, Listener, Message, Socket, Transport
from .options import TransportOptions

__all__ = ["Handler", "Listener", "Message", "Socket", "Transport", "TransportOptions"]
