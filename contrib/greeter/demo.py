"""The README demo: start the greeter in its own process, call it, stream from it, publish to it, stop it.

    python contrib/greeter/demo.py

The two processes find each other through the default ``local`` registry (a
SQLite file in the per-user runtime directory) and deliver the event through
the default ``http`` broker, and the greeter keeps what it received in the
default ``memory`` store: no server, no configuration. Every block follows
``MICRO_*`` as usual (``MICRO_REGISTRY=etcd MICRO_BROKER=nats MICRO_STORE=postgres
MICRO_TRANSPORT=nats`` runs it on those servers: ``reliability/tests/test_scaleout.py``). The whole run is
bounded: it exits 1 with a message, never hangs, if anything takes too long.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # so `greeter` imports when run as a script

import micro  # noqa: E402

from greeter.service import TOPIC, Count, CountRequest, Greeted, HelloRequest, HelloResponse, Received  # noqa: E402

#: The whole demo must finish within this many seconds.
DEADLINE = 20.0


def say(text: str) -> None:
    print(text, flush=True)


async def start_server() -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "greeter.service",
        "--ready",
        cwd=str(HERE.parent),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.getenv("PYTHONPATH")]))},
    )
    assert process.stdout is not None
    while True:
        line = (await process.stdout.readline()).decode().strip()
        if not line:
            raise RuntimeError(f"the greeter process exited early (status {await process.wait()})")
        if line.startswith("READY "):
            return process, line.removeprefix("READY ")


async def stop_server(process: asyncio.subprocess.Process) -> int:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    try:
        async with asyncio.timeout(10):
            return await process.wait()
    except TimeoutError:
        process.kill()
        return await process.wait()


async def demo() -> None:
    started = time.monotonic()
    say("1. starting the greeter service in a separate process...")
    process, address = await start_server()
    say(f"   greeter (pid {process.pid}) is serving on {address} and registered as 'greeter'")
    client = micro.create("client", retries=3)
    try:
        say("2. calling greeter Say.hello (found through the registry)...")
        response = await client.invoke("greeter", "Say.hello", HelloRequest(name="Alice"), response_type=HelloResponse)
        say(f"   -> {response.body.message!r} (response header X-Greeter={response.metadata.get('X-Greeter')})")

        say("3. streaming greeter Say.count to 3...")
        async with await client.stream("greeter", "Say.count", CountRequest(to=3), response_type=Count) as stream:
            counts = [item.n async for item in stream]
        say(f"   -> received {counts}")

        say("4. a bad request comes back as a typed error...")
        try:
            await client.call("greeter", "Say.hello", HelloRequest(name=""))
        except micro.errors.BadRequest as exc:
            say(f"   -> BadRequest {exc.code}: {exc.detail}")

        say(f"5. publishing Greeted(name='Bob') on {TOPIC!r}...")
        await client.publish(TOPIC, Greeted(name="Bob"))
        while True:  # bounded by DEADLINE: the event travels through the broker asynchronously
            received = await client.call("greeter", "Say.received", response_type=Received)
            if "Bob" in received.names:
                break
            await asyncio.sleep(0.05)
        say(f"   -> the greeter's subscriber received it: {received.names}")
    finally:
        await client.close()
        say("6. stopping the greeter (SIGTERM: deregister, drain, close)...")
        status = await stop_server(process)
        say(f"   -> exited with status {status}")
    if status != 0:
        raise RuntimeError(f"the greeter exited with status {status}")
    say(f"done in {time.monotonic() - started:.1f}s")


async def main() -> int:
    try:
        async with asyncio.timeout(DEADLINE):
            await demo()
    except TimeoutError:
        say(f"demo failed: it did not finish within {DEADLINE}s")
        return 1
    except Exception as exc:
        say(f"demo failed: {type(exc).__name__}: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    # A last resort if the event loop itself wedges: dump the stacks and exit.
    faulthandler.dump_traceback_later(DEADLINE + 15, exit=True)
    sys.exit(asyncio.run(main()))
