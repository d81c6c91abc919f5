"""The ``leastconn`` selector: fewest calls in flight from this client, counted through next/mark/release."""

from __future__ import annotations

import asyncio
import sys
from collections import Counter
from pathlib import Path

from micro import create
from micro.client import ClientOptions
from micro.client.rpc import RPCClient
from micro.registry import Node
from micro.registry.memory import MemoryRegistry
from micro.selector import SelectorOptions
from micro.selector.leastconn import LeastConnSelector

# The RPC stack lives beside the server tests; test directories are not packages.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "server"))

from rpcstack import Stack, eventually, stack

__all__ = ["stack"]


async def test_registered_as_leastconn() -> None:
    selector = create("selector", "leastconn")
    assert isinstance(selector, LeastConnSelector)
    await selector.close()


async def test_next_prefers_the_node_without_calls_in_flight(registry: MemoryRegistry) -> None:
    selector = LeastConnSelector(registry=registry)
    try:
        pick = await selector.select("greeter")
        busy = pick()  # a call to it starts, and is not marked: it stays in flight
        assert selector.in_flight("greeter", busy) == 1
        second, third = pick(), pick()
        assert {second.id, third.id} == {"a", "b", "c"} - {busy.id}, "a busy node was picked over an idle one"
        for node in (second, third):
            selector.mark("greeter", node, None)  # those calls ended
        # One call in flight on `busy`, none elsewhere: every later call (each marked) avoids it.
        for _ in range(30):
            node = pick()
            assert node.id != busy.id
            selector.mark("greeter", node, None)
        selector.mark("greeter", busy, None)
        assert selector.in_flight("greeter", busy) == 0
        # With nothing in flight, ties are broken at random: every node gets picked.
        seen: Counter[str] = Counter()
        for _ in range(300):
            node = pick()
            seen[node.id] += 1
            selector.release("greeter", node)
        assert set(seen) == {"a", "b", "c"}
    finally:
        await selector.close()


async def test_marks_without_a_pick_never_go_negative(registry: MemoryRegistry) -> None:
    selector = LeastConnSelector(SelectorOptions(cooldown=30), registry=registry)
    try:
        pick = await selector.select("greeter")
        stray = Node("a", "127.0.0.1:9000")
        selector.mark("greeter", stray, None)
        selector.release("greeter", stray)
        assert selector.in_flight("greeter", "a") == 0
        first = pick()
        assert selector.in_flight("greeter", first) == 1
    finally:
        await selector.close()


class Gated:
    """A handler whose calls wait for :attr:`gate`; :attr:`calls` counts the calls that arrived."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.calls = 0
        self.gate = asyncio.Event()

    async def who(self) -> str:
        self.calls += 1
        await self.gate.wait()
        return self.label


def leastconn_client(stack: Stack, selector: LeastConnSelector) -> RPCClient:
    client = RPCClient(ClientOptions(retries=0), transport=stack.transport, selector=selector, broker=stack.broker)
    stack.clients.append(client)
    return client


async def test_client_calls_go_to_the_idle_node_while_the_other_is_slow(stack: Stack) -> None:
    """Two nodes; one stays slow (its call never returns until released): later calls all go to the other."""
    a, b = Gated("a"), Gated("b")
    for handler in (a, b):
        await stack.server(handler).start()
    selector = LeastConnSelector(registry=stack.registry)
    client = leastconn_client(stack, selector)
    # Two concurrent calls with nothing in flight: the second pick sees the first in flight, so one lands on each.
    first = [asyncio.ensure_future(client.call(stack.name, "Gated.who")) for _ in range(2)]

    async def both_busy() -> None:
        assert (a.calls, b.calls) == (1, 1)

    await eventually(both_busy)
    a.gate.set()  # a answers from now on; b stays slow, its call in flight

    async def one_answered() -> None:
        assert sum(task.done() for task in first) == 1

    await eventually(one_answered)
    for _ in range(20):
        assert await client.call(stack.name, "Gated.who") == "a"
    assert b.calls == 1, "a call went to the node that still had one in flight"
    (entry,) = await stack.registry.get_service(stack.name)
    slow = next(n for n in entry.nodes if selector.in_flight(stack.name, n))
    assert selector.in_flight(stack.name, slow) == 1
    b.gate.set()
    assert sorted(await asyncio.gather(*first)) == ["a", "b"]
    assert all(selector.in_flight(stack.name, n) == 0 for n in entry.nodes)


async def test_a_cancelled_call_is_no_longer_in_flight(stack: Stack) -> None:
    """The client reports a cancelled call with release(): the node does not look busy for good."""
    slow = Gated("slow")
    await stack.server(slow).start()
    selector = LeastConnSelector(registry=stack.registry)
    client = leastconn_client(stack, selector)
    call = asyncio.ensure_future(client.call(stack.name, "Gated.who"))

    async def arrived() -> None:
        assert slow.calls == 1

    await eventually(arrived)
    (entry,) = await stack.registry.get_service(stack.name)
    (node,) = entry.nodes
    assert selector.in_flight(stack.name, node) == 1
    call.cancel()
    await asyncio.gather(call, return_exceptions=True)
    assert selector.in_flight(stack.name, node) == 0
    slow.gate.set()
