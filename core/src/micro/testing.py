"""Test helpers for service authors: services and their dependencies in memory, in one test.

Installed with the core as a pytest plugin (the ``pytest11`` entry point ``micro``), it gives the
``micro_harness`` fixture, a :class:`Harness`: one memory registry, broker, transport and store shared
by every service the test builds through it, started for the test and closed after it. With it a
test can

* run services together: :meth:`Harness.service` (or ``micro.Service(name, **harness.wiring())`` for
  a service the code under test builds itself, then :meth:`Harness.add`), :meth:`Harness.start`;
* call them through a real client: :meth:`Harness.call`, :attr:`Harness.client`, :meth:`Harness.publish`;
* call a handler directly, with the request context a server gives it: :func:`call_handler`;
* wait until a subscriber has handled a message (nameko's ``entrypoint_waiter``): :meth:`Harness.handled`;
* replace a handler's dependencies (nameko's ``worker_factory``): :func:`worker`, :func:`dependencies`;
  a whole dependency *service* is replaced by running a fake one under its name;
* see every message published (FastStream's ``TestBroker``): :meth:`Harness.published`;
* run a service script in its own OS process and read its output: :class:`ServiceProcess`,
  :func:`spawner` (for what only separate processes show: signals, file descriptors, memory).

The fixture needs pytest-asyncio (async fixtures); the classes here work without pytest.
See ``docs/testing.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import sys
import time
import typing
import unittest.mock
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, Unpack

from . import context
from .broker.base import Broker
from .broker.base import Message as BrokerMessage
from .broker.memory import MemoryBroker, MemoryBrokerOptions
from .client.base import CallOptions, Client
from .codec.lookup import Codecs
from .component import Component
from .errors import Timeout
from .metadata import Metadata
from .plugins import get_manager
from .registry.base import Registry
from .registry.memory import MemoryRegistry, MemoryRegistryOptions
from .selector.base import Selector
from .server.base import Message, SubscriberFunc, SubscriberWrapper
from .service import Service
from .store.memory import MemoryStore
from .transport.memory import MemoryTransport

__all__ = [
    "Handled",
    "Harness",
    "Published",
    "Reply",
    "ServiceProcess",
    "Spawn",
    "Waiter",
    "call_handler",
    "dependencies",
    "spawner",
    "unique_name",
    "worker",
]

T = TypeVar("T")

#: The memory implementations every harness selects; its own space keeps each test apart.
MEMORY: Mapping[str, str] = {
    "MICRO_REGISTRY": "memory",
    "MICRO_BROKER": "memory",
    "MICRO_TRANSPORT": "memory",
    "MICRO_STORE": "memory",
}


@dataclass(frozen=True, slots=True)
class Published:
    """One message published through the harness's broker, by any service or the test itself."""

    topic: str
    header: dict[str, str]
    body: bytes
    _codecs: Codecs = field(repr=False, compare=False)

    @property
    def content_type(self) -> str:
        return next((v for k, v in self.header.items() if k.lower() == "content-type"), "")

    def payload(self, into: type[T] | None = None) -> T | Any:
        """The body decoded by its ``Content-Type`` (into ``into``, e.g. a dataclass, when given)."""
        return self._codecs.get(self.content_type or None).unmarshal(self.body, into)


@dataclass(frozen=True, slots=True)
class Handled:
    """A subscriber of a harness service finished handling one message."""

    service: str
    topic: str
    #: The subscriber's endpoint (``"Events.greeted"``).
    subscriber: str
    #: The decoded message, as the subscriber received it.
    payload: Any
    #: What the subscriber raised, or ``None``.
    error: BaseException | None


class Waiter:
    """What :meth:`Harness.handled` waits for; its :attr:`results` once the block is done."""

    def __init__(self, match: Callable[[Handled], bool], count: int) -> None:
        self._match = match
        self.count = count
        #: The matching :class:`Handled` records, in the order they finished.
        self.results: list[Handled] = []
        self._done = asyncio.Event()

    def _offer(self, handled: Handled) -> None:
        if self._match(handled) and len(self.results) < self.count:
            self.results.append(handled)
            if len(self.results) >= self.count:
                self._done.set()


