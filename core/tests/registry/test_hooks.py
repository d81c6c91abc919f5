"""The Registry base enforces the contract: a backend that implements only the hooks gets it for free.

Each test fails if the base stops enforcing one shared rule (argument checks, capabilities, the
lifecycle, ServiceNotFound, error translation, a backend's own limits before it connects).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest
from micro.errors import BackendUnavailable, BadRequest, ConnectionClosed, MicroError, NotSupported, ServiceNotFound
from micro.registry import Node, Registry, RegistryOptions, Service, Watcher
from micro.registry.watch import QueueWatcher, Watchers


class DriverError(Exception):
    pass


class Bare(Registry):
    """Services in a dict, no checks of its own; records every hook call."""

    capabilities: ClassVar[frozenset[str]] = frozenset({"ttl", "watch"})

    def __init__(self, options: RegistryOptions | None = None) -> None:
        super().__init__(options)
        self.services: dict[str, Service] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.fail_with: Exception | None = None
        self.start_fails: Exception | None = None
        self.watchers = Watchers()

    def _called(self, *call: Any) -> None:
        self.calls.append(call)
        if self.fail_with is not None:
            raise self.fail_with

    async def _start(self) -> None:
        self.calls.append(("start",))
        if self.start_fails is not None:
            raise self.start_fails

    async def _close(self) -> None:
        self.calls.append(("close",))
        await self.watchers.stop_all()

    def _check_service(self, service: Service) -> None:
        if service.name.startswith("too-long"):
            raise BadRequest("too long for this backend")

    async def _register(self, service: Service, ttl: float | None) -> None:
        self._called("register", service.name, ttl)
        self.services[service.name] = service

    async def _deregister(self, service: Service) -> None:
        self._called("deregister", service.name)
        self.services.pop(service.name, None)

    async def _get_service(self, name: str) -> list[Service]:
        self._called("get_service", name)
        return [self.services[name]] if name in self.services else []

    async def _list_services(self) -> list[Service]:
        self._called("list_services")
        return list(self.services.values())

    def _watch(self, service: str | None) -> Watcher:
        self._called("watch", service)
        return self.watchers.add(service)

    def _translate(self, exc: Exception) -> MicroError | None:
        return BackendUnavailable(f"driver: {exc}") if isinstance(exc, DriverError) else None


def svc(name: str = "greeter") -> Service:
    return Service(name, "1", nodes=[Node("n1", "127.0.0.1:1")])


async def test_bad_input_never_reaches_a_hook() -> None:
    registry = Bare()
    await registry.start()
    for bad in ("not a service", Service(""), Service("x", nodes=[Node("", "a:1")])):
        with pytest.raises(BadRequest):
            await registry.register(bad)  # type: ignore[arg-type]
    for ttl in (-1, float("nan"), "5", True):
        with pytest.raises(BadRequest):
            await registry.register(svc(), ttl=ttl)  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        await registry.deregister(Service(" "))
    with pytest.raises(BadRequest):
        await registry.deregister(None)  # type: ignore[arg-type]
    with pytest.raises(BadRequest):
        await registry.get_service("")
    with pytest.raises(BadRequest):
        registry.watch("")
    assert registry.calls == [("start",)]
    await registry.close()


async def test_the_effective_ttl_reaches_the_hook() -> None:
    registry = Bare(RegistryOptions(ttl=30))
    await registry.register(svc("a"))
    await registry.register(svc("b"), ttl=0)
    await registry.register(svc("c"), ttl=2)
    assert [c for c in registry.calls if c[0] == "register"] == [
        ("register", "a", 30.0),
        ("register", "b", None),
        ("register", "c", 2.0),
    ]
    await registry.close()


async def test_capabilities_are_checked_before_the_hooks() -> None:
    class NoExtras(Bare):
        capabilities: ClassVar[frozenset[str]] = frozenset()

    registry = NoExtras()
    with pytest.raises(NotSupported):
        await registry.register(svc(), ttl=5)
    with pytest.raises(NotSupported):
        registry.watch()
    await registry.register(svc(), ttl=0)  # a ttl that never expires needs no capability
    assert [c[0] for c in registry.calls] == ["start", "register"]
    await registry.close()


async def test_a_backends_own_limits_run_before_it_starts() -> None:
    registry = Bare()
    with pytest.raises(BadRequest, match="too long"):
        await registry.register(svc("too-long-name"))
    assert registry.calls == []


async def test_an_empty_answer_is_service_not_found_naming_it() -> None:
    registry = Bare()
    with pytest.raises(ServiceNotFound, match="'ghost'"):
        await registry.get_service("ghost")
    await registry.register(svc())
    assert [s.name for s in await registry.get_service("greeter")] == ["greeter"]
    await registry.close()


async def test_it_starts_on_first_use_and_refuses_after_close_until_started() -> None:
    registry = Bare()
    await registry.list_services()  # never started: starts itself
    assert registry.calls[0] == ("start",)
    await registry.close()
    calls = len(registry.calls)
    for use in (
        lambda: registry.register(svc()),
        lambda: registry.deregister(svc()),
        lambda: registry.get_service("greeter"),
        registry.list_services,
    ):
        with pytest.raises(ConnectionClosed, match="is closed"):
            await use()
    with pytest.raises(ConnectionClosed, match="is closed"):
        registry.watch()
    assert len(registry.calls) == calls, "a hook ran on a closed registry"
    await registry.start()
    await registry.register(svc())
    assert [s.name for s in await registry.list_services()] == ["greeter"]
    await registry.close()


async def test_driver_errors_are_translated_and_micro_errors_pass() -> None:
    registry = Bare()
    registry.fail_with = DriverError("boom")
    with pytest.raises(BackendUnavailable, match="driver: boom"):
        await registry.register(svc())
    with pytest.raises(BackendUnavailable):
        await registry.list_services()
    registry.fail_with = ServiceNotFound("as raised")
    with pytest.raises(ServiceNotFound, match="as raised"):
        await registry.get_service("x")
    registry.fail_with = KeyError("untranslated")
    with pytest.raises(KeyError):
        await registry.deregister(svc())
    registry.fail_with = None
    await registry.close()


async def test_a_watch_before_start_starts_the_registry() -> None:
    registry = Bare()
    watcher = registry.watch("greeter")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert registry.calls[:2] == [("watch", "greeter"), ("start",)]
    assert watcher.service == "greeter"  # type: ignore[attr-defined]  # the backend's watcher shows through
    await registry.close()
    assert watcher.stopped


async def test_a_failure_to_start_is_raised_by_the_watcher_and_close_stops_it() -> None:
    registry = Bare()
    registry.start_fails = BackendUnavailable("no server")
    watcher = registry.watch()
    with pytest.raises(BackendUnavailable, match="no server"):
        await asyncio.wait_for(watcher.__anext__(), 5)
    assert watcher.stopped
    with pytest.raises(StopAsyncIteration):
        await watcher.__anext__()
    other = registry.watch()  # not stopped by a reader: close() stops it, though the registry never started
    assert not other.stopped
    await asyncio.sleep(0)
    await registry.close()
    assert other.stopped
    assert ("close",) in registry.calls


async def test_a_queue_watcher_of_a_started_registry_is_returned_as_it_is() -> None:
    registry = Bare()
    await registry.start()
    assert isinstance(registry.watch(), QueueWatcher)
    await registry.close()


async def test_a_close_before_the_background_start_is_not_undone_by_it() -> None:
    registry = Bare()
    watcher = registry.watch()
    await registry.close()  # before the start the watch scheduled has run
    for _ in range(3):
        await asyncio.sleep(0)
    assert ("start",) not in registry.calls
    assert watcher.stopped
    with pytest.raises(StopAsyncIteration):
        await watcher.__anext__()
    with pytest.raises(ConnectionClosed):
        await registry.list_services()
