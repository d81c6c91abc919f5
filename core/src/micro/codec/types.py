"""Typed values to plain ones and back: the conversion the json and msgpack codecs share.

*Plain* values are what a serialiser carries natively: ``None``, ``bool``,
``int``, ``float``, ``str``, ``bytes`` (msgpack only), lists and dicts of them.

* :func:`plain` is the ``default=`` hook of orjson and msgpack: it turns one
  value they do not know (a dataclass, a pydantic model, an enum, a set, a
  datetime, bytes for JSON...) into something they do, one level at a time.
* :func:`converter` returns, once per target type, a function that checks a
  plain value against that type and builds it: dataclasses (nested, recursive,
  with defaults), pydantic v2 models (when pydantic is installed), ``list``,
  ``tuple``, ``set``, ``dict`` and their parametrised forms, ``X | None`` and
  other unions, ``Literal``, enums, ``datetime``/``date``/``time``, ``UUID``,
  ``Decimal``, ``TypedDict`` and ``Any``.

Type hints are resolved once per type and the converter is cached, so a call
costs a dictionary lookup plus the checks themselves. A value of the wrong
shape raises :class:`ShapeError`, which says where (``items[2].name``) and
what was expected; codecs turn it into a :class:`~micro.errors.CodecError`.

Mapping rules, both ways:

* ``bytes`` are base64 text in JSON (as Go's ``encoding/json`` does) and
  native binary in msgpack; a ``bytes`` field accepts either.
* Enums are their values; sets, frozensets and tuples are lists.
* ``datetime``, ``date`` and ``time`` are ISO 8601 text; ``UUID`` and
  ``Decimal`` are text.
* Unknown keys in an object are ignored, so a newer sender can add fields.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import enum
import sys
import types
import typing
import uuid
from collections.abc import Callable, Mapping, MutableMapping, MutableSequence, Sequence
from collections.abc import Set as AbstractSet
from decimal import Decimal, InvalidOperation
from typing import Any, Final

__all__ = ["Converter", "ShapeError", "convert", "converter", "plain", "type_name"]

#: Checks a plain value and returns it as the target type; raises :class:`ShapeError`.
Converter = Callable[[Any], Any]


class ShapeError(ValueError):
    """A plain value does not fit the target type.

    :param problem: what is wrong, e.g. ``"expected int, got str"``.
    """

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem
        #: Path segments from the innermost outwards (``".name"``, ``"[2]"``); read :attr:`where`.
        self.segments: list[str] = []

    @property
    def where(self) -> str:
        """The path to the offending value, ``"items[2].name"``; ``""`` for the value itself."""
        return "".join(reversed(self.segments)).lstrip(".")

    def __str__(self) -> str:
        return f"field {self.where!r}: {self.problem}" if self.segments else self.problem


# -- typed -> plain -------------------------------------------------------------------------------

_field_names: dict[type, tuple[str, ...]] = {}


def _pydantic_base() -> type | None:
    # Only a class built from an already-imported pydantic can be a model, so pydantic is never imported here.
    module = sys.modules.get("pydantic")
    return getattr(module, "BaseModel", None) if module is not None else None


def plain(value: Any, *, binary: bool) -> Any:
    """``value`` as something a serialiser carries, converted one level (the ``default=`` hook).

    ``binary`` says whether the format has a bytes type (msgpack) or needs
    bytes as base64 text (JSON). Raises ``TypeError`` for a value with no
    plain form; codecs report it as :class:`~micro.errors.CodecError`.
    """
    cls = type(value)
    if cls is bytes or cls is bytearray or cls is memoryview:
        return bytes(value) if binary else base64.b64encode(value).decode("ascii")
    names = _field_names.get(cls)
    if names is not None:
        return {name: getattr(value, name) for name in names}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = tuple(f.name for f in dataclasses.fields(value))
        _field_names[cls] = names
        return {name: getattr(value, name) for name in names}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    model = _pydantic_base()
    if model is not None and isinstance(value, model):
        return value.model_dump(mode="python" if binary else "json")  # type: ignore[attr-defined]
    raise TypeError(f"cannot encode a value of type {cls.__qualname__}")


# -- plain -> typed -------------------------------------------------------------------------------

_cache: dict[Any, Converter] = {}
_NONE_TYPE: Final = type(None)


def type_name(tp: Any) -> str:
    """A short readable name for a type or type expression: ``Greeting``, ``list[int]``, ``str | None``."""
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__qualname__
    return repr(tp).replace("typing.", "")


def _got(value: Any) -> str:
    return f"got {type(value).__name__}"


def convert(value: Any, into: Any) -> Any:
    """``value`` converted to ``into`` (``None`` or ``Any`` returns it unchanged); raises :class:`ShapeError`."""
    return converter(into)(value)


def converter(into: Any) -> Converter:
    """The cached converter for ``into``.

    Raises ``TypeError`` when ``into`` is not a type this module knows how to
    build (or its hints cannot be resolved); it is raised again on every call.
    """
    try:
        return _cache[into]
    except KeyError:
        pass
    except TypeError:  # an unhashable annotation, e.g. Literal[[1]]: build it every time
        return _build(into)
    conv = _build(into)
    _cache[into] = conv
    return conv


def _identity(value: Any) -> Any:
    return value


def _build(tp: Any) -> Converter:
    if tp is None or tp is Any or tp is object:
        return _identity
    if tp is _NONE_TYPE:
        return _none
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return converter(typing.get_args(tp)[0])
    if isinstance(tp, typing.NewType):
        return converter(tp.__supertype__)
    if origin is typing.Union or origin is types.UnionType:
        return _union(tp)
    if origin is typing.Literal:
        return _literal(tp)
    if origin is not None:
        return _generic(tp, origin)
    if isinstance(tp, typing.TypeVar):
        return converter(tp.__bound__) if tp.__bound__ is not None else _identity
    if not isinstance(tp, type):
        raise TypeError(f"cannot decode into {tp!r}: not a type")
    simple = _SIMPLE.get(tp)
    if simple is not None:
        return simple
    if dataclasses.is_dataclass(tp):
        return _dataclass(tp)
    if issubclass(tp, enum.Enum):
        return _enum(tp)
    model = _pydantic_base()
    if model is not None and issubclass(tp, model):
        return _pydantic(tp)
    if typing.is_typeddict(tp):
        return _typeddict(tp)
    if tp in _CONTAINERS:
        return _container(tp, _CONTAINERS[tp], None)
    raise TypeError(f"cannot decode into {type_name(tp)}: unsupported type")


def _none(value: Any) -> None:
    if value is not None:
        raise ShapeError(f"expected null, {_got(value)}")


def _bool(value: Any) -> bool:
    if value is True or value is False:
        return value
    raise ShapeError(f"expected bool, {_got(value)}")


def _int(value: Any) -> int:
    if type(value) is int:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    raise ShapeError(f"expected int, {_got(value)}")


def _float(value: Any) -> float:
    if type(value) is float:
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise ShapeError(f"expected float, {_got(value)}")


def _str(value: Any) -> str:
    if type(value) is str:
        return value
    raise ShapeError(f"expected str, {_got(value)}")


# A scalar converter and the one type it returns unchanged: a value exactly of it needs no call.
_EXACT: Final[dict[Converter, type]] = {_str: str, _int: int, _float: float, _bool: bool}


def _bytes(value: Any) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ShapeError("expected base64 text for bytes") from None
    raise ShapeError(f"expected bytes, {_got(value)}")


def _bytearray(value: Any) -> bytearray:
    return bytearray(_bytes(value))


def _iso(cls: type[dt.date] | type[dt.time]) -> Converter:
    def convert(value: Any) -> Any:
        if type(value) is cls:
            return value
        if isinstance(value, str):
            try:
                return cls.fromisoformat(value)
            except ValueError:
                raise ShapeError(f"expected an ISO 8601 {cls.__name__}, got {value!r}") from None
        raise ShapeError(f"expected {cls.__name__}, {_got(value)}")

    return convert


def _uuid(value: Any) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        if isinstance(value, str):
            return uuid.UUID(value)
        if isinstance(value, bytes) and len(value) == 16:
            return uuid.UUID(bytes=value)
    except ValueError:
        pass
    raise ShapeError(f"expected a UUID, got {value!r}")


def _decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        try:
            return Decimal(value)
        except InvalidOperation:
            pass
    raise ShapeError(f"expected a decimal number, got {value!r}")


_SIMPLE: Final[dict[type, Converter]] = {
    bool: _bool,
    int: _int,
    float: _float,
    str: _str,
    bytes: _bytes,
    bytearray: _bytearray,
    dt.datetime: _iso(dt.datetime),
    dt.date: _iso(dt.date),
    dt.time: _iso(dt.time),
    uuid.UUID: _uuid,
    Decimal: _decimal,
}

# Bare and abstract container types, and what they are built as.
_CONTAINERS: Final[dict[Any, type]] = {
    list: list,
    tuple: tuple,
    set: set,
    frozenset: frozenset,
    dict: dict,
    Sequence: list,
    MutableSequence: list,
    AbstractSet: frozenset,
    Mapping: dict,
    MutableMapping: dict,
}


def _union(tp: Any) -> Converter:
    args = typing.get_args(tp)
    optional = _NONE_TYPE in args
    arms = [a for a in args if a is not _NONE_TYPE]
    convs = [converter(a) for a in arms]
    if len(convs) == 1:
        (only,) = convs

        def optional_one(value: Any) -> Any:
            return None if value is None else only(value)

        return optional_one
    expected = type_name(tp)

    def first_fit(value: Any) -> Any:
        if value is None and optional:
            return None
        for conv in convs:
            try:
                return conv(value)
            except ShapeError:
                continue
        raise ShapeError(f"expected {expected}, {_got(value)}")

    return first_fit


def _literal(tp: Any) -> Converter:
    allowed = typing.get_args(tp)

    def literal(value: Any) -> Any:
        for option in allowed:
            if value == option and type(value) is type(option):
                return option
        raise ShapeError(f"expected one of {', '.join(map(repr, allowed))}, got {value!r}")

    return literal


def _generic(tp: Any, origin: Any) -> Converter:
    build = _CONTAINERS.get(origin)
    if build is None:
        raise TypeError(f"cannot decode into {type_name(tp)}: unsupported type")
    args = typing.get_args(tp)
    if build is dict:
        key, value = args if len(args) == 2 else (Any, Any)
        return _mapping(converter(key), converter(value))
    if build is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        return _fixed_tuple([converter(a) for a in args])
    return _container(tp, build, converter(args[0]) if args else None)


def _container(tp: Any, build: type, item: Converter | None) -> Converter:
    if build is dict:
        return _mapping(_identity, _identity)
    expected = type_name(build)
    if item is _identity:
        item = None
    # Items of a scalar type taken as they are when exactly of it (no call per item); anything else goes through
    # the item converter, which coerces or raises as before.
    exact = _EXACT.get(item) if item is not None else None

    def sequence(value: Any) -> Any:
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise ShapeError(f"expected {expected}, {_got(value)}")
        if item is None:
            if type(value) is build:
                return value
            try:
                return build(value)
            except TypeError:  # unhashable items for a set
                raise ShapeError(f"expected {expected} of hashable items") from None
        if exact is not None:
            for element in value:
                if type(element) is not exact:
                    break
            else:
                if build is list:
                    return list(value)
                try:
                    return build(value)
                except TypeError:
                    raise ShapeError(f"expected {expected} of hashable items") from None
        out = []
        for index, element in enumerate(value):
            try:
                out.append(item(element))
            except ShapeError as exc:
                exc.segments.append(f"[{index}]")
                raise
        if build is list:
            return out
        try:
            return build(out)
        except TypeError:
            raise ShapeError(f"expected {expected} of hashable items") from None

    return sequence


def _fixed_tuple(items: list[Converter]) -> Converter:
    size = len(items)

    def fixed(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, (list, tuple)) or len(value) != size:
            raise ShapeError(f"expected a list of {size} items, got {value!r:.60}")
        out = []
        for index, (conv, element) in enumerate(zip(items, value, strict=True)):
            try:
                out.append(conv(element))
            except ShapeError as exc:
                exc.segments.append(f"[{index}]")
                raise
        return tuple(out)

    return fixed


def _mapping(key: Converter, value_conv: Converter) -> Converter:
    if key is _identity and value_conv is _identity:

        def any_dict(value: Any) -> Any:
            if type(value) is dict:
                return value
            raise ShapeError(f"expected an object, {_got(value)}")

        return any_dict

    def mapping(value: Any) -> dict[Any, Any]:
        if type(value) is not dict:
            raise ShapeError(f"expected an object, {_got(value)}")
        out = {}
        for k, v in value.items():
            try:
                out[key(k)] = value_conv(v)
            except ShapeError as exc:
                exc.segments.append(f"[{k!r}]")
                raise
        return out

    return mapping


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except Exception as exc:  # NameError for a forward reference that does not resolve, among others
        raise TypeError(f"cannot decode into {type_name(cls)}: its type hints do not resolve ({exc})") from exc


def _dataclass(cls: type) -> Converter:
    # (name, converter or None for "as is", required, the scalar type a value is taken as is when exactly of it)
    spec: list[tuple[str, Converter | None, bool, type | None]] = []

    def build(value: Any) -> Any:
        if type(value) is not dict:
            if isinstance(value, cls):
                return value
            raise ShapeError(f"expected an object, {_got(value)}")
        kwargs = {}
        for name, conv, required, exact in spec:
            if name in value:
                if conv is None:
                    kwargs[name] = value[name]
                elif exact is not None and type(value[name]) is exact:
                    kwargs[name] = value[name]  # what conv would return, without calling it
                else:
                    try:
                        kwargs[name] = conv(value[name])
                    except ShapeError as exc:
                        exc.segments.append(f".{name}")
                        raise
            elif required:
                error = ShapeError("missing")
                error.segments.append(f".{name}")
                raise error
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:  # the class's own checks, e.g. __post_init__
            raise ShapeError(str(exc)) from exc

    # Cached before the fields are built, so a recursive dataclass finds itself.
    _cache[cls] = build
    try:
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            conv = converter(hints.get(f.name, Any))
            required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            spec.append((f.name, None if conv is _identity else conv, required, _EXACT.get(conv)))
    except BaseException:
        _cache.pop(cls, None)
        raise
    return build


def _typeddict(cls: type) -> Converter:
    hints = _hints(cls)
    fields = [(name, converter(tp)) for name, tp in hints.items()]
    required: frozenset[str] = getattr(cls, "__required_keys__", frozenset())

    def build(value: Any) -> dict[str, Any]:
        if type(value) is not dict:
            raise ShapeError(f"expected an object, {_got(value)}")
        out = dict(value)
        for name, conv in fields:
            if name in value:
                try:
                    out[name] = conv(value[name])
                except ShapeError as exc:
                    exc.segments.append(f".{name}")
                    raise
            elif name in required:
                error = ShapeError("missing")
                error.segments.append(f".{name}")
                raise error
        return out

    return build


def _enum(cls: type[enum.Enum]) -> Converter:
    def build(value: Any) -> enum.Enum:
        if isinstance(value, cls):
            return value
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(repr(m.value) for m in cls)
            raise ShapeError(f"expected one of {allowed}, got {value!r}") from None

    return build


def _pydantic(cls: type) -> Converter:
    validate = cls.model_validate  # type: ignore[attr-defined]
    error_type: type[Exception] = sys.modules["pydantic"].ValidationError

    def build(value: Any) -> Any:
        try:
            return validate(value)
        except error_type as exc:
            first = exc.errors()[0]  # type: ignore[attr-defined]
            error = ShapeError(str(first.get("msg", "invalid")))
            for part in reversed(first.get("loc", ())):
                error.segments.append(f"[{part}]" if isinstance(part, int) else f".{part}")
            raise error from None

    return build
