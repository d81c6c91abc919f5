"""The json-rpc envelope: encode/decode of requests, responses, errors and events."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import pytest
from micro.codec import Message, MessageType, codec_for
from micro.errors import CodecError

codec = codec_for("application/json-rpc")


@dataclass
class Hello:
    name: str


def test_request_envelope() -> None:
    data = codec.encode(Message(id="12", type=MessageType.REQUEST, endpoint="Greeter.Hello", body=Hello("ü")))
    assert orjson.loads(data) == {"method": "Greeter.Hello", "params": [{"name": "ü"}], "id": 12}
    message = codec.decode(data, MessageType.REQUEST, Hello)
    assert (message.id, message.endpoint, message.body, message.type) == (
        "12",
        "Greeter.Hello",
        Hello("ü"),
        MessageType.REQUEST,
    )


def test_non_numeric_ids_stay_strings() -> None:
    for id in ("abc", "007", "-1"):
        data = codec.encode(Message(id=id, type=MessageType.RESPONSE, body=1))
        assert orjson.loads(data)["id"] == id
        assert codec.decode(data, MessageType.RESPONSE).id == id


def test_response_envelope() -> None:
    data = codec.encode(Message(id="3", type=MessageType.RESPONSE, body={"msg": "hi"}))
    assert orjson.loads(data) == {"id": 3, "result": {"msg": "hi"}, "error": None}
    message = codec.decode(data, MessageType.RESPONSE)
    assert (message.id, message.body, message.error, message.type) == ("3", {"msg": "hi"}, "", MessageType.RESPONSE)


def test_error_envelope_decodes_as_error() -> None:
    text = '{"id":"greeter","code":404,"detail":"no such thing","status":"Not Found"}'
    data = codec.encode(Message(id="4", type=MessageType.ERROR, error=text))
    assert orjson.loads(data) == {"id": 4, "result": None, "error": text}
    message = codec.decode(data, MessageType.RESPONSE)
    assert (message.type, message.error, message.body) == (MessageType.ERROR, text, None)


def test_structured_error_objects_become_text() -> None:
    message = codec.decode(b'{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"nope"}}', MessageType.RESPONSE)
    assert message.type is MessageType.ERROR
    assert orjson.loads(message.error) == {"code": -32601, "message": "nope"}


def test_event_is_the_plain_body() -> None:
    data = codec.encode(Message(type=MessageType.EVENT, body={"topic": "t"}))
    assert data == b'{"topic":"t"}'
    assert codec.decode(data, MessageType.EVENT).body == {"topic": "t"}


def test_params_object_and_empty_params() -> None:
    named = codec.decode(b'{"method":"A.B","params":{"name":"x"},"id":"q"}', MessageType.REQUEST, Hello)
    assert named.body == Hello("x")
    empty = codec.decode(b'{"method":"A.B","params":[],"id":1}', MessageType.REQUEST)
    assert empty.body is None


@pytest.mark.parametrize(
    ("data", "kind", "message"),
    [
        (b"[1]", MessageType.REQUEST, "json-rpc: expected an envelope object, got a list"),
        (b'{"params":[1],"id":1}', MessageType.REQUEST, "json-rpc: request has no method"),
        (b'{"method":"A.B","params":[1,2],"id":1}', MessageType.REQUEST, "json-rpc: request has 2 params"),
        (b'{"method":"A.B","params":"x","id":1}', MessageType.REQUEST, "json-rpc: params must be a list"),
        (b'{"id":1}', MessageType.RESPONSE, "json-rpc: response has neither result nor error"),
        (b"{garbage", MessageType.RESPONSE, "json-rpc: cannot decode"),
        (b'{"method":"A.B","params":[{"nom":"x"}],"id":1}', MessageType.REQUEST, "field 'name': missing"),
    ],
)
def test_bad_envelopes(data: bytes, kind: MessageType, message: str) -> None:
    with pytest.raises(CodecError) as info:
        codec.decode(data, kind, Hello)
    assert message in str(info.value)
