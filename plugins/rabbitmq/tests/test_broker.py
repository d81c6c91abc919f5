"""RabbitMQ-specific behaviour: queues and their settings, redelivery bounds, dead-lettering, prefetch, options."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable

import aio_pika
import aiormq.exceptions
import micro
import pytest
from micro.broker import Event, Message
from micro.errors import BadRequest, InvalidOption
from micro_conformance import eventually
from micro_rabbitmq import RabbitMQBrokerOptions
from micro_rabbitmq.broker import REDELIVERIES, RabbitMQBroker

from .conftest import Maker


async def queue_depth(admin: aio_pika.abc.AbstractConnection, name: str) -> int:
    """Messages ready in queue ``name`` (declared passively, on a channel of its own: it must exist)."""
    async with await admin.channel() as channel:
        queue = await channel.declare_queue(name, passive=True)
        count = queue.declaration_result.message_count
        assert count is not None
        return count


async def delete_queue(admin: aio_pika.abc.AbstractConnection, name: str) -> None:
    async with await admin.channel() as channel:
        await channel.queue_delete(name)


# -- selection and options ---------------------------------------------------------------------------------


def test_selected_by_name_with_options_from_the_environment() -> None:
    environ = {
        "MICRO_BROKER": "rabbitmq",
        "MICRO_BROKER_ADDRESS": "amqp://u:p@127.0.0.1:5672/vh,amqps://u:p@10.0.0.1:5671/vh",
        "MICRO_BROKER_EXCHANGE": "orders",
        "MICRO_BROKER_DURABLE": "false",
        "MICRO_BROKER_PREFETCH_COUNT": "5",
        "MICRO_BROKER_CONFIRM": "off",
        "MICRO_BROKER_MAX_REDELIVERIES": "0",
        "MICRO_BROKER_DEAD_LETTER_EXCHANGE": "dead",
        "MICRO_BROKER_QUEUE_EXPIRES": "10m",
        "MICRO_BROKER_PUBLISH_TIMEOUT": "250ms",
    }
    broker = micro.get_manager().create("broker", environ=environ)
    assert isinstance(broker, RabbitMQBroker)
    assert broker.name == "rabbitmq"
    options = broker.options
    assert options.urls == ("amqp://u:p@127.0.0.1:5672/vh", "amqps://u:p@10.0.0.1:5671/vh")
    assert (options.exchange, options.durable, options.prefetch_count, options.confirm) == ("orders", False, 5, False)
    assert (options.max_redeliveries, options.dead_letter_exchange) == (0, "dead")
    assert (options.queue_expires, options.publish_timeout) == (600.0, 0.25)
    assert broker.address == "amqp://u:***@127.0.0.1:5672/vh", "the password leaked into the address"


def test_defaults() -> None:
    broker = RabbitMQBroker()
    assert broker.address == "amqp://guest:***@127.0.0.1:5672/"
    assert (broker.options.exchange, broker.options.durable, broker.options.confirm) == ("micro", True, True)
    assert broker.capabilities == {"queue", "ack", "nack", "ordered", "cross-process"}


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MICRO_BROKER_ADDRESS", "redis://127.0.0.1:6379", "amqp://"),
        ("MICRO_BROKER_EXCHANGE", "amq.topic", "reserved"),
        ("MICRO_BROKER_PREFETCH_COUNT", "0", ">= 1"),
        ("MICRO_BROKER_PREFETCH_COUNT", "many", "integer"),
        ("MICRO_BROKER_MAX_REDELIVERIES", "-1", ">= 0"),
        ("MICRO_BROKER_QUEUE_EXPIRES", "0", "positive"),
        ("MICRO_BROKER_DURABLE", "maybe", "boolean"),
        ("MICRO_BROKER_EXCHNAGE", "typo", "unknown option"),
    ],
)
def test_bad_options_name_their_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(InvalidOption, match=message) as caught:
        micro.get_manager().create("broker", environ={"MICRO_BROKER": "rabbitmq", variable: value})
    assert variable in str(caught.value)


def test_options_from_code_are_checked() -> None:
    with pytest.raises(InvalidOption, match="exchange"):
        RabbitMQBrokerOptions(exchange="")
    with pytest.raises(InvalidOption, match="dead_letter_exchange"):
        RabbitMQBrokerOptions(dead_letter_exchange="x" * 300)
    with pytest.raises(InvalidOption, match="exchange"):
        RabbitMQBrokerOptions(exchange="with space")


async def test_topics_longer_than_an_amqp_routing_key_are_bad_requests(broker: RabbitMQBroker) -> None:
    with pytest.raises(BadRequest, match="255 bytes"):
        await broker.publish("t" * 256, Message(b"x"))
    with pytest.raises(BadRequest, match="255 bytes"):
        await broker.subscribe("ü" * 128, lambda event: asyncio.sleep(0))


# -- queues ------------------------------------------------------------------------------------------------


async def test_a_queue_group_keeps_its_backlog_while_no_member_runs(
    make: Maker, admin: aio_pika.abc.AbstractConnection, unique: Callable[[str], str]
) -> None:
    """The group's queue is durable and named after exchange, topic and group; it outlives its members."""
    topic, group = unique("orders"), unique("workers")
    broker = await make()
    first: list[bytes] = []

    async def take(event: Event) -> None:
        first.append(event.message.body)

    subscriber = await broker.subscribe(topic, take, queue=group)
    assert subscriber.queue_name == f"micro:{topic}:{group}"  # type: ignore[attr-defined]
    await broker.publish(topic, Message(b"one"))
    await eventually(lambda: first == [b"one"])
    await subscriber.unsubscribe()

    await broker.publish(topic, Message(b"two"))
    await broker.publish(topic, Message(b"three"))
    assert await queue_depth(admin, f"micro:{topic}:{group}") == 2

    later = await make()  # another process, as it were, joining the group afterwards
    second: list[bytes] = []

    async def take_later(event: Event) -> None:
        second.append(event.message.body)

    await later.subscribe(topic, take_later, queue=group)
    await eventually(lambda: sorted(second) == [b"three", b"two"], what="the backlog reaching the new member")
    await delete_queue(admin, f"micro:{topic}:{group}")


