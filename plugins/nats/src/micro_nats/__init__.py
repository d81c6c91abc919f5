"""asyncmicro-nats: a broker for micro on NATS (core subjects, and JetStream for durable queue groups).

Select it with ``MICRO_BROKER=nats`` (or ``micro.create("broker", "nats")``); point it at a
server with ``MICRO_BROKER_ADDRESS=nats://host:4222``. The classes are importable from here,
but importing this package (or its plugin hooks) does not import the NATS driver: each class
is loaded when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .broker import NatsBroker
    from .options import NatsBrokerOptions

__all__ = ["NatsBroker", "NatsBrokerOptions"]

# Even the options wait: micro imports this package whenever it loads plugin hooks.
_LAZY = {
    "NatsBroker": ".broker",
    "NatsBrokerOptions": ".options",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
