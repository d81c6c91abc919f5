"""``application/proto-rpc``: Go Micro's ``protorpc`` codec, protobuf bodies behind a protobuf header.

A request or response frame is two *netstrings* (a 4-byte big-endian length, then that many bytes): the
header message, then the body message (empty for no body). The headers are Go Micro's proto2 envelope:

* request: ``Request { optional string service_method = 1; optional fixed64 seq = 2; }``
* response: ``Response { optional string service_method = 1; optional fixed64 seq = 2; optional string error = 3; }``

An event is the body alone, as with ``application/protobuf``. Go numbers its calls, so an id travels as
``seq``: an id that is not a decimal number below 2**64 goes out as 0. A response whose ``error`` is set
decodes as :attr:`~micro.codec.MessageType.ERROR`. Bodies are protobuf messages only (``into`` must be the
class), as for :class:`micro.codec.proto.ProtoCodec`.
"""

from __future__ import annotations

import functools
import struct
from typing import Any, ClassVar

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from micro.codec.base import Message, MessageType
from micro.codec.proto import ProtoCodec
from micro.errors import CodecError

__all__ = ["ProtoRPCCodec"]

_SIZE = struct.Struct(">I")
_MAX_SEQ = 2**64


@functools.cache
def _envelope() -> tuple[Any, Any]:
    """Go Micro's ``Request`` and ``Response`` header classes, built once in a pool of their own."""
    field = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(name="micro_grpc/protorpc.proto", package="protorpc", syntax="proto2")
    for name, fields in (("Request", 2), ("Response", 3)):
        message = file.message_type.add(name=name)
        message.field.add(name="service_method", number=1, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
        message.field.add(name="seq", number=2, type=field.TYPE_FIXED64, label=field.LABEL_OPTIONAL)
        if fields == 3:
            message.field.add(name="error", number=3, type=field.TYPE_STRING, label=field.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return (
        message_factory.GetMessageClass(pool.FindMessageTypeByName("protorpc.Request")),
        message_factory.GetMessageClass(pool.FindMessageTypeByName("protorpc.Response")),
    )


def _seq(id: str) -> int:
    return int(id) if id.isdecimal() and id.isascii() and int(id) < _MAX_SEQ else 0


def _netstring(data: bytes) -> bytes:
    return _SIZE.pack(len(data)) + data


def _split(data: bytes) -> tuple[bytes, bytes]:
    """The header and body netstrings of a frame; anything cut short or left over is a CodecError."""
    view = memoryview(data)
    parts: list[bytes] = []
    at = 0
    for what in ("header", "body"):
        if len(view) - at < 4:
            raise CodecError(f"proto-rpc: frame ends before the {what} length")
        (size,) = _SIZE.unpack_from(view, at)
        at += 4
        if len(view) - at < size:
            raise CodecError(f"proto-rpc: the {what} needs {size} bytes, {len(view) - at} remain")
        parts.append(bytes(view[at : at + size]))
        at += size
    if at != len(view):
        raise CodecError(f"proto-rpc: {len(view) - at} bytes after the body")
    return parts[0], parts[1]


class ProtoRPCCodec(ProtoCodec):
    """Go Micro's ``proto-rpc`` framing (see the module docstring); ``marshal``/``unmarshal`` are plain protobuf."""

    content_type: ClassVar[str] = "application/proto-rpc"
    aliases: ClassVar[tuple[str, ...]] = ()
    capabilities: ClassVar[frozenset[str]] = frozenset({"proto"})
    label: ClassVar[str] = "proto-rpc"

    def encode(self, message: Message) -> bytes:
        kind = message.type
        if kind is MessageType.EVENT:
            return super().encode(message)
        request, response = _envelope()
        seq = _seq(message.id)
        if kind is MessageType.REQUEST:
            header = request(service_method=message.endpoint, seq=seq)
        else:
            error = message.error or ("error" if kind is MessageType.ERROR else "")
            header = response(service_method=message.endpoint, seq=seq, error=error)
        body = b"" if kind is MessageType.ERROR or message.body is None else self.marshal(message.body)
        return _netstring(header.SerializeToString()) + _netstring(body)

    def decode(self, data: bytes, type: MessageType, into: type[Any] | None = None) -> Message:
        if type is MessageType.EVENT:
            return super().decode(data, type, into)
        head, body = _split(data)
        request, response = _envelope()
        try:
            header = (request if type is MessageType.REQUEST else response).FromString(head)
        except (DecodeError, ValueError) as exc:
            raise CodecError(f"proto-rpc: bad {type.value} header: {exc}") from None
        id = str(header.seq) if header.HasField("seq") else ""
        if type is not MessageType.REQUEST and header.error:
            return Message(id=id, type=MessageType.ERROR, endpoint=header.service_method, error=header.error)
        value = None if into is None and not body else self.unmarshal(body, into)
        return Message(id=id, type=type, endpoint=header.service_method, body=value)