@dataclass(frozen=True, slots=True)
class Reply:
    """What :func:`call_handler` returns: the handler's value and the response headers it set."""

    value: Any
    headers: dict[str, str]


async def call_handler(method: Callable[..., Any], *args: Any, metadata: Mapping[str, str] | None = None) -> Reply:
    """Call a handler method directly, inside the request context a server would give it.

    ``metadata`` is the caller's (what :func:`micro.context.get` reads); the headers the handler sets with
    :func:`micro.context.set_header` come back in :attr:`Reply.headers`. A streaming endpoint's items are
    collected into a list.
    """
    with context.serving(Metadata(dict(metadata or {})), None) as response:
        value = method(*args)
        if inspect.isawaitable(value):
            value = await value
        if isinstance(value, typing.AsyncIterator):
            value = [item async for item in value]
    return Reply(value, dict(response))


_DEPENDENCIES: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()


def worker(cls: type[T], /, **given: Any) -> T:
    """An instance of the handler class ``cls`` with its dependencies replaced (nameko's ``worker_factory``).

    Every constructor parameter without a default that is not in ``given`` becomes a mock: an autospec
    of its annotated class when it has one (so a misspelt method fails), else a ``MagicMock``; coroutine
    methods become ``AsyncMock``\\ s. ``given`` values are passed as they are. :func:`dependencies` returns
    what was passed, by parameter name, for assertions.
    """
    signature = inspect.signature(cls)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # an annotation that does not resolve is no reason to refuse: plain mocks then
        hints = {}
    values: dict[str, Any] = {}
    for name, parameter in signature.parameters.items():
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if name in given:
            values[name] = given[name]
        elif parameter.default is inspect.Parameter.empty:
            annotation = hints.get(name)
            if isinstance(annotation, type) and annotation.__module__ != "builtins":
                values[name] = unittest.mock.create_autospec(annotation, instance=True, name=name)
            else:
                values[name] = unittest.mock.MagicMock(name=name)
    unknown = set(given) - set(values)
    if unknown:
        raise TypeError(f"{cls.__name__} takes no parameter {', '.join(sorted(unknown))}")
    instance = cls(**values)
    _DEPENDENCIES[instance] = values
    return instance


def dependencies(instance: object) -> dict[str, Any]:
    """What :func:`worker` passed to ``instance``'s constructor, mocks included, by parameter name."""
    return _DEPENDENCIES[instance]


class _CapturingBroker(MemoryBroker):
    """The memory broker, noting every message before it is delivered."""

    def __init__(self, options: MemoryBrokerOptions, on_publish: Callable[[str, BrokerMessage], None]) -> None:
        super().__init__(options)
        self._on_publish = on_publish

    async def _publish(self, topic: str, message: BrokerMessage) -> None:
        # The hook runs once the message passed the broker's checks: only what is delivered is captured.
        self._on_publish(topic, message)
        await super()._publish(topic, message)


