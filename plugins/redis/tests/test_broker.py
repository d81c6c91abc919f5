"""Redis-specific behaviour of RedisBroker: streams, consumer groups, claims, redelivery bounds, faults."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable

import orjson
import pytest
import redis.asyncio as redis
from micro.broker import Event, Message, Subscriber
from micro.errors import BackendUnavailable, ConnectionClosed, InternalError, InvalidOption, Timeout, Unauthorized
from micro.plugins import get_manager
from micro_redis import RedisBroker, RedisBrokerOptions

from .conftest import ADDRESS, eventually, kill_clients


class Inbox:
    def __init__(self, *, fail: int = 0) -> None:
        self.events: list[Event] = []
        self.fail = fail

    async def __call__(self, event: Event) -> None:
        self.events.append(event)
        if len(self.events) <= self.fail:
            raise RuntimeError("deliberate failure")

    @property
    def bodies(self) -> list[bytes]:
        return [e.message.body for e in self.events]

    async def wait(self, count: int, timeout: float = 5.0) -> None:
        async def enough() -> None:
            assert len(self.events) >= count, f"{len(self.events)} of {count} arrived"

        await eventually(enough, timeout=timeout)


@pytest.fixture
async def make(prefix: str) -> AsyncIterator[Callable[..., RedisBroker]]:
    made: list[RedisBroker] = []

    def new(**options: object) -> RedisBroker:
        options.setdefault("key_prefix", prefix)
        broker = RedisBroker(RedisBrokerOptions(**options))  # type: ignore[arg-type]
        made.append(broker)
        return broker

    yield new
    for broker in made:
        await broker.close()


@pytest.fixture
async def broker(make: Callable[..., RedisBroker]) -> RedisBroker:
    b = make(claim_idle=0.2)
    await b.start()
    return b


async def quiet() -> None:
    """Room for something that must not happen (a duplicate delivery) to show up."""
    await asyncio.sleep(0.2)


# -- layout ----------------------------------------------------------------------------------------------


async def test_a_topic_is_a_stream_of_body_and_json_header(broker: RedisBroker, prefix: str, raw: redis.Redis):
    inbox = Inbox()
    await broker.subscribe("orders", inbox)
    await broker.publish("orders", Message(b"\x00body", {"Content-Type": "x/y", "É": "ü"}))
    await inbox.wait(1)
    ((_, fields),) = await raw.xrange(f"{prefix}orders")
    assert fields[b"body"] == b"\x00body"
    assert orjson.loads(fields[b"header"]) == {"Content-Type": "x/y", "É": "ü"}


async def test_a_stream_without_queue_groups_is_trimmed_to_max_length(
    make: Callable[..., RedisBroker], prefix: str, raw: redis.Redis
):
    broker = make(max_length=10)
    for i in range(600):
        await broker.publish("t", Message(str(i).encode()))
    # No group needs anything, so the check trims to max_length, exactly, after the pipeline that outgrew it.
    assert await raw.xlen(f"{prefix}t") == 10
    assert broker.dropped == {}, "no queue group missed anything"


async def test_entries_this_broker_did_not_write_are_skipped(broker: RedisBroker, prefix: str, raw: redis.Redis):
    broadcast, member = Inbox(), Inbox()
    await broker.subscribe("t", broadcast)
    await broker.subscribe("t", member, queue="q")
    await raw.xadd(f"{prefix}t", {"something": "else"})
    await raw.xadd(f"{prefix}t", {"body": b"x", "header": b"[not, json"})
    await broker.publish("t", Message(b"real"))
    await broadcast.wait(1)
    await member.wait(1)
    await quiet()
    assert broadcast.bodies == member.bodies == [b"real"]

    async def all_acked() -> None:
        assert (await raw.xpending(f"{prefix}t", "q"))["pending"] == 0

    await eventually(all_acked)


# -- queue groups ----------------------------------------------------------------------------------------


async def test_a_queue_keeps_messages_while_it_has_no_member(broker: RedisBroker, prefix: str, raw: redis.Redis):
    first = Inbox()
    subscriber = await broker.subscribe("t", first, queue="q")
    await subscriber.unsubscribe()
    groups = await raw.xinfo_groups(f"{prefix}t")
    assert [g["name"] for g in groups] == [b"q"]
    assert groups[0]["consumers"] == 0, "a member that left is still a consumer of the group"
    await broker.publish("t", Message(b"while away"))
    later = Inbox()
    await broker.subscribe("t", later, queue="q")
    await later.wait(1)
    assert later.bodies == [b"while away"]
    assert first.events == []


async def test_an_ack_from_the_handler_reaches_redis_at_once(broker: RedisBroker, prefix: str, raw: redis.Redis):
    pending: list[int] = []

    async def handler(event: Event) -> None:
        before = (await raw.xpending(f"{prefix}t", "q"))["pending"]
        await event.ack()
        pending.extend([before, (await raw.xpending(f"{prefix}t", "q"))["pending"]])

    await broker.subscribe("t", handler, queue="q", auto_ack=False)
    await broker.publish("t", Message(b"x"))

    async def handled() -> None:
        assert pending == [1, 0]

    await eventually(handled)


async def test_redeliveries_are_bounded_then_the_message_is_dropped(make: Callable[..., RedisBroker], prefix: str, raw):
    broker = make(max_redeliveries=2)
    group, broadcast = Inbox(fail=100), Inbox(fail=100)
    await broker.subscribe("t", group, queue="q")
    await broker.subscribe("t", broadcast)
    await broker.publish("t", Message(b"poison"))
    await group.wait(3)
    await broadcast.wait(3)
    await quiet()
    assert group.bodies == broadcast.bodies == [b"poison"] * 3  # one delivery and two redeliveries
    assert (await raw.xpending(f"{prefix}t", "q"))["pending"] == 0


async def test_unsettled_manual_ack_is_redelivered(broker: RedisBroker):
    seen: list[bytes] = []

    async def forgetful(event: Event) -> None:
        seen.append(event.message.body)
        if len(seen) == 2:
            await event.ack()

    await broker.subscribe("t", forgetful, queue="q", auto_ack=False)
    await broker.publish("t", Message(b"m"))

    async def twice() -> None:
        assert seen == [b"m", b"m"]

    await eventually(twice)
    await quiet()
    assert seen == [b"m", b"m"]


async def test_a_message_a_dead_member_took_is_claimed_after_claim_idle(make, prefix: str, raw: redis.Redis):
    stream = f"{prefix}t"
    await raw.xgroup_create(stream, "q", id="$", mkstream=True)
    await raw.xadd(stream, {"body": b"orphan", "header": b"{}"})
    assert await raw.xreadgroup("q", "dead", {stream: ">"}, count=1)  # delivered to a member that then died
    broker = make(claim_idle=0.3)
    inbox = Inbox()
    started = time.monotonic()
    await broker.subscribe("t", inbox, queue="q")
    await inbox.wait(1)
    assert inbox.bodies == [b"orphan"]
    assert time.monotonic() - started >= 0.2  # not before it had been idle for claim_idle
    await all_acked(raw, stream)


async def test_a_claimed_message_past_its_redeliveries_is_dropped(make, prefix: str, raw: redis.Redis):
    stream = f"{prefix}t"
    await raw.xgroup_create(stream, "q", id="$", mkstream=True)
    await raw.xadd(stream, {"body": b"poison", "header": b"{}"})
    await raw.xreadgroup("q", "dead", {stream: ">"}, count=1)
    for _ in range(3):  # each history read counts as a delivery
        await raw.xreadgroup("q", "dead", {stream: "0"}, count=1)
    broker = make(claim_idle=0.05, max_redeliveries=3)  # 4 deliveries so far: the next would be the 5th
    inbox = Inbox()
    await broker.subscribe("t", inbox, queue="q")

    async def dropped() -> None:
        assert (await raw.xpending(stream, "q"))["pending"] == 0

    await eventually(dropped)
    assert inbox.events == []


async def test_a_slow_handler_keeps_its_message_from_other_members(make, prefix: str):
    broker = make(claim_idle=0.15)
    other = make(claim_idle=0.15)
    slow_seen: list[bytes] = []
    fast = Inbox()

    async def slow(event: Event) -> None:
        slow_seen.append(event.message.body)
        await asyncio.sleep(0.6)  # four claim_idle periods

    await broker.subscribe("t", slow, queue="q")
    await broker.publish("t", Message(b"long job"))
    await eventually(lambda: _true(slow_seen))
    await other.subscribe("t", fast, queue="q")
    await asyncio.sleep(0.7)
    assert fast.events == [], "another member took a message whose handler was still running"
    assert slow_seen == [b"long job"]


async def _true(items: list[bytes]) -> None:
    assert items


async def test_unsubscribe_hands_unsettled_messages_to_the_group(make, prefix: str, raw: redis.Redis):
    leaving = make(claim_idle=0.2, prefetch=10, close_timeout=0.1)
    staying = make(claim_idle=0.2)
    started = asyncio.Event()

    async def stuck(event: Event) -> None:
        started.set()
        await asyncio.sleep(30)  # cancelled by unsubscribe after close_timeout

    subscriber = await leaving.subscribe("t", stuck, queue="q")
    for i in range(5):
        await leaving.publish("t", Message(f"m{i}".encode()))
    await asyncio.wait_for(started.wait(), 5)
    inbox = Inbox()
    await staying.subscribe("t", inbox, queue="q")
    await subscriber.unsubscribe()
    consumers = {c["name"] for c in await raw.xinfo_consumers(f"{prefix}t", "q")}
    assert subscriber._consumer.encode() not in consumers  # type: ignore[attr-defined]
    await inbox.wait(5)
    await quiet()
    assert sorted(inbox.bodies) == [f"m{i}".encode() for i in range(5)]


async def test_a_deleted_group_is_recreated(broker: RedisBroker, prefix: str, raw: redis.Redis):
    inbox = Inbox()
    await broker.subscribe("t", inbox, queue="q")
    await raw.xgroup_destroy(f"{prefix}t", "q")

    async def recreated() -> None:
        assert [g["name"] for g in await raw.xinfo_groups(f"{prefix}t")] == [b"q"]

    await eventually(recreated)
    await broker.publish("t", Message(b"after"))
    await inbox.wait(1)
    assert inbox.bodies == [b"after"]


# -- connection faults -----------------------------------------------------------------------------------


async def test_subscribers_resume_after_their_connections_are_killed(broker: RedisBroker, raw: redis.Redis):
    broadcast, member = Inbox(), Inbox()
    await broker.subscribe("t", broadcast)
    await broker.subscribe("t", member, queue="q")
    for i in range(5):
        await broker.publish("t", Message(f"a{i}".encode()))
    await broadcast.wait(5)
    await member.wait(5)
    assert await kill_clients(raw, broker.client_name) >= 3  # the shared pool's and each subscriber's
    for i in range(5):
        await broker.publish("t", Message(f"b{i}".encode()))
    await broadcast.wait(10)
    await member.wait(10)
    await quiet()
    expected = sorted([f"a{i}".encode() for i in range(5)] + [f"b{i}".encode() for i in range(5)])
    assert sorted(broadcast.bodies) == expected
    assert sorted(member.bodies) == expected, Counter(member.bodies)


async def test_a_member_delivers_what_it_was_given_before_its_connection_broke(make, prefix: str, raw):
    broker = make(claim_idle=30)  # so that only the reconnect, not a claim, can bring these back in time
    inbox = Inbox()
    subscriber = await broker.subscribe("t", inbox, queue="q")
    consumer = subscriber._consumer  # type: ignore[attr-defined]
    stream = f"{prefix}t"

    async def connected() -> None:
        assert any(c.get("name") == f"micro-broker-{consumer}" for c in await raw.client_list())

    await eventually(connected)  # its task connects a moment after subscribe() returns
    assert await kill_clients(raw, f"micro-broker-{consumer}") == 1
    # While it backs off, the group hands it three entries whose reply is lost (read here instead),
    # and one of them is trimmed from the stream before the member is back.
    await raw.xadd(stream, {"body": b"lost 1", "header": b"{}"})
    trimmed = await raw.xadd(stream, {"body": b"trimmed", "header": b"{}"})
    await raw.xadd(stream, {"body": b"lost 2", "header": b"{}"})
    given = await raw.xreadgroup("q", consumer, {stream: ">"}, count=3)
    assert len(given[0][1]) == 3, "the member read them itself: the scenario did not happen"
    await raw.xdel(stream, trimmed)
    await inbox.wait(2)
    await quiet()
    assert sorted(inbox.bodies) == [b"lost 1", b"lost 2"]

    async def acked() -> None:
        assert (await raw.xpending(stream, "q"))["pending"] == 0

    await eventually(acked)


async def test_unreachable_server_fails_start_naming_address_and_variable():
    broker = RedisBroker(RedisBrokerOptions(address=("127.0.0.1:1",), connect_timeout=2))
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"redis at 127\.0\.0\.1:1 \(MICRO_BROKER_ADDRESS\)"):
        await broker.start()
    with pytest.raises(BackendUnavailable, match="MICRO_BROKER_ADDRESS"):
        await broker.publish("t", Message(b"x"))
    with pytest.raises(BackendUnavailable):
        await broker.subscribe("t", Inbox())
    assert time.monotonic() - started < 6
    await broker.close()
    with pytest.raises(ConnectionClosed):
        await broker.publish("t", Message(b"x"))


async def test_wrong_credentials_are_unauthorized():
    broker = RedisBroker(RedisBrokerOptions(address=("redis://bad:bad@127.0.0.1:6379",)))
    with pytest.raises(Unauthorized, match="authentication failed"):
        await broker.start()


_MEMBER = """
import asyncio, sys
from micro_redis import RedisBroker, RedisBrokerOptions

