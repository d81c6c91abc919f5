"""Pieces registries share: a queue-backed watcher, state diffing, argument checks.

Public so that plugin registries (``asyncmicro-consul``) report changes, refuse bad
names and ttls, and fail slow readers exactly as the built-in ones do:

* :func:`check_name` and :func:`check_ttl` check the arguments of ``register``,
  ``get_service`` and ``watch`` (defined in :mod:`micro.registry.base`, whose
  :class:`~micro.registry.Registry` applies them; still importable from here).
* :func:`diff` and :func:`diff_views` turn two states into the create/update/delete
  :class:`~micro.registry.Result` values a watcher reports.
* :class:`QueueWatcher` is a :class:`~micro.registry.Watcher` that a registry feeds
  with :meth:`~QueueWatcher.push`; :class:`Watchers` keeps a registry's live ones.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from ..errors import Unavailable
from .base import Result, Service, Watcher, check_name, check_ttl

__all__ = ["MAX_PENDING", "QueueWatcher", "View", "Watchers", "check_name", "check_ttl", "diff", "diff_views"]

#: Results a watcher may hold unread before it is failed: a reader that far behind must re-read the registry.
MAX_PENDING = 10_000

#: The state of a registry: ``(name, version) -> Service`` with live nodes only.
View = Mapping[tuple[str, str], Service]

#: What a state is keyed by: ``(name, version)`` for a whole registry, the version for one service.
_Key = TypeVar("_Key", str, tuple[str, str])


def diff(old: Service | None, new: Service | None) -> Result | None:
    """The result that turns ``old`` into ``new`` (both with nodes sorted by id), or ``None`` if they are equal."""
    if new is None:
        return None if old is None else Result("delete", old)
    if old is None:
        return Result("create", new)
    return None if old == new else Result("update", new)


def diff_views(old: Mapping[_Key, Service], new: Mapping[_Key, Service]) -> list[Result]:
    """Results turning ``old`` into ``new`` (states keyed alike, nodes sorted by id), sorted by key."""
    results = []
    for key in sorted(old.keys() | new.keys()):
        result = diff(old.get(key), new.get(key))
        if result is not None:
            results.append(result)
    return results


class QueueWatcher(Watcher):
    """A watcher fed by its registry through :meth:`push` (from the event loop's thread).

    ``service`` restricts it to one service's results (``None``: all of them);
    ``on_stop`` is called with the watcher once, when it stops.
    """

    def __init__(self, service: str | None, on_stop: Callable[[QueueWatcher], None]) -> None:
        self.service = service
        self._on_stop = on_stop
        self._pending: deque[Result] = deque()
        self._wakeup = asyncio.Event()
        self._stopped = False
        self._error: BaseException | None = None

    @property
    def stopped(self) -> bool:
        return self._stopped

    def push(self, result: Result) -> None:
        """Queue ``result`` if it concerns this watcher; a reader too far behind gets Unavailable."""
        if self._stopped or self._error is not None:
            return
        if self.service is not None and result.service.name != self.service:
            return
        if len(self._pending) >= MAX_PENDING:
            self.fail(self.overflow())
            return
        self._pending.append(Result(result.action, result.service.copy()))
        self._wakeup.set()

    def overflow(self) -> BaseException:
        """The error :meth:`push` fails the watcher with when it holds :data:`MAX_PENDING` unread results."""
        return Unavailable(f"watcher fell more than {MAX_PENDING} results behind; read the registry again")

    def fail(self, error: BaseException) -> None:
        """End the watcher: ``error`` is raised by the next ``__anext__`` (after nothing else)."""
        if self._stopped or self._error is not None:
            return
        self._pending.clear()
        self._error = error
        self._wakeup.set()

    async def __anext__(self) -> Result:
        while True:
            if self._stopped:
                raise StopAsyncIteration
            if self._pending:
                return self._pending.popleft()
            if self._error is not None:
                error, self._error = self._error, None
                await self.stop()
                raise error
            self._wakeup.clear()
            await self._wakeup.wait()

    async def stop(self) -> None:
        """End the watcher: a waiting ``__anext__`` stops iterating, unread results are dropped. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._pending.clear()
        self._wakeup.set()
        self._on_stop(self)


class Watchers:
    """The live watchers of one registry."""

    def __init__(self) -> None:
        self._items: list[QueueWatcher] = []

    def __bool__(self) -> bool:
        return bool(self._items)

    def add(self, service: str | None) -> QueueWatcher:
        """A new watcher of ``service`` (``None``: every service), kept until it stops."""
        watcher = QueueWatcher(service, self._items.remove)
        self._items.append(watcher)
        return watcher

    def discard(self, watcher: QueueWatcher) -> None:
        """Forget ``watcher`` without stopping it (a registry whose watch failed to start)."""
        if watcher in self._items:
            self._items.remove(watcher)

    def publish(self, results: Iterable[Result]) -> None:
        """:meth:`QueueWatcher.push` each result, in order, to every watcher."""
        for result in results:
            for watcher in tuple(self._items):
                watcher.push(result)

    def overflow(self) -> BaseException:
        """The error :meth:`push` fails the watcher with when it holds :data:`MAX_PENDING` unread results."""
        return Unavailable(f"watcher fell more than {MAX_PENDING} results behind; read the registry again")

    def fail(self, error: BaseException) -> None:
        """:meth:`QueueWatcher.fail` every watcher with ``error``."""
        for watcher in tuple(self._items):
            watcher.fail(error)

    async def stop_all(self) -> None:
        """Stop every watcher."""
        for watcher in tuple(self._items):
            await watcher.stop()
