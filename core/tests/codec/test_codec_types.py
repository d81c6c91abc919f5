"""Typed decoding into dataclasses, pydantic models and builtins (micro.codec.types), for json and msgpack."""

from __future__ import annotations

import datetime as dt
import enum
import re
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal, TypedDict

import pytest
from micro.codec import Codec, codec_for
from micro.codec.types import ShapeError, convert, converter
from micro.errors import CodecError


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass
class Item:
    name: str
    qty: int = 1
    color: Color | None = None


@dataclass
class Order:
    id: str
    items: list[Item]
    blob: bytes = b""
    tags: dict[str, int] = field(default_factory=dict)
    note: str | None = None
    when: dt.datetime | None = None
    ref: uuid.UUID | None = None
    price: Decimal | None = None
    pair: tuple[int, str] | None = None
    labels: frozenset[str] = frozenset()
    state: Literal["open", "closed"] = "open"


@dataclass
class Tree:
    value: int
    children: list[Tree] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class Strict:
    port: int

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"port out of range: {self.port}")


class Movie(TypedDict):
    title: str
    year: int


@pytest.fixture(params=["application/json", "application/msgpack"])
def codec(request: pytest.FixtureRequest) -> Codec:
    return codec_for(request.param)


def full_order() -> Order:
    return Order(
        id="o-1",
        items=[Item("tea ☕", 2, Color.RED), Item("cake")],
        blob=b"\x00\x01\xff",
        tags={"a": 1},
        note=None,
        when=dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC),
        ref=uuid.UUID("12345678-1234-5678-1234-567812345678"),
        price=Decimal("10.25"),
        pair=(1, "one"),
        labels=frozenset({"x", "y"}),
        state="closed",
    )


def test_nested_dataclass_round_trip(codec: Codec) -> None:
    order = full_order()
    assert codec.unmarshal(codec.marshal(order), Order) == order


def test_recursive_dataclass(codec: Codec) -> None:
    tree = Tree(1, [Tree(2, [Tree(3)]), Tree(4)])
    assert codec.unmarshal(codec.marshal(tree), Tree) == tree


def test_defaults_fill_missing_optional_fields_and_unknown_keys_are_ignored(codec: Codec) -> None:
    data = codec.marshal({"id": "x", "items": [{"name": "n"}], "added_later": [1, 2]})
    assert codec.unmarshal(data, Order) == Order(id="x", items=[Item("n")])


def test_list_of_dataclasses_and_builtins(codec: Codec) -> None:
    data = codec.marshal([Item("a"), Item("b", 3)])
    assert codec.unmarshal(data, list[Item]) == [Item("a"), Item("b", 3)]
    assert codec.unmarshal(codec.marshal({"k": [1, 2]}), dict) == {"k": [1, 2]}
    assert codec.unmarshal(codec.marshal({"k": [1, 2]}), dict[str, list[int]]) == {"k": [1, 2]}
    assert codec.unmarshal(codec.marshal("s"), str) == "s"
    assert codec.unmarshal(codec.marshal(3), int) == 3
    assert codec.unmarshal(codec.marshal(3), float) == 3.0
    assert codec.unmarshal(codec.marshal(None), int | None) is None
    assert codec.unmarshal(codec.marshal({"title": "Up", "year": 2009}), Movie) == {"title": "Up", "year": 2009}


