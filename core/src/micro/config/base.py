"""The config source interface and its value types.

A :class:`Source` produces the whole configuration it knows as one nested
``dict`` (a :class:`ChangeSet`) and, if it can, tells when that changes. The
:class:`~micro.config.Config` loader merges several sources by priority and
answers ``get``/``scan``/``watch``; it is not a plugin. Only sources are: the
plugin interface name is ``"config"``, so ``micro.create("config", "file",
path="app.yaml")`` builds a :class:`~micro.config.file.FileSource`.

Go Micro's config (``config/source/source.go``) is the model: ``Read``,
``Watch``, ``Write``; the encoder/reader layers are folded into each source,
which hands back decoded Python data.
"""

from __future__ import annotations

import abc
import hashlib
import json
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Self

from ..component import Component
from ..errors import ConfigError, NotSupported
from .options import ConfigOptions

__all__ = ["Change", "ChangeSet", "MalformedConfig", "Source", "SourceWatcher", "checksum"]


def checksum(data: Any) -> str:
    """A stable SHA-256 hex digest of ``data``: equal data gives equal checksums, whatever the key order.

    Values JSON cannot represent (dates from YAML or TOML, for example) are
    hashed through ``str()``.
    """
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """One complete reading of a source.

    ``data`` is nested ``dict[str, Any]`` (keys are strings, leaves are JSON-like
    scalars or lists). Treat it as read-only: the loader shares it between
    snapshots instead of copying it.
    """

    #: The decoded configuration, nested.
    data: dict[str, Any]
    #: :func:`checksum` of ``data``; equal checksums mean nothing changed.
    checksum: str
    #: Where it came from, for messages: ``"env"``, ``"file:/etc/app.yaml"``, ``"consul:micro/config"``.
    source: str
    #: When it was read, as ``time.time()``.
    timestamp: float = field(default_factory=time.time)

    @classmethod
    def of(cls, data: dict[str, Any], source: str, *, timestamp: float | None = None) -> ChangeSet:
        """A change set for ``data`` with its checksum computed."""
        return cls(data, checksum(data), source, time.time() if timestamp is None else timestamp)


@dataclass(frozen=True, slots=True)
class Change:
    """A value that changed, as delivered by :meth:`micro.config.Config.watch`.

    ``old`` is ``None`` when the path did not exist before, ``new`` is ``None``
    when it was removed; a value that really is ``null`` is indistinguishable
    from a missing one, as with :meth:`~micro.config.Config.get`.
    """

    #: The dotted path that changed (``"database.host"``).
    path: str
    old: Any
    new: Any


class MalformedConfig(ConfigError):
    """A source's content cannot be decoded: bad JSON, YAML or TOML, or not a mapping at the top.

    ``str(error)`` names the source and, when the parser reports one, the line.
    Nothing from a malformed reading is ever loaded.

    :param source: the source as in :attr:`ChangeSet.source` (``"file:/etc/app.yaml"``).
    :param line: the 1-based line of the problem, if known.
    """

    def __init__(self, detail: str, *, source: str, line: int | None = None, id: str = "") -> None:
        self.source = source
        self.line = line
        where = f"{source}, line {line}" if line is not None else source
        super().__init__(f"{where}: {detail}", id=id)


class SourceWatcher(abc.ABC):
    """An async iterator of the :class:`ChangeSet` a source produces each time its data changes.

    It starts from the data as it was when :meth:`Source.watch` returned and
    yields only differing readings (by checksum), never the initial one. A
    consumer that falls behind is not queued a backlog: the next ``__anext__``
    returns the latest reading, so intermediate versions may be skipped.

    When a new reading cannot be decoded, ``__anext__`` raises
    :class:`MalformedConfig` (or :class:`~micro.errors.BackendUnavailable` for a
    remote source) and the watcher stays open: calling ``__anext__`` again
    resumes watching. After :meth:`stop`, ``__anext__`` raises
    ``StopAsyncIteration``, including in a task already waiting in it.
    """

    def __aiter__(self) -> Self:
        return self

    @abc.abstractmethod
    async def __anext__(self) -> ChangeSet:
        """The next differing reading; waits until there is one."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """End the iteration and release what the watcher holds. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


class Source(Component, abc.ABC):
    """Where configuration comes from: the environment, a file, flags, a KV store.

    Call :meth:`start` before the other methods (the built-in sources do not
    need it, a networked one will); :meth:`close` stops every watcher the
    source made. ``read`` and ``watch`` may run concurrently.

    Optional operations, listed in :attr:`capabilities` when supported:

    * ``"watch"``: :meth:`watch` reports changes. Without it, ``watch`` raises
      :class:`~micro.errors.NotSupported` and the loader reads the source once
      per :meth:`~micro.config.Config.load`.
    * ``"write"``: :meth:`write` replaces the source's data.
    """

    interface: ClassVar[str] = "config"
    options_type: ClassVar[type[ConfigOptions]] = ConfigOptions
    options: ConfigOptions

    #: The optional operations this source supports: a subset of ``{"watch", "write"}``.
    capabilities: ClassVar[frozenset[str]] = frozenset()

    @abc.abstractmethod
    async def read(self) -> ChangeSet:
        """The source's whole configuration, now.

        Raises :class:`MalformedConfig` when the content cannot be decoded (no
        partial result), :class:`~micro.errors.BackendUnavailable` when a remote
        source cannot be reached. A missing optional source (a file that does
        not exist) reads as empty data rather than failing.
        """

    async def watch(self) -> SourceWatcher:
        """A :class:`SourceWatcher` of later changes; raises :class:`~micro.errors.NotSupported` unless ``"watch"``."""
        raise NotSupported(f"{type(self).__name__} cannot watch for changes")

    async def write(self, changeset: ChangeSet) -> None:
        """Replace the source's data with ``changeset.data``; watchers of this source then see it.

        Raises :class:`~micro.errors.NotSupported` unless ``"write"`` is a capability.
        """
        raise NotSupported(f"{type(self).__name__} is read-only")
