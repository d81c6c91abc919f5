"""``application/msgpack``: MessagePack, compact and binary-safe."""

from __future__ import annotations

from functools import partial
from typing import Any, ClassVar, Final

import msgpack

from ..errors import CodecError
from .base import Codec
from .types import ShapeError, converter, plain, type_name

__all__ = ["MsgpackCodec"]

_default: Final = partial(plain, binary=True)


class MsgpackCodec(Codec):
    """MessagePack (the 2.0 spec: ``str`` and ``bin`` are distinct types).

    ``bytes`` stay bytes, dict keys may be any hashable plain value, tuples
    come back as lists; dataclasses, enums, ``datetime``, ``UUID`` and pydantic
    models encode as with :class:`~micro.codec.json.JSONCodec`.
    """

    content_type: ClassVar[str] = "application/msgpack"
    aliases: ClassVar[tuple[str, ...]] = ("application/x-msgpack", "application/vnd.msgpack")
    capabilities: ClassVar[frozenset[str]] = frozenset({"values", "typed", "binary"})

    def marshal(self, value: Any) -> bytes:
        try:
            data: bytes = msgpack.packb(value, default=_default, use_bin_type=True, datetime=False)
        except (TypeError, ValueError, OverflowError) as exc:
            raise CodecError(f"msgpack: cannot encode {type(value).__qualname__}: {exc}") from None
        return data

    def unmarshal(self, data: bytes, into: type[Any] | None = None) -> Any:
        try:
            value = msgpack.unpackb(data, raw=False, strict_map_key=False, use_list=True)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            # ExtraData, FormatError, StackError and invalid UTF-8 are all ValueErrors.
            raise CodecError(f"msgpack: cannot decode: {str(exc) or type(exc).__name__}") from None
        if into is None:
            return value
        try:
            conv = converter(into)
        except TypeError as exc:
            raise CodecError(f"msgpack: {exc}") from None
        try:
            return conv(value)
        except ShapeError as exc:
            raise CodecError(f"msgpack: cannot decode into {type_name(into)}: {exc}") from None
