"""The gateway's pure parts: error statuses, metadata from headers, path forms, JSON Schemas from descriptions."""

from __future__ import annotations

import pytest
from micro.errors import (
    BadRequest,
    CodecError,
    Conflict,
    EndpointNotFound,
    Forbidden,
    MessageTooLarge,
    NotFound,
    NotSupported,
    ServiceNotFound,
    Timeout,
    Unauthorized,
    Unavailable,
    from_wire,
)
from micro.registry.base import Endpoint, Service, Value
from micro_api import document, metadata_of, status_of
from micro_api.errors import RequestTimeout
from micro_api.openapi import schema_of
from micro_api.routes import split_path
from openapi_spec_validator import validate


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (BadRequest("x"), 400),
        (CodecError("x"), 400),
        (Unauthorized("x"), 401),
        (Forbidden("x"), 403),
        (NotFound("x"), 404),
        (ServiceNotFound("x"), 404),
        (EndpointNotFound("x"), 404),
        (RequestTimeout("x"), 408),
        (Conflict("x"), 409),
        (MessageTooLarge("x"), 413),
        (NotSupported("x"), 501),
        (Unavailable("x"), 503),
        (Timeout("x"), 504),  # the call missed its deadline: the gateway's upstream did not answer
        (from_wire({"code": 408, "detail": "slow"}), 504),
        (from_wire({"code": 404, "detail": "gone", "id": "svc"}), 404),
        (from_wire({"code": 418, "detail": "teapot"}), 418),
        (from_wire({"code": 302, "detail": "not an error status"}), 500),
        (from_wire({"code": 700}), 500),
        (RuntimeError("password=hunter2"), 500),
    ],
)
def test_status_of(error: BaseException, status: int) -> None:
    code, body = status_of(error)
    assert code == status
    assert body["code"] == status
    assert set(body) == {"id", "code", "detail", "status"}
    assert "hunter2" not in body["detail"]


def test_metadata_keeps_call_headers_and_drops_the_hop_and_micro_ones() -> None:
    headers = [
        (b"host", b"x"),
        (b"content-type", b"application/json"),
        (b"content-length", b"2"),
        (b"authorization", b"Bearer t"),
        (b"x-trace", b"1"),
        (b"x-trace", b"2"),
        (b"micro-local-proof", b"forged"),
        (b"x-micro-local-proof", b"forged"),
        (b"micro-service", b"other"),
        (b"timeout", b"5s"),
    ]
    assert metadata_of(headers) == {"authorization": "Bearer t", "x-trace": "1, 2"}


def test_path_forms() -> None:
    assert split_path("/greeter/Say/hello") == ("greeter", "Say", "hello")
    assert split_path("/greeter/hello") == ("greeter", None, "hello")
    assert split_path("/greeter/hello", "go.micro.api") == ("go.micro.api.greeter", None, "hello")
    for bad in ("/", "/greeter", "/a/b/c/d", "//b/c", "/a//c"):
        with pytest.raises(EndpointNotFound):
            split_path(bad)


def v(name: str, type: str, *values: Value) -> Value:
    return Value(name=name, type=type, values=list(values))


def test_schemas_of_described_types() -> None:
    components: dict[str, object] = {}
    assert schema_of(v("x", "str"), components, "s") == {"type": "string"}
    assert schema_of(v("x", "int | None"), components, "s") == {"anyOf": [{"type": "integer"}, {"type": "null"}]}
    assert schema_of(v("x", "list[float]", v("item", "float")), components, "s") == {
        "type": "array",
        "items": {"type": "number"},
    }
    assert schema_of(v("x", "dict[str, bool]", v("key", "str"), v("value", "bool")), components, "s") == {
        "type": "object",
        "additionalProperties": {"type": "boolean"},
    }
    assert schema_of(v("x", "Any"), components, "s") == {}
    assert schema_of(v("x", "datetime"), components, "s") == {"description": "datetime"}
    assert schema_of(v("x", "int | str"), components, "s") == {"description": "int | str"}
    node = v("x", "Node", v("name", "str"), v("next", "Node | None"))  # describe() stops at the cycle
    assert schema_of(node, components, "s") == {"$ref": "#/components/schemas/s.Node"}
    assert components["s.Node"] == {
        "type": "object",
        "title": "Node",
        "properties": {
            "name": {"type": "string"},
            "next": {"anyOf": [{"$ref": "#/components/schemas/s.Node"}, {"type": "null"}]},
        },
    }


