"""MemoryBroker: queue groups, acknowledgement, ordering, back-pressure and lifecycle."""

from __future__ import annotations

import asyncio
import collections

import micro
import pytest
from micro.broker import Broker, Event, Message
from micro.broker.memory import MemoryBroker, MemoryBrokerOptions
from micro.errors import BadRequest, ConnectionClosed, InvalidOption, MessageTooLarge

from .conftest import Collector, eventually


@pytest.fixture
async def broker():
    async with MemoryBroker() as b:
        yield b


def messages(n: int) -> list[Message]:
    return [Message(str(i).encode(), {"Seq": str(i)}) for i in range(n)]


async def test_created_by_name():
    broker = micro.create("broker", "memory", environ={}, queue_size=8)
    assert isinstance(broker, MemoryBroker)
    assert isinstance(broker, Broker)
    assert broker.options.queue_size == 8
    assert broker.name == "memory"


def test_options_come_from_environment():
    broker = micro.create("broker", environ={"MICRO_BROKER": "memory", "MICRO_BROKER_MAX_REDELIVERIES": "0"})
    assert broker.options.max_redeliveries == 0


@pytest.mark.parametrize(("field", "value"), [("queue_size", 0), ("max_redeliveries", -1), ("close_timeout", -1)])
def test_bad_options(field, value):
    with pytest.raises(InvalidOption):
        MemoryBrokerOptions(**{field: value})


async def test_broadcast_reaches_every_subscriber_with_header_and_body(broker):
    first, second = Collector(), Collector()
    await broker.subscribe("greet", first)
    await broker.subscribe("greet", second)
    await broker.publish("greet", Message("héllo".encode(), {"Content-Type": "text/plain"}))
    await broker.publish("greet", Message(b""))
    await eventually(lambda: len(first.events) == 2 and len(second.events) == 2)
    for collector in (first, second):
        assert collector.bodies == ["héllo".encode(), b""]
        assert collector.events[0].message.header["content-type"] == "text/plain"
        assert collector.events[0].topic == "greet"


async def test_subscribers_get_copies_of_the_header(broker):
    async def meddler(event: Event) -> None:
        event.message.header["x"] = "changed"

    other = Collector()
    await broker.subscribe("t", meddler)
    await broker.subscribe("t", other)
    await broker.publish("t", Message(b"", {"x": "original"}))
    await eventually(lambda: len(other.events) == 1)
    assert other.events[0].message.header["x"] == "original"


async def test_queue_group_delivers_each_message_once_and_broadcast_still_gets_all(broker):
    members = [Collector() for _ in range(3)]
    for member in members:
        await broker.subscribe("orders", member, queue="workers")
    other_group, everyone = Collector(), Collector()
    await broker.subscribe("orders", other_group, queue="audit")
    await broker.subscribe("orders", everyone)

    n = 60
    for message in messages(n):
        await broker.publish("orders", message)

    expected = sorted(str(i).encode() for i in range(n))
    await eventually(lambda: sum(len(m.events) for m in members) >= n and len(everyone.events) == n)
    await eventually(lambda: len(other_group.events) == n)
    got = sorted(body for m in members for body in m.bodies)
    assert got == expected  # every message exactly once across the group
    assert sorted(everyone.bodies) == expected
    assert sorted(other_group.bodies) == expected
    assert sum(1 for m in members if m.events) >= 2, "members of a group should share the work"


async def test_topics_do_not_cross_talk(broker):
    a, b = Collector(), Collector()
    await broker.subscribe("a", a)
    await broker.subscribe("b", b)
    await broker.publish("a", Message(b"for a"))
    await broker.publish("b", Message(b"for b"))
    await eventually(lambda: len(a.events) == 1 and len(b.events) == 1)
    assert a.bodies == [b"for a"]
    assert b.bodies == [b"for b"]


async def test_publish_without_subscribers_is_fine(broker):
    await broker.publish("nobody", Message(b"x"))