@pytest.mark.parametrize(
    ("payload", "into", "message"),
    [
        ({"id": "x"}, Order, "field 'items': missing"),
        ({"id": 1, "items": []}, Order, "field 'id': expected str, got int"),
        ({"id": "x", "items": [{"name": "a"}, {"qty": 2}]}, Order, "field 'items[1].name': missing"),
        ({"id": "x", "items": [{"name": "a", "qty": True}]}, Order, "field 'items[0].qty': expected int, got bool"),
        ({"id": "x", "items": [{"name": "a", "color": "green"}]}, Order, "field 'items[0].color'"),
        ({"id": "x", "items": [], "tags": {"a": "1"}}, Order, "field \"tags['a']\": expected int, got str"),
        ({"id": "x", "items": [], "state": "lost"}, Order, "field 'state': expected one of 'open', 'closed'"),
        ({"id": "x", "items": [], "pair": [1]}, Order, "field 'pair'"),
        ({"id": "x", "items": [], "when": "yesterday"}, Order, "field 'when': expected an ISO 8601 datetime"),
        ([1, 2], Order, "expected an object, got list"),
        ({"value": 1, "children": [{"value": "2"}]}, Tree, "field 'children[0].value': expected int, got str"),
        ({"port": 70000}, Strict, "port out of range: 70000"),
        ({"title": "Up"}, Movie, "field 'year': missing"),
        ("text", int, "expected int, got str"),
    ],
)
def test_wrong_shape_names_the_field(codec: Codec, payload: Any, into: Any, message: str) -> None:
    with pytest.raises(CodecError) as info:
        codec.unmarshal(codec.marshal(payload), into)
    assert str(info.value).startswith(f"{codec.name}: cannot decode into ")
    assert message in str(info.value)


def test_bytes_field_rejects_bad_base64() -> None:
    json = codec_for("application/json")
    with pytest.raises(CodecError, match=r"field 'blob': expected base64"):
        json.unmarshal(b'{"id": "x", "items": [], "blob": "%%%"}', Order)


def test_unsupported_target_type_is_a_codec_error(codec: Codec) -> None:
    class Opaque:
        pass

    with pytest.raises(CodecError, match="unsupported type"):
        codec.unmarshal(codec.marshal(1), Opaque)


def test_unresolvable_hints_are_a_codec_error(codec: Codec) -> None:
    @dataclass
    class Local:
        other: Missing  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(CodecError, match="do not resolve"):
        codec.unmarshal(codec.marshal({"other": 1}), Local)


def test_converters_are_cached_per_type() -> None:
    assert converter(Order) is converter(Order)
    assert converter(list[Item]) is converter(list[Item])


def test_shape_error_path() -> None:
    with pytest.raises(ShapeError) as info:
        convert({"a": [{"value": 1, "children": [{"value": None}]}]}, dict[str, list[Tree]])
    assert info.value.where == "['a'][0].children[0].value"


def test_union_tries_each_arm() -> None:
    assert convert("x", int | str) == "x"
    assert convert(3, int | str) == 3
    with pytest.raises(ShapeError, match=re.escape("expected int | str, got float")):
        convert(1.5, int | str)


@dataclass
class Scalars:
    name: str
    count: int
    ratio: float
    ok: bool
    tags: list[str] = field(default_factory=list)
    ids: frozenset[int] = frozenset()


def test_scalar_fields_and_sequences_of_exact_scalars_convert_as_before() -> None:
    """Values exactly of a scalar type are taken as they are; anything else is coerced or refused as before."""
    tags = ["a", "b"]
    value = convert({"name": "n", "count": 1, "ratio": 2, "ok": True, "tags": tags, "ids": [1, 2]}, Scalars)
    assert value == Scalars("n", 1, 2.0, True, ["a", "b"], frozenset({1, 2}))
    assert type(value.ratio) is float
    assert value.tags is not tags  # a new list, as the item-by-item conversion built
    assert convert(("x", "y"), list[str]) == ["x", "y"]
    for payload, message, where in [
        ({"name": 1, "count": 1, "ratio": 1.0, "ok": True}, "expected str", [".name"]),
        ({"name": "n", "count": True, "ratio": 1.0, "ok": True}, "expected int", [".count"]),
        ({"name": "n", "count": 1, "ratio": 1.0, "ok": 1}, "expected bool", [".ok"]),
        ({"name": "n", "count": 1, "ratio": 1.0, "ok": True, "tags": ["a", 2]}, "expected str", ["[1]", ".tags"]),
        ({"name": "n", "count": 1, "ratio": 1.0, "ok": True, "ids": [1, [2]]}, "expected int", ["[1]", ".ids"]),
    ]:
        with pytest.raises(ShapeError, match=message) as caught:
            convert(payload, Scalars)
        assert caught.value.segments == where
    with pytest.raises(ShapeError, match="expected int") as caught:
        convert([True], list[int])  # bool is not an int here, exactly as before
    assert caught.value.segments == ["[0]"]
