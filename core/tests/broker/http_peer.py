"""A subscriber in its own OS process, for the cross-process http broker tests.

Usage: ``python http_peer.py TOPIC [QUEUE]`` with ``MICRO_REGISTRY_PATH`` set.
It builds the default broker (``http`` on the default ``local`` registry),
subscribes, prints ``ready``, then prints ``got <body>`` for every message, and
exits when its standard input is closed.
"""

from __future__ import annotations

import asyncio
import sys

import micro
from micro.broker import Broker, Event


async def main(topic: str, queue: str | None) -> None:
    broker = micro.create("broker", cls=Broker)

    async def handler(event: Event) -> None:
        print("got", event.message.body.decode(), flush=True)

    async with broker:
        await broker.subscribe(topic, handler, queue=queue)
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
