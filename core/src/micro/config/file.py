"""Configuration from a JSON, YAML or TOML file, watched by polling."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar, Final

from ..errors import ConfigError, InvalidOption, MissingExtra
from .base import ChangeSet, MalformedConfig, Source, SourceWatcher
from .options import FileSourceOptions

__all__ = ["FileSource"]

_EXTENSIONS: Final = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml"}
_TOML_LINE: Final = re.compile(r"\(at line (\d+), column \d+\)")


def _string_keys(value: Any) -> Any:
    # YAML allows any scalar as a key (`1: x`, `yes: y`); config paths are strings.
    if isinstance(value, dict):
        return {str(key): _string_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_string_keys(item) for item in value]
    return value


def _decode_json(text: str, source: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedConfig(f"invalid JSON: {exc.msg} (column {exc.colno})", source=source, line=exc.lineno) from None


def _yaml(source: str) -> ModuleType:
    """PyYAML, an extra: JSON and TOML files need nothing beyond the standard library."""
    try:
        import yaml
    except ModuleNotFoundError as exc:
        raise MissingExtra(f"config {source} (YAML)", extra="yaml", module="yaml (PyYAML)") from exc
    return yaml


def _decode_yaml(text: str, source: str) -> Any:
    yaml = _yaml(source)
    try:
        return _string_keys(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        context = getattr(exc, "context", None)
        detail = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
        raise MalformedConfig(detail, source=source, line=mark.line + 1 if mark is not None else None) from None


def _decode_toml(text: str, source: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line: int | None = getattr(exc, "lineno", None)
        match = _TOML_LINE.search(message)
        if line is None and match:
            line = int(match.group(1))
        raise MalformedConfig(
            f"invalid TOML: {_TOML_LINE.sub('', message).strip()}", source=source, line=line
        ) from None


_DECODERS: Final[dict[str, Callable[[str, str], Any]]] = {
    "json": _decode_json,
    "yaml": _decode_yaml,
    "toml": _decode_toml,
}


# A file modified this recently is re-read even if its stat looks unchanged: two writes within one tick of the
# file system's clock can leave the same mtime and size (git's "racily clean" entries).
_RACY_NS: Final = 2_000_000_000


@dataclass(frozen=True, slots=True)
class _Probe:
    """The file as seen by one poll: ``signature`` is ``None`` when it does not exist.

    ``unchanged`` means the stat matched and the bytes were not read.
    """

    signature: tuple[int, ...] | None
    content: bytes | None = None
    unchanged: bool = False


class _FileWatcher(SourceWatcher):
    def __init__(self, source: FileSource, signature: tuple[int, ...] | None, digest: str | None) -> None:
        self._source = source
        self._signature = signature
        # The hash of the bytes the last poll saw; they are taken only when the next poll sees them again.
        self._candidate = digest
        # The hash of the bytes last taken, delivered or rejected, so that one bad edit is reported once.
        self._digest = digest
        self._stopping = asyncio.Event()

    async def __anext__(self) -> ChangeSet:
        interval = self._source.options.poll_interval
        while True:
            if self._stopping.is_set():
                raise StopAsyncIteration
            changeset = await self._poll()
            if changeset is not None:
                return changeset
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), interval)

    async def _poll(self) -> ChangeSet | None:
        settled = self._candidate == self._digest
        probe = await asyncio.to_thread(self._source._probe, self._signature if settled else None)
        if probe.unchanged:
            return None
        digest = None if probe.content is None else hashlib.sha256(probe.content).hexdigest()
        if probe.signature != self._signature or digest != self._candidate:
            # A writer may be half-way (truncated, not yet rewritten): wait until two polls agree.
            self._signature, self._candidate = probe.signature, digest
            return None
        if digest == self._digest:
            return None
        self._digest = digest
        # Raises MalformedConfig for a bad edit (or ConfigError for a removed required file); the next call resumes.
        return self._source._decode(probe.content)

    async def stop(self) -> None:
        self._stopping.set()
        self._source._watchers.discard(self)


class FileSource(Source):
    """Reads one file, decoded by its ``format`` or extension (``.json``, ``.yaml``/``.yml``, ``.toml``).

    The top level must be a mapping (an empty YAML file is an empty mapping).
    Decoding errors raise :class:`~micro.config.MalformedConfig` naming the
    file and the line. A missing file raises :class:`~micro.errors.ConfigError`
    unless ``required`` is false, when it reads as empty.

    :meth:`watch` checks the file every ``poll_interval`` seconds: when its
    modification time, size or inode changed and its bytes hash differently,
    it waits for the next check to see the same bytes (so a file caught
    half-written is not taken), then decodes them and delivers them if the
    decoded data changed. Editors that
    replace the file by renaming are followed, since the path is what is
    watched. A malformed edit is raised from the watcher once; the next valid
    edit is delivered normally.
    """

    options_type: ClassVar[type[FileSourceOptions]] = FileSourceOptions
    options: FileSourceOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"watch"})

    def __init__(self, options: FileSourceOptions | None = None) -> None:
        super().__init__(options)
        self.path: str = os.fspath(self.options.path or "")
        self.source = f"file:{self.path}"
        fmt = self.options.format or _EXTENSIONS.get(os.path.splitext(self.path)[1].lower())
        if fmt is None:
            raise InvalidOption(
                f"cannot tell the format of {self.path!r} from its extension; "
                "use .json, .yaml, .yml or .toml, or set the format option",
                option="format",
            )
        self.format: str = fmt
        if fmt == "yaml":
            _yaml(self.source)  # at start-up, not at the first read
        self._watchers: set[_FileWatcher] = set()

    def _probe(self, known: tuple[int, ...] | None = None) -> _Probe:
        """Stat the file and, if it changed since ``known``, read it (runs in a worker thread)."""
        try:
            stat = os.stat(self.path)
            signature = (stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size, stat.st_ino)
            if signature == known and time.time_ns() - stat.st_mtime_ns > _RACY_NS:
                return _Probe(signature, unchanged=True)
            with open(self.path, "rb") as handle:
                return _Probe(signature, handle.read())
        except FileNotFoundError:
            return _Probe(None)
        except OSError as exc:
            raise ConfigError(f"{self.source}: cannot read: {exc.strerror or exc}") from exc

    def _decode(self, content: bytes | None) -> ChangeSet:
        if content is None:
            if self.options.required:
                raise ConfigError(f"{self.source}: no such file")
            return ChangeSet.of({}, self.source)
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = content[: exc.start].count(b"\n") + 1
            raise MalformedConfig("not UTF-8 text", source=self.source, line=line) from None
        data = _DECODERS[self.format](text, self.source)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise MalformedConfig(f"expected a mapping at the top level, got {type(data).__name__}", source=self.source)
        return ChangeSet.of(data, self.source)

    async def read(self) -> ChangeSet:
        probe = await asyncio.to_thread(self._probe)
        return self._decode(probe.content)

    async def watch(self) -> SourceWatcher:
        probe = await asyncio.to_thread(self._probe)
        digest = None if probe.content is None else hashlib.sha256(probe.content).hexdigest()
        watcher = _FileWatcher(self, probe.signature, digest)
        self._watchers.add(watcher)
        return watcher

    async def close(self) -> None:
        for watcher in list(self._watchers):
            await watcher.stop()
