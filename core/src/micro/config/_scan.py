"""Converting loaded config data into typed values: dataclasses (nested), pydantic models, builtins."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import enum
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from .._scalars import parse_bool, parse_float, parse_int
from ..errors import ConfigError

__all__ = ["convert"]


def _where(path: str) -> str:
    return path or "the configuration"


def _fail(path: str, expected: str, value: Any) -> ConfigError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return ConfigError(f"{_where(path)}: expected {expected}, got {shown}")


def _name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation)


def _is_pydantic_model(annotation: Any) -> bool:
    # Checked by duck type so pydantic is never imported unless the caller's model already did it.
    return isinstance(annotation, type) and all(hasattr(annotation, a) for a in ("model_validate", "model_fields"))


def convert(value: Any, annotation: Any, path: str) -> Any:
    """``value`` converted to ``annotation``; raises :class:`~micro.errors.ConfigError` naming ``path``.

    Strings are accepted where the env and flag sources would produce them:
    numbers and booleans in their usual spellings, and comma-separated lists.
    Unknown keys of a mapping are ignored; a missing field without a default
    is an error naming it.
    """
    if annotation is Any or annotation is object:
        return copy.deepcopy(value)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return convert(value, args[0], path)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            with contextlib.suppress(ConfigError):
                return convert(value, arg, path)
        expected = " or ".join(_name(a) for a in args)
        raise _fail(path, expected, value)
    if origin is typing.Literal:
        if value in args:
            return value
        raise _fail(path, "one of " + ", ".join(map(repr, args)), value)
    if annotation is type(None):
        if value is None:
            return None
        raise _fail(path, "null", value)
    if annotation is bool:
        return _bool(value, path)
    if annotation is int:
        return _int(value, path)
    if annotation is float:
        return _float(value, path)
    if annotation is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise _fail(path, "a string", value)
    if origin in (list, tuple, set, frozenset, Sequence) or annotation in (list, tuple, set, frozenset):
        return _sequence(value, annotation, origin or annotation, args, path)
    if origin in (dict, Mapping) or annotation in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise _fail(path, "a mapping", value)
        key_type, value_type = args if len(args) == 2 else (Any, Any)
        return {
            convert(key, key_type, f"{path}.{key}" if path else str(key)): convert(
                item, value_type, f"{path}.{key}" if path else str(key)
            )
            for key, item in value.items()
        }
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return _dataclass(value, annotation, path)
    if _is_pydantic_model(annotation):
        return _pydantic(value, annotation, path)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return _enum(value, annotation, path)
    if isinstance(annotation, type):
        if isinstance(value, annotation):
            return copy.deepcopy(value)
        raise _fail(path, _name(annotation), value)
    raise ConfigError(f"{_where(path)}: cannot convert to {annotation!r}")


def _bool(value: Any, path: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return parse_bool(value)
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise _fail(path, "a boolean", value)


def _int(value: Any, path: str) -> int:
    if isinstance(value, bool):
        raise _fail(path, "an integer", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return parse_int(value)
    raise _fail(path, "an integer", value)


def _float(value: Any, path: str) -> float:
    if isinstance(value, bool):
        raise _fail(path, "a number", value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return parse_float(value)
    raise _fail(path, "a number", value)


def _sequence(value: Any, annotation: Any, origin: Any, args: tuple[Any, ...], path: str) -> Any:
    if isinstance(value, str):
        # Go Micro's StringSlice: a comma-separated string from the env or a flag.
        value = [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)):
        raise _fail(path, f"a list for {_name(annotation)}", value)
    if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
        if len(value) != len(args):
            raise _fail(path, f"{len(args)} items", value)
        return tuple(convert(item, arg, f"{path}.{i}") for i, (item, arg) in enumerate(zip(value, args, strict=True)))
    item_type = args[0] if args else Any
    items = [convert(item, item_type, f"{path}.{i}") for i, item in enumerate(value)]
    if origin in (list, Sequence):
        return items
    return origin(items)


def _dataclass(value: Any, cls: type, path: str) -> Any:
    if not isinstance(value, Mapping):
        raise _fail(path, f"a mapping for {cls.__name__}", value)
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except NameError as exc:
        raise ConfigError(f"{_where(path)}: cannot resolve the annotations of {cls.__name__}: {exc}") from exc
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if not field.init:
            continue
        where = f"{path}.{field.name}" if path else field.name
        if field.name not in value:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: required field of {cls.__name__} is missing")
            continue
        kwargs[field.name] = convert(value[field.name], hints.get(field.name, Any), where)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{_where(path)}: {cls.__name__} rejected the values: {exc}") from exc


def _pydantic(value: Any, model: Any, path: str) -> Any:
    from pydantic import ValidationError

    try:
        return model.model_validate(value)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = ".".join(str(part) for part in error.get("loc", ()))
            where = ".".join(part for part in (path, loc) if part)
            problems.append(f"{_where(where)}: {error.get('msg', 'invalid')}")
        raise ConfigError("; ".join(problems) or f"{_where(path)}: invalid {model.__name__}") from exc


def _enum(value: Any, cls: type[enum.Enum], path: str) -> enum.Enum:
    try:
        return cls(value)
    except ValueError:
        pass
    if isinstance(value, str) and value in cls.__members__:
        return cls.__members__[value]
    raise _fail(path, "one of " + ", ".join(repr(m.value) for m in cls), value)
