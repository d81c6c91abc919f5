"""Nodes say which protocol (and transport) they speak; a mucp client calls only the ones it can.

A registry may hold, for one service, gRPC nodes, mucp nodes on another transport and mucp
nodes on this client's transport. Every call must go to the last kind; with none of them the
client raises ServiceNotFound naming what the nodes speak, instead of dialling a node it cannot
talk to.
"""

from __future__ import annotations

import pytest
from micro.errors import ServiceNotFound
from micro.registry import Node, Service
from micro.selector import filter_protocol
from rpcstack import Stack


class Who:
    async def who(self) -> str:
        return "the mucp node"


def strangers(stack: Stack) -> list[Node]:
    """Nodes the stack's client cannot speak to, at addresses that would fail (or hang) if dialled."""
    kind = stack.transport.name
    other = "http" if kind != "http" else "tcp"
    return [
        Node("grpc-1", "127.0.0.1:9", {"protocol": "grpc", "server": "grpc"}),
        Node("mucp-other", "127.0.0.1:9", {"protocol": "mucp", "transport": other}),
    ]


async def test_calls_go_only_to_nodes_of_the_clients_protocol_and_transport(stack: Stack) -> None:
    server = stack.server(Who())
    await server.start()
    [registered] = await stack.registry.get_service(stack.name)
    await stack.registry.register(registered.replace(nodes=strangers(stack)))
    [mixed] = await stack.registry.get_service(stack.name)
    assert len(mixed.nodes) == 3
    client = stack.client(retries=0)
    for _ in range(30):  # a random selector: 30 picks among 3 nodes would hit a stranger almost surely
        assert await client.call(stack.name, "Who.who", None) == "the mucp node"


async def test_no_compatible_node_raises_service_not_found_naming_what_is_there(stack: Stack) -> None:
    await stack.registry.register(Service(stack.name, "1", nodes=strangers(stack)))
    client = stack.client(retries=0)
    with pytest.raises(ServiceNotFound) as raised:
        await client.call(stack.name, "Who.who", None)
    message = str(raised.value)
    assert f"speaks mucp over {stack.transport.name}" in message
    assert "grpc" in message
    assert "mucp over http" in message or "mucp over tcp" in message


def services(*nodes: Node) -> list[Service]:
    return [Service("s", "1", nodes=list(nodes))]


def test_filter_protocol_rules() -> None:
    bare = Node("bare", "h:1")  # registered by a server that does not say: taken for mucp, any transport
    tcp = Node("tcp", "h:2", {"protocol": "mucp", "transport": "tcp"})
    http = Node("http", "h:3", {"protocol": "mucp", "transport": "http"})
    grpc = Node("grpc", "h:4", {"protocol": "grpc"})
    keep = filter_protocol("mucp", "tcp")
    assert [n.id for s in keep(services(bare, tcp, http, grpc)) for n in s.nodes] == ["bare", "tcp"]
    anything = filter_protocol("mucp")
    assert [n.id for s in anything(services(bare, tcp, http, grpc)) for n in s.nodes] == ["bare", "tcp", "http"]
    assert [n.id for s in filter_protocol("grpc")(services(tcp, grpc)) for n in s.nodes] == ["grpc"]
    with pytest.raises(ServiceNotFound, match=r"speaks grpc; its nodes speak: mucp over http, mucp over tcp"):
        filter_protocol("grpc")(services(tcp, http))
    assert filter_protocol("grpc")([]) == [], "an empty service is the selector's to report"


def test_filter_protocol_keeps_the_last_result_for_the_same_list() -> None:
    keep = filter_protocol("mucp", "tcp")
    listed = services(Node("tcp", "h:2", {"protocol": "mucp", "transport": "tcp"}))
    assert keep(listed) is keep(listed)
    assert keep(listed)[0] is listed[0], "an all-compatible version is not copied"
