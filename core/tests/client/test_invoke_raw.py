"""``Client.invoke_raw``: an encoded body passed through to a typed handler, the encoded reply returned as it is."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson
import pytest
from micro import context
from micro.client import CallFunc, Request, Response
from micro.client.rpc import RPCClient
from micro.errors import BadRequest, CodecError, NotFound
from rpcstack import Stack


@dataclass
class Item:
    name: str
    price: float = 0.0
    tags: list[str] = field(default_factory=list)


class Shop:
    async def price(self, req: Item) -> Item:
        context.set_header("X-Served-By", "shop")
        return Item(name=req.name.upper(), price=req.price * 2, tags=[*req.tags, context.get("X-User") or "-"])

    async def missing(self, req: Item) -> Item:
        raise NotFound(f"no item {req.name}")


async def shop(stack: Stack) -> None:
    await stack.server(Shop()).start()


async def test_a_json_body_reaches_the_typed_handler_and_the_reply_comes_back_as_bytes(stack: Stack) -> None:
    await shop(stack)
    client = stack.client()
    body = b'{"name": "tea", "price": 1.5, "tags": ["hot"]}'
    response = await client.invoke_raw(
        stack.name, "Shop.price", body, content_type="application/json", metadata={"X-User": "alice"}
    )
    assert type(response.body) is bytes
    assert response.content_type == "application/json"
    assert orjson.loads(response.body) == {"name": "TEA", "price": 3.0, "tags": ["hot", "alice"]}
    # Byte for byte what the service's codec wrote: the same reply decoded by a plain call, encoded again.
    typed = await client.call(stack.name, "Shop.price", Item("tea", 1.5, ["hot"]), metadata={"X-User": "alice"})
    assert response.body == orjson.dumps(typed)
    assert response.metadata["x-served-by"] == "shop"


async def test_another_content_type_is_passed_through_too(stack: Stack) -> None:
    await shop(stack)
    client = stack.client()
    body = msgpack.packb({"name": "x", "price": 2.0})
    response = await client.invoke_raw(stack.name, "Shop.price", body, content_type="application/msgpack")
    assert response.content_type == "application/msgpack"
    assert msgpack.unpackb(response.body) == {"name": "X", "price": 4.0, "tags": ["-"]}


async def test_the_clients_content_type_when_none_is_given(stack: Stack) -> None:
    await shop(stack)
    client = stack.client(content_type="application/msgpack")
    response = await client.invoke_raw(stack.name, "Shop.price", msgpack.packb({"name": "y"}))
    assert response.content_type == "application/msgpack"
    assert msgpack.unpackb(response.body)["name"] == "Y"


async def test_errors_are_raised_not_returned(stack: Stack) -> None:
    await shop(stack)
    client = stack.client()
    with pytest.raises(NotFound, match="no item z"):
        await client.invoke_raw(stack.name, "Shop.missing", b'{"name": "z"}', content_type="application/json")
    with pytest.raises(BadRequest):  # the service could not decode it into an Item
        await client.invoke_raw(stack.name, "Shop.price", b'{"name": 5}', content_type="application/json")
    with pytest.raises(BadRequest):
        await client.invoke_raw(stack.name, "Shop.price", b"{not json", content_type="application/json")
    with pytest.raises(BadRequest, match="bytes"):
        await client.invoke_raw(stack.name, "Shop.price", "text", content_type="application/json")  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match="service"):
        await client.invoke_raw("", "Shop.price", b"{}")


async def test_call_wrappers_run_and_see_the_encoded_body(stack: Stack) -> None:
    await shop(stack)
    client = stack.client()
    assert (await client.invoke_raw(stack.name, "Shop.price", b'{"name": "a"}')).body  # the chain is built here
    seen: list[Any] = []

    def spy(next_: CallFunc) -> CallFunc:
        async def call(request: Request) -> Response:
            seen.append(request.body)
            request.metadata["X-User"] = "wrapped"
            return await next_(request)

        return call

    client.wrap(spy)  # after the first raw call: the raw chain is built again with it
    response = await client.invoke_raw(stack.name, "Shop.price", b'{"name": "b"}', content_type="application/json")
    assert seen == [b'{"name": "b"}']
    assert orjson.loads(response.body)["tags"] == ["wrapped"]


class DecodingClient(RPCClient):
    """A client whose attempts are its own (as asyncmicro-grpc's): invoke_raw falls back to decode and encode."""

    attempts = 0

    async def _attempt(self, request: Request) -> Response:
        self.attempts += 1
        assert not isinstance(request.body, bytes)  # decoded from the raw body before the call
        return await super()._attempt(request)


async def test_a_client_with_its_own_attempts_gets_the_decoding_default(stack: Stack) -> None:
    await shop(stack)
    client = DecodingClient(transport=stack.transport, selector=stack.client().selector)
    stack.clients.append(client)
    response = await client.invoke_raw(stack.name, "Shop.price", b'{"name": "c"}', content_type="application/json")
    assert client.attempts == 1
    assert response.content_type == "application/json"
    assert orjson.loads(response.body) == {"name": "C", "price": 0.0, "tags": ["-"]}
    with pytest.raises(CodecError):
        await client.invoke_raw(stack.name, "Shop.price", b"{not json", content_type="application/json")
