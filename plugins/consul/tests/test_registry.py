"""The Consul registry beyond the contract: what lands in Consul, Go Micro's encoding, health, the shortcut, faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import micro
import pytest
from micro.errors import BackendUnavailable, BadRequest, InvalidOption, ServiceNotFound
from micro.registry import Endpoint, Node, Result, Service, Value
from micro_conformance import eventually
from micro_consul import ConsulRegistryOptions, _tags
from micro_consul._watch import next_index
from micro_consul.registry import ConsulRegistry, deregister_after

from .conftest import Agent


@pytest.fixture
async def registry() -> AsyncIterator[ConsulRegistry]:
    registry = ConsulRegistry()
    await registry.start()
    yield registry
    await registry.close()


@pytest.fixture
async def cleanup(agent: Agent) -> AsyncIterator[list[str]]:
    """Consul service IDs to deregister after the test, whatever happened."""
    ids: list[str] = []
    yield ids
    for sid in ids:
        await agent.put(f"/v1/agent/service/deregister/{sid}")


def sid(service: Service, node: Node) -> str:
    return _tags.service_id(service.name, service.version, node.id)


async def node_ids(registry: ConsulRegistry, name: str) -> list[str]:
    try:
        return [n.id for s in await registry.get_service(name) for n in s.nodes]
    except ServiceNotFound:
        return []


# -- options and faults (no agent needed) ------------------------------------------------------------------


@pytest.mark.offline
def test_selected_by_name_with_options_from_the_environment() -> None:
    environ = {
        "MICRO_REGISTRY": "consul",
        "MICRO_REGISTRY_ADDRESS": "10.0.0.1:8500,https://consul.example:8501",
        "MICRO_REGISTRY_TOKEN": "s3cret",
        "MICRO_REGISTRY_DATACENTER": "dc2",
        "MICRO_REGISTRY_WATCH_WAIT": "5s",
        "MICRO_REGISTRY_TTL": "30s",
    }
    registry = micro.get_manager().create("registry", environ=environ)
    assert isinstance(registry, ConsulRegistry)
    options = registry.options
    assert options.address == ("10.0.0.1:8500", "https://consul.example:8501")
    assert (options.token, options.datacenter, options.watch_wait, options.ttl) == ("s3cret", "dc2", 5.0, 30.0)
    assert registry.address == "10.0.0.1:8500"
    assert registry.capabilities == {"ttl", "watch"}


@pytest.mark.offline
@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("MICRO_REGISTRY_ADDRESS", "no-port", "host:port"),
        ("MICRO_REGISTRY_ADDRESS", "ftp://host:21", "host:port"),
        ("MICRO_REGISTRY_WATCH_WAIT", "0", "seconds"),
        ("MICRO_REGISTRY_DATACENTER", " ", "non-empty"),
    ],
)
def test_bad_options_name_their_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(InvalidOption, match=message) as caught:
        micro.get_manager().create("registry", environ={"MICRO_REGISTRY": "consul", variable: value})
    assert variable in str(caught.value)


@pytest.mark.offline
@pytest.mark.parametrize("value", [3, 1001, True, 4.5, "8"])
def test_max_connections_is_bounded(value: object) -> None:
    with pytest.raises(InvalidOption, match="max_connections"):
        ConsulRegistryOptions(max_connections=value)  # type: ignore[arg-type]
    options = (
        micro.get_manager()
        .create("registry", environ={"MICRO_REGISTRY": "consul", "MICRO_REGISTRY_MAX_CONNECTIONS": "12"})
        .options
    )
    assert isinstance(options, ConsulRegistryOptions)
    assert options.max_connections == 12


@pytest.mark.offline
@pytest.mark.parametrize(
    ("previous", "found", "expected"),
    [
        (None, 42, (42, True)),  # a first (or fresh) read
        (42, 42, (42, False)),  # the wait ran out: nothing new
        (42, 57, (57, True)),
        (42, 7, (None, True)),  # backwards (a snapshot restore): read afresh, without an index
        (None, 0, (1, True)),  # 0 would make every blocking query answer at once
        (1, 0, (None, True)),
    ],
)
def test_blocking_query_indexes_follow_consul_rules(
    previous: int | None, found: int, expected: tuple[int | None, bool]
) -> None:
    assert next_index(previous, found) == expected


@pytest.mark.offline
def test_deregister_critical_after_follows_go_micro() -> None:
    assert deregister_after(10) == 65.0  # Consul reaps no sooner than a minute: max(ttl, 1m) + 5s
    assert deregister_after(0.5) == 65.0
    assert deregister_after(120) == 125.0


@pytest.mark.offline
async def test_unreachable_agent_fails_quickly_naming_address_and_variable() -> None:
    registry = ConsulRegistry(ConsulRegistryOptions(address=("127.0.0.1:1",), timeout=2))
    started = time.monotonic()
    with pytest.raises(BackendUnavailable) as caught:
        await registry.start()
    assert time.monotonic() - started < 3
    assert "127.0.0.1:1" in str(caught.value)
    assert "MICRO_REGISTRY_ADDRESS" in str(caught.value)
    with pytest.raises(BackendUnavailable):
        await registry.get_service("anything")  # starts itself on first use, and fails the same way
    await registry.close()


@pytest.mark.offline
async def test_consul_http_addr_is_the_fallback_and_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "127.0.0.1:1")
    registry = ConsulRegistry(ConsulRegistryOptions(timeout=1))
    with pytest.raises(BackendUnavailable, match=r"127\.0\.0\.1:1 \(CONSUL_HTTP_ADDR\)"):
        await registry.start()


@pytest.mark.offline
async def test_a_watcher_of_an_unreachable_agent_fails_then_stops() -> None:
    registry = ConsulRegistry(ConsulRegistryOptions(address=("127.0.0.1:1",), timeout=0.5))
    watcher = registry.watch()
    with pytest.raises(BackendUnavailable):
        await asyncio.wait_for(watcher.__anext__(), 5)
    assert watcher.stopped
    await registry.close()


@pytest.mark.offline
async def test_closing_the_registry_stops_watchers_whose_watch_failed() -> None:
    registry = ConsulRegistry(ConsulRegistryOptions(address=("127.0.0.1:1",), timeout=0.5))
    watcher = registry.watch()
    # The failure is queued for the reader, who has not read yet.
    await eventually(lambda: watcher.ready.is_set(), what="the failed first read")  # type: ignore[attr-defined]
    await registry.close()
    assert watcher.stopped
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(watcher.__anext__(), 5)


@pytest.mark.offline
@pytest.mark.parametrize(
    ("address", "parts"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("[::1]:9090", ("::1", 9090)),
        ("host.example:1", ("host.example", 1)),
        ("::1", ("::1", 0)),
        ("unix:/run/sock", ("unix:/run/sock", 0)),
        ("host:99999", ("host:99999", 0)),
    ],
)
def test_addresses_split_into_consul_fields_and_back(address: str, parts: tuple[str, int]) -> None:
    assert _tags.split_address(address) == parts
    assert _tags.join_address(*parts) == address


@pytest.mark.offline
def test_service_ids_are_unique_per_version_and_safe_in_urls() -> None:
    ids = {_tags.service_id("a", v, n) for v in ("1", "2") for n in ("x", "y")}
    assert len(ids) == 4
    odd = _tags.service_id("svc", "1", "node/with ?odd#chars")
    assert odd.startswith("svc-node_with__odd_chars-")
    assert _tags.service_id("greeter", "1", "greeter-1234").startswith("greeter-1234-")


# -- what lands in Consul ----------------------------------------------------------------------------------


async def test_a_node_becomes_a_consul_service_with_go_micro_tags_and_a_ttl_check(
    registry: ConsulRegistry, agent: Agent, unique: Callable[[str], str], cleanup: list[str]
) -> None:
    endpoint = Endpoint("Say.Hello", Value("Req", "Req", [Value("name", "string")]), Value("Rsp", "Rsp"), {"a": "b"})
    node = Node("n1", "127.0.0.1:4321", {"ok": "yes", "dotted.key": "kept in tags only"})
    service = Service(unique("svc"), "1.2.3", {"team": "core"}, [endpoint], [node])
    cleanup.append(sid(service, node))
    await registry.register(service, ttl=30)

    status, info = await agent.get(f"/v1/agent/service/{sid(service, node)}")
    assert status == 200
    assert (info["Service"], info["Address"], info["Port"]) == (service.name, "127.0.0.1", 4321)
    assert info["Meta"] == {"ok": "yes"}, "a key Consul refuses in Meta was sent there"
    decoded = _tags.decode(info["Tags"])
    assert decoded["version"] == "1.2.3"
    assert decoded["node_id"] == "n1"
    assert decoded["metadata"] == {"team": "core"}
    assert decoded["node_metadata"] == {"ok": "yes", "dotted.key": "kept in tags only"}
    assert [e.to_dict() for e in decoded["endpoints"]] == [endpoint.to_dict()]
    _, checks = await agent.get("/v1/agent/checks")
    check = checks[f"service:{sid(service, node)}"]
    assert (check["Type"], check["Status"], check["ServiceID"]) == ("ttl", "passing", sid(service, node))


async def test_a_service_registered_by_go_micro_is_read(
    registry: ConsulRegistry, agent: Agent, unique: Callable[[str], str], cleanup: list[str]
) -> None:
    """Go Micro's registration: the service ID is the node id, and tags v-, e-, t- only (no s-, no n-)."""
    name = unique("gosvc")
    endpoint = Endpoint("Greeter.Hello", Value("Request", "Request"), Value("Response", "Response"))
    tags = [tag for tag in _tags.encode(Service(name, "latest", {}, [endpoint]), Node("x", "h:1", {"proto": "mucp"}))]
    go_tags = [tag for tag in tags if tag[:2] in ("v-", "e-", "t-")]
    node_id = f"{name}-6b1a9f2e"
    cleanup.append(node_id)
    registration = {"ID": node_id, "Name": name, "Tags": go_tags, "Address": "10.1.2.3", "Port": 9000}
    status, _ = await agent.put("/v1/agent/service/register", registration)
    assert status == 200
    (found,) = await registry.get_service(name)
    assert (found.version, found.metadata) == ("latest", {})
    assert [e.name for e in found.endpoints] == ["Greeter.Hello"]
    assert [(n.id, n.address, n.metadata) for n in found.nodes] == [(node_id, "10.1.2.3:9000", {"proto": "mucp"})]


