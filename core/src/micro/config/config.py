"""The loader: several sources merged by priority, read with ``get``/``scan``, followed with ``watch``."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Final, Self, TypeVar, overload

from ..errors import NotSupported
from ._scan import convert
from ._values import MISSING, diff, lookup, merge
from .base import Change, ChangeSet, MalformedConfig, Source, SourceWatcher

__all__ = ["Config", "ConfigWatcher"]

T = TypeVar("T")
logger = logging.getLogger("micro.config")

_STOP: Final = object()
# A source watcher that keeps failing is retried with this backoff (seconds), so it cannot spin.
_RETRY_FIRST: Final = 0.1
_RETRY_MAX: Final = 5.0


class ConfigWatcher:
    """An async iterator of :class:`~micro.config.Change`, from :meth:`Config.watch`.

    Changes are queued in order and none is dropped, so stop a watcher you no
    longer read. After :meth:`stop` (or :meth:`Config.close`), iteration ends,
    including for a task already waiting.
    """

    def __init__(self, config: Config, path: str | None) -> None:
        self.path = path or None
        self._config = config
        self._queue: asyncio.Queue[Change | object] = asyncio.Queue()
        self._stopped = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Change:
        if self._stopped and self._queue.empty():
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _STOP:
            self._queue.put_nowait(_STOP)  # so every later call ends too
            raise StopAsyncIteration
        assert isinstance(item, Change)
        return item

    def _feed(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
        if self._stopped:
            return
        for path, before, after in diff(old, new, self.path):
            self._queue.put_nowait(Change(path, before, after))

    async def stop(self) -> None:
        """Stop receiving changes; changes already queued are still returned first. Idempotent."""
        if not self._stopped:
            self._stopped = True
            self._config._watchers.discard(self)
            self._queue.put_nowait(_STOP)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class Config:
    """Configuration merged from ``sources``, later ones overriding earlier ones.

    Mappings merge key by key at every depth; any other value from a later
    source replaces the earlier one (lists are not concatenated)::

        config = Config(FileSource(FileSourceOptions(path="app.yaml")), EnvSource(EnvSourceOptions(prefix=("APP",))))
        await config.load()
        port = config.get("database.port", 5432, type=int)
        settings = config.scan(Settings)
        async for change in config.watch("database"):
            ...

    The loader owns its sources: :meth:`load` starts them and :meth:`close`
    closes them. After the first successful load, and unless ``watch_sources``
    is false, every source that supports ``"watch"`` is followed in the
    background, so the snapshot stays current and :meth:`watch` reports edits.

    The snapshot is replaced atomically. A reading that fails (a malformed
    file, an unreachable server) never replaces it: :meth:`load` raises, and a
    failed update from a watched source is logged on the ``micro.config``
    logger and skipped, leaving the previous values and feeding no watcher.
    """

    def __init__(self, *sources: Source, watch_sources: bool = True) -> None:
        self.sources: tuple[Source, ...] = sources
        self.watch_sources = watch_sources
        self._sets: list[ChangeSet | None] = [None] * len(sources)
        self._data: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        self._watchers: set[ConfigWatcher] = set()
        self._followers: list[tuple[SourceWatcher, asyncio.Task[None]]] = []
        self._following = False

    # -- loading ------------------------------------------------------------------------------

    async def load(self) -> None:
        """Start the sources, read every one, and make the merge of all of them the new snapshot.

        All or nothing: if any source fails, the first failure (in source order)
        is raised, typically :class:`~micro.config.MalformedConfig` naming the file
        and line, and the previous snapshot stays in place. Watchers receive the
        differences between the previous snapshot and the new one. Calling
        ``load`` again re-reads every source.
        """
        async with self._lock:
            for source in self.sources:
                await source.start()
            if self.watch_sources and not self._following:
                # Watch before reading so that no edit falls between the reading and the watch.
                await self._follow()
            results = await asyncio.gather(*(source.read() for source in self.sources), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
            sets: list[ChangeSet | None] = [
                self._checked(source, result) for source, result in zip(self.sources, results, strict=True)
            ]
            self._install(sets)

    @staticmethod
    def _checked(source: Source, result: Any) -> ChangeSet:
        if not isinstance(result, ChangeSet) or not isinstance(result.data, Mapping):
            raise MalformedConfig(
                f"read() returned {type(result).__name__} instead of a ChangeSet with a mapping",
                source=type(source).__name__,
            )
        return result

    def _install(self, sets: list[ChangeSet | None]) -> None:
        merged: dict[str, Any] = {}
        for changeset in sets:
            if changeset is not None:
                merged = merge(merged, changeset.data)
        old, self._sets, self._data = self._data, sets, merged
        for watcher in list(self._watchers):
            watcher._feed(old, merged)

    async def _follow(self) -> None:
        for index, source in enumerate(self.sources):
            if "watch" not in source.capabilities:
                continue
            try:
                watcher = await source.watch()
            except NotSupported:
                continue
            task = asyncio.create_task(self._run_follower(index, source, watcher), name=f"micro.config:{source!r}")
            self._followers.append((watcher, task))
        self._following = True

    async def _run_follower(self, index: int, source: Source, watcher: SourceWatcher) -> None:
        delay = _RETRY_FIRST
        while True:
            try:
                changeset = await anext(watcher)
                changeset = self._checked(source, changeset)
            except StopAsyncIteration:
                return
            except Exception as exc:
                logger.warning("config source %r: update skipped, previous values kept: %s", source, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
                continue
            delay = _RETRY_FIRST
            async with self._lock:
                current = self._sets[index]
                # Until the first successful load there is nothing to update: load() reads every source anyway.
                if current is None or current.checksum == changeset.checksum:
                    continue
                sets = list(self._sets)
                sets[index] = changeset
                self._install(sets)

    # -- reading ------------------------------------------------------------------------------

    @overload
    def get(self, path: str, default: Any = None) -> Any: ...

    @overload
    def get(self, path: str, default: T, *, type: type[T]) -> T: ...

    @overload
    def get(self, path: str, default: None = None, *, type: type[T]) -> T | None: ...

    def get(self, path: str, default: Any = None, *, type: Any = None) -> Any:
        """The value at dotted ``path`` (``"database.host"``; ``""`` is everything), else ``default``.

        The value is a copy: changing it does not change the configuration.
        With ``type``, the value is converted as :meth:`scan` converts a field
        (``"5"`` to ``5`` for ``int``, ``"a,b"`` to a list) and a value that
        does not convert raises :class:`~micro.errors.ConfigError` naming the
        path; ``default`` is returned as is.
        """
        value = lookup(self._data, path)
        if value is MISSING:
            return default
        if type is None:
            return copy.deepcopy(value)
        return convert(value, type, path)

    def scan(self, into: type[T], path: str | None = None) -> T:
        """The configuration (or the part at ``path``) as an instance of ``into``.

        ``into`` is a dataclass (nested dataclasses, ``list``/``dict``/``tuple``,
        ``Optional``, ``Literal`` and enums are converted field by field; unknown
        keys are ignored) or a pydantic model (validated by pydantic, which is
        not a dependency of micro). A required field that is missing, or a value
        that does not convert, raises :class:`~micro.errors.ConfigError` naming
        the dotted path of the field. A missing ``path`` scans an empty mapping.
        """
        value = lookup(self._data, path)
        if value is MISSING:
            value = {}
        result: T = convert(value, into, path or "")
        return result

    @property
    def data(self) -> dict[str, Any]:
        """A copy of the whole merged configuration."""
        return copy.deepcopy(self._data)

    # -- watching -----------------------------------------------------------------------------

    def watch(self, path: str | None = None) -> ConfigWatcher:
        """Changes from now on, as an async iterator of :class:`~micro.config.Change`.

        With ``path``, one change each time the value there differs (a sub-tree
        counts as one value); without, one change per leaf added, changed or
        removed, sorted by path within one update. A watcher made before the
        first :meth:`load` sees that load's values as additions.
        """
        watcher = ConfigWatcher(self, path)
        self._watchers.add(watcher)
        return watcher

    # -- lifecycle ----------------------------------------------------------------------------

    async def close(self) -> None:
        """Stop following the sources, end every watcher and close the sources. Idempotent, safe concurrently."""
        followers, self._followers = self._followers, []
        self._following = False
        for watcher, task in followers:
            task.cancel()
            with contextlib.suppress(Exception):
                await watcher.stop()
        for _, task in followers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for config_watcher in list(self._watchers):
            await config_watcher.stop()
        for source in self.sources:
            await source.close()

    async def __aenter__(self) -> Self:
        await self.load()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<Config sources={[repr(s) for s in self.sources]}>"
