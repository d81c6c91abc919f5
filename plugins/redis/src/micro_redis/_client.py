"""Connecting to the Redis server named by an options object, shared by the store, broker and sync."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from micro.errors import BackendUnavailable
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from ._errors import translated
from .options import display_address, server_url

__all__ = ["Server"]


class _ConnectionOptions(Protocol):
    @property
    def address(self) -> tuple[str, ...]: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def request_timeout(self) -> float: ...
    @property
    def pool_size(self) -> int: ...


class _QueuedPool(ConnectionPool):
    """At most ``max_connections`` connections; a command waits for a free one, first come first served.

    What redis-py's ``BlockingConnectionPool`` does, for less per command: it takes an
    ``asyncio.Condition``, an async context manager and an ``asyncio.timeout`` on every
    get and a notify on every release (about a third of a single ``GET``'s client CPU).
    Here a free slot is taken at once with no timer; only a command that has to wait
    arms one (``timeout``), and gets redis-py's ``ConnectionError("No connection
    available.")`` when it runs out, as from ``BlockingConnectionPool``. The semaphore
    is FIFO, so a burst of waiters is served in arrival order (no waiter starves).
    """

    def __init__(self, *, timeout: float | None, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._wait = timeout
        self._slots = asyncio.Semaphore(self.max_connections)

    async def get_connection(self, *args: object, **kwargs: object) -> AbstractConnection:
        slots = self._slots
        if slots.locked():
            try:
                async with asyncio.timeout(self._wait):
                    await slots.acquire()
            except TimeoutError as exc:
                raise RedisConnectionError("No connection available.") from exc
        else:
            await slots.acquire()  # a free slot: returns without suspending
        try:
            connection: AbstractConnection = self.get_available_connection()  # type: ignore[no-untyped-call]
        except BaseException:
            slots.release()
            raise
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection

    async def release(self, connection: AbstractConnection) -> None:
        # The base class also dispatches a re-authentication event (streaming credentials, unused
        # here) and records pool metrics (off unless configured): two locks and three awaits less.
        try:
            self._in_use_connections.remove(connection)
        except KeyError:
            return  # not ours, or released twice: the slot was given back then
        try:
            if connection.should_reconnect():  # type: ignore[no-untyped-call]
                await connection.disconnect()
        finally:
            self._available_connections.append(connection)
            self._slots.release()


@dataclass(frozen=True, slots=True)
class Server:
    """One Redis server as the options describe it, and how errors about it are worded."""

    url: str
    #: The address without credentials, for messages.
    address: str
    #: The variable that sets the address, e.g. ``MICRO_STORE_ADDRESS``.
    variable: str
    connect_timeout: float
    request_timeout: float
    pool_size: int

    @classmethod
    def of(cls, options: _ConnectionOptions, interface: str) -> Server:
        url = server_url(options.address)
        return cls(
            url=url,
            address=display_address(url),
            variable=f"MICRO_{interface.upper()}_ADDRESS",
            connect_timeout=float(options.connect_timeout),
            request_timeout=float(options.request_timeout),
            pool_size=options.pool_size,
        )

    @property
    def where(self) -> str:
        """The prefix of every error message: ``redis at 127.0.0.1:6379 (MICRO_STORE_ADDRESS)``."""
        return f"redis at {self.address} ({self.variable})"

    def client(
        self, name: str, *, retries: int = 0, pool_size: int | None = None, read_timeout: float | None = None
    ) -> Redis:
        """A client with its own pool; no I/O until its first command.

        A connection the server closed while it sat in the pool is not checked when it
        is taken (redis-py 8 skips that health check by default), so the next command on
        it fails. A command that fails because its connection broke is sent again
        ``retries`` times, at once, on a new connection: only for commands that are
        harmless to repeat, since the first attempt may have reached the server; callers
        with ``retries=0`` (acks, lock scripts) retry on their own terms. Time-outs are
        never retried.
        """
        pool = _QueuedPool.from_url(
            self.url,
            max_connections=pool_size or self.pool_size,
            timeout=self.request_timeout,
            socket_connect_timeout=self.connect_timeout,
            socket_timeout=read_timeout or self.request_timeout,
            client_name=name,
            retry=Retry(NoBackoff(), retries, supported_errors=(RedisConnectionError,)),
        )
        return Redis.from_pool(pool)

    async def connect(
        self, name: str, *, retries: int = 0, pool_size: int | None = None, read_timeout: float | None = None
    ) -> Redis:
        """:meth:`client`, checked with a ``PING`` that must answer within ``connect_timeout``.

        Raises :class:`~micro.errors.BackendUnavailable` naming the address and its
        variable (or :class:`~micro.errors.Unauthorized` for refused credentials);
        the client is closed again then.
        """
        client = self.client(name, retries=retries, pool_size=pool_size, read_timeout=read_timeout)
        try:
            async with asyncio.timeout(self.connect_timeout):
                with translated(self.where):
                    await client.ping()
        except TimeoutError as exc:
            await client.aclose()
            raise BackendUnavailable(f"{self.where}: no answer within {self.connect_timeout:g}s") from exc
        except BaseException:
            await client.aclose()
            raise
        return client
