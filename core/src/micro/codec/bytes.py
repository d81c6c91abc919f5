"""``application/octet-stream``: raw bytes, passed through unchanged."""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import CodecError
from .base import Codec, Message, MessageType
from .types import type_name

__all__ = ["BytesCodec"]


class BytesCodec(Codec):
    """The identity codec: bytes in, the same bytes out (Go Micro's ``bytes`` codec, without its ``Frame``).

    :meth:`marshal` takes ``bytes``, ``bytearray`` or ``memoryview``;
    :meth:`unmarshal` returns ``bytes`` (or ``bytearray`` when asked). In RPC
    framing an absent body (``None``) is the empty frame.
    """

    content_type: ClassVar[str] = "application/octet-stream"
    capabilities: ClassVar[frozenset[str]] = frozenset({"raw"})

    def marshal(self, value: Any) -> bytes:
        if type(value) is bytes:
            return value
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value)
        raise CodecError(f"bytes: cannot encode {type(value).__qualname__}: only bytes-like values")

    def unmarshal(self, data: bytes, into: type[Any] | None = None) -> Any:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise CodecError(f"bytes: cannot decode {type(data).__qualname__}: not bytes")
        if into is None or into is bytes:
            return data if type(data) is bytes else bytes(data)
        if into is bytearray:
            return bytearray(data)
        raise CodecError(f"bytes: can only decode into bytes or bytearray, not {type_name(into)}")

    def encode(self, message: Message) -> bytes:
        return b"" if message.body is None else self.marshal(message.body)

    def decode(self, data: bytes, type: MessageType, into: type[Any] | None = None) -> Message:
        return Message(type=type, body=self.unmarshal(data, into))
