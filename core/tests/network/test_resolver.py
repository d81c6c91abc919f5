"""Resolvers: where peers come from (static nodes, DNS names, the registry)."""

import asyncio
import time

import pytest
from micro.errors import BadRequest, InvalidOption
from micro.network.mucp import SERVICE, MUCPNetwork
from micro.network.options import NetworkOptions
from micro.network.resolver import resolve, resolve_dns, resolve_registry
from micro.registry.base import Node, Service
from micro.registry.memory import MemoryRegistry, MemoryRegistryOptions


async def linked(network: MUCPNetwork, peer: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while peer not in {link.node for link in network.tunnel.links()}:
        assert time.monotonic() < deadline, f"{network.id} never linked to {peer}"
        await asyncio.sleep(0.02)


async def test_static_is_the_nodes_and_dns_resolves_names():
    assert await resolve("static", ["h:1"], registry=None, service=SERVICE, network="n", own_id="x") == ["h:1"]
    assert "127.0.0.1:7000" in await resolve_dns(["localhost:7000"])
    assert await resolve_dns(["no-such-host.invalid:7000"]) == []  # a warning, not an error
    with pytest.raises(BadRequest):
        await resolve_dns(["no-port"])
    with pytest.raises(InvalidOption, match="resolver"):
        NetworkOptions(resolver="carrier-pigeon")


async def test_registry_resolver_finds_other_nodes_of_the_same_network():
    registry = MemoryRegistry(MemoryRegistryOptions(space="resolver-test"))
    await registry.start()
    try:
        for id, network, tunnel in (("a", "n", "10.0.0.1:1"), ("b", "other", "10.0.0.2:1"), ("me", "n", "x:1")):
            node = Node(id=id, address="p:1", metadata={"network": network, "tunnel": tunnel})
            await registry.register(Service(name=SERVICE, version=network, nodes=[node]))
        assert await resolve_registry(registry, SERVICE, "n", "me") == ["10.0.0.1:1"]
    finally:
        await registry.close()


async def test_a_node_joins_through_dns():
    a = MUCPNetwork(NetworkOptions(id="a", interval=0.1), registry=MemoryRegistry(MemoryRegistryOptions(space="dns-a")))
    b = None
    try:
        await a.connect()
        port = a.address.rpartition(":")[2]
        b = MUCPNetwork(
            NetworkOptions(id="b", interval=0.1, resolver="dns", nodes=(f"localhost:{port}",)),
            registry=MemoryRegistry(MemoryRegistryOptions(space="dns-b")),
        )
        await b.connect()
        await linked(b, "a")
    finally:
        for network in (b, a):
            if network is not None:
                await network.close()


async def test_a_node_finds_peers_that_register_later_through_the_registry():
    shared = MemoryRegistryOptions(space="resolver-join")
    c = MUCPNetwork(
        NetworkOptions(id="c", interval=0.1, resolver="registry", resolve_interval=0.1), registry=MemoryRegistry(shared)
    )
    a = MUCPNetwork(NetworkOptions(id="a", interval=0.1), registry=MemoryRegistry(shared))
    try:
        await c.connect()  # nobody registered yet
        assert c.tunnel.links() == []
        await a.connect()
        await linked(c, "a")
        await asyncio.sleep(0.3)
        assert sorted(link.node for link in c.tunnel.links()) == ["a"]  # never itself; a links to c only back
    finally:
        await a.close()
        await c.close()
