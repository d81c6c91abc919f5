"""Every embedded codec: round trips, framing, errors (conformance cases K1-K7)."""

from __future__ import annotations

from typing import Any

import pytest
from micro.codec import Codec, Message, MessageType, codec_for
from micro.errors import BadRequest, CodecError

PLAIN = ["application/json", "application/msgpack", "application/json-rpc"]

CORPUS: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    1.5,
    -0.0,
    "",
    "hello",
    "ünïcødé 日本語 🚀 \u0000 \ufeff",
    [],
    {},
    [1, "two", 3.0, None, [True, {"deep": ["er"]}]],
    {"a": {"b": {"c": {"d": [1, 2, {"e": "ж"}]}}}},
    {"ключ": "значение", "emoji 🎉": ["🎊"]},
]


@pytest.fixture(params=PLAIN)
def codec(request: pytest.FixtureRequest) -> Codec:
    return codec_for(request.param)


@pytest.mark.parametrize("value", CORPUS, ids=repr)
def test_round_trip(codec: Codec, value: Any) -> None:
    data = codec.marshal(value)
    assert isinstance(data, bytes)
    decoded = codec.unmarshal(data)
    assert decoded == value
    assert type(decoded) is type(value)


def test_tuple_comes_back_as_list(codec: Codec) -> None:
    assert codec.unmarshal(codec.marshal((1, (2, 3)))) == [1, [2, 3]]


def test_bytes_mapping_json_is_base64_text() -> None:
    json = codec_for("application/json")
    assert json.marshal(b"\x00\xffhi") == b'"AP9oaQ=="'
    assert json.unmarshal(b'"AP9oaQ=="') == "AP9oaQ=="
    assert json.unmarshal(b'"AP9oaQ=="', bytes) == b"\x00\xffhi"


def test_bytes_mapping_msgpack_is_binary() -> None:
    msgpack = codec_for("application/msgpack")
    value = {"blob": b"\x00\xff" * 10, 1: "int keys are fine"}
    assert msgpack.unmarshal(msgpack.marshal(value)) == value


def test_large_payload(codec: Codec) -> None:
    value = {"rows": [{"id": i, "name": f"row {i} ✓", "score": i / 7} for i in range(20_000)], "blob": "x" * 2**20}
    data = codec.marshal(value)
    assert len(data) > 2**20
    assert codec.unmarshal(data) == value


def test_buffers_other_than_bytes_decode(codec: Codec) -> None:
    data = codec.marshal({"k": [1, 2]})
    assert codec.unmarshal(bytearray(data)) == {"k": [1, 2]}
    assert codec.unmarshal(memoryview(data)) == {"k": [1, 2]}


@pytest.mark.parametrize("garbage", [b"", b"\xc1", b"{not json", b"\xff\xfe\xfd", b"[1, 2", b'{"a": 1}}'])
def test_garbage_raises_codec_error_naming_the_codec(codec: Codec, garbage: bytes) -> None:
    with pytest.raises(CodecError) as info:
        codec.unmarshal(garbage)
    assert isinstance(info.value, BadRequest)
    assert info.value.code == 400
    assert str(info.value).startswith(f"{codec.name}: cannot decode")


@pytest.mark.parametrize(
    ("writer", "reader"),
    [("application/json", "application/msgpack"), ("application/msgpack", "application/json")],
)
def test_another_codecs_bytes_do_not_decode(writer: str, reader: str) -> None:
    data = codec_for(writer).marshal({"name": "value", "list": [1, 2, 3]})
    with pytest.raises(CodecError):
        codec_for(reader).unmarshal(data)


@pytest.mark.parametrize("value", [object(), {1: "json keys must be str"}, 2**64, {"f": lambda: None}])
def test_unencodable_value_names_codec_and_type(value: Any) -> None:
    json = codec_for("application/json")
    with pytest.raises(CodecError, match=r"^json: cannot encode"):
        json.marshal(value)


def test_msgpack_unencodable() -> None:
    with pytest.raises(CodecError, match=r"^msgpack: cannot encode object"):
        codec_for("application/msgpack").marshal(object())


@pytest.mark.parametrize("kind", list(MessageType))
def test_plain_framing_carries_the_body_only(kind: MessageType) -> None:
    for content_type in ("application/json", "application/msgpack"):
        codec = codec_for(content_type)
        message = Message(id="1", type=kind, service="greeter", endpoint="Greeter.Hello", body={"x": ["y"]})
        data = codec.encode(message)
        assert data == codec.marshal({"x": ["y"]})
        decoded = codec.decode(data, kind)
        assert decoded.type is kind
        assert decoded.body == {"x": ["y"]}
        assert (decoded.id, decoded.endpoint) == ("", "")


def test_bytes_codec_round_trip_and_rejections() -> None:
    codec = codec_for("application/octet-stream")
    payload = bytes(range(256)) * 5000
    assert codec.unmarshal(codec.marshal(payload)) == payload
    assert codec.marshal(bytearray(b"ab")) == b"ab"
    assert codec.marshal(memoryview(b"ab")) == b"ab"
    assert codec.unmarshal(b"ab", bytearray) == bytearray(b"ab")
    with pytest.raises(CodecError, match=r"^bytes: cannot encode str"):
        codec.marshal("text")
    with pytest.raises(CodecError, match=r"^bytes: can only decode into bytes"):
        codec.unmarshal(b"ab", dict)
    message = codec.decode(codec.encode(Message(body=None)), MessageType.ERROR)
    assert message.body == b""
    assert message.type is MessageType.ERROR


EMBEDDED = {
    "json": "application/json",
    "msgpack": "application/msgpack",
    "proto": "application/protobuf",
    "bytes": "application/octet-stream",
    "json-rpc": "application/json-rpc",
}


@pytest.mark.parametrize(("name", "content_type"), EMBEDDED.items())
def test_content_type_is_stable_and_the_codec_is_shared(name: str, content_type: str) -> None:
    codec = codec_for(content_type)
    assert codec.name == name
    assert type(codec).content_type == content_type
    assert codec_for(content_type) is codec
    assert codec_for(content_type.upper() + "; charset=utf-8") is codec


def test_content_types_are_unique() -> None:
    assert len({codec_for(t).content_type for t in EMBEDDED.values()}) == len(EMBEDDED)
