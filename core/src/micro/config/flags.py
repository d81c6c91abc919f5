"""Configuration from command-line flags: ``--database-host=db`` or ``--database.host db``."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, ClassVar

from ._values import merge, nest, parse_scalar
from .base import ChangeSet, Source
from .options import FlagSourceOptions

__all__ = ["FlagSource", "parse_flags"]

_SEPARATORS = str.maketrans({"-": ".", "_": "."})


def _is_value(token: str) -> bool:
    # "-5" is a value; "-v" and "--x" are flags.
    return not token.startswith("-") or isinstance(parse_scalar(token), (int, float))


def parse_flags(argv: Sequence[str], prefix: str = "") -> dict[str, Any]:
    """The nested data in ``argv``'s long flags.

    ``--name=value`` and ``--name value`` set a value (parsed as the env source
    parses it); ``--name`` alone, before another flag or at the end, sets
    ``True``. The name is lower-cased and split on ``-``, ``_`` and ``.`` (as Go
    Micro's flag source splits on ``-`` and ``_``). Positional arguments,
    single-dash flags and everything after ``--`` are ignored; a repeated flag
    keeps its last value. With ``prefix``, only flags starting with it are
    read, the prefix dropped.
    """
    data: dict[str, Any] = {}
    tokens = list(argv)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token == "--":
            break
        if not token.startswith("--") or len(token) == 2:
            continue
        name, sep, text = token[2:].partition("=")
        value: Any
        if sep:
            value = parse_scalar(text)
        elif i < len(tokens) and tokens[i] != "--" and _is_value(tokens[i]):
            value = parse_scalar(tokens[i])
            i += 1
        else:
            value = True
        name = name.lower()
        if prefix:
            if not name.startswith(prefix.lower()):
                continue
            name = name[len(prefix) :]
        keys = [key for key in name.translate(_SEPARATORS).split(".") if key]
        if keys:
            data = merge(data, nest(keys, value))
    return data


class FlagSource(Source):
    """Reads long flags from ``argv`` (``sys.argv[1:]`` when not given) with :func:`parse_flags`.

    Flags do not change while a process runs, so there is nothing to watch.
    """

    options_type: ClassVar[type[FlagSourceOptions]] = FlagSourceOptions
    options: FlagSourceOptions

    def __init__(self, options: FlagSourceOptions | None = None, *, argv: Sequence[str] | None = None) -> None:
        super().__init__(options)
        self._argv = tuple(sys.argv[1:] if argv is None else argv)

    async def read(self) -> ChangeSet:
        return ChangeSet.of(parse_flags(self._argv, self.options.prefix), "flags")
