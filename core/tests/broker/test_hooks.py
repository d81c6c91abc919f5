"""The Broker and Subscriber bases enforce the contract: a backend with only the hooks gets it for free.

``Bare`` is the smallest broker: a queue per subscriber, ``_publish``/``_subscribe`` and a
subscriber with ``_next``/``_handle``. Each test fails if the base stops enforcing one rule.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from micro.broker import Broker, Event, Message, Subscriber
from micro.broker.base import Handler, dispatch
from micro.broker.options import SubscribeOptions
from micro.errors import BackendUnavailable, BadRequest, ConnectionClosed, MessageTooLarge, MicroError, NotSupported


class DriverError(Exception):
    pass


class BareSubscriber(Subscriber):
    _close_timeout = 0.2

    def __init__(self, topic: str, options: SubscribeOptions, handler: Handler) -> None:
        super().__init__(topic, options)
        self.inbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self.handler = handler
        self.finished = False

    async def _next(self) -> Message | None:
        return await self.inbox.get()

    async def _handle(self, item: Message) -> None:
        await dispatch(self.handler, Event(self.topic, item), auto_ack=True)

    async def _finish(self) -> None:
        self.finished = True

    async def _stop_delivery(self) -> None:
        self.inbox.put_nowait(None)


class Bare(Broker):
    def __init__(self) -> None:
        super().__init__()
        self.subs: list[BareSubscriber] = []
        self.calls: list[str] = []
        self.fail_with: Exception | None = None

    @property
    def address(self) -> str:
        return "bare"

    async def _start(self) -> None:
        self.calls.append("start")

    async def _close(self) -> None:
        # Every subscription has stopped by the time the backend closes.
        self.calls.append(f"close with {sum(not s.finished for s in self.subs)} running")

    async def _publish(self, topic: str, message: Message) -> None:
        self.calls.append(f"publish {topic}")
        if self.fail_with is not None:
            raise self.fail_with
        for sub in self.subs:
            if sub.topic == topic and not sub._stopping:
                sub.inbox.put_nowait(message)

    async def _subscribe(self, topic: str, handler: Handler, options: SubscribeOptions) -> Subscriber:
        self.calls.append(f"subscribe {topic}")
        sub = BareSubscriber(topic, options, handler)
        sub._start_task(f"bare:{topic}")
        self.subs.append(sub)
        return sub

    def _translate(self, exc: Exception) -> MicroError | None:
        return BackendUnavailable(f"bare: {exc}") if isinstance(exc, DriverError) else None


async def noop(event: Event) -> None:
    pass


async def test_use_before_start_starts_the_broker_once_and_use_after_close_is_refused() -> None:
    broker = Bare()
    await asyncio.gather(broker.publish("t", Message(b"1")), broker.publish("t", Message(b"2")))
    assert broker.calls == ["start", "publish t", "publish t"]
    await broker.close()
    for call in (broker.publish("t", Message(b"x")), broker.subscribe("t", noop)):
        with pytest.raises(ConnectionClosed, match="Bare is closed; start"):
            await call
    await broker.start()
    await broker.publish("t", Message(b"x"))
    await broker.close()


async def test_bad_arguments_and_missing_capabilities_never_reach_a_hook() -> None:
    broker = Bare()
    bad: list[tuple[Any, type[Exception]]] = [
        (broker.publish("two words", Message()), BadRequest),
        (broker.publish("t", b"raw"), BadRequest),  # type: ignore[arg-type]
        (broker.publish("t", Message(b"x" * (broker.options.max_message_size + 1))), MessageTooLarge),
        (broker.subscribe("", noop), BadRequest),
        (broker.subscribe("t", "not callable"), BadRequest),  # type: ignore[arg-type]
        (broker.subscribe("t", noop, queue="q"), NotSupported),
        (broker.subscribe("t", noop, auto_ack=False), NotSupported),
    ]
    for call, error in bad:
        with pytest.raises(error):
            await call
    assert broker.calls == []


async def test_driver_errors_are_translated() -> None:
    async with Bare() as broker:
        broker.fail_with = DriverError("socket gone")
        with pytest.raises(BackendUnavailable, match="bare: socket gone"):
            await broker.publish("t", Message())


async def test_close_stops_every_subscription_before_the_backend_closes() -> None:
    broker = Bare()
    got: list[bytes] = []

    async def handler(event: Event) -> None:
        got.append(event.message.body)

    subs = [await broker.subscribe("t", handler), await broker.subscribe("u", handler)]
    await broker.publish("t", Message(b"hello"))
    for _ in range(100):
        if got:
            break
        await asyncio.sleep(0.01)
    assert got == [b"hello"]
    await subs[1].unsubscribe()
    await broker.close()
    assert broker.calls[-1] == "close with 0 running"
    assert all(s._task is not None and s._task.done() for s in subs)


async def test_unsubscribe_waits_for_the_handler_then_cancels_it_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def stuck(event: Event) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with Bare() as broker:
        sub = await broker.subscribe("t", stuck)
        await broker.publish("t", Message())
        await asyncio.wait_for(started.wait(), 5)
        with caplog.at_level(logging.WARNING, logger="micro.broker"):
            await asyncio.wait_for(sub.unsubscribe(), 5)
        assert cancelled.is_set()
        assert "did not finish in time" in caplog.text
        await sub.unsubscribe()  # idempotent


async def test_unsubscribe_from_inside_the_handler_does_not_wait_for_itself() -> None:
    done = asyncio.Event()
    subs: list[Subscriber] = []

    async def leave(event: Event) -> None:
        await subs[0].unsubscribe()
        done.set()

    async with Bare() as broker:
        subs.append(await broker.subscribe("t", leave))
        await broker.publish("t", Message())
        await asyncio.wait_for(done.wait(), 5)
        await asyncio.wait_for(subs[0]._task, 5)  # type: ignore[arg-type]
        assert subs[0] not in broker._subscriptions


async def test_backend_name_limits_are_checked_before_the_broker_starts() -> None:
    class Picky(Bare):
        def _check_names(self, topic: str, message: Message | None) -> None:
            if len(topic) > 5:
                raise BadRequest(f"topic {topic!r} is longer than 5")

    broker = Picky()
    with pytest.raises(BadRequest, match="longer than 5"):
        await broker.publish("toolong", Message())
    with pytest.raises(BadRequest, match="longer than 5"):
        await broker.subscribe("toolong", noop)
    assert broker.calls == []  # never started: bad input opens no connection


async def test_close_drains_publishes_before_ending_subscriptions_and_refuses_new_ones_meanwhile() -> None:
    class Draining(Bare):
        async def _drain_published(self) -> None:
            self.calls.append(f"drain with {sum(not s._stopping for s in self.subs)} subscribed")
            with pytest.raises(ConnectionClosed):
                await self.publish("t", Message())

    broker = Draining()
    await broker.subscribe("t", noop)
    await broker.close()
    assert broker.calls[-2:] == ["drain with 1 subscribed", "close with 0 running"]
