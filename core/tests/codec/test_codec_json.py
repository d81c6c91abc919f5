"""The json codec's output buffers: a large output holds its own size, not orjson's working buffer."""

from __future__ import annotations

import tracemalloc

import pytest
from micro.codec.json import JSONCodec
from micro.codec.jsonrpc import JSONRPCCodec


@pytest.mark.parametrize("codec", [JSONCodec(), JSONRPCCodec()], ids=["json", "json-rpc"])
@pytest.mark.parametrize(
    "value", [{"data": "x" * 1_000_000}, list(range(150_000)), ["abcdefgh"] * 100_000], ids=["str", "ints", "strs"]
)
def test_a_large_output_holds_only_its_size(codec: JSONCodec, value: object) -> None:
    # orjson hands back its working buffer, 8 to 35 times the output for these values.
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        data = codec.marshal(value)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1.1 * len(data) + 4096
    assert codec.unmarshal(data) == value


def test_a_small_output_is_returned_as_encoded() -> None:
    assert JSONCodec().marshal({"a": 1}) == b'{"a":1}'