async def test_unsubscribe_stops_delivery_and_is_idempotent(broker):
    gone, stays = Collector(), Collector()
    subscriber = await broker.subscribe("t", gone)
    await broker.subscribe("t", stays)
    await broker.publish("t", Message(b"1"))
    await eventually(lambda: len(gone.events) == 1 and len(stays.events) == 1)

    await subscriber.unsubscribe()
    await subscriber.unsubscribe()
    await broker.publish("t", Message(b"2"))
    await eventually(lambda: len(stays.events) == 2)
    assert gone.bodies == [b"1"]
    assert subscriber.topic == "t"
    assert subscriber.queue is None


async def test_queue_messages_stay_with_the_group_when_a_member_leaves(broker):
    release = asyncio.Event()
    seen: list[bytes] = []

    async def slow(event: Event) -> None:
        seen.append(event.message.body)
        await release.wait()

    first = await broker.subscribe("t", slow, queue="q")
    for message in messages(3):
        await broker.publish("t", message)
    await eventually(lambda: len(seen) == 1)
    second = Collector()
    await broker.subscribe("t", second, queue="q")
    await eventually(lambda: len(second.events) == 2)
    release.set()
    await first.unsubscribe()
    assert sorted(seen + second.bodies) == [b"0", b"1", b"2"]


async def test_handler_exception_neither_reaches_publisher_nor_ends_subscription(broker, caplog):
    attempts: collections.Counter[bytes] = collections.Counter()

    async def flaky(event: Event) -> None:
        attempts[event.message.body] += 1
        if event.message.body == b"bad" and attempts[b"bad"] == 1:
            raise RuntimeError("first try fails")

    await broker.subscribe("t", flaky)
    await broker.publish("t", Message(b"bad"))
    await broker.publish("t", Message(b"good"))
    await eventually(lambda: attempts[b"bad"] == 2 and attempts[b"good"] == 1)
    assert "first try fails" in caplog.text


async def test_a_failing_message_is_redelivered_a_bounded_number_of_times():
    async with MemoryBroker(MemoryBrokerOptions(max_redeliveries=2)) as broker:
        tries: list[Event] = []

        async def always_fails(event: Event) -> None:
            tries.append(event)
            raise ValueError("poison")

        after = Collector()
        await broker.subscribe("t", always_fails)
        await broker.subscribe("t", after)
        await broker.publish("t", Message(b"poison"))
        await broker.publish("t", Message(b"next"))
        await eventually(lambda: len(after.events) == 2 and len(tries) == 6)
        # Each message is tried 1 + 2 times, then dropped; the next one is still delivered.
        assert [e.message.body for e in tries] == [b"poison"] * 3 + [b"next"] * 3
        assert all(isinstance(e.error, ValueError) for e in tries)


async def test_auto_ack_acks_on_normal_return(broker):
    handler = Collector()
    await broker.subscribe("t", handler)
    await broker.publish("t", Message(b"x"))
    await eventually(lambda: handler.events and handler.events[0].outcome is not None)
    assert handler.events[0].outcome == "ack"


async def test_manual_ack_delivers_once_when_acked(broker):
    events: list[Event] = []

    async def acks(event: Event) -> None:
        events.append(event)
        await event.ack()

    marker = Collector()
    await broker.subscribe("t", acks, auto_ack=False)
    await broker.subscribe("t", marker)
    await broker.publish("t", Message(b"x"))
    await broker.publish("t", Message(b"end"))
    await eventually(lambda: len(marker.events) == 2 and len(events) >= 2)
    assert [e.message.body for e in events] == [b"x", b"end"]


async def test_manual_ack_redelivers_an_unacked_message():
    async with MemoryBroker(MemoryBrokerOptions(max_redeliveries=1)) as broker:
        events: list[Event] = []

        async def forgets(event: Event) -> None:
            events.append(event)

        await broker.subscribe("t", forgets, auto_ack=False)
        await broker.publish("t", Message(b"x"))
        await eventually(lambda: len(events) == 2)
        assert all(e.outcome == "requeue" for e in events)
        assert [e.message.body for e in events] == [b"x", b"x"]


async def test_nack_without_requeue_drops(broker):
    events: list[Event] = []

    async def rejects(event: Event) -> None:
        events.append(event)
        await event.nack(requeue=False)

    await broker.subscribe("t", rejects, auto_ack=False)
    await broker.publish("t", Message(b"x"))
    await broker.publish("t", Message(b"y"))
    await eventually(lambda: len(events) == 2)
    assert [e.message.body for e in events] == [b"x", b"y"]
    assert events[0].outcome == "drop"


