"""End to end on real servers: ``MICRO_REGISTRY=consul MICRO_BROKER=rabbitmq MICRO_STORE=redis``, two processes.

A service process and this test (the client) find each other through Consul,
exchange an event through RabbitMQ and keep records in Redis. Each hop is
checked on the server itself: the service is in Consul's catalog while it runs
(and gone after), a message put straight onto RabbitMQ reaches its subscriber,
and the records are Redis keys. The greeter demo then runs unchanged on the same
servers. Skipped, saying which, when a server or a plugin is missing (failed instead when CI is set).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import micro
import pytest
from micro_conformance import eventually
from micro_conformance.live import LiveServer, skip_or_fail
from micro_consul import _tags

from .conftest import Agent

HERE = Path(__file__).resolve().parent
GREETER_DEMO = HERE.parents[2] / "contrib" / "greeter" / "demo.py"
AMQP_URL = os.environ.get("MICRO_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("MICRO_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


REDIS = LiveServer("Redis", REDIS_URL, default_port=6379, hint="set MICRO_TEST_REDIS_URL")
RABBITMQ = LiveServer("RabbitMQ", AMQP_URL, default_port=5672, hint="set MICRO_TEST_AMQP_URL")


@pytest.fixture(autouse=True)
def _plugins_installed() -> None:
    for module, plugin in (("micro_redis", "redis"), ("micro_rabbitmq", "rabbitmq")):
        if importlib.util.find_spec(module) is None:
            skip_or_fail(f"asyncmicro-{plugin} is not installed (pip install -e plugins/{plugin})")


pytestmark = [pytest.mark.live_server(REDIS), pytest.mark.live_server(RABBITMQ)]


@pytest.fixture
def environ(consul_address: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The variables that select the three plugins, set here (for the client) and passed to the service process."""
    selection = {
        "MICRO_REGISTRY": "consul",
        "MICRO_BROKER": "rabbitmq",
        "MICRO_BROKER_ADDRESS": AMQP_URL,
        "MICRO_STORE": "redis",
        "MICRO_STORE_ADDRESS": REDIS_URL,
        "CONSUL_HTTP_ADDR": consul_address,
    }
    for key, value in selection.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **selection}


@contextlib.asynccontextmanager
async def running(*args: str, env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """A child Python process, killed if the test leaves it running."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def ready(process: asyncio.subprocess.Process) -> str:
    """The address the service printed in its READY line (its other output is skipped)."""
    assert process.stdout is not None
    async with asyncio.timeout(20):
        while line := (await process.stdout.readline()).decode():
            if line.startswith("READY "):
                return line.removeprefix("READY ").strip()
    raise AssertionError(f"the service exited before it was ready (status {await process.wait()})")


async def catalog_nodes(agent: Agent, name: str) -> list[dict[str, Any]]:
    """What Consul's own health API says about ``name``: its passing instances."""
    status, entries = await agent.get(f"/v1/health/service/{name}?passing")
    assert status == 200
    return list(entries)


async def test_a_service_and_its_client_work_through_consul_rabbitmq_and_redis(
    environ: dict[str, str], agent: Agent
) -> None:
    import aio_pika
    import redis.asyncio as redis

    run = uuid.uuid4().hex[:8]
    name, topic, table = f"e2e-guestbook-{run}", f"e2e.signed.{run}", f"e2e-{run}"
    async with running(str(HERE / "e2e_guestbook.py"), name, topic, table, env=environ) as process:
        address = await ready(process)

        # Registry: the service is in Consul's catalog, healthy, with the node it serves on.
        (instance,) = await catalog_nodes(agent, name)
        host, port = _tags.split_address(address)
        assert (instance["Service"]["Address"], instance["Service"]["Port"]) == (host, port)
        assert _tags.decode(instance["Service"]["Tags"])["node_id"].startswith(name)

        client = micro.create("client")
        try:
            # RPC, to a node found through Consul; the handler writes to the store.
            reply = await client.call(name, "Book.sign", {"name": "Alice"})
            assert reply == {"signatures": 1}

            # Broker: an event published by the client, and one put onto RabbitMQ by hand, both reach the subscriber.
            await client.publish(topic, {"name": "Bob"})
            connection = await aio_pika.connect(AMQP_URL)
            async with connection, await connection.channel() as channel:
                exchange = await channel.get_exchange("micro")
                body = json.dumps({"name": "Carol"}).encode()
                header = {"Content-Type": "application/json", "Micro-Topic": topic}
                await exchange.publish(aio_pika.Message(body, headers=header), routing_key=topic)

            async def both_events() -> dict[str, Any]:
                found = await client.call(name, "Book.signatures")
                assert sorted(found["events"]) == ["Bob", "Carol"]
                return dict(found)

            book = await eventually(both_events, timeout=10, what="the events reaching the service")
            assert book["signed"] == ["Alice"]
            assert book["store"] == "RedisStore"
        finally:
            await client.close()

        # Store: the records are Redis keys, and another process (this one) reads them through micro.
        server = redis.from_url(REDIS_URL)
        try:
            keys = sorted(k.decode() for k in await server.keys(f"micro:store:micro:{table}:*"))
            assert keys == [f"micro:store:micro:{table}:{k}" for k in ("event:Bob", "event:Carol", "signed:Alice")]
            for key in keys:
                await server.delete(key)
        finally:
            await server.aclose()

        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(15):
            assert await process.wait() == 0

    # Stopping deregistered it.
    assert await catalog_nodes(agent, name) == []


@pytest.mark.skipif(not GREETER_DEMO.exists(), reason=f"the greeter demo is not at {GREETER_DEMO}")
async def test_the_greeter_demo_runs_on_the_real_servers(environ: dict[str, str], agent: Agent) -> None:
    async with running(str(GREETER_DEMO), env=environ) as process:
        seen_in_consul = False

        async def watch_consul() -> None:
            nonlocal seen_in_consul
            while not seen_in_consul:
                seen_in_consul = bool(await catalog_nodes(agent, "greeter"))
                await asyncio.sleep(0.05)

        watching = asyncio.ensure_future(watch_consul())
        assert process.stdout is not None
        async with asyncio.timeout(40):
            output = (await process.stdout.read()).decode()
            status = await process.wait()
        watching.cancel()
        await asyncio.wait({watching})
    assert status == 0, output
    assert "'Hello Alice'" in output
    assert "received [1, 2, 3]" in output
    assert "the greeter's subscriber received it: ['Bob']" in output
    assert seen_in_consul, "the greeter never appeared in Consul's catalog: the demo did not use the consul registry"
    assert await catalog_nodes(agent, "greeter") == []