def test_a_document_with_every_call_kind_validates() -> None:
    item = v("request", "Item", v("name", "str"), v("tags", "list[str]", v("item", "str")))
    endpoints = [
        Endpoint("Shop.get", item, item),
        Endpoint("Shop.ping", None, v("response", "str")),
        Endpoint("Shop.watch", item, item, {"stream": "true", "stream_kind": "server_stream"}),
        Endpoint("Shop.load", item, v("response", "int"), {"stream": "true", "stream_kind": "client_stream"}),
        Endpoint("Shop.chat", item, item, {"stream": "true", "stream_kind": "bidi_stream"}),
        Endpoint("Debug.stats", None, v("response", "dict[str, Any]")),
        Endpoint("Shop.on_event", item, None, {"subscriber": "topic"}),
    ]
    # Two services with a type of the same name: each gets its own component.
    other = v("request", "Item", v("id", "int"))
    doc = document(
        [
            Service("shop", endpoints=endpoints),
            Service("other/bad"),
            Service("b", endpoints=[Endpoint("B.get", other, other)]),
        ]
    )
    validate(doc)
    assert sorted(doc["paths"]) == [
        "/b/B/get",
        "/health",
        "/shop/Shop/chat",
        "/shop/Shop/get",
        "/shop/Shop/load",
        "/shop/Shop/ping",
        "/shop/Shop/watch",
    ]
    assert "requestBody" not in doc["paths"]["/shop/Shop/ping"]["post"]
    load = doc["paths"]["/shop/Shop/load"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert load == {"type": "array", "items": {"$ref": "#/components/schemas/shop.Item"}}
    assert doc["components"]["schemas"]["b.Item"]["properties"] == {"id": {"type": "integer"}}


async def test_a_resolved_route_lasts_as_long_as_the_list_it_came_from() -> None:
    # The catalog keeps resolved paths; a route must follow its service's list when that list changes
    # (after its ttl, or when an unknown endpoint makes the catalog read it again at once).
    import asyncio

    from micro.registry.base import Node
    from micro.registry.memory import MemoryRegistry
    from micro_api.routes import Catalog

    def entry(*endpoints: Endpoint) -> Service:
        node = Node(id="n1", address="127.0.0.1:1")
        return Service(name="shop", version="1", nodes=[node], endpoints=list(endpoints))

    registry = MemoryRegistry()
    async with registry:
        await registry.register(entry(Endpoint("Shop.price"), Endpoint("Shop.old")), ttl=60)
        catalog = Catalog(registry, ttl=0.2)
        assert (await catalog.resolve("/shop/Shop/price")).kind == "unary"
        assert (await catalog.resolve("/shop/Shop/old")).endpoint == "Shop.old"
        assert await catalog.resolve("/shop/Shop/price") is await catalog.resolve("/shop/Shop/price")
        await registry.register(entry(Endpoint("Shop.price", metadata={"stream_kind": "server_stream"})), ttl=60)
        assert (await catalog.resolve("/shop/Shop/price")).kind == "unary"  # within the list's ttl
        await asyncio.sleep(0.3)
        assert (await catalog.resolve("/shop/Shop/price")).kind == "server_stream"
        with pytest.raises(EndpointNotFound):
            await catalog.resolve("/shop/Shop/old")

        # A list read again at once (an unknown endpoint, a second after the last read) replaces the routes too.
        catalog = Catalog(registry, ttl=60)
        await registry.register(entry(Endpoint("Shop.price"), Endpoint("Shop.old")), ttl=60)
        assert (await catalog.resolve("/shop/Shop/old")).endpoint == "Shop.old"
        await registry.register(entry(Endpoint("Shop.price"), Endpoint("Shop.new")), ttl=60)
        await asyncio.sleep(1.1)
        assert (await catalog.resolve("/shop/Shop/new")).endpoint == "Shop.new"
        with pytest.raises(EndpointNotFound):
            await catalog.resolve("/shop/Shop/old")
