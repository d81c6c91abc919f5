"""The NATS broker beyond the contract: durability under a cut connection, dead letters, limits, errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import nats
import pytest
from micro.broker import Event, Message
from micro.errors import BackendUnavailable, BadRequest, InvalidOption
from micro_nats import NatsBroker, NatsBrokerOptions

from .conftest import eventually


def cut(broker: NatsBroker) -> None:
    """Close the broker's TCP connection under it, as a network failure would (the client reconnects).

    The server's monitoring endpoint is off here, so the cut is made on the client's socket.
    """
    nc = broker._nc
    assert nc is not None
    assert nc._transport is not None
    writer = nc._transport._io_writer  # type: ignore[attr-defined]
    writer.transport.abort()


@pytest.fixture
async def make(names: dict[str, Any]) -> AsyncIterator[Any]:
    made: list[NatsBroker] = []

    async def factory(**options: Any) -> NatsBroker:
        broker = NatsBroker(NatsBrokerOptions(**{**names, **options}))
        await broker.start()
        made.append(broker)
        return broker

    yield factory
    for broker in made:
        await broker.close()


async def test_a_durable_member_cut_off_mid_stream_loses_no_confirmed_message(make: Any) -> None:
    """JetStream: every message whose publish returned is handled, although its member was cut off mid-stream.

    The member's connection is closed under it twice while messages flow, once with a handler
    holding a message; what it had fetched and not acked comes back after ack_wait.
    """
    publisher = await make(jetstream=True)
    member = await make(jetstream=True, ack_wait=1.0, prefetch=8)
    handled: list[bytes] = []
    holding = asyncio.Event()
    release = asyncio.Event()

    async def handler(event: Event) -> None:
        if event.message.body == b"20" and not release.is_set():
            holding.set()
            await release.wait()  # cut off while this one is in the handler's hands
        handled.append(event.message.body)

    await member.subscribe("work", handler, queue="workers")
    confirmed: list[bytes] = []
    for i in range(60):
        await publisher.publish("work", Message(str(i).encode()))
        confirmed.append(str(i).encode())
        if i == 30:
            await asyncio.wait_for(holding.wait(), 10)
            cut(member)
            release.set()
        if i == 45:
            cut(member)

    async def all_handled() -> None:
        missing = sorted(set(confirmed) - set(handled), key=int)
        assert not missing, f"confirmed messages never handled: {missing}"

    await eventually(all_handled, timeout=30)
    assert 0 < handled.index(b"20") < len(handled)


async def test_a_member_that_never_acks_hands_its_messages_to_another(make: Any) -> None:
    """JetStream: messages held by a member whose connection is gone go to the group's other member."""
    publisher = await make(jetstream=True)
    stuck = await make(jetstream=True, ack_wait=0.5)
    healthy = await make(jetstream=True, ack_wait=0.5)
    got: list[bytes] = []
    never = asyncio.Event()

    async def hang(event: Event) -> None:
        await never.wait()

    async def keep(event: Event) -> None:
        got.append(event.message.body)

    await stuck.subscribe("jobs", hang, queue="q")
    for i in range(5):
        await publisher.publish("jobs", Message(f"m{i}".encode()))
    # The stuck member's connection goes away for good (its process "dies"), then the healthy one joins.
    nc = stuck._nc
    assert nc is not None
    await nc.close()
    await healthy.subscribe("jobs", keep, queue="q")

    async def moved() -> None:
        assert sorted(set(got)) == [f"m{i}".encode() for i in range(5)]

    await eventually(moved, timeout=20)
    never.set()


async def test_dead_letter_after_max_deliveries(make: Any, names: dict[str, Any], raw: nats.NATS) -> None:
    """JetStream: a handler that always fails gets its message max_deliveries times, then it is a dead letter."""
    js = raw.jetstream()
    dead_stream = names["stream"][: -len("_B")] + "_D"
    await js.add_stream(name=dead_stream, subjects=[f"{names['dead_letter_prefix']}.>"])
    broker = await make(jetstream=True, max_deliveries=3)
    attempts: list[int] = []

    async def failing(event: Event) -> None:
        attempts.append(1)
        raise RuntimeError("always fails (test)")

    await broker.subscribe("orders", failing, queue="billing")
    await broker.publish("orders", Message(b"poison", {"Trace": "t-1"}))

    async def dead() -> Any:
        info = await js.stream_info(dead_stream)
        assert info.state.messages == 1, "no dead letter yet"
        return await js.get_last_msg(dead_stream, f"{names['dead_letter_prefix']}.orders")

    stored = await eventually(dead, timeout=20)
    assert stored.data == b"poison"
    assert len(attempts) == 3
    header = stored.headers or {}
    assert '"Micro-Dead-Deliveries":"3"' in header["Micro-Header"]
    assert '"Trace":"t-1"' in header["Micro-Header"]
    # Acked once dead-lettered: the group holds nothing, and nothing more is delivered.
    await asyncio.sleep(1.0)
    assert len(attempts) == 3
    info = await js.stream_info(names["stream"])
    assert info.state.messages == 0