async def main():
    broker = RedisBroker(RedisBrokerOptions(address=(sys.argv[1],), key_prefix=sys.argv[2], claim_idle=0.3))

    async def handler(event):
        print("handling", event.message.body.decode(), flush=True)
        await asyncio.sleep(60)

    await broker.subscribe("t", handler, queue="q")
    print("ready", flush=True)
    await asyncio.sleep(60)

asyncio.run(main())
"""


async def test_a_message_whose_member_process_was_killed_goes_to_another(make, prefix: str, raw: redis.Redis):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _MEMBER, ADDRESS, prefix, stdout=asyncio.subprocess.PIPE, env=dict(os.environ)
    )
    try:
        assert proc.stdout is not None
        stdout = proc.stdout

        async def line() -> bytes:
            return (await asyncio.wait_for(stdout.readline(), 20)).strip()

        assert await line() == b"ready"
        broker = make(claim_idle=0.3)
        await broker.publish("t", Message(b"job"))
        assert await line() == b"handling job"
        proc.kill()  # mid-handler: nobody acks it
        inbox = Inbox()
        await broker.subscribe("t", inbox, queue="q")
        await inbox.wait(1)
        assert inbox.bodies == [b"job"]
        await all_acked(raw, f"{prefix}t")
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


# -- options ---------------------------------------------------------------------------------------------


def test_options_come_from_micro_broker_variables():
    environ = {
        "MICRO_BROKER": "redis",
        "MICRO_BROKER_ADDRESS": "redis://127.0.0.1:6379/1",
        "MICRO_BROKER_MAX_LENGTH": "500",
        "MICRO_BROKER_CLAIM_IDLE": "10s",
        "MICRO_BROKER_PREFETCH": "1",
        "MICRO_BROKER_OVERFLOW": "trim",
        "MICRO_BROKER_OVERFLOW_TIMEOUT": "250ms",
    }
    broker = get_manager().create("broker", environ=environ)
    assert isinstance(broker, RedisBroker)
    assert (broker.options.max_length, broker.options.claim_idle, broker.options.prefetch) == (500, 10.0, 1)
    assert (broker.options.overflow, broker.options.overflow_timeout) == ("trim", 0.25)
    assert RedisBrokerOptions().overflow == "block", "losing confirmed messages must be asked for"
    assert broker.address == "127.0.0.1:6379/1"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MICRO_BROKER_MAX_LENGTH", "0", "integer from 1 to"),
        ("MICRO_BROKER_MAX_LENGTH", "99999999999999999999", "integer from 1 to 2147483647"),
        ("MICRO_BROKER_PREFETCH", "100000", "integer from 1 to 10000"),
        ("MICRO_BROKER_MAX_MESSAGE_SIZE", str(600 * 1024 * 1024), "integer from 1 to 536870912"),
        ("MICRO_BROKER_POOL_SIZE", "1000000000", "integer from 1 to 1024"),
        ("MICRO_BROKER_REQUEST_TIMEOUT", "100000000000000000000", "number of seconds from 0 to 86400"),
        ("MICRO_BROKER_REQUEST_TIMEOUT", "0", "more than 0 seconds"),
        ("MICRO_BROKER_OVERFLOW", "drop", "expected one of 'block', 'trim'"),
        ("MICRO_BROKER_OVERFLOW_TIMEOUT", "-1", "number of seconds from 0 to 86400"),
        ("MICRO_BROKER_OVERFLOW_TIMEOUT", "100000", "number of seconds from 0 to 86400"),
        ("MICRO_BROKER_PREFETCH", "many", "expected an integer"),
        ("MICRO_BROKER_CLAIM_IDLE", "1ms", "from 0.01 to 86400"),
        ("MICRO_BROKER_MAX_REDELIVERIES", "-1", "integer from 0 to"),
        ("MICRO_BROKER_ADDRESS", "ftp://x", "unknown scheme"),
    ],
)
def test_bad_options_name_their_variable(variable: str, value: str, message: str):
    with pytest.raises(InvalidOption, match=message) as info:
        get_manager().create("broker", environ={"MICRO_BROKER": "redis", variable: value})
    assert variable in str(info.value)


# -- concurrency -----------------------------------------------------------------------------------------


async def test_many_concurrent_publishers_wait_for_a_small_pool_instead_of_failing(make: Callable[..., RedisBroker]):
    # The pool's own wait is unfair and gives up after request_timeout: with 32 publishers on 2 connections
    # some publish used to starve and fail with "No connection available" while the others went on.
    broker = make(pool_size=2, request_timeout=0.5, claim_idle=5)
    broadcast, first, second = Inbox(), Inbox(), Inbox()
    await broker.subscribe("t", broadcast)
    await broker.subscribe("t", first, queue="q")
    await broker.subscribe("t", second, queue="q")
    total, publishers = 1_500, 32
    bodies = [str(i).encode() for i in range(total)]

    async def publisher(k: int) -> None:
        for body in bodies[k::publishers]:
            await broker.publish("t", Message(body))

    await asyncio.wait_for(asyncio.gather(*(publisher(k) for k in range(publishers))), 20)
    await broadcast.wait(total, timeout=20)

    async def all_handled() -> None:
        assert len(first.events) + len(second.events) >= total

    await eventually(all_handled, timeout=20)
    await quiet()
    assert sorted(broadcast.bodies) == sorted(bodies)
    assert sorted(first.bodies + second.bodies) == sorted(bodies)


# -- acks ------------------------------------------------------------------------------------------------


class XackSpy:
    """Wraps the connection a queue member acks on: records each XACK, and can slow, fail or cut them."""

    def __init__(self, subscriber: Subscriber) -> None:
        client = subscriber._acks._redis  # type: ignore[attr-defined]
        self.name: str = subscriber._name  # type: ignore[attr-defined]
        #: How many ids each XACK that Redis answered carried.
        self.sent: list[int] = []
        self.started = 0
        self.failed = 0
        #: Fail every XACK, before sending it, as a broken connection would.
        self.broken = False
        #: Seconds each XACK waits before it is sent.
        self.delay = 0.0
        self._cut: redis.Redis | None = None
        #: How many connections cut_next() killed (1: the one the XACK was about to go out on).
        self.killed = 0
        #: The ids carried by the XACK that went out on the killed connection, and what it raised (None: nothing).
        self.cut: list[object] = []
        self.cut_error: Exception | None = None
        self._cutting = False
        #: Every id carried by an XACK that Redis answered.
        self.acked: set[object] = set()
        execute_command = client.execute_command
        get_connection = client.connection_pool.get_connection

        async def execute(*args: object, **options: object) -> object:
            if args[0] != "XACK":
                return await execute_command(*args, **options)
            ids = list(args[3:])
            self.started += 1
            await asyncio.sleep(self.delay)
            try:
                if self.broken:
                    raise redis.ConnectionError("connection lost (simulated)")
                result = await execute_command(*args, **options)
            except Exception as exc:
                self.failed += 1
                if self._cutting:
                    self._cutting, self.cut, self.cut_error = False, ids, exc
                raise
            if self._cutting:
                self._cutting, self.cut = False, ids
            self.sent.append(len(ids))
            self.acked.update(ids)
            return result

        async def checkout(*args: object, **options: object) -> object:
            connection = await get_connection(*args, **options)
            if self._cut is not None:
                # Checked and handed out: the XACK about to be sent on it meets a closed connection. This
                # very connection is killed, by the id it reports itself, and nothing else: killing by name
                # would take the member's read connection too, whose reconnect and read-back then race
                # this XACK (the subscriber's tests cover that on their own).
                raw, self._cut = self._cut, None
                await connection.send_command("CLIENT", "ID")
                client_id = await connection.read_response()
                self.killed = await raw.execute_command("CLIENT", "KILL", "ID", client_id, "SKIPME", "yes")
                self._cutting = True
            return connection

        client.execute_command = execute
        client.connection_pool.get_connection = checkout

    def cut_next(self, raw: redis.Redis) -> None:
        """Kill (``CLIENT KILL``) the connection the next XACK is about to be sent on, just before it is sent."""
        self._cut = raw


async def pending(raw: redis.Redis, stream: str, queue: str = "q") -> int:
    return int((await raw.xpending(stream, queue))["pending"])


async def all_acked(raw: redis.Redis, stream: str, queue: str = "q") -> None:
    """Wait until ``queue`` has nothing pending: an automatic ack is sent just after the handler returns."""

    async def check() -> None:
        assert await pending(raw, stream, queue) == 0

    await eventually(check)


async def test_acks_of_many_messages_go_out_together(make, prefix: str, raw: redis.Redis):
    broker = make(prefetch=50)
    gate = asyncio.Event()
    handled: list[bytes] = []

    async def handler(event: Event) -> None:
        await gate.wait()  # so that the rest pile up in the stream meanwhile
        handled.append(event.message.body)

    subscriber = await broker.subscribe("t", handler, queue="q")
    spy = XackSpy(subscriber)
    total = 300
    for i in range(total):
        await broker.publish("t", Message(str(i).encode()))
    gate.set()

    async def all_acked() -> None:
        assert len(handled) == total
        assert await pending(raw, f"{prefix}t") == 0

    await eventually(all_acked, timeout=10)
    assert sum(spy.sent) == total
    # One XACK per message would be 300; settled together, they go at most one per read of 50 (and the first).
    assert len(spy.sent) <= total // 50 + 2, spy.sent


async def test_an_explicit_ack_returns_once_its_own_xack_is_done(broker: RedisBroker, prefix: str, raw: redis.Redis):
    stream = f"{prefix}t"
    checked: list[int] = []

    async def handler(event: Event) -> None:
        if event.message.body == b"second":
            # The first message's automatic ack is in flight (slowed down): this one goes in the next XACK.
            await event.ack()
            entry_id = event._id  # type: ignore[attr-defined]
            rows = await raw.xpending_range(stream, "q", min=entry_id, max=entry_id, count=1)
            checked.append(len(rows))

    subscriber = await broker.subscribe("t", handler, queue="q")
    spy = XackSpy(subscriber)
    spy.delay = 0.2
    await broker.publish("t", Message(b"first"))

    async def in_flight() -> None:
        assert spy.started == 1

    await eventually(in_flight)
    await broker.publish("t", Message(b"second"))

    async def done() -> None:
        assert checked == [0], "ack() returned before Redis had the ack"

    await eventually(done)
    assert spy.sent == [1, 1]


async def test_unsubscribe_sends_the_queued_acks_first(make, prefix: str, raw: redis.Redis):
    leaving, staying = make(claim_idle=0.2), make(claim_idle=0.2)
    inbox = Inbox()
    subscriber = await leaving.subscribe("t", inbox, queue="q")
    spy = XackSpy(subscriber)
    spy.delay = 0.2
    for i in range(20):
        await leaving.publish("t", Message(str(i).encode()))
    await inbox.wait(20)
    assert await pending(raw, f"{prefix}t") > 0, "the acks went out before the test could catch them queued"
    await subscriber.unsubscribe()
    assert await pending(raw, f"{prefix}t") == 0
    assert sum(spy.sent) == 20
    other = Inbox()
    await staying.subscribe("t", other, queue="q")
    await asyncio.sleep(0.5)  # past claim_idle: anything handed back would arrive
    assert other.events == []


async def test_a_failed_xack_keeps_its_acks_until_it_goes_through(broker: RedisBroker, prefix: str, raw: redis.Redis):
    stream = f"{prefix}t"
    inbox = Inbox()
    # How the explicit ack ended: the error it raised, or None if it returned.
    outcomes: list[Exception | None] = []

    async def handler(event: Event) -> None:
        await inbox(event)
        if event.message.body == b"explicit":
            try:
                await event.ack()
            except BackendUnavailable as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)

    subscriber = await broker.subscribe("t", handler, queue="q")
    spy = XackSpy(subscriber)
    spy.broken = True
    for body in (b"a", b"b", b"explicit"):
        await broker.publish("t", Message(body))
    await inbox.wait(3)

    # The explicit ack waits for the next XACK attempt, which comes after a backoff: the handler is
    # in the inbox before that attempt fails.
    async def ack_ended() -> None:
        assert outcomes, "the explicit ack has neither returned nor failed"

    await eventually(ack_ended)
    (error,) = outcomes
    assert error is not None, "an explicit ack returned although Redis did not have it"
    assert "connection lost" in str(error)
    # Meanwhile the member's read connection breaks too: it reads back its pending messages, whose acks
    # are queued, and must not deliver them again.
    assert await kill_clients(raw, spy.name) >= 1
    await asyncio.sleep(0.5)
    assert spy.failed >= 2
    assert spy.sent == []
    assert await pending(raw, stream) == 3
    spy.broken = False

    async def acked() -> None:
        assert await pending(raw, stream) == 0

    await eventually(acked, timeout=10)
    await quiet()
    assert inbox.bodies == [b"a", b"b", b"explicit"]


async def test_acks_that_go_through_while_a_member_reads_back_are_not_delivered_again(
    broker: RedisBroker, prefix: str, raw: redis.Redis
):
    inbox = Inbox()
    subscriber = await broker.subscribe("t", inbox, queue="q")
    spy = XackSpy(subscriber)
    spy.broken = True
    for body in (b"0", b"1", b"2"):
        await broker.publish("t", Message(body))
    await inbox.wait(3)
    # After a reconnect the member reads its pending entries back. Redis answers with all three, and
    # only then takes their XACK, before the member has looked at what it read.
    read = subscriber._redis.execute_command  # type: ignore[attr-defined]

    async def read_back(*args: object, **options: object) -> object:
        reply = await read(*args, **options)
        if args[0] == "XREADGROUP" and args[-1] == b"0" and spy.broken:
            spy.broken = False

            async def acked() -> None:
                assert spy.sent, "the queued acks did not go through"

            await eventually(acked)
        return reply

    subscriber._redis.execute_command = read_back  # type: ignore[attr-defined]
    assert await kill_clients(raw, spy.name) >= 1

    async def settled() -> None:
        assert not spy.broken, "the member did not read back"
        assert await pending(raw, f"{prefix}t") == 0

    await eventually(settled, timeout=10)
    await quiet()
    assert inbox.bodies == [b"0", b"1", b"2"]


async def test_an_xack_cut_off_by_a_killed_connection_is_sent_again(broker: RedisBroker, prefix: str, raw):
    inbox = Inbox()
    subscriber = await broker.subscribe("t", inbox, queue="q")
    spy = XackSpy(subscriber)
    spy.cut_next(raw)
    for i in range(5):
        await broker.publish("t", Message(str(i).encode()))
    await inbox.wait(5)

    async def acked() -> None:
        assert await pending(raw, f"{prefix}t") == 0
        # Redis has the XACK a moment before its reply reaches the spy.
        assert sum(spy.sent) >= 5

    await eventually(acked, timeout=10)
    assert spy.killed == 1, "the connection of the first XACK was not killed"
    assert spy.cut, "no XACK went out on the killed connection"
    assert isinstance(spy.cut_error, redis.ConnectionError), f"the XACK on the killed connection: {spy.cut_error!r}"
    # What it carried went out again, on a new connection, in an XACK that Redis answered.
    assert set(spy.cut) <= spy.acked
    await quiet()
    assert sorted(inbox.bodies) == [str(i).encode() for i in range(5)]


async def test_acks_that_cannot_be_sent_by_unsubscribe_are_redelivered(make, prefix: str, raw: redis.Redis):
    leaving = make(claim_idle=0.2, request_timeout=0.5)
    staying = make(claim_idle=0.2)
    inbox = Inbox()
    subscriber = await leaving.subscribe("t", inbox, queue="q")
    spy = XackSpy(subscriber)
    spy.broken = True
    for i in range(3):
        await leaving.publish("t", Message(str(i).encode()))
    await inbox.wait(3)
    started = time.monotonic()
    await subscriber.unsubscribe()
    assert time.monotonic() - started < 2
    other = Inbox()
    await staying.subscribe("t", other, queue="q")
    await other.wait(3)  # at least once: handled by the leaving member, but Redis never heard of it
    assert sorted(other.bodies) == [b"0", b"1", b"2"]

    async def acked() -> None:
        assert await pending(raw, f"{prefix}t") == 0

    await eventually(acked)


# -- publish pipelines -----------------------------------------------------------------------------------


class PipelineSpy:
    """Wraps the broker's shared client: records how many publishes (XADDs) each pipeline carried.

    A pipeline may also carry backlog checks (EVALSHA), which are not counted; a pipeline that carries
    only checks is counted in ``checks_alone``, not in ``sizes``.
    """

    def __init__(self, broker: RedisBroker) -> None:
        client = broker._redis  # type: ignore[attr-defined]
        assert client is not None, "start() the broker first"
        self.sizes: list[int] = []
        self.checks_alone = 0
        #: Seconds each pipeline waits before it is sent.
        self.delay = 0.0
        make = client.pipeline

        def pipeline(*args: object, **options: object) -> object:
            pipe = make(*args, **options)
            execute = pipe.execute

            async def counted(*args: object, **options: object) -> object:
                publishes = sum(1 for args, _ in pipe.command_stack if args[0] == "XADD")
                if publishes:
                    self.sizes.append(publishes)
                else:
                    self.checks_alone += 1
                await asyncio.sleep(self.delay)
                return await execute(*args, **options)

            pipe.execute = counted
            return pipe

        client.pipeline = pipeline


async def test_concurrent_publishes_share_pipelines(broker: RedisBroker):
    inbox = Inbox()
    await broker.subscribe("t", inbox)
    spy = PipelineSpy(broker)
    publishers, each = 32, 20

    async def publisher(k: int) -> None:
        for i in range(each):
            await broker.publish("t", Message(f"{k}:{i}".encode()))

    await asyncio.gather(*(publisher(k) for k in range(publishers)))
    assert sum(spy.sizes) == publishers * each
    # One round trip per publish would be 640 pipelines (or commands); waiting together, they share them.
    assert len(spy.sizes) <= publishers * each // 8, spy.sizes
    await inbox.wait(publishers * each)
    for k in range(publishers):
        mine = [body for body in inbox.bodies if body.startswith(f"{k}:".encode())]
        assert mine == [f"{k}:{i}".encode() for i in range(each)], "one publisher's messages out of order"


async def test_a_failing_publish_in_a_pipeline_fails_alone(broker: RedisBroker, prefix: str, raw: redis.Redis):
    await raw.set(f"{prefix}not-a-stream", b"x")
    spy = PipelineSpy(broker)
    results = await asyncio.gather(
        broker.publish("t", Message(b"1")),
        broker.publish("not-a-stream", Message(b"2")),
        broker.publish("t", Message(b"3")),
        return_exceptions=True,
    )
    assert spy.sizes == [3]
    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], InternalError)
    assert "WRONGTYPE" in str(results[1])
    assert [fields[b"body"] for _, fields in await raw.xrange(f"{prefix}t")] == [b"1", b"3"]


async def test_a_publish_cancelled_before_its_turn_is_not_sent(broker: RedisBroker, prefix: str, raw: redis.Redis):
    spy = PipelineSpy(broker)
    spy.delay = 0.2
    first = asyncio.create_task(broker.publish("t", Message(b"sent")))

    async def in_flight() -> None:
        assert spy.sizes == [1]

    await eventually(in_flight)
    second = asyncio.create_task(broker.publish("t", Message(b"cancelled")))
    await asyncio.sleep(0.01)  # queued behind the pipeline in flight
    second.cancel()
    await first
    with pytest.raises(asyncio.CancelledError):
        await second
    await quiet()
    assert spy.sizes == [1]
    assert [fields[b"body"] for _, fields in await raw.xrange(f"{prefix}t")] == [b"sent"]


# -- overflow: a backlog that reaches max_length -----------------------------------------------------------


class Slow:
    """A handler slower than the publishers: records each body, then takes ``pause`` seconds."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.bodies: list[bytes] = []

    async def __call__(self, event: Event) -> None:
        self.bodies.append(event.message.body)
        await asyncio.sleep(self.pause)


