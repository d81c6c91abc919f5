"""Behaviour every built-in registry shares (the conformance cases R1-R8), run against each one."""

from __future__ import annotations

import asyncio
import time

import pytest
from micro.errors import BadRequest, NotFound, ServiceNotFound
from micro.registry import Endpoint, Node, Registry, Service, Value

from .conftest import eventually, next_result


def svc(name: str, *nodes: str, version: str = "1.0.0", **metadata: str) -> Service:
    return Service(
        name,
        version,
        metadata=dict(metadata),
        endpoints=[Endpoint("Greeter.Hello", Value("Request", "Request", [Value("name", "string")]), None)],
        nodes=[Node(n, f"127.0.0.1:{9000 + i}", {"node": n}) for i, n in enumerate(nodes)],
    )


async def test_register_then_get_returns_everything(registry: Registry, unique: str) -> None:
    service = svc(unique, "a", team="core")
    await registry.register(service)
    (found,) = await registry.get_service(unique)
    assert found == service
    assert found is not service


async def test_versions_are_separate_entries_sorted(registry: Registry, unique: str) -> None:
    await registry.register(svc(unique, "b1", version="2.0.0"))
    await registry.register(svc(unique, "a1", version="1.0.0"))
    await registry.register(svc(unique, "a2", version="1.0.0"))
    found = await registry.get_service(unique)
    assert [(s.version, [n.id for n in s.nodes]) for s in found] == [("1.0.0", ["a1", "a2"]), ("2.0.0", ["b1"])]


async def test_register_is_an_upsert_by_node_id(registry: Registry, unique: str) -> None:
    await registry.register(svc(unique, "a", "b"))
    moved = svc(unique, "a", owner="x")
    moved.nodes[0].address = "127.0.0.1:7777"
    await registry.register(moved)
    (found,) = await registry.get_service(unique)
    assert {n.id: n.address for n in found.nodes} == {"a": "127.0.0.1:7777", "b": "127.0.0.1:9001"}
    assert found.metadata == {"owner": "x"}


async def test_deregister_removes_only_the_given_nodes(registry: Registry, unique: str) -> None:
    await registry.register(svc(unique, "a", "b"))
    await registry.deregister(svc(unique, "a"))
    (found,) = await registry.get_service(unique)
    assert [n.id for n in found.nodes] == ["b"]
    await registry.deregister(svc(unique, "b"))
    with pytest.raises(ServiceNotFound, match=unique):
        await registry.get_service(unique)
    await registry.deregister(svc(unique, "b"))  # already gone: not an error


async def test_deregister_of_last_node_keeps_other_versions(registry: Registry, unique: str) -> None:
    await registry.register(svc(unique, "a", version="1"))
    await registry.register(svc(unique, "b", version="2"))
    await registry.deregister(svc(unique, "a", version="1"))
    assert [s.version for s in await registry.get_service(unique)] == ["2"]


async def test_get_unknown_service_raises_not_found(registry: Registry, unique: str) -> None:
    with pytest.raises(ServiceNotFound) as info:
        await registry.get_service(unique)
    assert unique in str(info.value)
    assert isinstance(info.value, NotFound)
    assert isinstance(info.value, LookupError)


async def test_list_services_has_one_entry_per_version(registry: Registry, unique: str) -> None:
    other = unique + ".other"
    await registry.register(svc(unique, "a", version="1"))
    await registry.register(svc(unique, "b", version="2"))
    await registry.register(svc(other, "c"))
    listed = [(s.name, s.version) for s in await registry.list_services() if s.name.startswith(unique)]
    assert listed == [(unique, "1"), (unique, "2"), (other, "1.0.0")]


async def test_results_are_copies(registry: Registry, unique: str) -> None:
    service = svc(unique, "a")
    await registry.register(service)
    service.nodes.append(Node("sneaky", "127.0.0.1:1"))
    (found,) = await registry.get_service(unique)
    found.nodes.clear()
    found.metadata["x"] = "y"
    (again,) = await registry.get_service(unique)
    assert [n.id for n in again.nodes] == ["a"]
    assert again.metadata == {}


@pytest.mark.parametrize(
    "bad",
    [
        Service(""),
        Service("   "),
        Service("x", nodes=[Node("", "127.0.0.1:1")]),
        Service("x", nodes=[Node("a", "")]),
        Service("x", nodes=[Node("a", "127.0.0.1:1"), Node("a", "127.0.0.1:2")]),
    ],
    ids=["empty-name", "blank-name", "node-without-id", "node-without-address", "duplicate-node-id"],
)
async def test_register_rejects_bad_services(registry: Registry, bad: Service) -> None:
    with pytest.raises(BadRequest):
        await registry.register(bad)


