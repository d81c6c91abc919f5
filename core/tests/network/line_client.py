"""The client of the three-node test: ``python line_client.py call|gone``, with ``MICRO_PROXY`` set.

It is an ordinary micro client: nothing in it names the network; ``MICRO_PROXY`` sends its calls there.

``call``: waits (up to 60s) for greeter to answer, then calls it, streams from it, publishes an event and
waits until the service received it; prints one JSON line of what it saw.
``gone``: calls greeter until the call fails with ``ServiceNotFound`` (up to 60s); prints one JSON line with
the seconds that took and what each failing call raised, and how long the slowest call took.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import micro
from micro.errors import MicroError, ServiceNotFound


async def call(client: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        try:
            hello = (await client.invoke("greeter", "Echo.hello", {"name": "A"})).body
            break
        except ServiceNotFound:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
    async with await client.stream("greeter", "Echo.count", {"to": 3}) as stream:
        counted = [n async for n in stream]
    await client.publish("greeter.events", {"from": "A"})
    received: list[Any] = []
    while time.monotonic() < deadline and not received:
        received = (await client.invoke("greeter", "Echo.received", {})).body
        await asyncio.sleep(0.1)
    return {"hello": hello, "counted": counted, "received": received}


async def gone(client: Any) -> dict[str, Any]:
    started = time.monotonic()
    errors: list[str] = []
    slowest = 0.0
    while time.monotonic() - started < 60:
        begun = time.monotonic()
        try:
            await client.invoke("greeter", "Echo.hello", {"name": "A"}, timeout=5.0)
        except ServiceNotFound:
            slowest = max(slowest, time.monotonic() - begun)
            return {"seconds": time.monotonic() - started, "errors": errors, "slowest": slowest}
        except MicroError as exc:  # on the way down: a link cut under a call
            errors.append(type(exc).__name__)
        slowest = max(slowest, time.monotonic() - begun)
        await asyncio.sleep(0.05)
    return {"seconds": None, "errors": errors, "slowest": slowest}


async def main(mode: str) -> None:
    service = micro.Service("caller")
    result = await (call(service.client) if mode == "call" else gone(service.client))
    await service.client.close()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