async def test_unhealthy_nodes_are_hidden_and_watchers_hear_of_it(
    registry: ConsulRegistry, agent: Agent, unique: Callable[[str], str], cleanup: list[str]
) -> None:
    service = Service(unique("svc"), nodes=[Node("a", "127.0.0.1:1"), Node("b", "127.0.0.1:2")])
    cleanup.extend(sid(service, n) for n in service.nodes)
    await registry.register(service, ttl=60)
    watcher = registry.watch(service.name)
    try:
        # The check fails behind the registry's back: before the watcher's first read it would be part of
        # the baseline, not a result.
        await eventually(lambda: watcher.ready.is_set(), what="the watcher's first read")  # type: ignore[attr-defined]
        await agent.put(f"/v1/agent/check/fail/service:{sid(service, service.nodes[0])}")
        assert await node_ids(registry, service.name) == ["b"]
        result = await asyncio.wait_for(watcher.__anext__(), 10)
        assert (result.action, [n.id for n in result.service.nodes]) == ("update", ["b"])
        await agent.put(f"/v1/agent/check/fail/service:{sid(service, service.nodes[1])}")
        with pytest.raises(ServiceNotFound):
            await registry.get_service(service.name)
        result = await asyncio.wait_for(watcher.__anext__(), 10)
        assert (result.action, [n.id for n in result.service.nodes]) == ("delete", ["b"])
    finally:
        await watcher.stop()


