"""The service of the three-node test (``python line_service.py``): greeter, reachable only from its own node.

Prints ``READY <address>`` once registered (in ``MICRO_REGISTRY_PATH``, which only its node reads) and
serves until SIGTERM.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import micro


class Echo:
    def __init__(self) -> None:
        self.events: list[Any] = []

    async def hello(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"message": f"Hello {req.get('name')}"}

    async def count(self, req: dict[str, Any]) -> AsyncIterator[int]:
        for n in range(req["to"]):
            yield n

    async def received(self, req: dict[str, Any]) -> list[Any]:
        return self.events


def main() -> None:
    service = micro.Service("greeter", register_ttl=30.0, register_interval=10.0, drain_timeout=2.0)
    echo = Echo()
    service.handle(echo)

    async def on_event(event: dict[str, Any]) -> None:
        echo.events.append(event)

    service.subscribe("greeter.events", on_event)
    service.hook("after_start", lambda: print(f"READY {service.server.address}", flush=True))
    service.run_forever()


if __name__ == "__main__":
    main()
