"""The value types: Go Micro's JSON shape, round trips, and malformed input."""

from __future__ import annotations

import pytest
from micro.errors import BadRequest
from micro.registry import Endpoint, Node, Result, Service, Value

# As Go Micro's registry.Service marshals to JSON (lowercase tags).
GO_JSON = {
    "name": "greeter",
    "version": "1.0.0",
    "metadata": {"team": "core"},
    "endpoints": [
        {
            "name": "Greeter.Hello",
            "request": {
                "name": "Request",
                "type": "Request",
                "values": [{"name": "name", "type": "string", "values": None}],
            },
            "response": {"name": "Response", "type": "Response", "values": []},
            "metadata": {"stream": "false"},
        }
    ],
    "nodes": [{"id": "greeter-1", "address": "10.0.0.1:8080", "metadata": {"protocol": "mucp"}}],
}


def test_from_go_json_and_back() -> None:
    service = Service.from_dict(GO_JSON)
    assert service.endpoints[0].request == Value("Request", "Request", [Value("name", "string")])
    assert service.nodes == [Node("greeter-1", "10.0.0.1:8080", {"protocol": "mucp"})]
    again = service.to_dict()
    assert again["endpoints"][0]["request"]["values"][0]["values"] == []  # null becomes an empty list
    assert Service.from_dict(again) == service


def test_missing_keys_take_defaults() -> None:
    assert Service.from_dict({"name": "x"}) == Service("x", "latest")
    assert Endpoint.from_dict({"name": "E"}).to_dict() == {
        "name": "E",
        "request": None,
        "response": None,
        "metadata": {},
    }


def test_copy_is_deep() -> None:
    service = Service.from_dict(GO_JSON)
    copy = service.copy()
    copy.nodes[0].metadata["protocol"] = "grpc"
    copy.endpoints[0].request.values.clear()  # type: ignore[union-attr]
    assert service == Service.from_dict(GO_JSON)


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"name": "x", "nodes": {"id": "a"}},
        {"name": "x", "nodes": ["a"]},
        {"name": "x", "metadata": ["a"]},
        {"name": "x", "endpoints": [{"name": "E", "request": "string"}]},
    ],
    ids=["not-an-object", "nodes-not-a-list", "node-not-an-object", "metadata-not-an-object", "value-not-an-object"],
)
def test_malformed_input_raises_bad_request(data: object) -> None:
    with pytest.raises(BadRequest):
        Service.from_dict(data)  # type: ignore[arg-type]


def test_result_action_is_checked() -> None:
    with pytest.raises(BadRequest, match="create, update or delete"):
        Result("upsert", Service("x"))  # type: ignore[arg-type]