async def test_each_subscriber_sees_messages_in_publish_order(broker):
    first, second = Collector(), Collector()
    await broker.subscribe("t", first)
    await broker.subscribe("t", second)
    n = 300
    for message in messages(n):
        await broker.publish("t", message)
    await eventually(lambda: len(first.events) == n and len(second.events) == n)
    expected = [str(i).encode() for i in range(n)]
    assert first.bodies == expected
    assert second.bodies == expected


async def test_publish_waits_while_a_mailbox_is_full():
    async with MemoryBroker(MemoryBrokerOptions(queue_size=2)) as broker:
        release = asyncio.Event()
        got: list[bytes] = []

        async def blocked(event: Event) -> None:
            got.append(event.message.body)
            await release.wait()

        await broker.subscribe("t", blocked)
        await broker.publish("t", Message(b"0"))
        await eventually(lambda: got == [b"0"])  # taken by the handler: the mailbox is empty again
        await broker.publish("t", Message(b"1"))
        await broker.publish("t", Message(b"2"))
        third = asyncio.create_task(broker.publish("t", Message(b"3")))
        done, _ = await asyncio.wait({third}, timeout=0.1)
        assert not done, "publish should wait while the subscriber's mailbox is full"
        release.set()
        await asyncio.wait_for(third, 2)
        await eventually(lambda: got == [b"0", b"1", b"2", b"3"])


@pytest.mark.parametrize("topic", ["", "a b", " x", None])
async def test_bad_topic_is_a_bad_request(broker, topic):
    with pytest.raises(BadRequest):
        await broker.publish(topic, Message())
    with pytest.raises(BadRequest):
        await broker.subscribe(topic, Collector())


async def test_bad_subscribe_arguments(broker):
    with pytest.raises(BadRequest):
        await broker.subscribe("t", Collector(), queue="has space")
    with pytest.raises(BadRequest):
        await broker.subscribe("t", "not callable")  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        await broker.publish("t", b"not a message")  # type: ignore[arg-type]


async def test_oversized_message_is_refused():
    async with MemoryBroker(MemoryBrokerOptions(max_message_size=4)) as broker:
        await broker.publish("t", Message(b"1234"))
        with pytest.raises(MessageTooLarge):
            await broker.publish("t", Message(b"12345"))


async def test_publish_starts_lazily_and_close_is_final_until_restart():
    broker = MemoryBroker()
    handler = Collector()
    await broker.subscribe("t", handler)
    await broker.publish("t", Message(b"1"))
    await eventually(lambda: len(handler.events) == 1)
    await broker.close()
    await broker.close()
    with pytest.raises(ConnectionClosed):
        await broker.publish("t", Message(b"2"))
    with pytest.raises(ConnectionClosed):
        await broker.subscribe("t", handler)
    await broker.start()
    await broker.publish("t", Message(b"3"))  # the old subscription ended with close()
    again = Collector()
    await broker.subscribe("t", again)
    await broker.publish("t", Message(b"4"))
    await eventually(lambda: again.bodies == [b"4"])
    assert handler.bodies == [b"1"]
    await broker.close()


async def test_unsubscribe_from_inside_the_handler(broker):
    calls: list[bytes] = []
    box: dict[str, object] = {}

    async def once(event: Event) -> None:
        calls.append(event.message.body)
        await box["subscriber"].unsubscribe()  # type: ignore[attr-defined]

    marker = Collector()
    box["subscriber"] = await broker.subscribe("t", once)
    await broker.subscribe("t", marker)
    await broker.publish("t", Message(b"1"))
    await broker.publish("t", Message(b"2"))
    await eventually(lambda: len(marker.events) == 2)
    assert calls == [b"1"]


async def test_a_handler_that_hangs_is_cancelled_after_close_timeout(caplog):
    broker = MemoryBroker(MemoryBrokerOptions(close_timeout=0.05))
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def hangs(event: Event) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await broker.subscribe("t", hangs)
    await broker.publish("t", Message(b"x"))
    await asyncio.wait_for(started.wait(), 2)
    await asyncio.wait_for(broker.close(), 2)
    assert cancelled.is_set()
    assert "did not finish in time" in caplog.text
