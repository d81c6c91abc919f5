"""micro.Service in one process: composition, lifecycle hooks, wrappers, options from the environment."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from typing import Any

import pytest
from micro.errors import ConfigError, InvalidOption, ServiceNotFound
from micro.registry.local import LocalRegistry
from micro.selector.cache import RandomSelector
from micro.server import HandlerFunc, Request
from micro.service import Service
from rpcstack import Stack


class Say:
    async def hello(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"message": f"Hello {req['name']}"}


def in_memory(stack: Stack, **options: Any) -> Service:
    return Service(
        stack.name,
        registry=stack.registry,
        transport=stack.transport,
        broker=stack.broker,
        selector=RandomSelector(registry=stack.registry),
        **options,
    )


def test_import_micro_stays_lazy() -> None:
    code = "import sys, micro; assert 'micro.service' not in sys.modules; micro.Service; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "ok"
    import micro

    assert micro.Service is Service
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        micro.Nope  # type: ignore[attr-defined]  # noqa: B018


async def test_lifecycle_and_hooks_in_order(stack: Stack) -> None:
    events: list[str] = []

    async def async_hook() -> None:
        events.append("after_start")

    service = in_memory(
        stack,
        version="1.2.0",
        before_start=[lambda: events.append("before_start")],
        after_start=[async_hook],
        before_stop=[lambda: events.append("before_stop")],
    )
    service.hook("after_stop", lambda: events.append("after_stop"))
    service.handle(Say())
    assert (service.name, service.version) == (stack.name, "1.2.0")
    async with service:
        assert service.running
        assert await service.client.call(stack.name, "Say.hello", {"name": "A"}) == {"message": "Hello A"}
        (entry,) = await stack.registry.get_service(stack.name)
        assert entry.version == "1.2.0"
        await service.start()  # idempotent
    assert not service.running
    assert events == ["before_start", "after_start", "before_stop", "after_stop"]
    with pytest.raises(ServiceNotFound):
        await stack.registry.get_service(stack.name)
    await service.stop()  # idempotent
    assert events == ["before_start", "after_start", "before_stop", "after_stop"]


async def test_wrappers_on_every_side(stack: Stack) -> None:
    seen: list[str] = []

    def handler_wrapper(next: HandlerFunc) -> HandlerFunc:
        async def handle(request: Request) -> Any:
            seen.append(f"handler:{request.metadata.get('X-From')}")
            return await next(request)

        return handle

    def call_wrapper(next: Any) -> Any:
        async def call(request: Any) -> Any:
            request.metadata["X-From"] = "wrapped-client"
            seen.append("call")
            return await next(request)

        return call

    service = in_memory(stack, wrappers=[handler_wrapper], call_wrappers=[call_wrapper])
    service.handle(Say())
    async with service:
        await service.client.call(stack.name, "Say.hello", {"name": "A"})
    assert seen == ["call", "handler:wrapped-client"]


async def test_failed_start_cleans_up(stack: Stack) -> None:
    def explode() -> None:
        raise RuntimeError("hook failed")

    service = in_memory(stack, after_start=[])
    service.handle(Say())
    service.hook("before_start", explode)
    with pytest.raises(RuntimeError, match="hook failed"):
        await service.start()
    assert not service.running
    with pytest.raises(ServiceNotFound):
        await stack.registry.get_service(stack.name)


async def test_shutdown_ends_run(stack: Stack) -> None:
    service = in_memory(stack, handle_signals=False)
    service.handle(Say())
    service.hook("after_start", service.shutdown)
    await asyncio.wait_for(service.run(), 5)
    assert not service.running


async def test_run_stops_on_sigterm(stack: Stack) -> None:
    service = in_memory(stack)
    service.handle(Say())
    stopped: list[str] = []
    service.hook("after_start", lambda: os.kill(os.getpid(), signal.SIGTERM))
    service.hook("after_stop", lambda: stopped.append("stopped"))
    await asyncio.wait_for(service.run(), 5)
    assert stopped == ["stopped"]
    # the handler was removed again: a later SIGTERM would not be swallowed by a dead service
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.default_int_handler, None)


def test_register_options_from_the_environment(stack: Stack) -> None:
    service = in_memory(stack, environ={"MICRO_REGISTER_TTL": "20s", "MICRO_REGISTER_INTERVAL": "5"})
    assert service.server.options.register_ttl == 20.0
    assert service.server.options.register_interval == 5.0
    explicit = in_memory(stack, register_ttl=9, environ={"MICRO_REGISTER_TTL": "20s"})
    assert explicit.server.options.register_ttl == 9
    with pytest.raises(InvalidOption, match="MICRO_REGISTER_TTL"):
        in_memory(stack, environ={"MICRO_REGISTER_TTL": "soon"})
    with pytest.raises(InvalidOption, match="register_interval"):
        in_memory(stack, register_ttl=5, register_interval=10)


@pytest.mark.parametrize("name", ["", "has space", 3])
def test_bad_name(name: Any) -> None:
    with pytest.raises(ConfigError, match="service name"):
        Service(name)


def test_environ_selects_the_blocks(stack: Stack, unique: str) -> None:
    from micro.broker.memory import MemoryBroker
    from micro.registry.memory import MemoryRegistry
    from micro.selector.cache import RoundRobinSelector
    from micro.transport.memory import MemoryTransport

    environ = {
        "MICRO_REGISTRY": "memory",
        "MICRO_TRANSPORT": "memory",
        "MICRO_BROKER": "memory",
        "MICRO_SELECTOR": "roundrobin",
        "MICRO_SERVER_ADDRESS": "127.0.0.1:7",
        "MICRO_CLIENT_RETRIES": "4",
    }
    service = Service(unique, environ=environ)
    assert isinstance(service.registry, MemoryRegistry)
    assert isinstance(service.transport, MemoryTransport)
    assert isinstance(service.broker, MemoryBroker)
    assert isinstance(service.selector, RoundRobinSelector)
    assert service.selector.registry is service.registry
    assert service.server.options.address == "127.0.0.1:7"
    assert service.server.options.name == unique  # the service's own name beats the environment
    assert service.client.options.retries == 4
    with pytest.raises(ConfigError, match="MICRO_REGISTRY"):
        Service(unique, environ={"MICRO_REGISTRY": "nope"})


def test_bad_hook_name(stack: Stack) -> None:
    with pytest.raises(ConfigError, match="unknown hook"):
        in_memory(stack).hook("sometime", lambda: None)  # type: ignore[arg-type]


async def test_default_components_share_one_registry(unique: str) -> None:
    """With nothing passed in, every block comes from micro.create and the registry is shared."""
    service = Service(unique)
    service.handle(Say())
    assert isinstance(service.registry, LocalRegistry)
    assert service.selector.registry is service.registry
    server = service.server
    assert getattr(server, "registry", None) is service.registry
    assert getattr(server, "transport", None) is service.transport
    async with service:
        assert await service.client.call(unique, "Say.hello", {"name": "default"}) == {"message": "Hello default"}
        (entry,) = await service.registry.get_service(unique)
        assert entry.nodes[0].metadata["transport"] == "tcp"


def standalone(name: str) -> Service:
    """A service on fresh in-memory blocks, for run_forever() (which makes its own event loop)."""
    from micro.broker.memory import MemoryBroker
    from micro.registry.memory import MemoryRegistry
    from micro.transport.memory import MemoryTransport

    registry = MemoryRegistry()
    return Service(
        name,
        registry=registry,
        transport=MemoryTransport(),
        broker=MemoryBroker(),
        selector=RandomSelector(registry=registry),
        handle_signals=False,
    )


@pytest.mark.parametrize("use_uvloop", [False, True])
def test_run_forever(unique: str, use_uvloop: bool) -> None:
    try:
        import uvloop
    except ImportError:
        uvloop = None
    service = standalone(unique)
    service.handle(Say())
    loops: list[str] = []

    async def check() -> None:
        loops.append(type(asyncio.get_running_loop()).__module__)
        assert await service.client.call(unique, "Say.hello", {"name": "x"}) == {"message": "Hello x"}
        service.shutdown()

    service.hook("after_start", check)
    if use_uvloop and uvloop is None:
        with pytest.raises(ConfigError, match="uvloop was requested but is not installed"):
            service.run_forever(uvloop=True)
        return
    service.run_forever(uvloop=use_uvloop)
    assert len(loops) == 1
    assert loops[0].startswith("uvloop") == use_uvloop


def test_uvloop_from_the_environment(unique: str) -> None:
    service = Service(unique, environ={"MICRO_UVLOOP": "yes"}, handle_signals=False)
    service.hook("after_start", service.shutdown)
    try:
        import uvloop  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="uvloop"):
            service.run_forever()
    else:
        service.run_forever()  # runs and returns: the hook stops it at once
