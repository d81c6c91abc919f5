"""Distributed locks and leader election (Go Micro ``sync``): :class:`Sync`, :class:`Leader` and options.

Implementations: ``memory`` (:class:`micro.sync.memory.MemorySync`, the
default, shared by every instance in the process) and ``file``
(:class:`micro.sync.file.FileSync`, shared by every process of the user on the
machine); select one with ``micro.create("sync", "file")`` or ``MICRO_SYNC=file``.
"""

from __future__ import annotations

from .base import Leader, Sync
from .options import FileSyncOptions, SyncOptions

__all__ = ["FileSyncOptions", "Leader", "Sync", "SyncOptions"]
