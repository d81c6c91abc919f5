"""mDNS specifics: two registries on the loopback interface see each other; the TXT encoding."""

from __future__ import annotations

import asyncio
import sys
import time
import zlib
from collections.abc import AsyncIterator

import micro
import orjson
import pytest
from micro.errors import BadRequest, InvalidOption, MessageTooLarge, ServiceNotFound
from micro.registry import Endpoint, MDNSRegistryOptions, Node, Service, Value
from micro.registry.mdns import MDNSRegistry, decode_txt, encode_txt

from .conftest import eventually, loopback_multicast_problem, mdns_options, next_result

needs_multicast = pytest.mark.skipif(
    loopback_multicast_problem() is not None,
    reason=f"mDNS tests bind to 127.0.0.1 only, and {loopback_multicast_problem()}",
)


def svc(name: str, *ids: str) -> Service:
    return Service(
        name,
        "1.0.0",
        {"team": "core"},
        [Endpoint("Greeter.Hello", Value("Request", "Request"), Value("Response", "Response"))],
        [Node(i, f"127.0.0.1:{8000 + n}", {"protocol": "mucp"}) for n, i in enumerate(ids)],
    )


@pytest.fixture
async def pair() -> AsyncIterator[tuple[MDNSRegistry, MDNSRegistry]]:
    """Two registries with their own sockets: what one announces, the other must hear over the wire."""
    a, b = MDNSRegistry(mdns_options()), MDNSRegistry(mdns_options())
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


@pytest.mark.multicast
@needs_multicast
async def test_a_peer_finds_registered_nodes(pair: tuple[MDNSRegistry, MDNSRegistry], unique: str) -> None:
    a, b = pair
    await a.register(svc(unique, "n1", "n2"))

    async def found_by_b() -> Service:
        (service,) = await b.get_service(unique)
        assert [n.id for n in service.nodes] == ["n1", "n2"]
        return service

    service = await eventually(found_by_b, timeout=5)
    assert service == svc(unique, "n1", "n2")
    assert any(s.name == unique for s in await b.list_services())


@pytest.mark.multicast
@needs_multicast
async def test_a_peer_watches_create_update_and_goodbye(pair: tuple[MDNSRegistry, MDNSRegistry], unique: str) -> None:
    a, b = pair
    async with b.watch(unique) as watcher:
        await a.register(svc(unique, "n1"))
        created = await next_result(watcher, timeout=5)
        assert created.action == "create"
        assert [n.id for n in created.service.nodes] == ["n1"]

        await a.register(svc(unique, "n2"))
        updated = await next_result(watcher, timeout=5)
        assert updated.action == "update"
        assert [n.id for n in updated.service.nodes] == ["n1", "n2"]

        await a.deregister(svc(unique, "n1", "n2"))
        actions = [(await next_result(watcher, timeout=5)).action]
        if actions[-1] != "delete":  # the two goodbyes may arrive in separate packets
            actions.append((await next_result(watcher, timeout=5)).action)
        assert actions[-1] == "delete"

    with pytest.raises(ServiceNotFound):
        await b.get_service(unique)


@pytest.mark.multicast
@needs_multicast
async def test_closing_says_goodbye(pair: tuple[MDNSRegistry, MDNSRegistry], unique: str) -> None:
    a, b = pair
    await a.register(svc(unique, "n1"))

    async def seen() -> None:
        assert await b.get_service(unique)

    await eventually(seen, timeout=5)
    await a.close()

    async def gone() -> None:
        with pytest.raises(ServiceNotFound):
            await b.get_service(unique)

    await eventually(gone, timeout=5)


_KILLED_PEER = """
import asyncio, sys
from micro.registry import Node, Service, MDNSRegistryOptions
from micro.registry.mdns import MDNSRegistry

async def main() -> None:
    registry = MDNSRegistry(MDNSRegistryOptions(interfaces=("127.0.0.1",), timeout=0.2))
    service = Service(sys.argv[1], "1.0.0", nodes=[Node("n1", "127.0.0.1:8000")])
    await registry.register(service, ttl=2)
    print("READY", flush=True)
    while True:  # renew as a server does, well within the TTL, until killed
        await asyncio.sleep(0.5)
        await registry.register(service, ttl=2)

asyncio.run(main())
"""


