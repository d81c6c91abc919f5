"""Handler introspection: public async methods become typed ``Class.method`` endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pydantic
import pytest
from micro.errors import ConfigError
from micro.server.handler import Kind, describe, method_of, methods_of, subscriptions_of


@dataclass
class Inner:
    level: int


@dataclass
class HelloRequest:
    name: str
    tags: list[str]
    inner: Inner | None = None


@dataclass
class HelloResponse:
    message: str


class Model(pydantic.BaseModel):
    id: int
    labels: dict[str, str] = {}


class Say:
    async def hello(self, req: HelloRequest) -> HelloResponse:
        return HelloResponse(message=req.name)

    async def ping(self) -> dict[str, Any]:
        return {}

    async def count(self, req: int) -> AsyncIterator[int]:
        for i in range(req):
            yield i

    async def total(self, reqs: AsyncIterator[int]) -> int:
        return sum([r async for r in reqs])

    async def echo(self, reqs: AsyncIterator[Model]) -> AsyncIterator[Model]:
        async for r in reqs:
            yield r

    async def untyped(self, req):  # type: ignore[no-untyped-def]
        return req

    def helper(self) -> None:
        """Synchronous: not an endpoint."""

    async def _private(self, req: int) -> int:
        return req


def test_endpoints_and_kinds() -> None:
    found = {m.name: m for m in methods_of(Say())}
    assert sorted(found) == ["Say.count", "Say.echo", "Say.hello", "Say.ping", "Say.total", "Say.untyped"]
    assert found["Say.hello"].kind is Kind.UNARY
    assert found["Say.hello"].request_type is HelloRequest
    assert found["Say.hello"].response_type is HelloResponse
    assert found["Say.ping"].takes_request is False
    assert found["Say.count"].kind is Kind.SERVER_STREAM
    assert found["Say.count"].response_type is int
    assert found["Say.total"].kind is Kind.CLIENT_STREAM
    assert found["Say.total"].request_type is int
    assert found["Say.echo"].kind is Kind.BIDI_STREAM
    assert found["Say.echo"].request_type is Model
    assert found["Say.untyped"].request_type is None
    assert found["Say.untyped"].response_type is None
    assert found["Say.count"].metadata == {"stream": "true", "stream_kind": "server_stream"}
    assert found["Say.hello"].metadata == {}


def test_name_override_and_metadata() -> None:
    names = [m.name for m in methods_of(Say(), name="Greeter", metadata={"auth": "public"})]
    assert "Greeter.hello" in names
    assert all(m.metadata.get("auth") == "public" for m in methods_of(Say(), metadata={"auth": "public"}))


def test_registry_description() -> None:
    method = next(m for m in methods_of(Say()) if m.name == "Say.hello")
    endpoint = method.endpoint()
    assert endpoint.name == "Say.hello"
    assert endpoint.request is not None
    assert endpoint.response is not None
    assert endpoint.request.type == "HelloRequest"
    fields = {v.name: v for v in endpoint.request.values}
    assert fields["name"].type == "str"
    assert fields["tags"].type == "list[str]"
    assert [v.name for v in fields["tags"].values] == ["item"]
    assert fields["inner"].type == "Inner | None"
    assert [(v.name, v.type) for v in fields["inner"].values] == [("level", "int")]
    assert endpoint.response.values[0].name == "message"
    # a round trip through the registry's JSON form keeps it
    assert type(endpoint).from_dict(endpoint.to_dict()) == endpoint


def test_describe_pydantic_and_nesting() -> None:
    value = describe(Model, "request")
    assert value.type == "Model"
    assert [(v.name, v.type) for v in value.values] == [("id", "int"), ("labels", "dict[str, str]")]
    assert [v.name for v in value.values[1].values] == ["key", "value"]
    nested = describe(Inner, "x")
    assert nested.values[0].name == "level"
    assert describe(None, "request").type == "any"


@dataclass
class Node:
    value: int
    children: list[Node]


def test_describe_stops_at_cycles() -> None:
    value = describe(Node, "request")
    children = next(v for v in value.values if v.name == "children")
    assert children.values[0].type == "Node"
    assert children.values[0].values == []  # the cycle is cut, not followed forever


class NoEndpoints:
    def sync(self) -> None: ...


class TwoParams:
    async def bad(self, req: int, other: int) -> int:
        return req


class KeywordOnly:
    async def bad(self, req: int, *, required: int) -> int:
        return req


class Optional:
    async def fine(self, req: int, extra: int = 0) -> int:
        return req + extra


class Unresolvable:
    async def bad(self, req: DoesNotExist) -> int:  # type: ignore[name-defined]  # noqa: F821
        return 0


def test_bad_handlers() -> None:
    with pytest.raises(ConfigError, match="instance, not the class Say"):
        methods_of(Say)
    with pytest.raises(ConfigError, match="no public async methods"):
        methods_of(NoEndpoints())
    with pytest.raises(ConfigError, match=r"TwoParams.bad.*other"):
        methods_of(TwoParams())
    with pytest.raises(ConfigError, match="required"):
        methods_of(KeywordOnly())
    with pytest.raises(ConfigError, match="DoesNotExist"):
        methods_of(Unresolvable())
    with pytest.raises(ConfigError, match="without dots"):
        methods_of(Say(), name="a.b")
    assert [m.name for m in methods_of(Optional())] == ["Optional.fine"]
    with pytest.raises(ConfigError, match="async"):
        method_of("X.y", lambda req: req)


async def on_event(msg: HelloRequest) -> None: ...


class Events:
    async def created(self, msg: dict[str, Any]) -> None: ...

    async def deleted(self, msg: Model) -> None: ...


def test_subscriptions() -> None:
    (one,) = subscriptions_of("user.created", on_event, queue="workers")
    assert (one.topic, one.name, one.message_type, one.queue) == ("user.created", "on_event", HelloRequest, "workers")
    assert one.endpoint().metadata == {"topic": "user.created", "subscriber": "true", "queue": "workers"}
    many = subscriptions_of("user", Events())
    assert [(s.name, s.message_type) for s in many] == [("Events.created", dict[str, Any]), ("Events.deleted", Model)]


def test_bad_subscribers() -> None:
    def sync(msg: int) -> None: ...

    async def no_param() -> None: ...

    with pytest.raises(ConfigError, match="async"):
        subscriptions_of("t", sync)
    with pytest.raises(ConfigError, match="message as its parameter"):
        subscriptions_of("t", no_param)
    with pytest.raises(ConfigError, match="not the class"):
        subscriptions_of("t", Events)
    with pytest.raises(ConfigError, match="no public async methods"):
        subscriptions_of("t", NoEndpoints())
