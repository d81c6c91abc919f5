"""asyncmicro-redis: a store, a broker and distributed locks for micro, on one Redis server.

Select them with ``MICRO_STORE=redis``, ``MICRO_BROKER=redis`` and ``MICRO_SYNC=redis``
(or ``micro.create("store", "redis")``); point them at a server with
``MICRO_<BLOCK>_ADDRESS=redis://host:6379``. The classes are importable from here,
but importing this package (or its plugin hooks) does not import the Redis driver:
each class is loaded when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .broker import RedisBroker
    from .options import RedisBrokerOptions, RedisStoreOptions, RedisSyncOptions
    from .store import RedisStore
    from .sync import RedisSync

__all__ = [
    "RedisBroker",
    "RedisBrokerOptions",
    "RedisStore",
    "RedisStoreOptions",
    "RedisSync",
    "RedisSyncOptions",
]

# Even the options wait: micro imports this package whenever it loads plugin hooks.
_LAZY = {
    "RedisBroker": ".broker",
    "RedisStore": ".store",
    "RedisSync": ".sync",
    "RedisBrokerOptions": ".options",
    "RedisStoreOptions": ".options",
    "RedisSyncOptions": ".options",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
