"""``micro call``, ``services``, ``describe`` and ``publish`` against a service in another OS process.

Two processes, no configuration: the service (tests/service/serve.py) and each
``micro`` command find each other through the default local registry, which the
root conftest points at a temporary directory.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from micro import create
from micro.client import Client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "service"))

from procs import ServiceProcess, spawner, unique_name


async def micro(*args: str, timeout: float = 30.0) -> tuple[int, str, str]:
    """Run ``python -m micro ARGS`` and return (status, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "micro", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def service() -> AsyncIterator[ServiceProcess]:
    async with spawner() as spawn:
        yield await spawn(unique_name())


async def test_call(service: ServiceProcess) -> None:
    status, out, err = await micro("call", service.name, "Echo.hello", '{"name": "Alice"}')
    assert status == 0, err
    reply = json.loads(out)
    assert reply == {"message": "Hello Alice", "pid": service.process.pid}


async def test_call_reaches_the_users_own_debug_endpoints(service: ServiceProcess) -> None:
    # micro call proves the local user, as micro debug does: the service (same user) answers Debug.stats.
    status, out, err = await micro("call", service.name, "Debug.stats")
    assert status == 0, err
    assert "stats" in json.loads(out)
    status, out, err = await micro("debug", "logs", service.name, "--json")
    assert status == 0, err
    assert "records" in json.loads(out)


async def test_call_stream(service: ServiceProcess) -> None:
    status, out, err = await micro("call", "--stream", service.name, "Echo.count", '{"to": 3}')
    assert status == 0, err
    assert [json.loads(line) for line in out.splitlines()] == [0, 1, 2]


async def test_call_errors_print_json_and_exit_nonzero(service: ServiceProcess) -> None:
    status, out, err = await micro("call", service.name, "Echo.nope", "{}")
    assert status == 1
    assert out == ""
    error = json.loads(err)
    assert error["code"] == 404
    assert "Echo.nope" in error["detail"]
    assert error["id"] == service.name

    status, _, err = await micro("call", "no-such-service", "Echo.hello", "{}")
    assert status == 1
    error = json.loads(err)
    assert error["code"] == 404
    assert "no-such-service" in error["detail"]

    status, _, err = await micro("call", service.name, "Echo.hello", "{not json")
    assert status == 2  # a usage error, before anything is sent
    assert "REQUEST" in err
    assert "not valid JSON" in err


async def test_call_with_metadata_and_timeout(service: ServiceProcess) -> None:
    status, _, err = await micro("call", "-t", "0.2", service.name, "Echo.slow", '{"seconds": 5}')
    assert status == 1
    assert json.loads(err)["code"] == 408
    status, _, err = await micro("call", "-m", "broken", service.name, "Echo.hello", "{}")
    assert status == 2
    assert "key=value" in err


async def test_services_and_describe(service: ServiceProcess) -> None:
    status, out, err = await micro("services", "--json")
    assert status == 0, err
    assert {"name": service.name, "versions": ["latest"]} in json.loads(out)

    status, out, err = await micro("describe", service.name, "--json")
    assert status == 0, err
    (entry,) = json.loads(out)
    assert entry["nodes"][0]["address"] == service.address
    endpoints = {e["name"]: e for e in entry["endpoints"]}
    assert {"Echo.hello", "Echo.slow", "Echo.count", "Echo.received"} <= set(endpoints)
    assert endpoints["Echo.count"]["metadata"]["stream"] == "true"

    status, out, err = await micro("describe", service.name)
    assert status == 0, err
    assert "Echo.hello" in out
    assert service.address in out
    assert "list[Any]" in out  # rich markup must not eat the brackets

    status, _, err = await micro("describe", "no-such-service")
    assert status == 1
    assert json.loads(err)["code"] == 404


async def test_publish_rejects_a_bad_topic() -> None:
    status, _, err = await micro("publish", "bad topic", "{}")
    assert status == 1
    assert json.loads(err)["code"] == 400


async def test_publish(service: ServiceProcess) -> None:
    status, _, err = await micro("publish", f"{service.name}.events", '{"n": 7}')
    assert status == 0, err
    client = create("client", cls=Client)
    try:
        for _ in range(60):  # bounded: ~3s for the broker to deliver in the background
            received = await client.call(service.name, "Echo.received")
            if received:
                break
            await asyncio.sleep(0.05)
    finally:
        await client.close()
    assert received == [{"n": 7}]