async def test_core_dead_letter_after_max_deliveries(make: Any, names: dict[str, Any], raw: nats.NATS) -> None:
    """Core NATS: the subscriber redelivers locally max_deliveries times, then publishes the dead letter."""
    sub = await raw.subscribe(f"{names['dead_letter_prefix']}.t")
    await raw.flush()
    broker = await make(max_deliveries=2)
    calls = 0

    async def failing(event: Event) -> None:
        nonlocal calls
        calls += 1
        await event.nack(requeue=True)

    await broker.subscribe("t", failing)
    await broker.publish("t", Message(b"x"))
    dead = await sub.next_msg(timeout=10)
    assert dead.data == b"x"
    assert calls == 2


async def test_a_slow_handler_keeps_its_message(make: Any) -> None:
    """JetStream: a handler running longer than ack_wait is not given a second delivery meanwhile."""
    broker = await make(jetstream=True, ack_wait=0.3)
    calls: list[float] = []

    async def slow(event: Event) -> None:
        calls.append(time.monotonic())
        await asyncio.sleep(1.2)

    await broker.subscribe("slow", slow, queue="q")
    await broker.publish("slow", Message(b"x"))
    await eventually(lambda: _true(calls), timeout=10)
    await asyncio.sleep(2.0)
    assert len(calls) == 1, "the message was delivered again while its handler ran"


async def _true(items: list[Any]) -> None:
    assert items


async def test_unreachable_server_fails_start_quickly_and_names_the_variable() -> None:
    broker = NatsBroker(NatsBrokerOptions(address=("127.0.0.1:1",), connect_timeout=1.0))
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="MICRO_BROKER_ADDRESS"):
        await asyncio.wait_for(broker.start(), 30)
    assert time.monotonic() - started < 30


async def test_topics_that_are_not_subjects_are_refused(make: Any) -> None:
    broker = await make()
    for topic in ("a.*", "a.>", ".a", "a..b", "a."):
        with pytest.raises(BadRequest, match="NATS subject"):
            await broker.publish(topic, Message(b"x"))
        with pytest.raises(BadRequest, match="NATS subject"):
            await broker.subscribe(topic, _ignore)


async def test_a_topic_too_long_for_a_subject_is_a_bad_request_and_the_connection_survives(make: Any) -> None:
    """A topic past the subject bound is refused before it reaches the server, which would drop the connection."""
    broker = await make()
    with pytest.raises(BadRequest, match="at most"):
        await broker.publish("t" * 5000, Message(b"x"))
    got: list[bytes] = []

    async def keep(event: Event) -> None:
        got.append(event.message.body)

    await broker.subscribe("short", keep)
    await broker.publish("short", Message(b"still connected"))
    await eventually(lambda: _true(got), timeout=10)


async def _ignore(event: Event) -> None:
    pass


async def test_header_with_any_characters_round_trips(make: Any) -> None:
    """A header holding newlines, colons and a Nats-* name arrives unchanged and never reaches the server's headers."""
    broker = await make(jetstream=True)
    got: list[Event] = []

    async def keep(event: Event) -> None:
        got.append(event)

    await broker.subscribe("h", keep, queue="q")
    header = {"Nats-Expected-Stream": "nope", "multi": "a\r\nb: c", "ünï": "cödé"}
    await broker.publish("h", Message(b"x", header))
    await eventually(lambda: _true(got), timeout=10)
    assert dict(got[0].message.header) == header


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("subject_prefix", "a b"),
        ("subject_prefix", "a.*"),
        ("stream", "a.b"),
        ("max_deliveries", 0),
        ("ack_wait", 0),
        ("address", ("http://x:1",)),
    ],
)
def test_bad_options_name_the_option(option: str, value: Any) -> None:
    with pytest.raises(InvalidOption) as info:
        NatsBrokerOptions(**{option: value})
    assert option in str(info.value)


def test_the_plugin_is_found_by_name_without_importing_the_driver() -> None:
    """micro finds ``nats`` through the entry point; loading the plugin's hooks does not import nats-py."""
    code = (
        "import sys, micro, micro_nats, micro_nats.plugin\n"
        "from micro.plugins import get_manager\n"
        "assert 'nats' in get_manager().names('broker')\n"
        "micro_nats.NatsBrokerOptions(jetstream=True)\n"
        "assert 'nats' not in sys.modules and 'micro_nats.broker' not in sys.modules, 'imported too early'\n"
        "broker = micro.create('broker', 'nats')\n"
        "assert type(broker).__name__ == 'NatsBroker'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
