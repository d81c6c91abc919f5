"""The protobuf codec: messages only, typed by ``into``."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, struct_pb2, wrappers_pb2
from micro.codec import Message, MessageType, codec_for
from micro.errors import CodecError

codec = codec_for("application/protobuf")


def _order_class() -> Any:
    """A message type with nested, repeated, bytes and map fields, built without generated code."""
    file = descriptor_pb2.FileDescriptorProto(name="micro_test_order.proto", package="microtest", syntax="proto3")
    item = file.message_type.add(name="Item")
    item.field.add(name="name", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING)
    item.field.add(name="qty", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64)
    order = file.message_type.add(name="Order")
    order.field.add(name="id", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING)
    order.field.add(
        name="items",
        number=2,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
        type_name=".microtest.Item",
        label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
    )
    order.field.add(name="blob", number=3, type=descriptor_pb2.FieldDescriptorProto.TYPE_BYTES)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("microtest.Order"))


Order = _order_class()


def make_order() -> Any:
    order = Order(id="o-1 ☕", blob=b"\x00\xff" * 1000)
    for i in range(3):
        order.items.add(name=f"item {i} ж", qty=i)
    return order


def test_round_trip_nested_repeated_bytes() -> None:
    order = make_order()
    assert codec.unmarshal(codec.marshal(order), Order) == order


def test_well_known_types_round_trip() -> None:
    value = struct_pb2.Struct()
    value.update({"name": "ü", "nested": {"list": [1.0, "x", None, True]}})
    assert codec.unmarshal(codec.marshal(value), struct_pb2.Struct) == value
    blob = wrappers_pb2.BytesValue(value=bytes(range(256)) * 5000)
    assert codec.unmarshal(codec.marshal(blob), wrappers_pb2.BytesValue) == blob


@pytest.mark.parametrize("value", [{"a": 1}, "text", b"raw", None, 3])
def test_marshal_rejects_non_protobuf(value: Any) -> None:
    with pytest.raises(CodecError, match=r"^proto: cannot encode .*: not a protobuf message"):
        codec.marshal(value)


@pytest.mark.parametrize("into", [None, dict, str])
def test_unmarshal_needs_a_message_class(into: Any) -> None:
    with pytest.raises(CodecError, match=r"^proto: can only decode into a protobuf message class"):
        codec.unmarshal(b"", into)


@pytest.mark.parametrize("garbage", [b"\xff\xff\xff", b'{"id": "json text"}', b"\x0a\x05ab"])
def test_garbage_raises(garbage: bytes) -> None:
    with pytest.raises(CodecError, match=r"^proto: cannot decode into Order"):
        codec.unmarshal(garbage, Order)


def test_framing() -> None:
    order = make_order()
    for kind in MessageType:
        data = codec.encode(Message(type=kind, body=order))
        decoded = codec.decode(data, kind, Order)
        assert decoded.body == order
        assert decoded.type is kind
    assert codec.encode(Message(type=MessageType.ERROR)) == b""
    assert codec.decode(b"", MessageType.ERROR).body is None