class Harness:
    """Services and their dependencies in memory, sharing one registry, broker, transport and store.

    Use as ``async with Harness() as harness:`` or through the ``micro_harness`` fixture. Each harness
    has its own memory space: two harnesses (two tests) never see each other's services or messages.

    :param environ: more ``MICRO_*`` variables for every service and the client (the memory
        implementations are selected already; anything given here wins).
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        space = f"micro-testing-{uuid.uuid4().hex}"
        self.environ: dict[str, str] = {
            **MEMORY,
            "MICRO_REGISTRY_SPACE": space,
            "MICRO_BROKER_SPACE": space,
            **(environ or {}),
        }
        self.codecs: Codecs = get_manager().codecs(self.environ)
        self._published: list[Published] = []
        self.registry: Registry = MemoryRegistry(MemoryRegistryOptions(space=space))
        self.broker: Broker = _CapturingBroker(MemoryBrokerOptions(space=space), self._capture)
        self.transport: MemoryTransport = MemoryTransport()
        #: A memory store for the handlers under test (a Service does not use one itself).
        self.store: MemoryStore = MemoryStore()
        self.services: list[Service] = []
        self._waiters: list[Waiter] = []
        self._client: Client | None = None
        self._owned: list[Component] = []
        self._unclaimed: list[_Observer] = []

    # -- building ---------------------------------------------------------------------------------

    def wiring(self) -> dict[str, Any]:
        """Keywords for ``micro.Service(name, **harness.wiring())``: the shared blocks, and the observer.

        For a service the code under test builds itself (``make_service(**options)``); hand the result
        to :meth:`add` (before calling ``wiring`` again) so the harness starts and stops it and knows
        its name.
        """
        return {
            "registry": self.registry,
            "broker": self.broker,
            "transport": self.transport,
            "environ": self.environ,
            "handle_signals": False,
            "subscriber_wrappers": [self._observe()],
        }

    def _observe(self) -> SubscriberWrapper:
        observer = _Observer(self._note)
        self._unclaimed.append(observer)
        return observer

    def add(self, service: Service) -> Service:
        """Run ``service`` (built with :meth:`wiring`) with the others: started by :meth:`start`, stopped at the end."""
        if service.broker is not self.broker or service.registry is not self.registry:
            raise ValueError(f"service {service.name!r} was not built with harness.wiring()")
        if self._unclaimed:
            self._unclaimed.pop(0).service = service.name
        self.services.append(service)
        return service

    def service(self, name: str, *handlers: object, **options: Any) -> Service:
        """A new service on the shared blocks, serving ``handlers``; ``options`` go to ``micro.Service``."""
        service = Service(name, **{**self.wiring(), **options})
        for handler in handlers:
            service.handle(handler)
        return self.add(service)

    # -- running ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every service added and not yet running (each registers, so the client finds it)."""
        for component in (self.registry, self.broker, self.transport, self.store):
            await component.start()
        for service in self.services:
            if not service.running:
                await service.start()

    async def close(self) -> None:
        """Stop every service, then close the client and the shared blocks. Idempotent."""
        for service in reversed(self.services):
            if service.running:
                await service.stop()
        owned, self._owned = self._owned, []
        for component in reversed(owned):
            await component.close()
        self._client = None
        for component in (self.store, self.transport, self.broker, self.registry):
            await component.close()

    async def __aenter__(self) -> Harness:
        # The shared blocks start now, so a handler may use the store before any service runs.
        for component in (self.registry, self.broker, self.transport, self.store):
            await component.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- calling ----------------------------------------------------------------------------------

    @property
    def client(self) -> Client:
        """A client on the shared blocks (built on first use), as another service would call with."""
        if self._client is None:
            manager = get_manager()
            make = manager.maker(self.environ)
            selector = manager.create(Selector, environ=self.environ, wiring={"make": make, "registry": self.registry})
            client = manager.create(
                Client,
                environ=self.environ,
                wiring={
                    "make": make,
                    "codecs": self.codecs,
                    "transport": self.transport,
                    "selector": selector,
                    "broker": self.broker,
                },
            )
            self._owned += [selector, client]
            self._client = client
        return self._client

    async def call(
        self,
        service: str,
        endpoint: str,
        request: Any = None,
        *,
        response_type: type[T] | None = None,
        **options: Unpack[CallOptions],
    ) -> T | Any:
        """Start what is not running, then call ``service``'s ``endpoint`` through :attr:`client`.

        The keywords are those of :meth:`micro.client.Client.call` (:class:`~micro.client.CallOptions`).
        """
        await self.start()
        client = self.client
        await client.start()
        return await client.call(service, endpoint, request, response_type=response_type, **options)

    async def publish(self, topic: str, message: Any, *, metadata: Mapping[str, str] | None = None) -> None:
        """Start what is not running, then publish ``message`` on ``topic`` as a service would."""
        await self.start()
        client = self.client
        await client.start()
        await client.publish(topic, message, metadata=metadata)

    # -- watching ---------------------------------------------------------------------------------

    def published(self, topic: str | None = None) -> list[Published]:
        """Every message published so far (on ``topic`` only, if given), oldest first."""
        return [p for p in self._published if topic is None or p.topic == topic]

    @contextlib.asynccontextmanager
    async def handled(
        self,
        topic: str | None = None,
        *,
        service: str | None = None,
        subscriber: str | None = None,
        count: int = 1,
        timeout: float = 10.0,
        raise_errors: bool = True,
    ) -> AsyncIterator[Waiter]:
        """Wait, when the block ends, until ``count`` matching messages have been handled (``entrypoint_waiter``).

        Only messages handled after the block is entered count. A filter left ``None`` matches
        anything. If a matching subscriber raised, the block re-raises it (``raise_errors``); the
        records are in the waiter's ``results`` either way.

        :raises ~micro.errors.Timeout: fewer than ``count`` were handled within ``timeout`` seconds.
        """
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")

        def match(h: Handled) -> bool:
            return (
                (topic is None or h.topic == topic)
                and (service is None or h.service == service)
                and (subscriber is None or h.subscriber == subscriber)
            )

        waiter = Waiter(match, count)
        self._waiters.append(waiter)
        try:
            yield waiter
            try:
                await asyncio.wait_for(waiter._done.wait(), timeout)
            except TimeoutError:
                wanted = ", ".join(
                    f"{k}={v!r}" for k, v in (("topic", topic), ("service", service), ("subscriber", subscriber)) if v
                )
                raise Timeout(
                    f"{len(waiter.results)} of {count} messages ({wanted or 'any'}) handled within {timeout}s"
                ) from None
        finally:
            self._waiters.remove(waiter)
        if raise_errors:
            for result in waiter.results:
                if result.error is not None:
                    raise result.error

    # -- hooks ------------------------------------------------------------------------------------

    def _capture(self, topic: str, message: BrokerMessage) -> None:
        self._published.append(Published(topic, dict(message.header), bytes(message.body), self.codecs))

    def _note(self, handled: Handled) -> None:
        for waiter in tuple(self._waiters):
            waiter._offer(handled)


