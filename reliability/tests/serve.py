"""A service for the reliability tests: ``python serve.py NAME``; blocks selected by ``MICRO_*``.

Prints ``READY <address>`` once registered and ``STARTED <endpoint>`` when a slow call
begins, then serves until SIGTERM and exits 0 after a graceful stop.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import micro


class Echo:
    def __init__(self) -> None:
        self.events: list[Any] = []

    async def received(self) -> list[Any]:
        return self.events

    async def hello(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"message": f"Hello {req.get('name')}", "pid": os.getpid()}

    async def slow(self, req: dict[str, Any]) -> dict[str, Any]:
        print("STARTED Echo.slow", flush=True)
        await asyncio.sleep(req["seconds"])
        return {"slept": req["seconds"], "pid": os.getpid()}

    async def leak(self, req: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("could not connect to postgres://app:hunter2@db.internal/prod")

    async def secret(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"secret": "only for the allowed"}


def _guarded(name: str) -> list[Any]:
    """With ``RELIABILITY_DENY=Endpoint``: jwt auth whose rules deny that endpoint of this service to
    everyone and admit the rest (the server wrapper is added by hand, as docs/auth.md says)."""
    endpoint = os.environ.get("RELIABILITY_DENY")
    if not endpoint:
        return []
    from micro.auth import SCOPE_PUBLIC, Access, Resource, Rule, server_wrapper

    auth = micro.create("auth", "jwt")

    async def rules() -> None:
        await auth.start()
        await auth.grant(
            Rule("deny", SCOPE_PUBLIC, Resource(name=name, type="service", endpoint=endpoint), Access.DENIED, 10)
        )
        await auth.grant(Rule("public", SCOPE_PUBLIC, Resource(name="*", type="*", endpoint="*")))

    return [server_wrapper(auth), rules]


def main(name: str) -> None:
    guard = _guarded(name)
    service = micro.Service(name, drain_timeout=10.0, wrappers=guard[:1], before_start=guard[1:])
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
