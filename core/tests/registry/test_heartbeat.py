"""micro.registry.heartbeat.Heartbeat: register, renew every interval with the ttl, deregister on close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from micro.errors import BackendUnavailable
from micro.registry import Node, Service
from micro.registry.heartbeat import Heartbeat
from micro.registry.memory import MemoryRegistry

from .conftest import eventually_true


class Recording(MemoryRegistry):
    """Records the ttl of every register call; ``fail`` makes register raise it ``failures`` times."""

    def __init__(self) -> None:
        super().__init__()
        self.ttls: list[float | None] = []
        self.fail: BaseException | None = None
        self.failures = 0

    async def register(self, service: Service, *, ttl: float | None = None) -> None:
        self.ttls.append(ttl)
        if self.fail is not None and self.failures > 0:
            self.failures -= 1
            raise self.fail
        await super().register(service, ttl=ttl)


def describe(node_id: str = "n1", address: str = "127.0.0.1:9000") -> Callable[[], Service]:
    return lambda: Service("greeter", "1", nodes=[Node(node_id, address)])


@pytest.fixture
async def registry() -> AsyncIterator[Recording]:
    reg = Recording()
    yield reg
    await reg.close()


async def node_ids(registry: MemoryRegistry) -> set[str]:
    try:
        return {n.id for s in await registry.get_service("greeter") for n in s.nodes}
    except Exception:
        return set()


async def test_registers_renews_with_the_ttl_and_deregisters_on_close(registry: Recording) -> None:
    beat = Heartbeat(registry, ttl=5.0, interval=0.05, label="test")
    await beat.add("n1", describe())
    assert await node_ids(registry) == {"n1"}
    assert beat.registered == {"n1"}

    async def renewed() -> bool:
        return len(registry.ttls) >= 3

    await eventually_true(renewed)
    assert set(registry.ttls) == {5.0}
    await beat.close()
    assert await node_ids(registry) == set()
    assert beat.registered == frozenset()
    renewals = len(registry.ttls)
    await asyncio.sleep(0.2)
    assert len(registry.ttls) == renewals  # no renewal after close


async def test_re_registers_after_the_registry_lost_the_node(registry: Recording) -> None:
    beat = Heartbeat(registry, ttl=5.0, interval=0.05)
    await beat.add("n1", describe())
    # What a restarted registry (or an expired ttl) looks like from here: the node is gone.
    await registry.deregister(describe()())
    assert await node_ids(registry) == set()

    async def back() -> bool:
        return await node_ids(registry) == {"n1"}

    await eventually_true(back)
    await beat.close()


async def test_a_failing_renewal_is_retried_next_interval(registry: Recording) -> None:
    beat = Heartbeat(registry, ttl=5.0, interval=0.05)
    await beat.add("n1", describe())
    await registry.deregister(describe()())
    registry.fail, registry.failures = BackendUnavailable("registry down"), 3

    async def back() -> bool:
        return await node_ids(registry) == {"n1"}

    await eventually_true(back)
    assert registry.failures == 0
    await beat.close()


async def test_first_registration_retries_then_raises(registry: Recording) -> None:
    beat = Heartbeat(registry, ttl=None, interval=None)
    registry.fail, registry.failures = BackendUnavailable("registry down"), 2
    await beat.add("n1", describe(), attempts=3)
    assert await node_ids(registry) == {"n1"}
    registry.failures = 5
    with pytest.raises(BackendUnavailable, match="registry down"):
        await beat.add("n2", describe("n2"), attempts=2)
    assert "n2" not in beat
    await beat.close()


async def test_renew_registers_the_current_description_and_remove_deregisters(registry: Recording) -> None:
    address = ["127.0.0.1:9000"]
    beat = Heartbeat(registry, ttl=None, interval=None)  # no renewal loop: only renew() re-registers
    await beat.add("n1", lambda: Service("greeter", "1", nodes=[Node("n1", address[0])]))
    await beat.add("n2", describe("n2"))
    address[0] = "127.0.0.1:9100"
    beat.renew("n1")

    async def moved() -> bool:
        services = await registry.get_service("greeter")
        return any(n.address == "127.0.0.1:9100" for s in services for n in s.nodes)

    await eventually_true(moved)
    await beat.remove("n2")
    assert await node_ids(registry) == {"n1"}
    await beat.remove("n2")  # idempotent
    beat.renew("unknown")  # ignored
    await beat.close()
    assert await node_ids(registry) == set()


async def test_a_registry_given_as_a_function_is_read_at_use() -> None:
    registries = [Recording()]
    beat = Heartbeat(lambda: registries[0], ttl=None, interval=None)
    await beat.add("n1", describe())
    assert await node_ids(registries[0]) == {"n1"}
    await beat.close()
    await registries[0].close()