class _Observer:
    """A subscriber wrapper that tells the harness each message one service's subscribers handled."""

    def __init__(self, note: Callable[[Handled], None]) -> None:
        self._note = note
        #: Set by :meth:`Harness.add` (a service's name is known only once it is built).
        self.service = ""

    def __call__(self, handler: SubscriberFunc) -> SubscriberFunc:
        async def observed(message: Message) -> None:
            try:
                await handler(message)
            except BaseException as exc:
                self._note(Handled(self.service, message.topic, message.subscriber, message.payload, exc))
                raise
            self._note(Handled(self.service, message.topic, message.subscriber, message.payload, None))

        return observed


# -- the pytest plugin (entry point ``pytest11``: ``micro = "micro.testing"``) -----------------------------


async def _harness() -> AsyncIterator[Harness]:
    """A :class:`Harness` for this test: services built through it run in memory, closed afterwards."""
    async with Harness() as harness:
        yield harness


def _needs_pytest_asyncio() -> Harness:
    """Without pytest-asyncio, say so when the fixture is used, not at import (that would break every run)."""
    raise RuntimeError("the micro_harness fixture needs pytest-asyncio (pip install pytest-asyncio)")


try:
    import pytest
except ImportError:  # the classes above work without pytest; only the fixture needs it
    pass
else:
    try:
        import pytest_asyncio
    except ImportError:
        micro_harness = pytest.fixture(_needs_pytest_asyncio, name="micro_harness")
    else:
        micro_harness = pytest_asyncio.fixture(_harness, name="micro_harness")  # type: ignore[assignment]


# -- services in their own processes -------------------------------------------------------------


