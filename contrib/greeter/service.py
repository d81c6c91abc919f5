"""The Greeter service: ``Say.hello``, the streaming ``Say.count``, and a subscriber on ``greeter.greeted``.

Run it on its own with ``python service.py`` (or ``python -m greeter.service``
from ``contrib/``), then from another terminal::

    micro call greeter Say.hello '{"name": "Alice"}'
    micro call --stream greeter Say.count '{"to": 3}'
    micro publish greeter.greeted '{"name": "Bob"}'
    micro call greeter Say.received
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import micro
from micro import context

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


class Say:
    """The handler: each public async method is an endpoint, ``Say.<method>``."""

    def __init__(self, inbox: list[str]) -> None:
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
        return Received(names=list(self._inbox))


class Events:
    """The subscriber: each public async method gets every message on the topic it is subscribed to."""

    def __init__(self, inbox: list[str]) -> None:
        self._inbox = inbox

    async def greeted(self, event: Greeted) -> None:
        self._inbox.append(event.name)


def make_service(**options: Any) -> micro.Service:
    service = micro.Service("greeter", **options)
    inbox: list[str] = []
    service.handle(Say(inbox))
    service.subscribe(TOPIC, Events(inbox))
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
