"""The etcd registry beyond the contract: leases of a killed process, the re-register shortcut, layout, errors."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from micro.errors import BackendUnavailable, InvalidOption, MessageTooLarge, ServiceNotFound
from micro.registry import Node, Service
from micro_etcd._client import Etcd, prefix_end
from micro_etcd.options import EtcdRegistryOptions
from micro_etcd.registry import EtcdRegistry, lease_seconds

PREFIX = "micro-test/registry/"
#: The ttl the killed node registers with.
TTL = 2.0
#: Stated slack past the ttl: etcd's lapsed-lease check runs every 500 ms, and this 2-core machine is shared.
SLACK = 3.0


def registry(address: str, **options: object) -> EtcdRegistry:
    return EtcdRegistry(EtcdRegistryOptions(address=(address,), prefix=PREFIX, **options))  # type: ignore[arg-type]


async def test_a_killed_service_leaves_within_ttl_plus_slack(etcd_address: str, unique: Callable[[str], str]) -> None:
    """kill -9 of a process that keeps its node registered: the node is gone within TTL + SLACK, and watched out."""
    name = unique("victim")
    script = Path(__file__).with_name("registered_node.py")
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), etcd_address, PREFIX, name, str(TTL), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.strip() == b"registered"
        async with registry(etcd_address) as reader:
            # While the process lives, its re-registrations keep the node past its ttl.
            await asyncio.sleep(TTL * 1.5)
            assert [n.id for n in (await reader.get_service(name))[0].nodes] == ["victim"]
            async with reader.watch(name) as watcher:
                await asyncio.sleep(0.2)  # the watcher's first read
                os.kill(process.pid, signal.SIGKILL)
                loop = asyncio.get_running_loop()
                killed = loop.time()
                result = await asyncio.wait_for(anext(watcher), TTL + SLACK)
                gone = loop.time() - killed
            assert (result.action, result.service.name) == ("delete", name)
            assert gone <= TTL + SLACK, gone
            with pytest.raises(ServiceNotFound):
                await reader.get_service(name)
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), 10)


async def test_reregistering_an_unchanged_node_only_renews_its_lease(
    etcd_address: str, unique: Callable[[str], str]
) -> None:
    """The second register() of the same node writes nothing (same mod revision), yet keeps the node past its ttl."""
    name = unique("renew")
    service = Service(name, "1", nodes=[Node("n1", "127.0.0.1:1")])
    async with registry(etcd_address) as reg:
        await reg.register(service, ttl=2)
        key = f"{PREFIX}{name}/1/n1"
        client = await reg._client()
        _, (first,) = await client.range(key, None, "test")
        assert first.lease, "a node with a ttl must be attached to a lease"
        for _ in range(6):  # 3 s: past the 2 s lease
            await asyncio.sleep(0.5)
            await reg.register(service, ttl=2)
        _, (again,) = await client.range(key, None, "test")
        assert (again.mod_revision, again.lease) == (first.mod_revision, first.lease)
        # A changed ttl moves the node to a new lease and revokes the old one.
        await reg.register(service, ttl=5)
        _, (moved,) = await client.range(key, None, "test")
        assert moved.lease != first.lease
        assert await client.keepalive(first.lease, "test") == 0
        await reg.deregister(service)
        assert await client.keepalive(moved.lease, "test") == 0, "deregister must revoke the node's lease"


async def test_a_node_whose_lease_lapsed_is_written_again(etcd_address: str, unique: Callable[[str], str]) -> None:
    name = unique("lapsed")
    service = Service(name, "1", nodes=[Node("n1", "127.0.0.1:1")])
    async with registry(etcd_address) as reg:
        await reg.register(service, ttl=30)
        client = await reg._client()
        _, (kv,) = await client.range(f"{PREFIX}{name}/1/n1", None, "test")
        await client.revoke(kv.lease, "test")  # as if it had lapsed while the process was stalled
        with pytest.raises(ServiceNotFound):
            await reg.get_service(name)
        await reg.register(service, ttl=30)
        assert [n.id for n in (await reg.get_service(name))[0].nodes] == ["n1"]
        await reg.deregister(service)


async def test_names_with_slashes_stay_in_their_folder(etcd_address: str, unique: Callable[[str], str]) -> None:
    """A '/' in a name or version is encoded: "a/b" is not read as part of service "a"."""
    base = unique("svc")
    async with registry(etcd_address) as reg:
        await reg.register(Service(f"{base}/x", "v/1", nodes=[Node("n/1", "127.0.0.1:1")]))
        await reg.register(Service(base, "1", nodes=[Node("n1", "127.0.0.1:2")]))
        assert [(s.name, s.version) for s in await reg.get_service(base)] == [(base, "1")]
        (slashed,) = await reg.get_service(f"{base}/x")
        assert (slashed.version, [n.id for n in slashed.nodes]) == ("v/1", ["n/1"])
        client = await reg._client()
        await client.delete(f"{PREFIX}{base}", prefix_end(f"{PREFIX}{base}"), "cleaning up")


async def test_foreign_values_in_the_folder_are_ignored(etcd_address: str, unique: Callable[[str], str]) -> None:
    name = unique("foreign")
    async with registry(etcd_address) as reg:
        client = await reg._client()
        await client.put(f"{PREFIX}{name}/1/junk", "not json", "test")
        await reg.register(Service(name, "1", nodes=[Node("n1", "127.0.0.1:1")]))
        assert [n.id for n in (await reg.get_service(name))[0].nodes] == ["n1"]
        await client.delete(f"{PREFIX}{name}/", prefix_end(f"{PREFIX}{name}/"), "cleaning up")


def test_lease_seconds_round_up() -> None:
    assert [lease_seconds(t) for t in (0.2, 1.0, 1.01, 30)] == [1, 1, 2, 30]


@pytest.mark.offline
async def test_unreachable_server_names_address_and_variable() -> None:
    reg = EtcdRegistry(EtcdRegistryOptions(address=("127.0.0.1:1",), timeout=2))
    with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1:1 \(MICRO_REGISTRY_ADDRESS\)"):
        await reg.get_service("x")


@pytest.mark.offline
def test_addresses_with_credentials_are_refused_without_echoing_them() -> None:
    with pytest.raises(InvalidOption) as caught:
        EtcdRegistryOptions(address=("http://root:s3cret@127.0.0.1:2379",))
    assert "s3cret" not in str(caught.value)
    assert "address" in str(caught.value)
    with pytest.raises(InvalidOption, match="prefix"):
        EtcdRegistryOptions(prefix="/")


@pytest.mark.offline
def test_etcd_endpoints_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETCD_ENDPOINTS", "http://127.0.0.2:2379, 127.0.0.3:2379")
    client = Etcd((), variable="MICRO_REGISTRY_ADDRESS", timeout=1)
    assert [shown for _, shown in client.bases] == ["127.0.0.2:2379", "127.0.0.3:2379"]
    assert "ETCD_ENDPOINTS" in client.where()


@pytest.mark.parametrize("size", [1_600_000, 2_100_000])
async def test_a_description_over_etcds_request_limit_is_message_too_large(
    etcd_address: str, unique: Callable[[str], str], size: int
) -> None:
    """etcd refuses requests over 1.5 MiB, its gateway over 2 MiB: both are MessageTooLarge, nothing registered."""
    name = unique("huge")
    huge = Service(name, "1", metadata={"blob": "x" * size}, nodes=[Node("n1", "127.0.0.1:1")])
    async with registry(etcd_address) as reg:
        with pytest.raises(MessageTooLarge, match=r"too large|larger than max"):
            await reg.register(huge, ttl=10)
        with pytest.raises(ServiceNotFound):
            await reg.get_service(name)


async def test_a_watcher_fails_when_etcd_goes_away(private_etcd: tuple[str, subprocess.Popen[bytes]]) -> None:
    """kill -9 of the server under a waiting watcher: __anext__ raises BackendUnavailable, and the watcher stops."""
    address, server = private_etcd
    async with registry(address, timeout=2) as reg:
        await reg.register(Service("before", "1", nodes=[Node("n1", "127.0.0.1:1")]))
        watcher = reg.watch()
        await reg.register(Service("seen", "1", nodes=[Node("n1", "127.0.0.1:1")]))
        assert (await asyncio.wait_for(anext(watcher), 10)).service.name == "seen"
        waiting = asyncio.ensure_future(anext(watcher))
        await asyncio.sleep(0.2)
        server.send_signal(signal.SIGKILL)
        with pytest.raises(BackendUnavailable, match=address):
            await asyncio.wait_for(waiting, 15)
        assert watcher.stopped


async def test_concurrent_registrations_of_one_node_leave_it_on_the_lease_renewed(
    etcd_address: str, unique: Callable[[str], str]
) -> None:
    """Racing register() calls for one node (a changed ttl each) end with the key on the lease the registry renews."""
    name = unique("race")
    async with registry(etcd_address) as reg:
        versions = [Service(name, "1", nodes=[Node("n1", "127.0.0.1:1")]) for _ in range(10)]
        await asyncio.gather(*(reg.register(s, ttl=10 + i) for i, s in enumerate(versions)))
        client = await reg._client()
        key = f"{PREFIX}{name}/1/n1"
        _, (kv,) = await client.range(key, None, "test")
        assert kv.lease == reg._written[key].id, "the key is on a lease the registry no longer renews"
        await reg.deregister(versions[0])
        assert await client.keepalive(kv.lease, "test") == 0
        assert reg._node_locks == {}, "a node's lock outlived its last user"


async def test_a_node_deleted_elsewhere_is_written_again_on_reregister(
    etcd_address: str, unique: Callable[[str], str]
) -> None:
    """The re-register shortcut checks the key is still on its lease: a key deleted behind its back comes back."""
    name = unique("deleted")
    service = Service(name, "1", nodes=[Node("n1", "127.0.0.1:1")])
    async with registry(etcd_address) as reg:
        await reg.register(service, ttl=30)
        client = await reg._client()
        await client.delete(f"{PREFIX}{name}/1/n1", None, "as another process's deregister would")
        await reg.register(service, ttl=30)
        assert [n.id for n in (await reg.get_service(name))[0].nodes] == ["n1"]
        await reg.deregister(service)