def unique_name(prefix: str = "test") -> str:
    """A service name no other test (here or on a shared backend) uses: ``prefix`` and 10 hex digits."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class ServiceProcess:
    """A Python script run in its own OS process, its stdout read line by line.

    The script says it is ready by printing ``READY <address>`` (see :meth:`ready`); what else
    it prints can be waited for with :meth:`expect`. :meth:`stop` sends SIGTERM (a service's
    graceful stop), then SIGKILL if it does not exit in time.
    """

    def __init__(self, process: asyncio.subprocess.Process, name: str) -> None:
        self.process = process
        self.name = name
        #: What the script printed after ``READY `` (its address), once :meth:`ready` returned.
        self.address = ""
        #: Every stdout line read so far.
        self.lines: list[str] = []

    @classmethod
    async def launch(
        cls,
        script: str | os.PathLike[str],
        *args: str,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ServiceProcess:
        """Start ``python script *args`` with this interpreter; ``env`` is added to this process's environment."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            os.fspath(script),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        return cls(process, name or (args[0] if args else os.fspath(script)))

    @property
    def pid(self) -> int:
        return self.process.pid

    async def ready(self, *, prefix: str = "READY ", timeout: float = 30.0) -> ServiceProcess:
        """Wait for the ``READY <address>`` line (``prefix``), keep the address in :attr:`address`; return self."""
        line = await self.expect(prefix, timeout=timeout)
        self.address = line.removeprefix(prefix)
        return self

    async def expect(self, prefix: str, *, timeout: float = 10.0) -> str:
        """The next stdout line starting with ``prefix``; ``AssertionError`` on EOF or after ``timeout`` seconds."""
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.name}: no {prefix!r} line within {timeout}s; saw {self.lines}")
            try:
                raw = await asyncio.wait_for(self.process.stdout.readline(), remaining)
            except TimeoutError:
                continue
            if not raw:
                stderr = await self.stderr()
                raise AssertionError(f"{self.name} exited ({self.process.returncode}) before {prefix!r}:\n{stderr}")
            line = raw.decode().rstrip("\n")
            self.lines.append(line)
            if line.startswith(prefix):
                return line

    async def stderr(self) -> str:
        """What the process wrote to stderr (read to its end: call it once the process exited)."""
        assert self.process.stderr is not None
        try:
            return (await asyncio.wait_for(self.process.stderr.read(), 5)).decode()
        except TimeoutError:
            return "<stderr not readable>"

    def signal(self, signum: int) -> None:
        """Send ``signum`` unless the process already exited."""
        if self.process.returncode is None:
            self.process.send_signal(signum)

    def open_fds(self) -> int:
        """How many file descriptors the process has open (Linux: ``/proc``)."""
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_mib(self) -> float:
        """The process's resident memory in MiB (Linux: ``/proc``)."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    async def wait(self, timeout: float = 20.0) -> int:
        """The exit status, waiting at most ``timeout`` seconds (``TimeoutError``)."""
        return await asyncio.wait_for(self.process.wait(), timeout)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if the process has not exited within 20 seconds. Idempotent."""
        if self.process.returncode is None:
            self.signal(signal.SIGTERM)
            try:
                await self.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


#: ``await spawn(name, env=None)``: a :class:`ServiceProcess` of the spawner's script, once ready.
Spawn = Callable[..., Awaitable[ServiceProcess]]


@contextlib.asynccontextmanager
async def spawner(script: str | os.PathLike[str], *, timeout: float = 30.0) -> AsyncIterator[Spawn]:
    """``await spawn(name, env={...})`` runs ``python script name`` and waits for its ``READY`` line.

    Every process started is stopped (SIGTERM, then SIGKILL) when the block exits.
    """
    started: list[ServiceProcess] = []

    async def spawn(name: str, env: Mapping[str, str] | None = None) -> ServiceProcess:
        process = await ServiceProcess.launch(script, name, name=name, env=env)
        started.append(process)
        return await process.ready(timeout=timeout)

    try:
        yield spawn
    finally:
        for process in started:
            await process.stop()
