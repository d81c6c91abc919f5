"""The proto-rpc codec: Go Micro's frame layout byte for byte, round trips, bad frames, and a call over mucp."""

import struct
from types import ModuleType

import pytest
from google.protobuf import wrappers_pb2
from micro.client.rpc import RPCClient
from micro.codec import MessageType
from micro.codec.base import Message
from micro.errors import CodecError, NotFound
from micro.plugins import get_manager
from micro.registry.memory import MemoryRegistry
from micro.selector.cache import RandomSelector
from micro.server.rpc import RPCServer
from micro_grpc import ProtoRPCCodec

CODEC = ProtoRPCCodec()


def test_a_request_frame_is_go_micros_layout():
    frame = CODEC.encode(
        Message(id="7", type=MessageType.REQUEST, endpoint="Greeter.Hello", body=wrappers_pb2.StringValue(value="hi"))
    )
    # header: field 1 (string, tag 0x0a) "Greeter.Hello", field 2 (fixed64, tag 0x11) 7 little-endian
    header = b"\x0a\x0dGreeter.Hello" + b"\x11" + struct.pack("<Q", 7)
    body = b"\x0a\x02hi"
    assert frame == struct.pack(">I", len(header)) + header + struct.pack(">I", len(body)) + body


def test_frames_round_trip():
    value = wrappers_pb2.StringValue(value="ünï")
    request = CODEC.decode(
        CODEC.encode(Message(id="42", type=MessageType.REQUEST, endpoint="A.b", body=value)),
        MessageType.REQUEST,
        wrappers_pb2.StringValue,
    )
    assert (request.id, request.endpoint, request.body) == ("42", "A.b", value)
    response = CODEC.decode(
        CODEC.encode(Message(id="43", type=MessageType.RESPONSE, body=value)),
        MessageType.RESPONSE,
        wrappers_pb2.StringValue,
    )
    assert (response.type, response.id, response.body) == (MessageType.RESPONSE, "43", value)
    error = CODEC.decode(
        CODEC.encode(Message(id="44", type=MessageType.ERROR, error='{"code":404}')), MessageType.RESPONSE
    )
    assert (error.type, error.id, error.error) == (MessageType.ERROR, "44", '{"code":404}')
    event = CODEC.decode(
        CODEC.encode(Message(type=MessageType.EVENT, body=value)), MessageType.EVENT, wrappers_pb2.StringValue
    )
    assert event.body == value
    empty = CODEC.decode(CODEC.encode(Message(id="1", type=MessageType.RESPONSE)), MessageType.RESPONSE)
    assert empty.body is None
    odd = CODEC.decode(CODEC.encode(Message(id="x-1", type=MessageType.RESPONSE)), MessageType.RESPONSE)
    assert odd.id == "0"  # Go's seq is a number


@pytest.mark.parametrize("cut", [0, 3, 5, -1])
def test_cut_or_padded_frames_are_codec_errors(cut):
    frame = CODEC.encode(
        Message(id="1", type=MessageType.REQUEST, endpoint="A.b", body=wrappers_pb2.StringValue(value="v"))
    )
    with pytest.raises(CodecError, match="proto-rpc"):
        CODEC.decode(frame[:cut], MessageType.REQUEST, wrappers_pb2.StringValue)
    with pytest.raises(CodecError, match="after the body"):
        CODEC.decode(frame + b"\x00", MessageType.REQUEST, wrappers_pb2.StringValue)


async def test_a_mucp_call_with_proto_rpc(echo: tuple[ModuleType, ModuleType], echo_handler):
    pb2, _ = echo
    codecs = get_manager().codecs()
    registry = MemoryRegistry()
    server = RPCServer(RPCServer.options_type(name="protorpc.svc"), registry=registry, codecs=codecs)
    server.handle(echo_handler(pb2))
    await server.start()
    client = RPCClient(selector=RandomSelector(registry=registry), codecs=codecs)
    try:
        reply = await client.call(
            "protorpc.svc", "Echo.Say", pb2.Msg(text="a", n=1), response_type=pb2.Msg, content_type=CODEC.content_type
        )
        assert (reply.text, reply.n) == ("a|-", 2)
        with pytest.raises(NotFound):
            await client.call(
                "protorpc.svc", "Echo.Fail", pb2.Msg(text="z"), response_type=pb2.Msg, content_type=CODEC.content_type
            )
    finally:
        await client.close()
        await server.stop()
