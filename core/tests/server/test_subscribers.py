"""Subscribers: typed messages decoded by Content-Type, metadata from headers, wrappers, queue groups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from micro import context
from micro.broker import Message as BrokerMessage
from micro.errors import BadRequest
from micro.server import Message, SubscriberFunc
from rpcstack import Stack, eventually


@dataclass
class Greeted:
    name: str


class Inbox:
    def __init__(self) -> None:
        self.seen: list[Any] = []
        self.metadata: list[dict[str, str]] = []

    async def greeted(self, event: Greeted) -> None:
        self.seen.append(event)
        self.metadata.append(dict(context.metadata()))


async def test_publish_reaches_typed_subscriber_with_metadata(stack: Stack) -> None:
    inbox = Inbox()
    topic = f"{stack.name}.greeted"
    server = stack.server()
    server.subscribe(topic, inbox.greeted)
    await server.start()
    client = stack.client()
    with context.with_metadata({"X-Tenant": "acme"}):
        await client.publish(topic, Greeted(name="Bob"))
    await client.publish(topic, {"name": "Carol"}, content_type="application/msgpack")

    async def delivered() -> None:
        assert inbox.seen == [Greeted(name="Bob"), Greeted(name="Carol")]

    await eventually(delivered)
    first = {k.lower(): v for k, v in inbox.metadata[0].items()}
    assert first["x-tenant"] == "acme"
    assert first["micro-topic"] == topic
    assert first["content-type"] == "application/json"
    assert "micro-id" in first
    # subscribers are published as endpoints
    (entry,) = await stack.registry.get_service(stack.name)
    subscriber = next(e for e in entry.endpoints if e.metadata.get("subscriber") == "true")
    assert subscriber.metadata["topic"] == topic


async def test_object_subscriber_gets_each_message_in_every_method(stack: Stack) -> None:
    class Audit:
        def __init__(self) -> None:
            self.log: list[str] = []

        async def first(self, event: dict[str, Any]) -> None:
            self.log.append(f"first:{event['n']}")

        async def second(self, event: dict[str, Any]) -> None:
            self.log.append(f"second:{event['n']}")

    audit = Audit()
    topic = f"{stack.name}.audit"
    server = stack.server()
    server.subscribe(topic, audit)
    await server.start()
    await stack.client().publish(topic, {"n": 1})

    async def delivered() -> None:
        assert sorted(audit.log) == ["first:1", "second:1"]

    await eventually(delivered)


async def test_subscriber_wrappers_run_in_order_and_see_the_message(stack: Stack) -> None:
    order: list[str] = []

    def wrapper(name: str) -> Any:
        def wrap(next: SubscriberFunc) -> SubscriberFunc:
            async def handle(message: Message) -> None:
                order.append(f"{name}>{message.topic}:{type(message.payload).__name__}")
                await next(message)
                order.append(f"<{name}")

            return handle

        return wrap

    inbox = Inbox()
    topic = f"{stack.name}.wrapped"
    server = stack.server()
    server.subscribe(topic, inbox.greeted)
    server.wrap_subscriber(wrapper("outer"), wrapper("inner"))
    await server.start()
    await stack.client().publish(topic, Greeted(name="x"))

    async def delivered() -> None:
        assert order == [f"outer>{topic}:Greeted", f"inner>{topic}:Greeted", "<inner", "<outer"]

    await eventually(delivered)


async def test_subscribe_while_running(stack: Stack) -> None:
    inbox = Inbox()
    topic = f"{stack.name}.late"
    server = stack.server()
    await server.start()
    server.subscribe(topic, inbox.greeted)
    client = stack.client()

    async def delivered() -> None:
        await client.publish(topic, Greeted(name="late"))
        assert inbox.seen

    await eventually(delivered)


async def test_queue_group_shares_messages_between_servers(stack: Stack) -> None:
    inboxes = [Inbox(), Inbox()]
    topic = f"{stack.name}.work"
    for inbox in inboxes:
        server = stack.server()
        server.subscribe(topic, inbox.greeted, queue="workers")
        await server.start()
    client = stack.client()
    for n in range(20):
        await client.publish(topic, Greeted(name=str(n)))

    async def delivered() -> None:
        names = sorted(int(e.name) for inbox in inboxes for e in inbox.seen)
        assert names == list(range(20))  # each message exactly once across the group

    await eventually(delivered)


async def test_undecodable_message_does_not_stop_the_subscription(stack: Stack) -> None:
    inbox = Inbox()
    topic = f"{stack.name}.bad"
    server = stack.server()
    server.subscribe(topic, inbox.greeted)
    await server.start()
    await stack.broker.publish(topic, BrokerMessage(b"{not json", {"Content-Type": "application/json"}))
    await stack.broker.publish(topic, BrokerMessage(b"\x00", {"Content-Type": "application/x-nope"}))
    await stack.client().publish(topic, Greeted(name="after"))

    async def delivered() -> None:
        assert inbox.seen == [Greeted(name="after")]

    await eventually(delivered)


def test_bad_topic(stack: Stack) -> None:
    server = stack.server()
    with pytest.raises(BadRequest):
        server.subscribe("has space", Inbox().greeted)
    with pytest.raises(BadRequest):
        server.subscribe("ok", Inbox().greeted, queue="")


async def test_stop_unsubscribes(stack: Stack) -> None:
    inbox = Inbox()
    topic = f"{stack.name}.stop"
    server = stack.server()
    server.subscribe(topic, inbox.greeted)
    await server.start()
    await server.stop()
    control: list[Any] = []

    async def witness(event: Any) -> None:
        control.append(event)

    await stack.broker.subscribe(topic, witness)
    await stack.client().publish(topic, Greeted(name="nobody"))

    async def delivered_elsewhere() -> None:
        assert control  # the message was delivered, just not to the stopped server

    await eventually(delivered_elsewhere)
    assert inbox.seen == []
