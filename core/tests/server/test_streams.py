"""Streaming calls: server streams, client streams, bidirectional, their errors, deadlines and cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from micro.errors import BadRequest, ConnectionClosed, InternalError, Timeout
from rpcstack import Stack


@dataclass
class Count:
    n: int


class Streamer:
    def __init__(self) -> None:
        self.finished = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def count(self, req: Count) -> AsyncIterator[Count]:
        for n in range(1, req.n + 1):
            yield Count(n=n)

    async def total(self, reqs: AsyncIterator[Count]) -> Count:
        return Count(n=sum([r.n async for r in reqs]))

    async def double(self, reqs: AsyncIterator[int]) -> AsyncIterator[int]:
        async for value in reqs:
            yield value * 2

    async def broken(self, req: Count) -> AsyncIterator[Count]:
        yield Count(n=1)
        raise ValueError("ran out")

    async def forever(self, req: Count) -> AsyncIterator[Count]:
        try:
            n = 0
            while True:
                n += 1
                yield Count(n=n)
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        finally:
            self.finished.set()

    async def unary(self, req: int) -> int:
        return req


async def test_server_stream(stack: Stack) -> None:
    await stack.server(Streamer()).start()
    client = stack.client()
    async with await client.stream(stack.name, "Streamer.count", Count(n=3), response_type=Count) as stream:
        assert [c.n async for c in stream] == [1, 2, 3]
        assert stream.done
        with pytest.raises(ConnectionClosed, match="ended"):
            await stream.recv()


async def test_client_stream(stack: Stack) -> None:
    await stack.server(Streamer()).start()
    client = stack.client()
    stream = await client.stream(stack.name, "Streamer.total", response_type=Count)
    for n in (1, 2, 3, 4):
        await stream.send(Count(n=n))
    await stream.close_send()
    with pytest.raises(ConnectionClosed):
        await stream.send(Count(n=5))
    assert await stream.recv() == Count(n=10)
    with pytest.raises(ConnectionClosed):
        await stream.recv()
    await stream.close()
    await stream.close()  # idempotent


async def test_bidirectional_stream_interleaves(stack: Stack) -> None:
    await stack.server(Streamer()).start()
    client = stack.client()
    async with await client.stream(stack.name, "Streamer.double") as stream:
        for value in range(5):
            await stream.send(value)
            assert await stream.recv() == value * 2  # each answer arrives before the next request is sent
        await stream.close_send()
        assert [x async for x in stream] == []


async def test_stream_error_after_items(stack: Stack) -> None:
    await stack.server(Streamer()).start()
    client = stack.client()
    stream = await client.stream(stack.name, "Streamer.broken", Count(n=1), response_type=Count)
    assert await stream.recv() == Count(n=1)
    # the handler's own text ("ran out") stays in the server's log: the caller gets a reference
    with pytest.raises(InternalError, match=r"Streamer.broken: internal error \(ref ") as caught:
        await stream.recv()
    assert "ran out" not in str(caught.value)
    # the server is still serving
    async with await client.stream(stack.name, "Streamer.count", Count(n=1)) as again:
        assert [x async for x in again] == [{"n": 1}]


async def test_stream_deadline(stack: Stack) -> None:
    await stack.server(Streamer()).start()
    client = stack.client()
    stream = await client.stream(stack.name, "Streamer.forever", Count(n=0), timeout=0.2)
    with pytest.raises(Timeout):
        async for _ in stream:
            pass


async def test_closing_the_stream_cancels_the_handler(stack: Stack) -> None:
    streamer = Streamer()
    await stack.server(streamer).start()
    client = stack.client()
    stream = await client.stream(stack.name, "Streamer.forever", Count(n=0))
    assert await stream.recv() == {"n": 1}
    await stream.close()
    await asyncio.wait_for(streamer.finished.wait(), 3)


async def test_kind_mismatch_is_400(stack: Stack) -> None:
    await stack.server(Streamer()).start()
    client = stack.client()
    with pytest.raises(BadRequest, match=r"Streamer.count is a streaming endpoint; call it with client.stream\(\)"):
        await client.call(stack.name, "Streamer.count", {"n": 1})
    stream = await client.stream(stack.name, "Streamer.unary", 1)
    with pytest.raises(BadRequest, match=r"unary endpoint; call it with client.call\(\)"):
        await stream.recv()


async def test_server_stream_without_request_is_400(stack: Stack) -> None:
    await stack.server(Streamer()).start()
    client = stack.client()
    stream = await client.stream(stack.name, "Streamer.count")
    await stream.close_send()
    with pytest.raises(BadRequest, match="ended before its request"):
        await stream.recv()


async def test_stream_metadata_trailers(stack: Stack) -> None:
    from micro import context

    class Tagged:
        async def items(self, req: Any) -> AsyncIterator[int]:
            context.set_header("X-Count", "2")
            yield 1
            yield 2

    await stack.server(Tagged()).start()
    client = stack.client()
    async with await client.stream(stack.name, "Tagged.items", {}) as stream:
        assert [x async for x in stream] == [1, 2]
        assert stream.metadata["x-count"] == "2"