async def caught_up(raw: redis.Redis, stream: str, group: str) -> None:
    """The group has been given the stream's last entry and settled everything it was given."""
    (info,) = [g for g in await raw.xinfo_groups(stream) if g["name"] == group.encode()]
    last = (await raw.xrevrange(stream, count=1))[0][0]
    assert (info["last-delivered-id"], info["pending"]) == (last, 0), info


async def publish_all(broker: RedisBroker, publishers: int, each: int) -> list[bytes]:
    """``publishers`` tasks publishing ``each`` messages as fast as they can; the bodies whose publish returned."""
    confirmed: list[bytes] = []

    async def publisher(k: int) -> None:
        for i in range(each):
            body = f"{k}:{i}".encode()
            await broker.publish("t", Message(body))
            confirmed.append(body)

    await asyncio.gather(*(publisher(k) for k in range(publishers)))
    return confirmed


async def test_with_back_pressure_a_slow_queue_member_loses_no_confirmed_message(
    make: Callable[..., RedisBroker], prefix: str, raw: redis.Redis
):
    # Issue #10: with a consumer slower than the publisher, the stream used to be trimmed at max_length
    # and confirmed messages vanished without a log line. "block" is the default.
    publisher, consumer = make(max_length=50, overflow_timeout=60), make(prefetch=8)
    assert publisher.options.overflow == "block"
    slow = Slow(0.004)
    await consumer.subscribe("t", slow, queue="q")
    longest = 0
    done = asyncio.Event()

    async def watch() -> None:
        nonlocal longest
        while not done.is_set():
            longest = max(longest, await raw.xlen(f"{prefix}t"))
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        confirmed = await publish_all(publisher, publishers=8, each=75)
    finally:
        done.set()
        await watcher
    assert len(confirmed) == 600
    await eventually(lambda: caught_up(raw, f"{prefix}t", "q"), timeout=60)
    missing = set(confirmed) - set(slow.bodies)
    assert not missing, f"{len(missing)} confirmed message(s) never delivered, e.g. {sorted(missing)[:5]}"
    assert publisher.dropped == {}
    # The publishers waited instead: the stream stayed near max_length (checks run once per pipeline).
    assert longest <= 2 * 50 + 8, longest


