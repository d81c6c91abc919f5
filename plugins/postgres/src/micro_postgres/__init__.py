"""asyncmicro-postgres: a store and distributed locks for micro, on one PostgreSQL server.

Select them with ``MICRO_STORE=postgres`` and ``MICRO_SYNC=postgres`` (or
``micro.create("store", "postgres")``); point them at a server with
``MICRO_<BLOCK>_ADDRESS=postgresql://host:5432/db``. The classes are importable from here,
but importing this package (or its plugin hooks) does not import the driver (asyncpg):
each class is loaded when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .options import PostgresStoreOptions, PostgresSyncOptions
    from .store import PostgresStore
    from .sync import PostgresSync

__all__ = ["PostgresStore", "PostgresStoreOptions", "PostgresSync", "PostgresSyncOptions"]

# Even the options wait: micro imports this package whenever it loads plugin hooks.
_LAZY = {
    "PostgresStore": ".store",
    "PostgresSync": ".sync",
    "PostgresStoreOptions": ".options",
    "PostgresSyncOptions": ".options",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