async def test_an_unchanged_refresh_only_passes_the_ttl_check(
    registry: ConsulRegistry, agent: Agent, unique: Callable[[str], str], cleanup: list[str]
) -> None:
    """Go Micro's shortcut: the same registration again is a TTL pass, not a new registration..."""
    node = Node("n1", "127.0.0.1:1")
    service = Service(unique("svc"), nodes=[node])
    cleanup.append(sid(service, node))
    await registry.register(service, ttl=30)
    # Change the registration behind the plugin's back: only a full re-registration would undo it.
    _, info = await agent.get(f"/v1/agent/service/{sid(service, node)}")
    tampered = {"ID": info["ID"], "Name": info["Service"], "Tags": [*info["Tags"], "tampered"], "Port": 1}
    tampered["Check"] = {"CheckID": f"service:{sid(service, node)}", "TTL": "30s"}
    await agent.put("/v1/agent/service/register", tampered)
    await agent.put(f"/v1/agent/check/fail/service:{sid(service, node)}")
    assert await node_ids(registry, service.name) == []
    await registry.register(service, ttl=30)
    _, info = await agent.get(f"/v1/agent/service/{sid(service, node)}")
    assert "tampered" in info["Tags"], "an unchanged refresh registered the service again"
    assert await node_ids(registry, service.name) == ["n1"], "the refresh did not pass the ttl check"


