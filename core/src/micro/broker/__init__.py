"""Publish/subscribe messaging: the :class:`Broker` interface and its value types.

Embedded implementations, selected with ``micro.create("broker", name)`` or
``MICRO_BROKER``: ``http`` (:class:`micro.broker.http.HTTPBroker`, the default:
point-to-point HTTP between processes, found through the registry) and
``memory`` (:class:`micro.broker.memory.MemoryBroker`, in-process).
"""

from __future__ import annotations

from .base import (
    Broker,
    Event,
    Handler,
    Message,
    Outcome,
    Subscriber,
    check_publish,
    check_subscribe,
    check_topic,
    dispatch,
)
from .options import BrokerOptions, SubscribeOptions

__all__ = [
    "Broker",
    "BrokerOptions",
    "Event",
    "Handler",
    "Message",
    "Outcome",
    "SubscribeOptions",
    "Subscriber",
    "check_publish",
    "check_subscribe",
    "check_topic",
    "dispatch",
]
