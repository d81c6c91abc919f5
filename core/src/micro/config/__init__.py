"""Configuration: sources (the plugin interface ``config``) and the :class:`Config` loader that merges them.

The built-in sources live in their own modules and are imported when selected
(``micro.create("config", "file", path="app.yaml")``) or imported directly
(``from micro.config.file import FileSource``).
"""

from __future__ import annotations

from .base import Change, ChangeSet, MalformedConfig, Source, SourceWatcher, checksum
from .config import Config, ConfigWatcher
from .options import ConfigOptions, EnvSourceOptions, FileSourceOptions, FlagSourceOptions, MemorySourceOptions

__all__ = [
    "Change",
    "ChangeSet",
    "Config",
    "ConfigOptions",
    "ConfigWatcher",
    "EnvSourceOptions",
    "FileSourceOptions",
    "FlagSourceOptions",
    "MalformedConfig",
    "MemorySourceOptions",
    "Source",
    "SourceWatcher",
    "checksum",
]