async def test_a_refresh_registers_again_what_the_agent_lost(
    registry: ConsulRegistry, agent: Agent, unique: Callable[[str], str], cleanup: list[str]
) -> None:
    """...unless the agent no longer has it (restarted, or reaped it): then it is registered in full."""
    node = Node("n1", "127.0.0.1:1")
    service = Service(unique("svc"), nodes=[node])
    cleanup.append(sid(service, node))
    await registry.register(service, ttl=30)
    await agent.put(f"/v1/agent/service/deregister/{sid(service, node)}")
    assert await node_ids(registry, service.name) == []
    await registry.register(service, ttl=30)
    assert await node_ids(registry, service.name) == ["n1"]


async def test_a_version_takes_metadata_and_endpoints_from_its_latest_registration(
    registry: ConsulRegistry, unique: Callable[[str], str], cleanup: list[str]
) -> None:
    name = unique("svc")
    old = Service(name, "1", {"build": "old"}, [Endpoint("Old.Call")], [Node("a", "127.0.0.1:1")])
    new = Service(name, "1", {"build": "new"}, [Endpoint("New.Call")], [Node("b", "127.0.0.1:2")])
    cleanup.extend([sid(old, old.nodes[0]), sid(new, new.nodes[0])])
    await registry.register(old)
    await registry.register(new)
    (found,) = await registry.get_service(name)
    assert (found.metadata, [e.name for e in found.endpoints]) == ({"build": "new"}, ["New.Call"])
    assert [n.id for n in found.nodes] == ["a", "b"]


async def test_list_services_fills_nodes_and_endpoints(
    registry: ConsulRegistry, unique: Callable[[str], str], cleanup: list[str]
) -> None:
    service = Service(unique("svc"), "2", {"k": "v"}, [Endpoint("E.P")], [Node("n", "[::1]:80")])
    cleanup.append(sid(service, service.nodes[0]))
    await registry.register(service)
    (listed,) = [s for s in await registry.list_services() if s.name == service.name]
    assert listed == service


async def test_names_consul_cannot_carry_are_refused(registry: ConsulRegistry) -> None:
    with pytest.raises(BadRequest, match="'/'"):
        await registry.register(Service("a/b", nodes=[Node("n", "127.0.0.1:1")]))
    with pytest.raises(ServiceNotFound):
        await registry.get_service("a/b")


async def test_the_first_agent_that_answers_is_used(
    consul_address: str, unique: Callable[[str], str], cleanup: list[str]
) -> None:
    async with ConsulRegistry(ConsulRegistryOptions(address=("127.0.0.1:1", consul_address), timeout=2)) as registry:
        assert registry.address == consul_address
        service = Service(unique("svc"), nodes=[Node("n", "127.0.0.1:1")])
        cleanup.append(sid(service, service.nodes[0]))
        await registry.register(service)
        assert await node_ids(registry, service.name) == ["n"]


# -- watching ----------------------------------------------------------------------------------------------


async def test_expiry_is_reported_by_a_watcher(
    registry: ConsulRegistry, unique: Callable[[str], str], cleanup: list[str]
) -> None:
    service = Service(unique("svc"), nodes=[Node("n", "127.0.0.1:1")])
    cleanup.append(sid(service, service.nodes[0]))
    watcher = registry.watch(service.name)
    try:
        await registry.register(service, ttl=1)
        created = await asyncio.wait_for(watcher.__anext__(), 5)
        assert created.action == "create"
        deleted = await asyncio.wait_for(watcher.__anext__(), 5)  # the ttl lapses: Consul marks the check critical
        assert (deleted.action, [n.id for n in deleted.service.nodes]) == ("delete", ["n"])
    finally:
        await watcher.stop()


async def test_watching_everything_sees_changes_made_by_other_processes(
    registry: ConsulRegistry, unique: Callable[[str], str], cleanup: list[str]
) -> None:
    """Another registry instance (as another process would) registers and deregisters; the watcher follows."""
    seen: list[Result] = []
    prefix = unique("")
    watcher = registry.watch()

    async def read() -> None:
        async for result in watcher:
            if result.service.name.startswith(prefix):
                seen.append(result)

    reader = asyncio.create_task(read())
    try:
        await eventually(lambda: watcher.ready.is_set(), what="the watcher's first read")  # type: ignore[attr-defined]
        async with ConsulRegistry() as other:
            service = Service(unique("elsewhere"), nodes=[Node("n", "127.0.0.1:1")])
            cleanup.append(sid(service, service.nodes[0]))
            await other.register(service)
            await eventually(lambda: [r.action for r in seen] == ["create"], what="the create")
            await other.deregister(service)
            await eventually(lambda: [r.action for r in seen] == ["create", "delete"], what="the delete")
    finally:
        await watcher.stop()
        await asyncio.wait_for(reader, 5)


