"""Typed decoding into pydantic v2 models (an optional dependency), for json and msgpack."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

pydantic = pytest.importorskip("pydantic", reason="pydantic is an optional dependency of asyncmicro-core")

from micro.codec import Codec, codec_for  # noqa: E402
from micro.errors import CodecError  # noqa: E402


class Line(pydantic.BaseModel):  # type: ignore[misc,name-defined]
    sku: str
    qty: int = 1


class Cart(pydantic.BaseModel):  # type: ignore[misc,name-defined]
    owner: str
    lines: list[Line]
    when: dt.datetime


@dataclass
class Shipment:
    carts: list[Cart]
    note: str = ""


@pytest.fixture(params=["application/json", "application/msgpack", "application/json-rpc"])
def codec(request: pytest.FixtureRequest) -> Codec:
    return codec_for(request.param)


def make_cart() -> Cart:
    return Cart(owner="ö", lines=[Line(sku="a"), Line(sku="b", qty=3)], when=dt.datetime(2024, 1, 2, tzinfo=dt.UTC))


def test_model_round_trip(codec: Codec) -> None:
    cart = make_cart()
    assert codec.unmarshal(codec.marshal(cart), Cart) == cart
    assert codec.unmarshal(codec.marshal([cart, cart]), list[Cart]) == [cart, cart]


def test_model_inside_a_dataclass(codec: Codec) -> None:
    shipment = Shipment([make_cart()], note="fragile")
    assert codec.unmarshal(codec.marshal(shipment), Shipment) == shipment


def test_validation_error_names_the_field(codec: Codec) -> None:
    data = codec.marshal({"owner": "x", "lines": [{"sku": "a"}, {"qty": 1}], "when": "2024-01-01T00:00:00"})
    with pytest.raises(CodecError) as info:
        codec.unmarshal(data, Cart)
    assert str(info.value).startswith(f"{codec.name}: cannot decode into Cart: field 'lines[1].sku'")