async def test_with_back_pressure_a_full_backlog_fails_publish_with_timeout_and_publishes_nothing(
    make: Callable[..., RedisBroker], prefix: str, raw: redis.Redis
):
    publisher, consumer = make(max_length=5, overflow_timeout=0.3), make(prefetch=2)
    release = asyncio.Event()

    async def stuck(event: Event) -> None:
        await release.wait()

    await consumer.subscribe("t", stuck, queue="q")
    for i in range(5):  # the member holds 2 unsettled, 3 wait in the group: the backlog is full
        await publisher.publish("t", Message(str(i).encode()))
    started = time.monotonic()
    with pytest.raises(Timeout, match=r"topic 't' waited 0.3s for room and was not sent.*max_length=5") as caught:
        await publisher.publish("t", Message(b"too many"))
    assert time.monotonic() - started >= 0.3
    assert "MICRO_BROKER_OVERFLOW" in str(caught.value)
    bodies = [fields[b"body"] for _, fields in await raw.xrange(f"{prefix}t")]
    assert bodies == [b"0", b"1", b"2", b"3", b"4"], "the refused message (or a trim) changed the stream"
    # overflow_timeout=0: refused after one check, without waiting.
    instant = make(max_length=5, overflow_timeout=0)
    with pytest.raises(Timeout):
        await instant.publish("t", Message(b"refused at once"))
    # Once the member settles, there is room again.
    release.set()
    await eventually(lambda: caught_up(raw, f"{prefix}t", "q"))
    await publisher.publish("t", Message(b"room again"))
    assert (await raw.xrevrange(f"{prefix}t", count=1))[0][1][b"body"] == b"room again"


