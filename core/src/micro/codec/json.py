"""``application/json``: JSON via orjson, the default codec."""

from __future__ import annotations

from functools import partial
from typing import Any, ClassVar, Final

import orjson

from ..errors import CodecError
from .base import Codec
from .types import ShapeError, converter, plain, type_name

__all__ = ["JSONCodec"]

_default: Final = partial(plain, binary=False)
#: Outputs from this size on are copied into a bytes object of their own size. orjson returns its working buffer,
#: which it over-allocates and does not shrink: 8 to 35 times the output (a 1 MB reply held ~8 MB), and glibc
#: then raises its mmap threshold and serves the next megabyte buffers from the heap, which stays resident. The
#: copy costs about a tenth of encoding.
_FIT: Final = 64 * 1024


class JSONCodec(Codec):
    """JSON text, UTF-8.

    Dataclasses, enums, ``datetime``, ``UUID`` and pydantic models encode as
    JSON would show them; ``bytes`` become base64 text (decode them back with a
    ``bytes`` field in ``into``). Dict keys must be strings.
    """

    content_type: ClassVar[str] = "application/json"
    aliases: ClassVar[tuple[str, ...]] = ("text/json",)
    capabilities: ClassVar[frozenset[str]] = frozenset({"values", "typed"})
    #: The prefix of every error message.
    label: ClassVar[str] = "json"

    def marshal(self, value: Any) -> bytes:
        try:
            data = orjson.dumps(value, default=_default)
        except orjson.JSONEncodeError as exc:
            raise CodecError(f"{self.label}: cannot encode {type(value).__qualname__}: {exc}") from None
        return data if len(data) < _FIT else bytes(memoryview(data))

    def unmarshal(self, data: bytes, into: type[Any] | None = None) -> Any:
        try:
            value = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise CodecError(f"{self.label}: cannot decode: {exc}") from None
        return value if into is None else self._convert(value, into)

    def _convert(self, value: Any, into: Any) -> Any:
        try:
            conv = converter(into)
        except TypeError as exc:
            raise CodecError(f"{self.label}: {exc}") from None
        try:
            return conv(value)
        except ShapeError as exc:
            raise CodecError(f"{self.label}: cannot decode into {type_name(into)}: {exc}") from None