async def test_a_broadcast_queue_goes_away_with_its_subscriber(
    broker: RabbitMQBroker, admin: aio_pika.abc.AbstractConnection, unique: Callable[[str], str]
) -> None:
    subscriber = await broker.subscribe(unique("t"), lambda event: asyncio.sleep(0))
    name = subscriber.queue_name  # type: ignore[attr-defined]
    assert name.startswith(f"micro:{unique('t')}:sub-")
    with pytest.raises(aiormq.exceptions.ChannelLockedResource):
        await queue_depth(admin, name)  # exclusive to the broker's connection
    await subscriber.unsubscribe()

    async def gone() -> None:
        with pytest.raises(aiormq.exceptions.ChannelNotFoundEntity):
            await queue_depth(admin, name)

    await eventually(gone, what="the exclusive queue being deleted")


async def test_long_topic_and_group_still_give_a_valid_queue_name(
    broker: RabbitMQBroker, admin: aio_pika.abc.AbstractConnection, unique: Callable[[str], str]
) -> None:
    topic, group = unique("t" * 150), unique("g" * 150)
    got: list[bytes] = []

    async def take(event: Event) -> None:
        got.append(event.message.body)

    subscriber = await broker.subscribe(topic, take, queue=group)
    name = subscriber.queue_name  # type: ignore[attr-defined]
    assert len(name.encode()) <= 255
    await broker.publish(topic, Message(b"fits"))
    await eventually(lambda: got == [b"fits"])
    await subscriber.unsubscribe()
    await delete_queue(admin, name)


