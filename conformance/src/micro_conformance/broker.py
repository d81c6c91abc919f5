"""The broker contract (:class:`micro.broker.Broker`): cases B01-B28.

Topics and queue names start with the test's unique prefix. Deliveries are
awaited with a deadline; checks that something does *not* arrive (cross-talk,
a second delivery) watch for :attr:`~micro_conformance.base.Contract.quiet_period`
after the expected messages are in. Capabilities: ``queue``, ``ack``, ``nack``,
``ordered``, ``cross-process``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
from micro.broker import Broker, Event, Message, Subscriber
from micro.errors import BadRequest, ConnectionClosed, MessageTooLarge, MicroError, NotSupported

from .base import Contract, absent, eventually, requires

__all__ = ["BrokerContract", "Inbox"]


class Inbox:
    """A handler that keeps every event it is given; ``await inbox.wait(3)`` for the first three."""

    def __init__(self, contract: Contract[Broker], *, fail: int = 0) -> None:
        self.contract = contract
        self.events: list[Event] = []
        #: The first ``fail`` calls raise, to check that the subscription survives.
        self.fail = fail

    async def __call__(self, event: Event) -> None:
        self.events.append(event)
        if len(self.events) <= self.fail:
            raise RuntimeError(f"deliberate failure {len(self.events)} (conformance check)")

    @property
    def bodies(self) -> list[bytes]:
        return [e.message.body for e in self.events]

    async def wait(self, count: int, what: str = "") -> list[Event]:
        """The events once at least ``count`` have arrived."""

        def enough() -> None:
            assert len(self.events) >= count, f"{len(self.events)} of {count} messages arrived"

        await self.contract.eventually(enough, what or f"{count} deliveries")
        return self.events

    async def wait_for(self, body: bytes) -> None:
        """Until a message with ``body`` has arrived."""
        await self.contract.eventually(lambda: body in self.bodies, f"the delivery of {body!r}")


class BrokerContract(Contract[Broker]):
    """The behaviour every :class:`~micro.broker.Broker` shares; see :mod:`micro.broker.base`."""

    interface = "broker"
    known_capabilities = frozenset({"queue", "ack", "nack", "ordered", "cross-process"})
    #: Options for the instance case B24 publishes with: give it a small backlog bound (micro-redis:
    #: ``{"max_length": 20}``) so that the slow consumer there reaches it.
    slow_consumer_options: ClassVar[Mapping[str, Any]] = {}

    @pytest.fixture
    def broker(self, subject: Broker) -> Broker:
        return subject

    def inbox(self, *, fail: int = 0) -> Inbox:
        return Inbox(self, fail=fail)

    async def subscribe(
        self, broker: Broker, topic: str, inbox: Inbox, *, queue: str | None = None, auto_ack: bool = True
    ) -> Subscriber:
        """Subscribe ``inbox``, unsubscribing when the test ends."""
        subscriber = await broker.subscribe(topic, inbox, queue=queue, auto_ack=auto_ack)
        self.later(subscriber.unsubscribe)
        return subscriber

    async def publish_all(self, broker: Broker, topic: str, bodies: list[bytes]) -> None:
        for body in bodies:
            await broker.publish(topic, Message(body))

    # -- lifecycle -------------------------------------------------------------------------

    async def test_b01_start_and_close_are_idempotent_and_closed_broker_refuses(self, broker: Broker) -> None:
        """start() twice and close() twice are fine; after close, publish and subscribe raise ConnectionClosed."""
        topic = self.names("t")
        await broker.start()
        await broker.close()
        await broker.close()
        with pytest.raises(ConnectionClosed):
            await broker.publish(topic, Message(b"x"))
        with pytest.raises(ConnectionClosed):
            await broker.subscribe(topic, self.inbox())
        await broker.start()
        inbox = self.inbox()
        await self.subscribe(broker, topic, inbox)
        await broker.publish(topic, Message(b"after restart"))
        await inbox.wait_for(b"after restart")

    async def test_b02_unstarted_broker_starts_on_first_use(self) -> None:
        """publish() and subscribe() on a broker nobody started start it."""
        broker = await self.make()
        self.later(broker.close)
        topic, inbox = self.names("t"), self.inbox()
        await self.subscribe(broker, topic, inbox)
        await broker.publish(topic, Message(b"hello"))
        await inbox.wait_for(b"hello")

    async def test_b03_close_ends_subscriptions(self, broker: Broker) -> None:
        """After close() and start() again, a handler subscribed before the close is never called."""
        topic, old, new = self.names("t"), self.inbox(), self.inbox()
        await broker.subscribe(topic, old)
        await broker.close()
        await broker.start()
        await self.subscribe(broker, topic, new)
        await broker.publish(topic, Message(b"x"))
        await new.wait_for(b"x")
        await self.quiet()
        assert old.events == [], "a subscription survived close()"

    # -- messages --------------------------------------------------------------------------

    async def test_b04_body_header_and_topic_arrive_intact(self, broker: Broker) -> None:
        """Empty, binary and unicode messages arrive equal (headers case-insensitive), on the right topic."""
        topic, inbox = self.names("t"), self.inbox()
        await self.subscribe(broker, topic, inbox)
        sent = [
            Message(b""),
            Message(bytes(range(256)), {"Content-Type": "application/octet-stream"}),
            Message("héllo wörld 🎉".encode(), {"X-Greeting": "grüß dich 🎉", "micro-id": "42", "empty": ""}),
        ]
        for message in sent:
            await broker.publish(topic, message)
        events = await inbox.wait(len(sent))
        by_body = {e.message.body: e for e in events}
        for message in sent:
            event = by_body.get(message.body)
            assert event is not None, f"{message!r} did not arrive"
            assert event.topic == topic
            assert event.message == message, f"sent {message!r}, got {event.message!r}"
        assert by_body[sent[2].body].message.header["x-greeting"] == "grüß dich 🎉"
        assert by_body[sent[2].body].message.header["MICRO-ID"] == "42"

    async def test_b05_every_message_arrives(self, broker: Broker) -> None:
        """Fifty messages published one after another all arrive, each exactly once."""
        topic, inbox = self.names("t"), self.inbox()
        await self.subscribe(broker, topic, inbox)
        bodies = [f"m{i}".encode() for i in range(50)]
        await self.publish_all(broker, topic, bodies)
        await inbox.wait(len(bodies))
        await self.quiet()
        assert sorted(inbox.bodies) == sorted(bodies), "messages were lost or duplicated"

    async def test_b06_concurrent_publishers_all_deliver(self, broker: Broker) -> None:
        """A hundred publish() calls running at once all deliver."""
        topic, inbox = self.names("t"), self.inbox()
        await self.subscribe(broker, topic, inbox)
        bodies = [f"m{i}".encode() for i in range(100)]
        await asyncio.gather(*(broker.publish(topic, Message(b)) for b in bodies))
        await inbox.wait(len(bodies))
        assert sorted(set(inbox.bodies)) == sorted(bodies)

    async def test_b07_publish_without_subscribers_is_not_an_error(self, broker: Broker) -> None:
        """Publishing to a topic nobody listens to returns normally, and later subscribers work."""
        topic = self.names("t")
        await broker.publish(topic, Message(b"into the void"))
        inbox = self.inbox()
        await self.subscribe(broker, topic, inbox)
        await broker.publish(topic, Message(b"heard"))
        await inbox.wait_for(b"heard")

    @requires("ordered")
    async def test_b08_one_publisher_is_delivered_in_order(self, broker: Broker) -> None:
        """With "ordered", each subscriber sees one publisher's messages in publish order."""
        topic, first, second = self.names("t"), self.inbox(), self.inbox()
        await self.subscribe(broker, topic, first)
        await self.subscribe(broker, topic, second)
        bodies = [f"{i:03d}".encode() for i in range(100)]
        await self.publish_all(broker, topic, bodies)
        await first.wait(len(bodies))
        await second.wait(len(bodies))
        assert first.bodies == bodies, "first subscriber got the messages out of order"
        assert second.bodies == bodies, "second subscriber got the messages out of order"

    # -- subscribers -----------------------------------------------------------------------

    async def test_b09_topics_do_not_cross_talk(self, broker: Broker) -> None:
        """A subscriber gets the messages of its own topic and none of another's."""
        a, b = self.names("a"), self.names("b")
        inbox_a, inbox_b = self.inbox(), self.inbox()
        await self.subscribe(broker, a, inbox_a)
        await self.subscribe(broker, b, inbox_b)
        await self.publish_all(broker, a, [b"a1", b"a2"])
        await self.publish_all(broker, b, [b"b1"])
        await inbox_a.wait(2)
        await inbox_b.wait(1)
        await self.quiet()
        assert sorted(inbox_a.bodies) == [b"a1", b"a2"]
        assert inbox_b.bodies == [b"b1"]
        assert {e.topic for e in inbox_a.events} == {a}

    async def test_b10_every_broadcast_subscriber_gets_every_message(self, broker: Broker) -> None:
        """Three subscribers without a queue on one topic each receive all the messages."""
        topic = self.names("t")
        inboxes = [self.inbox() for _ in range(3)]
        for inbox in inboxes:
            await self.subscribe(broker, topic, inbox)
        bodies = [f"m{i}".encode() for i in range(10)]
        await self.publish_all(broker, topic, bodies)
        for inbox in inboxes:
            await inbox.wait(len(bodies))
        await self.quiet()
        for inbox in inboxes:
            assert sorted(inbox.bodies) == sorted(bodies)

    async def test_b11_unsubscribe_stops_only_that_subscriber_and_is_idempotent(self, broker: Broker) -> None:
        """After unsubscribe() returns its handler is not called again; the others keep receiving."""
        topic, gone, staying = self.names("t"), self.inbox(), self.inbox()
        subscriber = await broker.subscribe(topic, gone)
        await self.subscribe(broker, topic, staying)
        assert subscriber.topic == topic and subscriber.queue is None
        await broker.publish(topic, Message(b"before"))
        await gone.wait_for(b"before")
        await subscriber.unsubscribe()
        await subscriber.unsubscribe()
        await broker.publish(topic, Message(b"after"))
        await staying.wait_for(b"after")
        await self.quiet()
        assert gone.bodies == [b"before"], "a handler was called after unsubscribe() returned"

    async def test_b12_unsubscribe_from_inside_the_handler(self, broker: Broker) -> None:
        """A handler may unsubscribe its own subscription without deadlocking; it then gets nothing more."""
        topic = self.names("t")
        seen: list[bytes] = []
        holder: list[Subscriber] = []

        async def handler(event: Event) -> None:
            seen.append(event.message.body)
            await holder[0].unsubscribe()

        holder.append(await self.subscribe(broker, topic, handler))  # type: ignore[arg-type]
        await broker.publish(topic, Message(b"first"))
        await self.eventually(lambda: seen == [b"first"], "the first delivery")
        await broker.publish(topic, Message(b"second"))
        await self.quiet()
        assert seen == [b"first"]

    async def test_b13_handler_failure_keeps_the_subscription(self, broker: Broker) -> None:
        """A handler that raises gets later messages; the error is on the event, never raised to the publisher."""
        topic, inbox = self.names("t"), self.inbox(fail=1)
        await self.subscribe(broker, topic, inbox)
        await broker.publish(topic, Message(b"boom"))
        await inbox.wait(1)
        await broker.publish(topic, Message(b"fine"))
        await inbox.wait_for(b"fine")
        failed = inbox.events[0]
        assert isinstance(failed.error, RuntimeError), f"Event.error is {failed.error!r}, not the handler's exception"

    # -- queue groups ----------------------------------------------------------------------

    @requires("queue")
    async def test_b14_queue_group_members_share_each_message_once(self, broker: Broker) -> None:
        """Each message reaches exactly one member of each queue group, and every broadcast subscriber."""
        topic = self.names("t")
        group_a = [self.inbox() for _ in range(3)]
        group_b = [self.inbox() for _ in range(2)]
        everyone = self.inbox()
        for inbox in group_a:
            await self.subscribe(broker, topic, inbox, queue=self.names("qa"))
        for inbox in group_b:
            await self.subscribe(broker, topic, inbox, queue=self.names("qb"))
        await self.subscribe(broker, topic, everyone)
        bodies = [f"m{i:02d}".encode() for i in range(30)]
        await self.publish_all(broker, topic, bodies)
        await everyone.wait(len(bodies))

        def complete(group: list[Inbox]) -> None:
            total = sum(len(i.events) for i in group)
            assert total >= len(bodies), f"a queue group received {total} of {len(bodies)} messages"

        await self.eventually(lambda: complete(group_a), "queue group A receiving every message")
        await self.eventually(lambda: complete(group_b), "queue group B receiving every message")
        await self.quiet()
        for label, group in (("A", group_a), ("B", group_b)):
            counts = Counter(body for inbox in group for body in inbox.bodies)
            twice = sorted(body.decode() for body, n in counts.items() if n > 1)
            assert not twice, f"queue group {label} received these messages more than once: {', '.join(twice)}"
            assert sorted(counts) == bodies
        assert sorted(everyone.bodies) == bodies

    @requires("queue")
    async def test_b15_queue_member_leaving_keeps_the_group_receiving(self, broker: Broker) -> None:
        """When one member of a queue group unsubscribes, the others get every later message."""
        topic, queue = self.names("t"), self.names("q")
        leaving, staying = self.inbox(), self.inbox()
        subscriber = await broker.subscribe(topic, leaving, queue=queue)
        await self.subscribe(broker, topic, staying, queue=queue)
        assert subscriber.queue == queue
        await subscriber.unsubscribe()
        bodies = [f"m{i}".encode() for i in range(10)]
        await self.publish_all(broker, topic, bodies)
        await staying.wait(len(bodies))
        assert sorted(staying.bodies) == bodies
        assert leaving.events == []

    @absent("queue")
    async def test_b16_queue_without_capability_raises_not_supported(self, broker: Broker) -> None:
        """Without "queue", subscribe(queue=...) raises NotSupported."""
        with pytest.raises(NotSupported):
            await broker.subscribe(self.names("t"), self.inbox(), queue=self.names("q"))

    # -- acknowledgement -------------------------------------------------------------------

    @requires("ack")
    async def test_b17_manual_ack_delivers_once(self, broker: Broker) -> None:
        """With auto_ack=False, a handler that acks gets each message once, and its event says "ack"."""
        topic = self.names("t")
        events: list[Event] = []

        async def handler(event: Event) -> None:
            events.append(event)
            await event.ack()
            await event.nack()  # the first settlement wins; this must do nothing

        await self.subscribe(broker, topic, handler, auto_ack=False)  # type: ignore[arg-type]
        await self.publish_all(broker, topic, [b"1", b"2"])
        await self.eventually(lambda: len(events) >= 2, "two deliveries")
        await self.quiet()
        assert sorted(e.message.body for e in events) == [b"1", b"2"], "an acked message was delivered again"
        assert all(e.outcome == "ack" for e in events)

    @absent("ack")
    async def test_b18_manual_ack_without_capability_raises_not_supported(self, broker: Broker) -> None:
        """Without "ack", subscribe(auto_ack=False) raises NotSupported."""
        with pytest.raises(NotSupported):
            await broker.subscribe(self.names("t"), self.inbox(), auto_ack=False)

    @requires("nack")
    async def test_b19_nack_with_requeue_redelivers_and_without_drops(self, broker: Broker) -> None:
        """nack(requeue=True) brings the message back; nack(requeue=False) and a later ack do not."""
        topic = self.names("t")
        seen: list[bytes] = []

        async def handler(event: Event) -> None:
            seen.append(event.message.body)
            if event.message.body == b"retry" and seen.count(b"retry") == 1:
                await event.nack(requeue=True)
            elif event.message.body == b"drop":
                await event.nack(requeue=False)

        await self.subscribe(broker, topic, handler)  # type: ignore[arg-type]
        await self.publish_all(broker, topic, [b"retry", b"drop", b"done"])
        await self.eventually(lambda: seen.count(b"retry") >= 2 and b"done" in seen, "the redelivery")
        await self.quiet()
        assert seen.count(b"retry") == 2, f"a requeued message was delivered {seen.count(b'retry')} times, not 2"
        assert seen.count(b"drop") == 1, "a message nacked without requeue was delivered again"

    @requires("nack")
    async def test_b20_failed_handler_gets_the_message_again(self, broker: Broker) -> None:
        """With "nack", a message whose handler raised is redelivered (a bounded number of times)."""
        topic, inbox = self.names("t"), self.inbox(fail=1)
        await self.subscribe(broker, topic, inbox)
        await broker.publish(topic, Message(b"again"))
        await self.eventually(lambda: inbox.bodies.count(b"again") >= 2, "the redelivery after a failure")

    # -- input and limits ------------------------------------------------------------------

    async def test_b21_bad_input_raises_bad_request(self, broker: Broker) -> None:
        """Empty or spaced topics, a non-Message, a non-callable handler and an empty queue raise BadRequest."""
        for topic in ("", "has space", "tab\t", None):
            with pytest.raises(BadRequest):
                await broker.publish(topic, Message(b"x"))  # type: ignore[arg-type]
            with pytest.raises(BadRequest):
                await broker.subscribe(topic, self.inbox())  # type: ignore[arg-type]
        with pytest.raises(BadRequest):
            await broker.publish(self.names("t"), b"not a message")  # type: ignore[arg-type]
        with pytest.raises(BadRequest):
            await broker.subscribe(self.names("t"), "not callable")  # type: ignore[arg-type]
        for queue in ("", "a queue"):
            with pytest.raises(BadRequest):
                await broker.subscribe(self.names("t"), self.inbox(), queue=queue)

    async def test_b22_max_message_size_is_enforced(self) -> None:
        """A body of exactly max_message_size is delivered; one byte more raises MessageTooLarge."""
        limit = 64 * 1024
        broker = await self.another(max_message_size=limit)
        topic, inbox = self.names("t"), self.inbox()
        await self.subscribe(broker, topic, inbox)
        with pytest.raises(MessageTooLarge):
            await broker.publish(topic, Message(b"x" * (limit + 1)))
        body = bytes(range(256)) * (limit // 256)
        await broker.publish(topic, Message(body))
        await inbox.wait(1)
        assert inbox.bodies == [body]

    @requires("queue")
    async def test_b24_a_slow_queue_member_gets_every_message_whose_publish_returned(self) -> None:
        """Publishers faster than a queue member: each publish returns (then the message is delivered) or raises.

        A bounded backlog may make publish wait, or fail with a typed error (a MicroError), but a
        message whose publish returned must not be dropped because the consumer fell behind.
        """
        broker = await self.another(**self.slow_consumer_options)
        topic, queue = self.names("t"), self.names("q")
        received: list[bytes] = []

        async def slow(event: Event) -> None:
            received.append(event.message.body)
            await asyncio.sleep(0.005)

        subscriber = await broker.subscribe(topic, slow, queue=queue)
        self.later(subscriber.unsubscribe)
        confirmed: list[bytes] = []
        refused: list[MicroError] = []

        async def publisher(k: int) -> None:
            for i in range(50):
                body = f"{k}:{i}".encode()
                try:
                    await broker.publish(topic, Message(body))
                except MicroError as exc:  # back-pressure that gave up: allowed, the message is not confirmed
                    refused.append(exc)
                else:
                    confirmed.append(body)

        await asyncio.wait_for(asyncio.gather(*(publisher(k) for k in range(4))), timeout=max(60.0, self.timeout))
        assert confirmed, f"every publish failed, e.g. {refused[0]!r}"

        def all_delivered() -> None:
            missing = set(confirmed) - set(received)
            assert not missing, f"{len(missing)} of {len(confirmed)} confirmed messages not delivered"

        await eventually(all_delivered, timeout=max(30.0, self.timeout), what="every confirmed message arriving")

    # -- delivery after unsubscribe, settlement, logging -------------------------------------

    async def test_b25_no_handler_call_starts_after_unsubscribe_returns(self, broker: Broker) -> None:
        """With messages still in flight, no handler call begins once unsubscribe() has returned."""
        topic = self.names("t")
        calls: list[bool] = []
        unsubscribed = False

        async def handler(event: Event) -> None:
            calls.append(unsubscribed)

        subscriber = await self.subscribe(broker, topic, handler)  # type: ignore[arg-type]
        sending = asyncio.ensure_future(self.publish_all(broker, topic, [b"%d" % i for i in range(200)]))
        self.later(lambda: _finish(sending))
        await self.eventually(lambda: len(calls) >= 5, "the first deliveries")
        await subscriber.unsubscribe()
        unsubscribed = True
        await sending
        await self.quiet()
        late = calls.count(True)
        assert late == 0, f"{late} handler call(s) started after unsubscribe() returned"

    @requires("ack")
    @requires("nack")
    async def test_b26_a_handler_that_returns_without_settling_gets_the_message_again(self, broker: Broker) -> None:
        """With auto_ack=False, returning without ack() or nack() counts as nack(requeue=True): it comes back."""
        topic = self.names("t")
        seen: list[bytes] = []

        async def handler(event: Event) -> None:
            seen.append(event.message.body)
            if seen.count(event.message.body) > 1:
                await event.ack()

        await self.subscribe(broker, topic, handler, auto_ack=False)  # type: ignore[arg-type]
        await broker.publish(topic, Message(b"unsettled"))
        await self.eventually(lambda: seen.count(b"unsettled") >= 2, "the redelivery of an unsettled message")
        await self.quiet()
        assert seen.count(b"unsettled") == 2, f"delivered {seen.count(b'unsettled')} times after being acked"

    @requires("nack")
    async def test_b27_redelivery_of_a_failing_message_is_bounded(self, broker: Broker) -> None:
        """A message whose handler always raises is redelivered a bounded number of times, then dropped."""
        topic = self.names("t")
        seen: list[int] = []

        async def handler(event: Event) -> None:
            seen.append(1)
            raise RuntimeError("always fails (conformance check)")

        await self.subscribe(broker, topic, handler)  # type: ignore[arg-type]
        await broker.publish(topic, Message(b"poison"))
        await self.eventually(lambda: len(seen) >= 2, "a redelivery")
        last = -1

        def settled() -> bool:
            nonlocal last
            steady, last = len(seen) == last, len(seen)
            return steady

        await self.eventually(settled, "redeliveries of a failing message stopping")
        await self.quiet()
        assert len(seen) == last, f"the failing message is still being redelivered ({len(seen)} deliveries)"

    async def test_b28_handler_exceptions_are_logged_on_the_micro_broker_logger(
        self, broker: Broker, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A handler's exception is logged (with its traceback) on the micro.broker logger or a child of it."""
        caplog.set_level("ERROR", logger="micro.broker")
        topic, inbox = self.names("t"), self.inbox(fail=1)
        await self.subscribe(broker, topic, inbox)
        await broker.publish(topic, Message(b"boom"))
        await inbox.wait(1)

        def logged() -> None:
            records = [r for r in caplog.records if r.name == "micro.broker" or r.name.startswith("micro.broker.")]
            assert any(r.exc_info and "deliberate failure" in str(r.exc_info[1]) for r in records), (
                f"no log record with the handler's exception on micro.broker: {[r.getMessage() for r in records]}"
            )

        await self.eventually(logged, "the handler's exception being logged")

    @requires("cross-process")
    async def test_b23_separate_instances_exchange_messages(self, broker: Broker) -> None:
        """With "cross-process", a message published on one instance reaches a subscriber on another."""
        other = await self.another()
        topic, inbox = self.names("t"), self.inbox()
        await self.subscribe(other, topic, inbox)
        probe = 0

        async def routed() -> bool:
            # The publisher may learn about a remote subscriber a moment after subscribe() returns.
            nonlocal probe
            probe += 1
            await broker.publish(topic, Message(f"probe{probe}".encode()))
            await asyncio.sleep(0.02)
            return bool(inbox.events)

        await self.eventually(routed, "the first message between instances")
        await broker.publish(topic, Message(b"real"))
        await inbox.wait_for(b"real")
        assert inbox.events[-1].topic == topic


async def _finish(task: asyncio.Future[None]) -> None:
    if not task.done():
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)
