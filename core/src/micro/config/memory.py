"""Configuration held in memory: set it from code, watch it change. For tests and for computed settings."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from typing import Any, ClassVar

from .base import ChangeSet, MalformedConfig, Source, SourceWatcher
from .options import MemorySourceOptions

__all__ = ["MemorySource"]


class _MemoryWatcher(SourceWatcher):
    def __init__(self, source: MemorySource, baseline: str) -> None:
        self._source = source
        self._delivered = baseline
        self._pending: ChangeSet | None = None
        self._wakeup = asyncio.Event()
        self._stopped = False

    def _offer(self, changeset: ChangeSet) -> None:
        # Latest wins: a reader that falls behind gets the newest data, not a backlog.
        self._pending = changeset
        self._wakeup.set()

    async def __anext__(self) -> ChangeSet:
        while True:
            if self._stopped:
                raise StopAsyncIteration
            pending, self._pending = self._pending, None
            if pending is not None and pending.checksum != self._delivered:
                self._delivered = pending.checksum
                return pending
            self._wakeup.clear()
            await self._wakeup.wait()

    async def stop(self) -> None:
        self._stopped = True
        self._source._watchers.discard(self)
        self._wakeup.set()


class MemorySource(Source):
    """A nested dict that :meth:`set` (or :meth:`write`) replaces, waking every watcher.

    ``set`` copies the data, so later changes to the caller's dict do not
    leak in. Call it from the event loop's thread.
    """

    options_type: ClassVar[type[MemorySourceOptions]] = MemorySourceOptions
    options: MemorySourceOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"watch", "write"})

    def __init__(self, options: MemorySourceOptions | None = None) -> None:
        super().__init__(options)
        self._watchers: set[_MemoryWatcher] = set()
        self._changeset = self._make(self.options.data or {})

    @staticmethod
    def _make(data: Any) -> ChangeSet:
        if not isinstance(data, Mapping):
            raise MalformedConfig(f"expected a mapping, got {type(data).__name__}", source="memory")
        return ChangeSet.of(copy.deepcopy(dict(data)), "memory")

    def set(self, data: Mapping[str, Any]) -> None:
        """Replace all the data with a copy of ``data`` and wake the watchers.

        Raises :class:`~micro.config.MalformedConfig` if ``data`` is not a mapping.
        """
        self._changeset = self._make(data)
        for watcher in list(self._watchers):
            watcher._offer(self._changeset)

    async def read(self) -> ChangeSet:
        return self._changeset

    async def write(self, changeset: ChangeSet) -> None:
        self.set(changeset.data)

    async def watch(self) -> SourceWatcher:
        watcher = _MemoryWatcher(self, self._changeset.checksum)
        self._watchers.add(watcher)
        return watcher

    async def close(self) -> None:
        for watcher in list(self._watchers):
            await watcher.stop()
