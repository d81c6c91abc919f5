"""Configuration from environment variables: ``MYAPP_DATABASE_HOST=db`` is ``{"database": {"host": "db"}}``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, ClassVar

from ._values import merge, nest, parse_scalar
from .base import ChangeSet, Source
from .options import EnvSourceOptions

__all__ = ["EnvSource"]


class EnvSource(Source):
    """Reads environment variables as Go Micro's env source does.

    A name is lower-cased and split on ``_`` into a path (empty parts are
    dropped, so ``A__B`` is ``a.b``); the value becomes an ``int``, a ``bool``
    (``true``/``false``/``t``/``f`` in Go's spellings), a ``float`` or stays a
    string. Only variables starting with one of ``options.prefix`` are read,
    with that prefix dropped unless ``strip_prefix`` is false. Variables are
    applied in sorted order, so when ``A=1`` and ``A_B=2`` both exist, the
    mapping ``a = {"b": 2}`` wins.

    The environment is read on every :meth:`read` (``environ`` replaces
    ``os.environ``, for tests). There is nothing to watch: the loader re-reads
    it on each :meth:`~micro.config.Config.load`.
    """

    options_type: ClassVar[type[EnvSourceOptions]] = EnvSourceOptions
    options: EnvSourceOptions

    def __init__(self, options: EnvSourceOptions | None = None, *, environ: Mapping[str, str] | None = None) -> None:
        super().__init__(options)
        self._environ = environ
        self._prefixes = tuple(p.upper().rstrip("_") + "_" for p in self.options.prefix if p.strip("_"))

    def _path(self, name: str) -> list[str] | None:
        if self._prefixes:
            upper = name.upper()
            for prefix in self._prefixes:
                if upper.startswith(prefix):
                    if self.options.strip_prefix:
                        name = name[len(prefix) :]
                    break
            else:
                return None
        keys = [part for part in name.lower().split("_") if part]
        return keys or None

    async def read(self) -> ChangeSet:
        environ = os.environ if self._environ is None else self._environ
        data: dict[str, Any] = {}
        for name in sorted(environ):
            keys = self._path(name)
            if keys is not None:
                data = merge(data, nest(keys, parse_scalar(environ[name])))
        return ChangeSet.of(data, "env")
