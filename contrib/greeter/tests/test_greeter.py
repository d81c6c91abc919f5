"""The Greeter, tested with micro.testing: in memory, through a client, directly, and its subscriber."""

from __future__ import annotations

import pytest
from greeter.service import (
    TOPIC,
    CountRequest,
    Greeted,
    HelloRequest,
    HelloResponse,
    Received,
    Say,
    make_service,
)
from micro.errors import BadRequest
from micro.testing import Harness, call_handler, worker

pytestmark = pytest.mark.asyncio  # the tests run under pytest-asyncio in any mode


@pytest.fixture
def greeter(micro_harness: Harness) -> Harness:
    """The greeter, built by its own make_service, running on the harness's shared blocks."""
    micro_harness.add(make_service(**micro_harness.wiring()))
    return micro_harness


async def test_hello_through_the_client(greeter: Harness) -> None:
    reply = await greeter.call("greeter", "Say.hello", HelloRequest(name="Alice"), response_type=HelloResponse)
    assert reply == HelloResponse(message="Hello Alice")


async def test_an_empty_name_is_a_bad_request(greeter: Harness) -> None:
    with pytest.raises(BadRequest, match="name must not be empty"):
        await greeter.call("greeter", "Say.hello", HelloRequest(name=""))


async def test_count_streams_to_the_number_asked() -> None:
    say = worker(Say, inbox=[])
    assert [c.n for c in (await call_handler(say.count, CountRequest(to=3))).value] == [1, 2, 3]


async def test_hello_sets_its_response_header_when_called_directly() -> None:
    reply = await call_handler(worker(Say).hello, HelloRequest(name="Bob"))  # the inbox is a mock: unused
    assert reply.value == HelloResponse(message="Hello Bob")
    assert reply.headers == {"X-Greeter": "hello"}


async def test_a_published_greeting_is_received(greeter: Harness) -> None:
    async with greeter.handled(TOPIC, service="greeter", subscriber="Events.greeted"):
        await greeter.publish(TOPIC, Greeted(name="Bob"))
    assert (await greeter.call("greeter", "Say.received", response_type=Received)).names == ["Bob"]
    (message,) = greeter.published(TOPIC)
    assert message.payload(Greeted) == Greeted(name="Bob")
