"""The compiled marshal of flat dataclasses against the general one it stands in for."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import pytest
from micro.errors import CodecError
from micro_grpc.client import _described_marshal
from micro_grpc.marshal import _flat_fields, _typed_marshal


@dataclasses.dataclass
class Flat:
    name: str
    id: int
    ratio: float = 0.0
    ok: bool = False
    raw: bytes = b""
    tags: list[str] = dataclasses.field(default_factory=list)
    counts: list[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Checked:
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("n must not be negative")


@dataclasses.dataclass
class Inner:
    x: int


@dataclasses.dataclass
class Nested:
    inner: Inner
    note: str | None = None


class Colour(enum.StrEnum):
    RED = "red"


class SubFlat(Flat):
    pass


def pair(tp: type) -> tuple[Any, Any]:
    """The marshal the client picks for ``tp`` and, when it is the compiled one, its message class."""
    marshal = _described_marshal(tp)
    assert marshal is not None
    return marshal, marshal.encode.__globals__.get("_cls")


def test_flat_dataclasses_get_the_compiled_marshal_and_others_do_not():
    flat, flat_cls = pair(Flat)
    assert flat.encode.__code__.co_filename.startswith("<micro_grpc flat marshal")
    assert _flat_fields(Flat, flat_cls) is not None
    nested, _ = pair(Nested)
    assert not nested.encode.__code__.co_filename.startswith("<micro_grpc flat marshal")


@pytest.mark.parametrize(
    "value",
    [
        Flat("a", 1),
        Flat("é\x00", -(2**63), 1.5, True, b"\x00\xff", ["x", "", "y"], [0, 2**63 - 1]),
        Flat("tuple", 2, tags=("a", "b")),  # type: ignore[arg-type]  # not a list: the general path converts it
        Flat(Colour.RED, 3),  # type: ignore[arg-type]  # an enum member: the general path takes its value
        SubFlat("sub", 4),  # a subclass: the general path
    ],
)
def test_the_compiled_marshal_writes_and_reads_what_the_general_one_does(value):
    flat, cls = pair(Flat)
    general = _typed_marshal(Flat, cls)
    data = flat.encode(value)
    assert data == general.encode(value)
    decoded = flat.decode(data)
    assert decoded == general.decode(data)
    assert type(decoded) is Flat


@pytest.mark.parametrize("value", [Flat("a", "not an int"), Flat("a", 1, tags=[1, 2]), Flat("a", 2**64)])  # type: ignore[arg-type]
def test_a_value_the_message_cannot_carry_is_a_codec_error_from_both(value):
    flat, cls = pair(Flat)
    general = _typed_marshal(Flat, cls)
    with pytest.raises(CodecError) as compiled:
        flat.encode(value)
    with pytest.raises(CodecError) as plain:
        general.encode(value)
    assert str(compiled.value) == str(plain.value)


def test_bytes_that_do_not_parse_or_fail_the_class_checks_are_codec_errors():
    flat, _ = pair(Flat)
    with pytest.raises(CodecError, match="not a Flat message"):
        flat.decode(b"\xff\xff\xff")
    checked, _ = pair(Checked)
    data = checked.encode(Checked(5))
    assert checked.decode(data) == Checked(5)
    negative = checked.encode.__globals__["_cls"](n=-1).SerializeToString()
    with pytest.raises(CodecError, match="n must not be negative"):
        checked.decode(negative)
