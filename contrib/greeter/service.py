"""The Greeter service: ``Say.hello``, the streaming ``Say.count``, and a subscriber on ``greeter.greeted``.

The names it receives are kept in the store (``MICRO_STORE``; the memory default) and listed by
``Say.received``.

Run it on its own with ``python service.py`` (or ``python -m greeter.service``
from ``contrib/``), then from another terminal::

    micro call greeter Say.hello '{"name": "Alice"}'
    micro call --stream greeter Say.count '{"to": 3}'
    micro publish greeter.greeted '{"name": "Bob"}'
    micro call greeter Say.received
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import micro
from micro import context
from micro.store import Record, Store

TOPIC = "greeter.greeted"


@dataclass
class HelloRequest:
    name: str


@dataclass
class HelloResponse:
    message: str


@dataclass
class CountRequest:
    to: int


@dataclass
class Count:
    n: int


@dataclass
class Greeted:
    name: str


@dataclass
class Received:
    names: list[str] = field(default_factory=list)


class Inbox:
    """The greetings this instance received, kept in the store (``MICRO_STORE``: the memory default, or
    Redis, PostgreSQL... when one is selected), under a key prefix of this process's own."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._prefix = f"greeter/received/{uuid.uuid4().hex}/"

    async def add(self, name: str) -> None:
        await self.store.write(Record(f"{self._prefix}{time.time_ns():020d}", name.encode()))

    async def names(self) -> list[str]:
        return [record.value.decode() for record in await self.store.read(self._prefix, prefix=True)]


class Say:
    """The handler: each public async method is an endpoint, ``Say.<method>``."""

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox

    async def hello(self, req: HelloRequest) -> HelloResponse:
        if not req.name:
            raise micro.errors.BadRequest("name must not be empty")
        context.set_header("X-Greeter", "hello")
        return HelloResponse(message=f"Hello {req.name}")

    async def count(self, req: CountRequest) -> AsyncIterator[Count]:
        for n in range(1, req.to + 1):
            yield Count(n=n)

    async def received(self) -> Received:
        return Received(names=await self._inbox.names())


class Events:
    """The subscriber: each public async method gets every message on the topic it is subscribed to."""

    def __init__(self, inbox: Inbox) -> None:
        self._inbox = inbox

    async def greeted(self, event: Greeted) -> None:
        await self._inbox.add(event.name)


def make_service(*, store: Store | None = None, **options: Any) -> micro.Service:
    """The greeter; what it received goes to ``store`` (``micro.create("store")``: ``MICRO_STORE``, when not given)."""
    service = micro.Service("greeter", **options)
    inbox = Inbox(store if store is not None else micro.create("store", cls=Store))
    service.handle(Say(inbox))
    service.subscribe(TOPIC, Events(inbox))
    # The service runs the handlers; the store they use opens with it and closes after it.
    service.hook("before_start", inbox.store.start)
    service.hook("after_stop", inbox.store.close)
    return service


async def serve(*, ready: bool = False) -> None:
    """Run until SIGINT/SIGTERM; with ``ready``, print a line once registered so a parent can wait for it."""
    service = make_service(register_ttl=10.0, register_interval=3.0)

    async def announce() -> None:
        if ready:
            print(f"READY {service.server.address}", flush=True)

    service.hook("after_start", announce)
    await service.run()


if __name__ == "__main__":
    import asyncio

    asyncio.run(serve(ready="--ready" in sys.argv))
