"""A service for the process tests: ``python serve.py NAME``.

Prints ``READY <address>`` once registered, ``STARTED <endpoint>`` when a slow
call begins (so a test can signal mid-call without guessing), then serves until
SIGINT/SIGTERM and exits 0 after a graceful stop.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from typing import Any

import micro


class Echo:
    def __init__(self) -> None:
        self.events: list[Any] = []

    async def hello(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"message": f"Hello {req.get('name')}", "pid": os.getpid()}

    async def slow(self, req: dict[str, Any]) -> dict[str, Any]:
        print("STARTED Echo.slow", flush=True)
        await asyncio.sleep(req["seconds"])
        return {"slept": req["seconds"], "pid": os.getpid()}

    async def count(self, req: dict[str, Any]) -> AsyncIterator[int]:
        for n in range(req["to"]):
            yield n

    async def total(self, reqs: AsyncIterator[dict[str, Any]]) -> dict[str, Any]:
        """Client stream: the sum of every request's ``n``."""
        return {"total": sum([req["n"] async for req in reqs])}

    async def chat(self, reqs: AsyncIterator[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
        """Bidirectional stream: one reply per request, as it arrives."""
        async for req in reqs:
            yield {"echo": req}

    async def fail(self, req: dict[str, Any]) -> dict[str, Any]:
        """An unexpected error: the caller gets a 500."""
        raise RuntimeError("something broke inside")

    async def received(self) -> list[Any]:
        return self.events


def main(name: str) -> None:
    service = micro.Service(name, register_ttl=30.0, register_interval=10.0, drain_timeout=10.0)
    echo = Echo()
    service.handle(echo)

    async def on_event(event: dict[str, Any]) -> None:
        echo.events.append(event)

    service.subscribe(f"{name}.events", on_event)
    service.hook("after_start", lambda: print(f"READY {service.server.address}", flush=True))
    service.run_forever()
    print("STOPPED", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