async def test_a_publish_waiting_for_room_goes_out_when_the_member_catches_up(make: Callable[..., RedisBroker]):
    publisher, consumer = make(max_length=3, overflow_timeout=30), make(prefetch=1)
    release = asyncio.Event()
    inbox: list[bytes] = []

    async def gated(event: Event) -> None:
        await release.wait()
        inbox.append(event.message.body)

    await consumer.subscribe("t", gated, queue="q")
    for i in range(3):
        await publisher.publish("t", Message(str(i).encode()))
    waiting = [asyncio.create_task(publisher.publish("t", Message(f"w{i}".encode()))) for i in range(3)]
    await quiet()
    assert not any(task.done() for task in waiting), "a publish went out although the backlog was full"
    release.set()
    await asyncio.wait_for(asyncio.gather(*waiting), timeout=30)

    async def all_in() -> None:
        assert inbox == [b"0", b"1", b"2", b"w0", b"w1", b"w2"]

    await eventually(all_in, timeout=10)


async def test_with_trimming_every_message_a_slow_member_misses_is_counted_and_logged(
    make: Callable[..., RedisBroker], prefix: str, raw: redis.Redis, caplog: pytest.LogCaptureFixture
):
    publisher, consumer = make(max_length=50, overflow="trim"), make(prefetch=8)
    slow = Slow(0.004)
    await consumer.subscribe("t", slow, queue="q")
    with caplog.at_level(logging.WARNING, logger="micro.broker"):
        confirmed = await publish_all(publisher, publishers=8, each=75)
        assert len(confirmed) == 600
        await eventually(lambda: caught_up(raw, f"{prefix}t", "q"), timeout=60)
        missing = set(confirmed) - set(slow.bodies)
        assert missing, "the member kept up: this test needs it to fall behind"
        assert publisher.dropped == {"t": len(missing)}
        await publisher.close()  # says what the rate limit held back
    told = [
        int(match.group(1))
        for record in caplog.records
        if (
            match := re.match(r"topic 't': dropped (\d+) message\(s\) no queue group had received", record.getMessage())
        )
    ]
    assert told, "no log line about the dropped messages"
    assert sum(told) == len(missing)
    assert len(told) <= 1 + 60 / 10, "the drop log is not rate-limited"


