"""Options: frozen, keyword-only dataclasses, built from code or from ``MICRO_*`` strings.

Every building block has an options class (``StoreOptions``, ``BrokerOptions``,
...) derived from :class:`Options`, and a backend adds its own settings in a
subclass (``RedisStoreOptions(StoreOptions)``). :func:`build` turns the strings
read from the environment into those typed fields, so a plugin never parses an
environment variable itself.

Conversions from a string, by the field's annotation, with the spellings of
:mod:`micro._scalars` (the same everywhere in micro):

* ``str``; ``int`` (decimal); ``bool`` (``1/0``, ``true/false``, ``t/f``, ``yes/no``,
  ``y/n``, ``on/off``, any case; an empty value is false);
* ``float``, which also takes Go-style durations (``"250ms"``, ``"5s"``, ``"2m"``,
  ``"1h"``) and means seconds;
* ``tuple[str, ...]`` from a comma-separated list (``MICRO_REGISTRY_ADDRESS=a:1,b:2``);
* ``dict[str, str]`` (or a ``Mapping``) from ``k=v,k2=v2``;
* ``X | None``: the empty string means ``None``.

Values given from code are passed through as they are; the options class checks
them in ``__post_init__`` and raises :class:`~micro.errors.InvalidOption`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ._scalars import parse_bool, parse_duration, parse_int
from .errors import InvalidOption

__all__ = ["Options", "build", "parse_duration"]

OptionsT = TypeVar("OptionsT", bound="Options")


@dataclasses.dataclass(frozen=True, kw_only=True, slots=True)
class Options:
    """Base of every options class. It has no fields of its own."""

    def replace(self: OptionsT, **changes: Any) -> OptionsT:
        """A copy with ``changes`` applied (and checked again)."""
        return dataclasses.replace(self, **changes)


def _convert(text: str, annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if text == "" and len(args) != len(typing.get_args(annotation)):
            return None
        errors = []
        for arg in args:
            try:
                return _convert(text, arg)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors))
    if origin is typing.Literal:
        allowed = typing.get_args(annotation)
        if text not in allowed:
            raise ValueError(f"expected one of {', '.join(map(repr, allowed))}, got {text!r}")
        return text
    if annotation is str or annotation is Any:
        return text
    if annotation is bool:
        # An empty variable is false: MICRO_X_FLAG= switches a flag off.
        return parse_bool(text) if text.strip() else False
    if annotation is int:
        return parse_int(text)
    if annotation is float:
        return parse_duration(text)
    if origin in (tuple, list, frozenset, set):
        items = [part.strip() for part in text.split(",") if part.strip()]
        (item_type, *_rest) = typing.get_args(annotation) or (str,)
        return origin(_convert(item, item_type) for item in items)
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        result: dict[str, str] = {}
        for part in text.split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep:
                raise ValueError(f"expected key=value pairs separated by commas, got {part!r}")
            result[key.strip()] = value.strip()
        return result
    raise ValueError(f"cannot be set from a string (type {annotation!r})")


def _hints(cls: type[Options]) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def build(
    cls: type[OptionsT],
    strings: Mapping[str, str] | None = None,
    values: Mapping[str, Any] | None = None,
    *,
    describe: Callable[[str], str] | None = None,
) -> OptionsT:
    """An instance of ``cls`` from ``strings`` (converted by annotation) and ``values`` (as given).

    Keys are field names, case-insensitive; ``values`` win over ``strings``.
    Raises :class:`~micro.errors.InvalidOption` for an unknown key or a value
    that does not convert, naming the variable through ``describe(key)`` (for
    example ``"MICRO_STORE_TABLE"``), and for any ``ValueError`` or
    ``TypeError`` raised by the class's own checks.
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    origins: dict[str, str | None] = {}

    def name_of(key: str) -> str:
        normal = key.lower().replace("-", "_")
        if normal not in fields:
            known = ", ".join(sorted(fields)) or "none"
            variable = describe(key) if describe else None
            raise InvalidOption(
                f"unknown option for {cls.__name__}; known options: {known}", option=normal, variable=variable
            )
        return normal

    for key, text in (strings or {}).items():
        name = name_of(key)
        variable = describe(key) if describe else None
        try:
            kwargs[name] = _convert(text, hints[name])
        except ValueError as exc:
            raise InvalidOption(str(exc), option=name, variable=variable) from None
        origins[name] = variable
    for key, value in (values or {}).items():
        name = name_of(key)
        kwargs[name] = value
        origins[name] = None
    try:
        return cls(**kwargs)
    except InvalidOption as exc:
        if exc.variable is None and origins.get(exc.option):
            raise InvalidOption(
                exc.detail.partition(": ")[2] or exc.detail, option=exc.option, variable=origins[exc.option]
            ) from exc
        raise
    except (ValueError, TypeError) as exc:
        named = [v for v in origins.values() if v]
        hint = f" (set from {', '.join(named)})" if named else ""
        raise InvalidOption(f"{exc}{hint}", option="?", variable=None) from exc
