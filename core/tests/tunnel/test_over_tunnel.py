"""A service whose only connection is one outbound tunnel link: called, streamed to and published to through it."""

import asyncio
import os
import sys
import uuid
from pathlib import Path

import micro
from micro.tunnel.transport import TunnelTransport

from .conftest import until

SERVE = Path(__file__).resolve().parents[1] / "service" / "serve.py"


async def test_a_service_behind_one_outbound_link_is_called_streamed_and_published_to():
    name = f"tunnelled-{uuid.uuid4().hex[:8]}"
    token = uuid.uuid4().hex
    blocks = {"MICRO_TRANSPORT": "tunnel", "MICRO_BROKER": "tunnel", "MICRO_TUNNEL_TOKEN": token}
    caller = micro.Service(f"{name}-caller", environ={**os.environ, **blocks})
    async with caller:
        assert isinstance(caller.transport, TunnelTransport)
        tunnel = caller.transport.tunnel
        assert tunnel is not None
        # The service process dials our tunnel: that link is its only way in or out.
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SERVE),
            name,
            env={**os.environ, **blocks, "MICRO_TUNNEL_NODES": tunnel.address},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert process.stdout is not None
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()
            assert line.startswith("READY "), line
            await until(lambda: len(tunnel.links()) == 1, "the service's link")
            (link,) = tunnel.links()
            assert not link.outbound  # the service dialled us; we never dialled it

            reply = await caller.client.call(name, "Echo.hello", {"name": "through"}, timeout=20)
            assert reply == {"message": "Hello through", "pid": process.pid}
            stream = await caller.client.stream(name, "Echo.count", {"to": 5}, timeout=20)
            assert [item async for item in stream] == [0, 1, 2, 3, 4]

            await caller.client.publish(f"{name}.events", {"n": 1})
            deadline = asyncio.get_running_loop().time() + 20
            while not await caller.client.call(name, "Echo.received", timeout=20):
                assert asyncio.get_running_loop().time() < deadline, "the event never reached the service"
                await asyncio.sleep(0.1)
            assert await caller.client.call(name, "Echo.received", timeout=20) == [{"n": 1}]
        finally:
            if process.returncode is None:
                process.terminate()
                try:
                    await asyncio.wait_for(process.wait(), 15)
                except TimeoutError:
                    process.kill()
                    await process.wait()
