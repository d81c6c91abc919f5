"""The codec contract (:class:`micro.codec.Codec`): cases K01-K15.

What a codec can carry differs by design (JSON carries plain values, the bytes
codec only bytes, the proto codec only protobuf messages), so the cases that
need values are tied to capabilities this contract defines:

* ``values``: plain values (``None``, bool, int, float, str, lists, str-keyed
  dicts, nested) round-trip through ``marshal``/``unmarshal``;
* ``typed``: ``unmarshal(data, into=<dataclass>)`` builds it and reports a
  missing or mistyped field with :class:`~micro.errors.CodecError` naming it;
* ``binary``: ``bytes`` inside values come back as ``bytes``;
* ``raw``: bytes-like values pass through unchanged, nothing else is accepted;
* ``proto``: protobuf messages round-trip with ``into=<message class>``;
* ``envelope``: :meth:`~micro.codec.Codec.encode`/:meth:`~micro.codec.Codec.decode`
  carry a request's id and endpoint and an error's text in the frame.

A codec declares them in its ``capabilities`` class attribute (see
:attr:`micro.codec.Codec.capabilities`), unless the contract sets :attr:`capabilities`.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any, Final, cast

import pytest
from micro.codec import Codec, Message, MessageType
from micro.errors import CodecError
from micro.plugins import get_manager

from .base import Contract, absent, requires

__all__ = ["CodecContract", "Greeting", "Inner"]

_MIME: Final = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")

#: Plain values every ``values`` codec carries exactly.
CORPUS: Final[list[Any]] = [
    None,
    True,
    False,
    0,
    -1,
    2**53,
    -(2**63),
    0.1,
    -2.5e-300,
    1e300,
    "",
    "plain ascii",
    "ünïcødé ✓ 日本語 🎉 \u00a0 \u200b",
    'quote" backslash\\ slash/ newline\n tab\t nul\x00',
    [],
    {},
    [1, "two", 3.0, None, [4, [5]]],
    {"name": "Gopher", "nested": {"deep": {"deeper": [1, {"k": "v"}]}}, "empty": {}, "ключ": "значение"},
]


@dataclass
class Inner:
    """A nested record for the ``typed`` cases."""

    label: str
    weight: float = 1.0


@dataclass
class Greeting:
    """A record for the ``typed`` cases: required, defaulted, list and nested fields."""

    name: str
    count: int = 0
    tags: list[str] = field(default_factory=list)
    inner: Inner | None = None


class CodecContract(Contract[Codec]):
    """The behaviour every :class:`~micro.codec.Codec` shares; see :mod:`micro.codec.base`."""

    interface = "codec"
    known_capabilities = frozenset({"values", "typed", "binary", "raw", "proto", "envelope"})

    @pytest.fixture
    def codec(self, subject: Codec) -> Codec:
        return subject

    def samples(self) -> list[tuple[Any, type | None]]:
        """Values this codec must carry, with the ``into`` to decode them, by declared capability."""
        found: list[tuple[Any, type | None]] = []
        if "values" in self.declared:
            found.append(({"name": "ünï", "n": [1, 2.5, None, True]}, None))
        if "raw" in self.declared:
            found.append((bytes(range(256)), None))
        if "proto" in self.declared:
            from google.protobuf import struct_pb2, wrappers_pb2

            value = struct_pb2.Struct()
            value.update({"name": "ünï", "n": 1.5, "list": [1, "two"], "nested": {"k": "v"}})
            found.append((value, struct_pb2.Struct))
            found.append((wrappers_pb2.BytesValue(value=bytes(range(256))), wrappers_pb2.BytesValue))
        return found

    def sample(self) -> tuple[Any, type | None]:
        samples = self.samples()
        if not samples:
            pytest.skip("no value capability (values, raw, proto) is declared, so there is no sample to encode")
        return samples[0]

    # -- every codec -----------------------------------------------------------------------

    async def test_k01_content_type_is_well_formed_and_unique(self, codec: Codec) -> None:
        """content_type is a bare lower-case MIME type; no other installed codec claims it or its aliases."""
        own = [codec.content_type, *codec.aliases]
        for content_type in own:
            assert isinstance(content_type, str) and _MIME.match(content_type), (
                f"{content_type!r} is not a lower-case type/subtype without parameters"
            )
        assert len(set(own)) == len(own), f"content_type and aliases repeat: {own}"
        manager = get_manager()
        for provider in manager.providers("codec"):
            other = manager.factory(provider)
            if other is type(codec) or provider.name == codec.name:
                continue
            clash = set(own) & {getattr(other, "content_type", ""), *getattr(other, "aliases", ())}
            assert not clash, f"codec {provider.name!r} ({provider.origin}) also claims {sorted(clash)}"
        if codec.name and codec.name in manager.names("codec"):
            assert type(manager.codecs({}).get(codec.content_type)) is type(codec), (
                f"the wiring's codecs.get({codec.content_type!r}) does not resolve to {type(codec).__name__}"
            )

    async def test_k02_unencodable_value_raises_codec_error_naming_its_type(self, codec: Codec) -> None:
        """marshal() of a value no codec can carry raises CodecError (never TypeError), naming the type."""

        class Unencodable:
            pass

        with pytest.raises(CodecError) as caught:
            codec.marshal(Unencodable())
        assert "Unencodable" in str(caught.value), f"the error does not name the type: {caught.value}"

    async def test_k03_samples_round_trip(self, codec: Codec) -> None:
        """Each sample value for the declared capabilities comes back equal from unmarshal(marshal(v))."""
        self.sample()
        for value, into in self.samples():
            data = codec.marshal(value)
            assert isinstance(data, bytes), f"marshal returned {type(data).__name__}, not bytes"
            assert codec.unmarshal(data, into) == value
            view = cast(bytes, memoryview(data))
            assert codec.unmarshal(view, into) == value, "unmarshal refused a bytes-like memoryview"

    async def test_k04_rpc_frames_round_trip_for_every_message_type(self, codec: Codec) -> None:
        """encode() then decode() returns the body for request, response and event frames."""
        value, into = self.sample()
        for kind in (MessageType.REQUEST, MessageType.RESPONSE, MessageType.EVENT):
            frame = codec.encode(Message(id="7", type=kind, endpoint="Greeter.Hello", body=value))
            assert isinstance(frame, bytes)
            decoded = codec.decode(frame, kind, into)
            assert decoded.type is kind
            assert decoded.body == value, f"the {kind.value} body changed"

    async def test_k05_truncated_or_extended_output_raises_codec_error(self, codec: Codec) -> None:
        """Valid output cut short, or followed by extra bytes, is refused with CodecError."""
        if self.declared & {"values", "proto"} == set():
            pytest.skip("only codecs with a structured format (values, proto) can tell a cut or padded input")
        for value, into in self.samples():
            if isinstance(value, bytes):
                continue
            data = codec.marshal(value)
            for bad in (data[: len(data) // 2], data[:-1], data + b"\xff\xff"):
                with pytest.raises(CodecError):
                    codec.unmarshal(bad, into)

    async def test_k06_large_payload_round_trips(self, codec: Codec) -> None:
        """A payload over 1 MiB comes back intact."""
        blob = bytes(range(256)) * 4097
        if "raw" in self.declared:
            value: Any = blob
            into: type | None = None
        elif "values" in self.declared:
            value, into = {"text": "é🎉" * 200_000, "list": list(range(20_000))}, None
        elif "proto" in self.declared:
            from google.protobuf import wrappers_pb2

            value, into = wrappers_pb2.BytesValue(value=blob), wrappers_pb2.BytesValue
        else:
            pytest.skip("no value capability (values, raw, proto) is declared")
        assert codec.unmarshal(codec.marshal(value), into) == value

    async def test_k07_one_instance_serves_concurrent_tasks(self, codec: Codec) -> None:
        """A codec is stateless: threads encoding and decoding different values at once each get their own."""
        sample, into = self.sample()

        def value_for(thread: int) -> Any:
            if "values" in self.declared:
                return {"thread": thread, "text": "é" * thread}
            if "raw" in self.declared:
                return bytes([thread]) * (thread + 1)
            return sample  # a proto sample: one value, still checked under concurrency

        def work(thread: int) -> bool:
            value = value_for(thread)
            return all(codec.unmarshal(codec.marshal(value), into) == value for _ in range(50))

        results = await asyncio.gather(*(asyncio.to_thread(work, thread) for thread in range(4)))
        assert all(results), f"threads got each other's values: {results}"

    # -- values ----------------------------------------------------------------------------

    @requires("values")
    async def test_k08_plain_values_round_trip(self, codec: Codec) -> None:
        """None, booleans, ints, floats, unicode strings, lists and nested dicts come back equal."""
        for value in CORPUS:
            decoded = codec.unmarshal(codec.marshal(value))
            assert decoded == value and type(decoded) is type(value), f"{value!r} came back as {decoded!r}"
        assert codec.unmarshal(codec.marshal((1, "a"))) == [1, "a"], "a tuple does not come back as a list"

    @requires("values")
    async def test_k09_malformed_input_raises_codec_error(self, codec: Codec) -> None:
        """Bytes that are not this codec's format (invalid UTF-8, a never-used type byte) raise CodecError."""
        for garbage in (b"\xff\xfe\xc1", b"\xc1", b"{\xff"):
            with pytest.raises(CodecError):
                codec.unmarshal(garbage)

    @absent("values")
    async def test_k10_plain_values_without_capability_raise_codec_error(self, codec: Codec) -> None:
        """A codec without "values" refuses a plain dict with CodecError instead of mangling it."""
        with pytest.raises(CodecError):
            codec.marshal({"name": "x"})

    @requires("typed")
    async def test_k11_typed_decoding_builds_dataclasses(self, codec: Codec) -> None:
        """unmarshal(into=Greeting) builds nested dataclasses; defaults fill missing optional fields."""
        value = Greeting("Gopher", 2, ["a", "ü"], Inner("x", 0.5))
        assert codec.unmarshal(codec.marshal(value), Greeting) == value
        assert codec.unmarshal(codec.marshal({"name": "only"}), Greeting) == Greeting("only")
        assert codec.unmarshal(codec.marshal([1, 2]), list) == [1, 2]

    @requires("typed")
    async def test_k12_wrong_shape_names_the_field(self, codec: Codec) -> None:
        """A missing required field or a mistyped one raises CodecError naming the field."""
        for data, field_name in (({"count": 1}, "name"), ({"name": "x", "count": "many"}, "count")):
            with pytest.raises(CodecError) as caught:
                codec.unmarshal(codec.marshal(data), Greeting)
            assert field_name in str(caught.value), f"the error does not name {field_name!r}: {caught.value}"

    @requires("binary")
    async def test_k13_bytes_inside_values_stay_bytes(self, codec: Codec) -> None:
        """With "binary", bytes nested in values come back as bytes, not text."""
        value = {"blob": bytes(range(256)), "list": [b"", b"\x00"]}
        assert codec.unmarshal(codec.marshal(value)) == value

    @requires("raw")
    async def test_k14_raw_bytes_pass_through_and_nothing_else_is_accepted(self, codec: Codec) -> None:
        """With "raw", bytes, bytearray and memoryview encode to the same bytes; str raises CodecError."""
        blob = bytes(range(256))
        for value in (blob, bytearray(blob), memoryview(blob), b""):
            assert codec.marshal(value) == bytes(value)
            assert codec.unmarshal(codec.marshal(value)) == bytes(value)
        with pytest.raises(CodecError):
            codec.marshal("text")

    @requires("envelope")
    async def test_k15_envelope_carries_id_endpoint_and_error(self, codec: Codec) -> None:
        """With "envelope", decode() recovers a request's id and endpoint and an error's text."""
        frame = codec.encode(Message(id="42", type=MessageType.REQUEST, endpoint="Greeter.Hello", body={"a": 1}))
        request = codec.decode(frame, MessageType.REQUEST)
        assert (request.id, request.endpoint, request.body) == ("42", "Greeter.Hello", {"a": 1})
        frame = codec.encode(Message(id="x-1", type=MessageType.RESPONSE, body=["ok"]))
        response = codec.decode(frame, MessageType.RESPONSE)
        assert (response.id, response.body, response.error) == ("x-1", ["ok"], "")
        frame = codec.encode(Message(id="9", type=MessageType.ERROR, error='{"code":500,"detail":"boom ✗"}'))
        error = codec.decode(frame, MessageType.RESPONSE)
        assert error.type is MessageType.ERROR and error.id == "9"
        assert "boom ✗" in error.error
