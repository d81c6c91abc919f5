"""Key/value storage (Go Micro ``store``): :class:`Store`, its :class:`Record` and options.

Implementations: ``memory`` (:class:`micro.store.memory.MemoryStore`, the
default) and ``sqlite`` (:class:`micro.store.sqlite.SQLiteStore`); select one
with ``micro.create("store", "sqlite")`` or ``MICRO_STORE=sqlite``.
"""

from __future__ import annotations

from .base import Record, Store
from .options import SQLiteStoreOptions, StoreOptions

__all__ = ["Record", "SQLiteStoreOptions", "Store", "StoreOptions"]
