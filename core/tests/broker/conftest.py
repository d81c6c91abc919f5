"""Helpers for the broker tests: collecting handlers and polling with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from micro.broker import Event


async def eventually(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    """Wait until ``predicate()`` is true, polling; fail the test after ``timeout`` seconds.

    The default is generous: it returns as soon as the condition holds, and on a loaded machine
    300 HTTP deliveries took longer than 3 s (test_each_subscriber_sees_one_publishers_messages_in_order).
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


class Collector:
    """A handler that records every event it is given."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, event: Event) -> None:
        self.events.append(event)
        await asyncio.sleep(0)  # yield, so that members of a queue group interleave

    @property
    def bodies(self) -> list[bytes]:
        return [e.message.body for e in self.events]