async def test_a_leaving_member_hands_its_unprocessed_deliveries_back_to_the_group(
    make: Maker, admin: aio_pika.abc.AbstractConnection, unique: Callable[[str], str]
) -> None:
    """What RabbitMQ prefetched to a member that leaves is redelivered to the members that stay."""
    topic, group = unique("t"), unique("g")
    slow = await make(prefetch_count=10)
    release = asyncio.Event()
    slow_got: list[bytes] = []

    async def block(event: Event) -> None:
        slow_got.append(event.message.body)
        await release.wait()

    leaving = await slow.subscribe(topic, block, queue=group)
    bodies = [f"m{i}".encode() for i in range(6)]
    for body in bodies:
        await slow.publish(topic, Message(body))
    await eventually(lambda: len(slow_got) == 1, what="the slow member taking the first message")

    fast = await make()
    fast_got: list[bytes] = []

    async def take(event: Event) -> None:
        fast_got.append(event.message.body)

    await fast.subscribe(topic, take, queue=group)
    unsubscribing = asyncio.create_task(leaving.unsubscribe())
    await asyncio.sleep(0.05)
    release.set()  # the handler in progress finishes (and acks) before the channel closes
    await unsubscribing
    await eventually(lambda: sorted(fast_got + slow_got) == bodies, what="every message reaching the group")
    assert not set(fast_got) & set(slow_got), "a message acked by the leaving member was delivered again"
    await delete_queue(admin, leaving.queue_name)  # type: ignore[attr-defined]


# -- settlement --------------------------------------------------------------------------------------------


