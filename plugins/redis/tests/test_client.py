"""The connection pool the store, broker and sync share (``micro_redis._client``): bounded, fair, never leaking."""

from __future__ import annotations

import asyncio

import pytest
import redis
from micro_redis._client import Server

from .conftest import ADDRESS


def _server(pool_size: int, request_timeout: float) -> Server:
    return Server(
        url=ADDRESS,
        address="127.0.0.1:6379",
        variable="MICRO_STORE_ADDRESS",
        connect_timeout=2.0,
        request_timeout=request_timeout,
        pool_size=pool_size,
    )


async def test_waiters_get_a_connection_in_arrival_order() -> None:
    client = _server(pool_size=1, request_timeout=5.0).client("micro-test-pool")
    pool = client.connection_pool
    try:
        held = await pool.get_connection()
        order: list[int] = []

        async def take(n: int) -> None:
            connection = await pool.get_connection()
            order.append(n)
            await asyncio.sleep(0.01)  # hold it: the next waiter must wait for this release
            await pool.release(connection)

        tasks = [asyncio.create_task(take(n)) for n in range(5)]
        await asyncio.sleep(0.05)
        assert order == []  # the one connection is held: nobody got one
        await pool.release(held)
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        assert order == [0, 1, 2, 3, 4]
        assert len(pool._in_use_connections) == 0
        assert len(pool._available_connections) == 1  # never more than pool_size
    finally:
        await client.aclose()


async def test_a_full_pool_fails_after_request_timeout_and_loses_no_slot() -> None:
    client = _server(pool_size=2, request_timeout=0.2).client("micro-test-pool")
    pool = client.connection_pool
    try:
        held = [await pool.get_connection(), await pool.get_connection()]
        with pytest.raises(redis.ConnectionError, match="No connection available"):
            await pool.get_connection()
        # A waiter cancelled while it waits gives nothing back that it did not take.
        waiter = asyncio.create_task(pool.get_connection())
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        for connection in held:
            await pool.release(connection)
        await pool.release(held[0])  # a second release of the same connection is ignored
        # Both slots are free again, and no more than both: two commands run at once, a third waits.
        assert await asyncio.wait_for(asyncio.gather(client.ping(), client.ping()), 5) == [True, True]
        taken = [await pool.get_connection(), await pool.get_connection()]
        with pytest.raises(redis.ConnectionError, match="No connection available"):
            await pool.get_connection()
        for connection in taken:
            await pool.release(connection)
    finally:
        await client.aclose()


async def test_a_command_that_fails_gives_its_connection_back() -> None:
    client = _server(pool_size=1, request_timeout=2.0).client("micro-test-pool")
    try:
        for _ in range(3):
            with pytest.raises(redis.ResponseError):
                await client.execute_command("NO-SUCH-COMMAND")
        assert await client.ping() is True  # with a pool of one, a leaked slot would time out here
    finally:
        await client.aclose()
