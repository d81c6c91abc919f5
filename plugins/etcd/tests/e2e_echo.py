"""A small service for test_e2e: one RPC handler, registered through whatever ``MICRO_REGISTRY`` selects.

    python e2e_echo.py <service name>

Prints ``READY <address>`` once registered and exits 0 on SIGTERM.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

import micro


@dataclass
class Greeting:
    name: str


@dataclass
class Reply:
    text: str


class Echo:
    async def hello(self, req: Greeting) -> Reply:
        return Reply(text=f"hello {req.name}")


async def main(name: str) -> None:
    service = micro.Service(name, register_ttl=3.0, register_interval=1.0)
    service.handle(Echo())

    async def announce() -> None:
        print(f"READY {service.server.address}", flush=True)

    service.hook("after_start", announce)
    await service.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