async def test_sequential_publishes_pay_no_round_trip_for_the_backlog_check(broker: RedisBroker):
    await broker.subscribe("t", Inbox(), queue="q")
    spy = PipelineSpy(broker)
    for i in range(200):
        await broker.publish("t", Message(str(i).encode()))
    # The first publish to the topic waited for one check of its own (a publisher must not add to a full
    # backlog it has not seen); after that, one pipeline per publish: checks ride along with the XADDs.
    assert spy.checks_alone == 1
    assert spy.sizes == [1] * 200


async def test_unsettled_messages_trimmed_before_a_claim_are_logged(
    make: Callable[..., RedisBroker], prefix: str, raw: redis.Redis, caplog: pytest.LogCaptureFixture
):
    # A member that died holding two messages; a trim from outside the broker removes them before anyone
    # claims them. Redis 7's XAUTOCLAIM then drops them from the group quietly: the broker says so.
    stream = f"{prefix}t"
    await raw.xgroup_create(stream, "q", id="$", mkstream=True)
    await raw.xadd(stream, {"body": b"a", "header": b"{}"})
    await raw.xadd(stream, {"body": b"b", "header": b"{}"})
    await raw.xreadgroup("q", "dead", {stream: ">"}, count=2)
    await raw.xtrim(stream, maxlen=0)
    broker = make(claim_idle=0.05)
    inbox = Inbox()
    with caplog.at_level(logging.WARNING, logger="micro.broker"):
        await broker.subscribe("t", inbox, queue="q")

        async def told() -> None:
            assert any("2 unsettled message(s) were trimmed" in r.getMessage() for r in caplog.records)

        await eventually(told)
    assert inbox.events == []


async def test_with_back_pressure_a_dead_members_unsettled_message_is_kept_until_claimed(
    make: Callable[..., RedisBroker], prefix: str, raw: redis.Redis
):
    # The backlog counts from the oldest unsettled message: the one a dead member holds must outlive any
    # number of publishes until another member claims it (before, MAXLEN trimmed it and the claim found nothing).
    stream = f"{prefix}t"
    await raw.xgroup_create(stream, "q", id="$", mkstream=True)
    await raw.xadd(stream, {"body": b"held by the dead", "header": b"{}"})
    await raw.xreadgroup("q", "dead", {stream: ">"}, count=1)
    publisher, consumer = make(max_length=10, overflow_timeout=60), make(claim_idle=0.3)
    inbox = Inbox()
    await consumer.subscribe("t", inbox, queue="q")
    bodies = [str(i).encode() for i in range(250)]
    for body in bodies:
        await publisher.publish("t", Message(body))
    await inbox.wait(len(bodies) + 1, timeout=30)
    assert sorted(inbox.bodies) == sorted([*bodies, b"held by the dead"])
