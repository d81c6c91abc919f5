"""What only the memory transport does: its address table and its bounded queues."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from micro.errors import ConnectionClosed, Unavailable
from micro.transport import Message, Socket
from micro.transport.memory import MemoryTransport


@pytest.fixture
async def memory() -> AsyncIterator[MemoryTransport]:
    transport = MemoryTransport()
    yield transport
    await transport.close()


async def echo(socket: Socket) -> None:
    while True:
        try:
            await socket.send(await socket.recv())
        except ConnectionClosed:
            return


async def test_local_spellings_share_one_address(memory: MemoryTransport) -> None:
    listener = await memory.listen(":0", echo)
    host, _, port = listener.address.rpartition(":")
    assert host == "127.0.0.1"
    for spelling in (f"localhost:{port}", f"0.0.0.0:{port}", f":{port}", listener.address):
        socket = await memory.dial(spelling)
        await socket.send(Message({}, b"x"))
        assert (await socket.recv(timeout=1)).body == b"x"
        await socket.close()


async def test_named_hosts_are_distinct(memory: MemoryTransport) -> None:
    a = await memory.listen("service-a:9000", echo)
    assert a.address == "service-a:9000"
    with pytest.raises(Unavailable, match="nothing listens"):
        await memory.dial("service-b:9000")


async def test_a_listener_on_a_finished_event_loop_is_ignored() -> None:
    def run_in_own_loop() -> str:
        async def leave_listener_behind() -> str:
            return (await MemoryTransport().listen("127.0.0.1:0", echo)).address

        return asyncio.run(leave_listener_behind())

    address = await asyncio.to_thread(run_in_own_loop)
    transport = MemoryTransport()
    with pytest.raises(Unavailable):
        await transport.dial(address)
    listener = await transport.listen(address, echo)  # the address can be taken over
    assert listener.address == address
    await transport.close()


async def test_a_reader_that_does_not_read_pushes_back(memory: MemoryTransport) -> None:
    reading = asyncio.Event()
    all_read = asyncio.Event()
    received = 0

    async def lazy(socket: Socket) -> None:
        nonlocal received
        await reading.wait()
        while True:
            try:
                await socket.recv()
            except ConnectionClosed:
                all_read.set()
                return
            received += 1

    listener = await memory.listen("127.0.0.1:0", lazy)
    socket = await memory.dial(listener.address)
    sent = 0

    async def flood() -> None:
        nonlocal sent
        for _ in range(5000):
            await socket.send(Message({}, b"."))
            sent += 1
        await socket.close_send()

    sender = asyncio.create_task(flood())
    done, _ = await asyncio.wait([sender], timeout=0.2)
    assert not done
    assert sent < 5000
    reading.set()
    await asyncio.wait_for(sender, 5)
    await asyncio.wait_for(all_read.wait(), 5)
    assert received == 5000
    await socket.close()


async def test_messages_are_copied(memory: MemoryTransport) -> None:
    got: list[Message] = []
    arrived = asyncio.Event()

    async def keep(socket: Socket) -> None:
        got.append(await socket.recv())
        arrived.set()

    listener = await memory.listen("127.0.0.1:0", keep)
    socket = await memory.dial(listener.address)
    header = {"k": "v"}
    await socket.send(Message(header, b"x"))
    header["k"] = "changed"
    await asyncio.wait_for(arrived.wait(), 1)
    assert got[0].header == {"k": "v"}
    await socket.close()
