"""The NATS registry beyond the contract: a killed service leaves it within its ttl plus a stated slack."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator

import pytest
from micro.errors import BackendUnavailable, InvalidOption, ServiceNotFound
from micro.registry import Node, Service
from micro_nats import NatsRegistry, NatsRegistryOptions

from .conftest import ADDRESS, delete_buckets, unique

#: The ttl the killed service registers with, and the slack it may take beyond it to disappear: a read
#: leaves a node out as soon as its ttl has passed, a watcher hears of it a few milliseconds later; the
#: slack covers a loaded machine's scheduling, not a polling period.
TTL = 2.0
SLACK = 1.0

_SERVICE = """
import asyncio, sys
from micro.registry import Node, Service
from micro_nats import NatsRegistry, NatsRegistryOptions

async def main() -> None:
    registry = NatsRegistry(NatsRegistryOptions(address=(sys.argv[1],), bucket=sys.argv[2]))
    service = Service(sys.argv[3], "1.0.0", nodes=[Node("victim", "127.0.0.1:1")])
    while True:  # a server's re-register loop, every ttl/4
        await registry.register(service, ttl={ttl})
        print("registered", flush=True)
        await asyncio.sleep({ttl} / 4)

asyncio.run(main())
"""


@pytest.fixture
async def bucket() -> AsyncIterator[str]:
    name = unique()
    yield name
    await delete_buckets(name)


async def test_a_killed_service_leaves_the_registry_within_ttl_plus_slack(bucket: str) -> None:
    name = f"svc-{unique()}"
    registry = NatsRegistry(NatsRegistryOptions(address=(ADDRESS,), bucket=bucket))
    await registry.start()
    watcher = registry.watch(name)
    code = textwrap.dedent(_SERVICE).format(ttl=TTL)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, ADDRESS, bucket, name, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        for _ in range(2):  # registered, and refreshed once
            line = await asyncio.wait_for(process.stdout.readline(), 30)
            assert line.strip() == b"registered"
        assert [n.id for s in await registry.get_service(name) for n in s.nodes] == ["victim"]
        os.kill(process.pid, signal.SIGKILL)
        killed = time.monotonic()
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await asyncio.wait_for(process.wait(), 30)
    # The watcher reports it gone, and reads no longer return it, within ttl + slack of the kill.
    actions = []
    while not actions or actions[-1] != "delete":
        result = await asyncio.wait_for(watcher.__anext__(), TTL + SLACK + 5)
        actions.append(result.action)
    gone_after = time.monotonic() - killed
    with pytest.raises(ServiceNotFound):
        await registry.get_service(name)
    await registry.close()
    assert actions[-1] == "delete"
    assert gone_after <= TTL + SLACK, f"the killed service stayed {gone_after:.2f}s (ttl {TTL}s + slack {SLACK}s)"


async def test_an_expired_node_is_deleted_from_the_bucket_but_not_a_refreshed_one(bucket: str) -> None:
    """The registry that sees a node expire deletes its key, unless it was registered again meanwhile."""
    import nats

    registry = NatsRegistry(NatsRegistryOptions(address=(ADDRESS,), bucket=bucket))
    await registry.start()
    try:
        watcher = registry.watch()
        service = Service(f"svc-{unique()}", nodes=[Node("n1", "127.0.0.1:1")])
        await registry.register(service, ttl=0.5)
        assert (await asyncio.wait_for(watcher.__anext__(), 10)).action == "create"
        assert (await asyncio.wait_for(watcher.__anext__(), 10)).action == "delete"
        nc = await nats.connect(ADDRESS)
        try:
            kv = await nc.jetstream().key_value(bucket)
            for _ in range(100):
                if not await _keys(kv):
                    break
                await asyncio.sleep(0.05)
            assert await _keys(kv) == []
        finally:
            await nc.close()
    finally:
        await registry.close()


async def _keys(kv: object) -> list[str]:
    import nats.js.errors

    try:
        return list(await kv.keys())  # type: ignore[attr-defined]
    except nats.js.errors.NoKeysError:
        return []


async def test_unreachable_server_fails_quickly_and_names_the_variable() -> None:
    registry = NatsRegistry(NatsRegistryOptions(address=("127.0.0.1:1",), connect_timeout=1.0))
    with pytest.raises(BackendUnavailable, match="MICRO_REGISTRY_ADDRESS"):
        await asyncio.wait_for(registry.get_service("x"), 30)


def test_a_bad_bucket_name_names_the_option() -> None:
    with pytest.raises(InvalidOption, match="bucket"):
        NatsRegistryOptions(bucket="a.b")


async def test_a_name_too_long_for_a_key_is_a_bad_request_and_the_connection_survives(bucket: str) -> None:
    """A name past the key bound is refused before it reaches the server, which would drop the connection."""
    from micro.errors import BadRequest

    registry = NatsRegistry(NatsRegistryOptions(address=(ADDRESS,), bucket=bucket))
    await registry.start()
    try:
        with pytest.raises(BadRequest, match="at most"):
            await registry.register(Service("x" * 5000, nodes=[Node("n1", "127.0.0.1:1")]))
        service = Service(f"svc-{unique()}", nodes=[Node("n1", "127.0.0.1:1")])
        await registry.register(service)
        assert [n.id for s in await registry.get_service(service.name) for n in s.nodes] == ["n1"]
    finally:
        await registry.close()