@pytest.mark.multicast
@needs_multicast
async def test_a_peer_killed_without_goodbye_leaves_within_its_ttl(unique: str) -> None:
    """kill -9: no goodbye packet. The node stays while it renews, and leaves about a TTL after it stops
    (python-zeroconf's own cache keeps PTR records for at least 1,125 s, so this needs the registry's sweep)."""
    observer = MDNSRegistry(mdns_options())
    await observer.start()
    peer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLED_PEER, unique, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert peer.stdout is not None
        assert await asyncio.wait_for(peer.stdout.readline(), 30) == b"READY\n"

        async def seen() -> None:
            try:
                found = await observer.get_service(unique)
            except ServiceNotFound as exc:
                raise AssertionError("not seen") from exc
            assert [n.id for s in found for n in s.nodes] == ["n1"]

        await eventually(seen, timeout=10)
        await asyncio.sleep(5)  # two and a half TTLs of renewals: still there
        await seen()
        peer.kill()
        await peer.wait()
        killed = time.monotonic()

        async def gone() -> None:
            try:
                found = await observer.get_service(unique)
            except ServiceNotFound:
                return
            raise AssertionError(f"still listed: {found}")

        await eventually(gone, timeout=30)
        assert time.monotonic() - killed < 2 + 5  # the TTL, the sweep, one unanswered question and slack
    finally:
        if peer.returncode is None:
            peer.kill()
            await peer.wait()
        await observer.close()


@pytest.mark.multicast
@needs_multicast
async def test_domains_are_isolated(unique: str) -> None:
    async with (
        MDNSRegistry(mdns_options()) as a,
        MDNSRegistry(mdns_options().replace(domain="other")) as other,
        MDNSRegistry(mdns_options()) as same,
    ):
        await a.register(svc(unique, "n1"))

        async def seen() -> None:
            assert await same.get_service(unique)

        await eventually(seen, timeout=5)
        # "same" has heard it, so "other" had every chance to hear it too.
        with pytest.raises(ServiceNotFound):
            await other.get_service(unique)


def test_txt_round_trip_and_go_layout() -> None:
    service = svc("greeter", "n1")
    text = encode_txt(service, service.nodes[0])
    strings, i = [], 0
    while i < len(text):
        strings.append(text[i + 1 : i + 1 + text[i]])
        i += 1 + text[i]
    assert all(len(s) <= 255 for s in strings)
    payload = orjson.loads(zlib.decompress(bytes.fromhex(b"".join(strings).decode())))
    assert payload["service"] == "greeter"
    assert payload["version"] == "1.0.0"
    assert payload["metadata"] == {"protocol": "mucp"}  # Go Micro puts the node's metadata here
    assert decode_txt(text) == service


def test_decode_a_go_micro_record_uses_the_dns_address() -> None:
    go = {"service": "greeter", "version": "latest", "endpoints": None, "metadata": {"protocol": "mucp"}}
    encoded = zlib.compress(orjson.dumps(go)).hex().encode()
    service = decode_txt(bytes((len(encoded),)) + encoded, "10.0.0.7:9090")
    assert service.nodes[0].address == "10.0.0.7:9090"
    assert service.endpoints == []


def test_decode_rejects_foreign_records() -> None:
    with pytest.raises(BadRequest):
        decode_txt(b"\x05hello")
    encoded = zlib.compress(b"[1, 2]").hex().encode()
    with pytest.raises(BadRequest):
        decode_txt(bytes((len(encoded),)) + encoded)


async def test_a_description_too_large_for_a_packet_is_refused(unique: str) -> None:
    huge = svc(unique, "n1")
    huge.endpoints = [Endpoint(f"E{i}", metadata={"doc": str(i) * 40 + hex(i * 7919)}) for i in range(3000)]
    registry = MDNSRegistry(mdns_options())
    with pytest.raises(MessageTooLarge, match="TXT"):
        await registry.register(huge)
    await registry.close()


def test_options() -> None:
    with pytest.raises(InvalidOption, match="domain"):
        MDNSRegistryOptions(domain="no.dots")
    with pytest.raises(InvalidOption, match="domain"):
        MDNSRegistryOptions(domain="x" * 16)
    created = micro.create(
        "registry", "mdns", environ={"MICRO_REGISTRY_INTERFACES": "127.0.0.1", "MICRO_REGISTRY_TIMEOUT": "250ms"}
    )
    assert isinstance(created, MDNSRegistry)
    assert created.options.interfaces == ("127.0.0.1",)
    assert created.options.timeout == 0.25