async def test_check_changes_reach_a_watch_of_everything_and_the_listing(
    registry: ConsulRegistry, agent: Agent, unique: Callable[[str], str], cleanup: list[str]
) -> None:
    """watch() and list_services read the catalog node by node: a failing check must hide its instance there too."""
    service = Service(unique("svc"), nodes=[Node("a", "127.0.0.1:1"), Node("b", "127.0.0.1:2")])
    cleanup.extend(sid(service, n) for n in service.nodes)
    await registry.register(service, ttl=60)
    seen: list[Result] = []
    watcher = registry.watch()

    async def read() -> None:
        async for result in watcher:
            if result.service.name == service.name:
                seen.append(result)

    def listed() -> list[str]:
        return [n.id for s in listing for n in s.nodes if s.name == service.name]

    reader = asyncio.create_task(read())
    try:
        await eventually(lambda: watcher.ready.is_set(), what="the watcher's first read")  # type: ignore[attr-defined]
        # Maintenance mode adds a critical check to the instance, behind the registry's back.
        first = sid(service, service.nodes[0])
        await agent.put(f"/v1/agent/service/maintenance/{first}?enable=true&reason=test")
        await eventually(lambda: [[n.id for n in r.service.nodes] for r in seen] == [["b"]], what="the update")
        listing = await registry.list_services()
        assert listed() == ["b"]
        await agent.put(f"/v1/agent/service/maintenance/{first}?enable=false")
        await eventually(lambda: [[n.id for n in r.service.nodes] for r in seen][-1:] == [["a", "b"]], what="back")
        listing = await registry.list_services()
        assert listed() == ["a", "b"]
        # Check changes alone are read service by service; the removal after them must still be seen.
        await registry.deregister(service)
        await eventually(lambda: [r.action for r in seen] == ["update", "update", "delete"], what="the delete")
    finally:
        await watcher.stop()
        await asyncio.wait_for(reader, 5)


async def test_a_watcher_that_comes_during_a_read_still_gets_its_first_read(registry: ConsulRegistry) -> None:
    """Watchers join at the end of a read; one created while a read runs must get a read of its own."""
    late: list[Any] = []
    read_catalog = registry.catalog

    async def read_then_watch() -> Any:
        found = await read_catalog()
        if not late:
            late.append(registry.watch())
        return found

    registry.catalog = read_then_watch  # type: ignore[method-assign]
    first = registry.watch()
    try:
        await eventually(lambda: len(late) == 1, what="a watcher created during the first read")
        # No change follows: the late watcher's own wake-up must not be dropped as already answered.
        await eventually(lambda: late[0].ready.is_set(), what="the late watcher's first read")
    finally:
        await first.stop()
        for watcher in late:
            await watcher.stop()


async def test_stopping_a_registry_stops_its_watchers(registry: ConsulRegistry, unique: Callable[[str], str]) -> None:
    watchers = [registry.watch(), registry.watch(unique("svc"))]
    pending: Any = asyncio.ensure_future(watchers[0].__anext__())
    await asyncio.sleep(0.05)
    await registry.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, 5)
    assert all(w.stopped for w in watchers)


@pytest.mark.offline
@pytest.mark.parametrize(
    "address",
    [
        "http://user:s3cret@example.com:notaport",
        "http://:s3cret",  # the @host forgotten: the secret reads as a port
        "user:s3c@ret@example.com",  # no port; an @ in the password
        "ftp://user:s3cret@example.com:21",
        "http://example.com:bad?token=s3cret",
    ],
)
def test_bad_addresses_are_refused_without_echoing_a_secret(address: str) -> None:
    with pytest.raises(InvalidOption, match="host:port") as caught:
        micro.get_manager().create("registry", environ={"MICRO_REGISTRY": "consul", "MICRO_REGISTRY_ADDRESS": address})
    assert "s3c" not in str(caught.value)
    assert "MICRO_REGISTRY_ADDRESS" in str(caught.value)
    assert "***" in str(caught.value)


@pytest.mark.offline
def test_a_bad_consul_http_addr_is_refused_naming_it_without_echoing_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "https://user:s3cret@example.com:s3cret")
    with pytest.raises(InvalidOption, match="CONSUL_HTTP_ADDR") as caught:
        ConsulRegistry(ConsulRegistryOptions())
    assert "s3c" not in str(caught.value)