async def test_redelivery_is_bounded_and_the_count_is_not_shown_to_handlers(
    make: Maker, unique: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    broker = await make(max_redeliveries=2)
    topic = unique("t")
    seen: list[Event] = []

    async def always_fails(event: Event) -> None:
        seen.append(event)
        raise RuntimeError("poison")

    with caplog.at_level(logging.WARNING, logger="micro.broker.rabbitmq"):
        await broker.subscribe(topic, always_fails)
        await broker.publish(topic, Message(b"poison", {"X-Kind": "test"}))
        await eventually(lambda: len(seen) == 3, what="the first delivery and two redeliveries")
        await eventually(lambda: "redelivered 2 times; dropping it" in caplog.text, what="the drop being logged")
    await asyncio.sleep(0.2)
    assert len(seen) == 3, "the message was delivered past max_redeliveries"
    for event in seen:
        assert event.topic == topic
        assert event.message == Message(b"poison", {"X-Kind": "test"}), "internal headers leaked to the handler"
        assert event.outcome == "requeue"
        assert isinstance(event.error, RuntimeError)


async def test_exhausted_and_rejected_messages_are_dead_lettered(
    make: Maker, admin: aio_pika.abc.AbstractConnection, unique: Callable[[str], str]
) -> None:
    dead = unique("dead")
    channel = await admin.channel()
    exchange = await channel.declare_exchange(dead, aio_pika.ExchangeType.FANOUT, auto_delete=True)
    parking = await channel.declare_queue(unique("parking"), exclusive=True)
    await parking.bind(exchange)
    broker = await make(max_redeliveries=1, dead_letter_exchange=dead)
    topic, group = unique("t"), unique("g")

    async def handler(event: Event) -> None:
        if event.message.body == b"reject":
            await event.nack(requeue=False)
        else:
            raise RuntimeError("fails every time")

    await broker.subscribe(topic, handler, queue=group)
    await broker.publish(topic, Message(b"reject"))
    await broker.publish(topic, Message(b"exhaust"))
    parked: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def park(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        parked.append(message)
        await message.ack()

    await parking.consume(park)
    await eventually(lambda: len(parked) == 2, what="both messages reaching the dead-letter exchange")
    by_body = {m.body: m for m in parked}
    assert set(by_body) == {b"reject", b"exhaust"}
    assert by_body[b"exhaust"].headers[REDELIVERIES] == 1
    assert REDELIVERIES not in (by_body[b"reject"].headers or {})
    await delete_queue(admin, f"micro:{topic}:{group}")


async def test_an_unsettled_manual_ack_delivery_comes_back_then_stays_acked(
    broker: RabbitMQBroker, unique: Callable[[str], str]
) -> None:
    topic = unique("t")
    seen: list[bytes] = []

    async def forgets_once(event: Event) -> None:
        seen.append(event.message.body)
        if len(seen) > 1:
            await event.ack()

    await broker.subscribe(topic, forgets_once, auto_ack=False)
    await broker.publish(topic, Message(b"m"))
    await eventually(lambda: seen == [b"m", b"m"], what="the redelivery of the unsettled message")
    await asyncio.sleep(0.2)
    assert seen == [b"m", b"m"]


async def test_foreign_headers_are_read_as_strings(
    broker: RabbitMQBroker, admin: aio_pika.abc.AbstractConnection, unique: Callable[[str], str]
) -> None:
    """A publisher outside micro (Go's broker, a script) may send typed AMQP header values."""
    topic = unique("t")
    got: list[Event] = []

    async def take(event: Event) -> None:
        got.append(event)

    await broker.subscribe(topic, take)
    exchange = await (await admin.channel()).get_exchange("micro")
    headers = {"Content-Type": "application/json", "count": 3, "flag": True, "ratio": 0.5, "table": {"a": 1}}
    await exchange.publish(aio_pika.Message(b"{}", headers=headers), routing_key=topic)
    await eventually(lambda: len(got) == 1)
    assert dict(got[0].message.header) == {
        "Content-Type": "application/json",
        "count": "3",
        "flag": "true",
        "ratio": "0.5",
    }


async def test_prefetch_bounds_what_a_subscriber_holds(
    make: Maker, admin: aio_pika.abc.AbstractConnection, unique: Callable[[str], str]
) -> None:
    """With prefetch_count=2 and a handler that blocks, RabbitMQ keeps all but two messages ready."""
    broker = await make(prefetch_count=2)
    topic, group = unique("t"), unique("g")
    release = asyncio.Event()
    started: list[bytes] = []

    async def block(event: Event) -> None:
        started.append(event.message.body)
        await release.wait()

    subscriber = await broker.subscribe(topic, block, queue=group)
    for i in range(10):
        await broker.publish(topic, Message(f"{i}".encode()))
    await eventually(lambda: started == [b"0"])

    async def eight_ready() -> None:
        assert await queue_depth(admin, subscriber.queue_name) == 8  # type: ignore[attr-defined]

    await eventually(eight_ready, what="RabbitMQ holding back all but the prefetched two")
    release.set()
    await eventually(lambda: len(started) == 10)
    assert started == [f"{i}".encode() for i in range(10)], "one subscriber saw the messages out of order"
    await delete_queue(admin, subscriber.queue_name)  # type: ignore[attr-defined]


async def test_without_confirms_and_durability_messages_still_flow(make: Maker, unique: Callable[[str], str]) -> None:
    broker = await make(confirm=False, durable=False, exchange=unique("volatile"))
    topic = unique("t")
    got: list[bytes] = []

    async def take(event: Event) -> None:
        got.append(event.message.body)

    await broker.subscribe(topic, take)
    await asyncio.gather(*(broker.publish(topic, Message(f"{i}".encode())) for i in range(20)))
    await eventually(lambda: len(got) == 20)
    assert Counter(got) == Counter(f"{i}".encode() for i in range(20))


async def test_wildcard_subscriptions_report_the_published_topic(
    broker: RabbitMQBroker, unique: Callable[[str], str]
) -> None:
    base = unique("orders")
    got: list[str] = []

    async def take(event: Event) -> None:
        got.append(event.topic)

    await broker.subscribe(f"{base}.*", take)
    await broker.publish(f"{base}.created", Message(b"1"))
    await broker.publish(f"{base}.deleted", Message(b"2"))
    await eventually(lambda: sorted(got) == [f"{base}.created", f"{base}.deleted"])
