"""Two Services in one process with the memory broker and registry see each other (issue #15).

Each memory broker or registry used to be a world of its own, so a second Service built from the same
``MICRO_BROKER=memory`` environment never received what the first published, nor found it to call.
Now instances share one world per event loop (as the memory transport shares its address table).
"""

import asyncio

from micro import Service
from micro.broker.base import Event, Message
from micro.broker.memory import MemoryBroker
from micro.registry.base import Node
from micro.registry.base import Service as Registration
from micro.registry.memory import MemoryRegistry

ENV = {"MICRO_BROKER": "memory", "MICRO_REGISTRY": "memory", "MICRO_TRANSPORT": "memory"}


class Echo:
    async def echo(self, request: dict) -> dict:
        return {"echo": request["text"]}


class Inbox:
    def __init__(self) -> None:
        self.got: list[dict] = []
        self.arrived = asyncio.Event()

    async def note(self, message: dict) -> None:
        self.got.append(message)
        self.arrived.set()


async def test_two_services_from_one_environment_call_and_publish_to_each_other():
    inbox = Inbox()
    a = Service("world-a", environ=ENV, handle_signals=False, debug=False)
    b = Service("world-b", environ=ENV, handle_signals=False, debug=False)
    b.handle(Echo())
    b.subscribe("world.topic", inbox)
    assert a.broker is not b.broker  # each built its own
    assert a.registry is not b.registry
    async with a, b:
        assert await a.client.call("world-b", "Echo.echo", {"text": "hi"}) == {"echo": "hi"}
        await a.client.publish("world.topic", {"n": 1})
        await asyncio.wait_for(inbox.arrived.wait(), 10)
    assert inbox.got == [{"n": 1}]


async def test_closing_one_broker_removes_only_its_own_subscribers():
    first, second = MemoryBroker(), MemoryBroker()
    got: list[bytes] = []
    arrived = asyncio.Event()

    async def handler(event: Event) -> None:
        got.append(event.message.body)
        arrived.set()

    await first.start()
    await second.start()
    await second.subscribe("world.close", handler)
    await first.subscribe("world.close", handler)
    await first.close()
    await second.publish("world.close", Message(body=b"x"))
    await asyncio.wait_for(arrived.wait(), 10)
    await second.close()
    assert got == [b"x"]


async def test_closing_one_registry_withdraws_only_what_it_registered():
    first, second = MemoryRegistry(), MemoryRegistry()
    await first.register(Registration("world-one", "1", nodes=[Node("one-1", "127.0.0.1:1")]))
    await second.register(Registration("world-two", "1", nodes=[Node("two-1", "127.0.0.1:2")]))
    assert [s.name for s in await second.list_services()] == ["world-one", "world-two"]
    watcher = second.watch()
    await first.close()
    assert [s.name for s in await second.list_services()] == ["world-two"]
    result = await asyncio.wait_for(watcher.__anext__(), 10)
    assert (result.action, result.service.name) == ("delete", "world-one")
    await second.close()
    assert await MemoryRegistry().list_services() == []


async def test_different_spaces_are_separate_worlds():
    from micro.broker.memory import MemoryBrokerOptions
    from micro.registry.memory import MemoryRegistryOptions

    here, there = (
        MemoryRegistry(MemoryRegistryOptions(space="here")),
        MemoryRegistry(MemoryRegistryOptions(space="there")),
    )
    await here.register(Registration("world-here", "1", nodes=[Node("h", "127.0.0.1:1")]))
    assert await there.list_services() == []
    assert [s.name for s in await MemoryRegistry(MemoryRegistryOptions(space="here")).list_services()] == ["world-here"]
    await here.close()

    loud, deaf = MemoryBroker(MemoryBrokerOptions(space="loud")), MemoryBroker(MemoryBrokerOptions(space="deaf"))
    heard: list[Event] = []

    async def handler(event: Event) -> None:
        heard.append(event)

    await deaf.subscribe("world.spaces", handler)
    await loud.publish("world.spaces", Message(body=b"x"))
    await asyncio.sleep(0.05)  # a delivery, had there been one, would have run by now
    await deaf.close()
    await loud.close()
    assert heard == []


def test_the_space_is_an_option_with_a_variable():
    from micro import create

    broker = create("broker", "memory", environ={"MICRO_BROKER_SPACE": "mine"})
    registry = create("registry", "memory", environ={"MICRO_REGISTRY_SPACE": "mine"})
    assert (broker.options.space, registry.options.space) == ("mine", "mine")