async def test_bad_arguments_raise_bad_request(registry: Registry, unique: str) -> None:
    with pytest.raises(BadRequest):
        await registry.register(svc(unique, "a"), ttl=-1)
    with pytest.raises(BadRequest):
        await registry.get_service("")
    with pytest.raises(BadRequest):
        await registry.deregister(Service(""))
    with pytest.raises(BadRequest):
        registry.watch("")


async def test_ttl_expires_nodes_and_refresh_keeps_them(registry: Registry, unique: str) -> None:
    await registry.register(svc(unique, "forever"))
    await registry.register(svc(unique, "short"), ttl=0.2)
    await registry.register(svc(unique, "kept"), ttl=0.3)

    # "kept" is refreshed well within its ttl for longer than the ttl; "short" is not.
    started = time.monotonic()
    while time.monotonic() - started < 0.6:
        await registry.register(svc(unique, "kept"), ttl=0.3)
        await asyncio.sleep(0.05)

    (found,) = await registry.get_service(unique)
    assert sorted(n.id for n in found.nodes) == ["forever", "kept"]

    async def only_forever() -> None:
        (current,) = await registry.get_service(unique)
        assert [n.id for n in current.nodes] == ["forever"]

    await eventually(only_forever)


async def test_ttl_zero_means_never_expire(registry: Registry, unique: str) -> None:
    await registry.register(svc(unique, "a"), ttl=0)
    assert [s.name for s in await registry.get_service(unique)] == [unique]


async def test_watch_reports_create_update_delete(registry: Registry, unique: str) -> None:
    async with registry.watch(unique) as watcher:
        await registry.register(svc(unique, "a"))
        created = await next_result(watcher)
        assert created.action == "create"
        assert [n.id for n in created.service.nodes] == ["a"]

        await registry.register(svc(unique, "b"))
        updated = await next_result(watcher)
        assert updated.action == "update"
        assert [n.id for n in updated.service.nodes] == ["a", "b"]

        await registry.deregister(svc(unique, "a", "b"))
        deleted = await next_result(watcher)
        assert deleted.action == "delete"
        assert deleted.service.name == unique
    assert watcher.stopped


async def test_watch_filters_by_service(registry: Registry, unique: str) -> None:
    other = unique + ".other"
    watcher = registry.watch(unique)
    everything = registry.watch()
    await registry.register(svc(other, "x"))
    await registry.register(svc(unique, "a"))
    assert (await next_result(watcher)).service.name == unique
    seen = {(await next_result(everything)).service.name for _ in range(2)}
    assert seen == {unique, other}
    await watcher.stop()
    await everything.stop()


async def test_watch_reports_expiry_as_delete(registry: Registry, unique: str) -> None:
    async with registry.watch(unique) as watcher:
        await registry.register(svc(unique, "a"), ttl=0.2)
        assert (await next_result(watcher)).action == "create"
        result = await next_result(watcher)
        assert result.action == "delete"
        assert [n.id for n in result.service.nodes] == ["a"]


async def test_reregistering_the_same_service_is_silent(registry: Registry, unique: str) -> None:
    async with registry.watch(unique) as watcher:
        await registry.register(svc(unique, "a"))
        assert (await next_result(watcher)).action == "create"
        await registry.register(svc(unique, "a"))
        await registry.register(svc(unique, "b"))
        # The refresh of "a" produced nothing: the next result is the one that added "b".
        result = await next_result(watcher)
        assert result.action == "update"
        assert [n.id for n in result.service.nodes] == ["a", "b"]


async def test_stop_ends_a_pending_iteration(registry: Registry, unique: str) -> None:
    watcher = registry.watch(unique)
    waiting = asyncio.ensure_future(anext(watcher))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await watcher.stop()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(waiting, 1)
    with pytest.raises(StopAsyncIteration):
        await anext(watcher)
    await watcher.stop()  # idempotent


async def test_close_stops_watchers_and_is_idempotent(registry: Registry, unique: str) -> None:
    watcher = registry.watch()
    await registry.close()
    await registry.close()
    assert watcher.stopped
    await registry.start()
    await registry.register(svc(unique, "a"))
    assert await registry.get_service(unique)


async def test_concurrent_registrations_all_land(registry: Registry, unique: str) -> None:
    await asyncio.gather(*(registry.register(svc(unique, f"n{i:02}"), ttl=30) for i in range(20)))
    (found,) = await registry.get_service(unique)
    assert [n.id for n in found.nodes] == [f"n{i:02}" for i in range(20)]
