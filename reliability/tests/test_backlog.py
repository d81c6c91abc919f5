"""A consumer slower than its publisher: either the publisher waits, or every dropped message is counted.

micro-redis keeps a topic's stream at ``max_length``. With ``overflow="block"`` (the default) a
publish waits for the slowest queue group and no confirmed message is lost; with ``"trim"`` the
stream is cut and each message a group had not received is counted in ``RedisBroker.dropped``
and logged, so the loss is visible.
"""

from __future__ import annotations

import asyncio
import logging

import micro
import pytest
from conftest import Figure, eventually, need
from micro.broker import Event, Message
from micro.errors import MicroError

TOTAL = 400


async def _run(overflow: str, unique: str) -> tuple[set[int], set[int], int, int]:
    broker = micro.create("broker", "redis", max_length=50, overflow=overflow, overflow_timeout=30.0, prefetch=4)
    topic = f"{unique}.t"
    received: set[int] = set()
    confirmed: set[int] = set()

    async def slow(event: Event) -> None:
        await asyncio.sleep(0.004)  # a consumer that handles fewer messages per second than arrive
        received.add(int(event.message.body))

    refused = 0
    async with broker:
        await broker.subscribe(topic, slow, queue=f"{unique}-g")
        for n in range(TOTAL):
            try:
                await broker.publish(topic, Message(str(n).encode()))
                confirmed.add(n)
            except MicroError:
                refused += 1

        def settled() -> bool:
            return len(received) + broker.dropped.get(topic, 0) >= len(confirmed)  # type: ignore[attr-defined]

        await eventually(settled, f"the {overflow} run's consumer catching up", timeout=60)
        dropped = broker.dropped.get(topic, 0)  # type: ignore[attr-defined]
    return confirmed, received, dropped, refused


@pytest.mark.slow
async def test_with_back_pressure_a_slow_consumer_loses_no_confirmed_message(unique: str, figure: Figure) -> None:
    need("Redis", 6379)
    confirmed, received, dropped, refused = await _run("block", unique)
    lost = len(confirmed - received)
    figure("redis broker, slow consumer, overflow=block: confirmed messages lost", lost)
    figure("redis broker, slow consumer, overflow=block: publishes refused (caller told)", refused)
    assert lost == 0
    assert dropped == 0


@pytest.mark.slow
async def test_with_trimming_every_lost_message_is_counted_and_logged(
    unique: str, figure: Figure, caplog: pytest.LogCaptureFixture
) -> None:
    need("Redis", 6379)
    with caplog.at_level(logging.WARNING):
        confirmed, received, dropped, _ = await _run("trim", unique)
    lost = len(confirmed - received)
    figure("redis broker, slow consumer, overflow=trim: confirmed messages lost", lost)
    figure("redis broker, slow consumer, overflow=trim: of them counted as dropped", dropped)
    assert lost > 0, "the consumer kept up: the test did not overflow the stream"
    assert dropped == lost
    assert any("drop" in record.getMessage().lower() for record in caplog.records), "the loss was not logged"
