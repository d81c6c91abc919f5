"""A tunnel in its own process, for the multi-process tests (``python peer.py '<json config>'``).

Config: ``options`` (TunnelOptions fields), ``echo`` (channels whose sessions get every message back),
``record`` (channels whose messages are printed as JSON lines ``{"channel", "session", "body"}``).
It prints ``{"address": ..., "id": ...}`` once connected and runs until its stdin closes.
"""

from __future__ import annotations

import asyncio
import json
import sys

from micro.errors import ConnectionClosed
from micro.transport.base import Socket
from micro.tunnel import TunnelListener
from micro.tunnel.mucp import MUCPTunnel
from micro.tunnel.options import TunnelOptions


def say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


async def echo(session: Socket) -> None:
    try:
        while True:
            await session.send(await session.recv())
    except ConnectionClosed:
        pass
    finally:
        await session.close()


async def record(session: Socket, channel: str, sid: str) -> None:
    try:
        while True:
            message = await session.recv()
            say(channel=channel, session=sid, body=message.body.decode())
    except ConnectionClosed:
        pass


async def serve(listener: TunnelListener, kind: str, tasks: set[asyncio.Task[None]]) -> None:
    async for session in listener:
        work = echo(session) if kind == "echo" else record(session, listener.channel, session.id)
        task = asyncio.create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def main(config: dict[str, object]) -> None:
    options = dict(config.get("options", {}))  # type: ignore[call-overload]
    if "nodes" in options:
        options["nodes"] = tuple(options["nodes"])
    tunnel = MUCPTunnel(TunnelOptions(**options))
    await tunnel.connect()
    tasks: set[asyncio.Task[None]] = set()
    for kind in ("echo", "record"):
        for channel in config.get(kind, ()):  # type: ignore[attr-defined]
            listener = await tunnel.listen(channel)
            tasks.add(asyncio.create_task(serve(listener, kind, tasks)))
    say(address=tunnel.address, id=tunnel.id)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    await tunnel.close()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
