"""asyncmicro-nats: a broker, a registry and a transport for micro on NATS (core subjects,
JetStream, key-value).

Select them with ``MICRO_BROKER=nats``, ``MICRO_REGISTRY=nats`` and ``MICRO_TRANSPORT=nats`` (or
``micro.create("broker", "nats")``); point them at a server with ``MICRO_<BLOCK>_ADDRESS=nats://host:4222``
(the transport's is ``MICRO_TRANSPORT_SERVERS``: its ``address`` is where it listens).
The classes are importable from here, but importing this package (or its plugin hooks)
does not import the NATS driver: each class is loaded when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .broker import NatsBroker
    from .options import NatsBrokerOptions, NatsRegistryOptions
    from .registry import NatsRegistry
    from .transport import NatsTransport, NatsTransportOptions

__all__ = [
    "NatsBroker",
    "NatsBrokerOptions",
    "NatsRegistry",
    "NatsRegistryOptions",
    "NatsTransport",
    "NatsTransportOptions",
]

# Even the options wait: micro imports this package whenever it loads plugin hooks.
_LAZY = {
    "NatsBroker": ".broker",
    "NatsBrokerOptions": ".options",
    "NatsRegistry": ".registry",
    "NatsRegistryOptions": ".options",
    "NatsTransport": ".transport",
    "NatsTransportOptions": ".transport",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
