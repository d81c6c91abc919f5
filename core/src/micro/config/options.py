"""Options of config sources: ``MICRO_CONFIG_<OPTION>`` for the source selected by ``MICRO_CONFIG``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import InvalidOption
from ..options import Options

__all__ = ["ConfigOptions", "EnvSourceOptions", "FileSourceOptions", "FlagSourceOptions", "MemorySourceOptions"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ConfigOptions(Options):
    """Base of every source's options; a source adds its own fields in a subclass."""


@dataclass(frozen=True, kw_only=True, slots=True)
class EnvSourceOptions(ConfigOptions):
    """Options of :class:`~micro.config.env.EnvSource`."""

    #: Only variables starting with one of these (``"MYAPP"`` or ``"MYAPP_"``, case-insensitive) are read;
    #: empty reads every variable, as Go Micro's env source does.
    prefix: tuple[str, ...] = ()
    #: Drop the prefix from the key (``MYAPP_DATABASE_HOST`` is ``database.host``) rather than keep it
    #: (``myapp.database.host``): Go Micro's ``WithStrippedPrefix`` versus ``WithPrefix``.
    strip_prefix: bool = True

    def __post_init__(self) -> None:
        prefix: object = self.prefix
        # A single prefix given from code as a string (or a list) is accepted as a one-item tuple.
        if isinstance(prefix, str):
            object.__setattr__(self, "prefix", (prefix,))
        elif isinstance(prefix, list):
            object.__setattr__(self, "prefix", tuple(prefix))


@dataclass(frozen=True, kw_only=True, slots=True)
class FileSourceOptions(ConfigOptions):
    """Options of :class:`~micro.config.file.FileSource`."""

    #: The file to read (required).
    path: str | None = None
    #: ``"json"``, ``"yaml"`` or ``"toml"``; ``None`` picks it from the extension
    #: (``.json``, ``.yaml``/``.yml``, ``.toml``).
    format: Literal["json", "yaml", "toml"] | None = None
    #: Seconds between two checks of the file's modification time and checksum while watching.
    poll_interval: float = 0.5
    #: A missing file is an error; with ``False`` it reads as empty data (and watching waits for it to appear).
    required: bool = True

    def __post_init__(self) -> None:
        if not self.path:
            raise InvalidOption("the file source needs a path", option="path")
        if self.format is not None and self.format not in ("json", "yaml", "toml"):
            raise InvalidOption(f"expected json, yaml or toml, got {self.format!r}", option="format")
        if not self.poll_interval > 0:
            raise InvalidOption(f"must be positive, got {self.poll_interval!r}", option="poll_interval")


@dataclass(frozen=True, kw_only=True, slots=True)
class MemorySourceOptions(ConfigOptions):
    """Options of :class:`~micro.config.memory.MemorySource`."""

    #: The initial data (nested); copied, so later changes to the mapping do not leak in.
    data: Mapping[str, Any] | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class FlagSourceOptions(ConfigOptions):
    """Options of :class:`~micro.config.flags.FlagSource` (the argument list itself is passed to the constructor)."""

    #: Only flags starting with this (``"app-"`` reads ``--app-database-host``) are read, prefix dropped;
    #: empty reads every ``--flag``.
    prefix: str = ""
