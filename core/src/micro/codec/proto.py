"""``application/protobuf``: protocol buffers messages in their binary wire format."""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import CodecError, MissingExtra

try:
    from google.protobuf.message import DecodeError, EncodeError
    from google.protobuf.message import Message as ProtoMessage
except ModuleNotFoundError as exc:  # an extra: the default codec is json
    raise MissingExtra("codec 'proto'", extra="proto", module="google.protobuf (protobuf)") from exc
from .base import Codec, Message, MessageType
from .types import type_name

__all__ = ["ProtoCodec"]


class ProtoCodec(Codec):
    """Protobuf messages only: :meth:`marshal` takes a ``google.protobuf`` message, and
    :meth:`unmarshal` needs its class as ``into``.

    In RPC framing an absent body (``None``) is the empty frame and back, as a
    body-less error response needs.
    """

    content_type: ClassVar[str] = "application/protobuf"
    aliases: ClassVar[tuple[str, ...]] = ("application/x-protobuf", "application/proto")
    capabilities: ClassVar[frozenset[str]] = frozenset({"proto"})

    def marshal(self, value: Any) -> bytes:
        if not isinstance(value, ProtoMessage):
            raise CodecError(f"proto: cannot encode {type(value).__qualname__}: not a protobuf message")
        try:
            data: bytes = value.SerializeToString()
        except EncodeError as exc:  # a proto2 message with required fields unset
            raise CodecError(f"proto: cannot encode {type(value).__qualname__}: {exc}") from None
        return data

    def unmarshal(self, data: bytes, into: type[Any] | None = None) -> Any:
        if not (isinstance(into, type) and issubclass(into, ProtoMessage)):
            shown = "None" if into is None else type_name(into)
            raise CodecError(f"proto: can only decode into a protobuf message class, not {shown}")
        message = into()
        try:
            message.ParseFromString(data if type(data) is bytes else bytes(data))
        except (DecodeError, TypeError, ValueError) as exc:
            raise CodecError(f"proto: cannot decode into {type_name(into)}: {exc}") from None
        return message

    def encode(self, message: Message) -> bytes:
        return b"" if message.body is None else self.marshal(message.body)

    def decode(self, data: bytes, type: MessageType, into: type[Any] | None = None) -> Message:
        if into is None and not data:
            return Message(type=type)
        return Message(type=type, body=self.unmarshal(data, into))
