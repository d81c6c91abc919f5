"""Real calls and messages, then the /metrics endpoint read over HTTP and parsed by prometheus_client's parser."""

import asyncio
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from micro.broker.memory import MemoryBroker
from micro.errors import BadRequest, NotFound
from micro.registry.memory import MemoryRegistry
from micro.service import Service
from micro.transport.memory import MemoryTransport
from micro_prometheus import PrometheusStats
from prometheus_client.parser import text_string_to_metric_families


class Orders:
    def __init__(self, service: Service) -> None:
        self.service = service

    async def create(self, request: dict[str, str]) -> dict[str, str]:
        user = await self.service.client.call("users", "Users.get", {"id": request["user"]})
        await self.service.client.publish("orders.created", {"order": request["id"]})
        return {"order": request["id"], "user": user["name"]}


class Users:
    async def get(self, request: dict[str, str]) -> dict[str, str]:
        if request["id"] == "bad":
            raise BadRequest("no such user")
        return {"name": "user " + request["id"]}

    async def other(self, request: dict[str, str]) -> dict[str, str]:
        return {}


SUBSCRIBER = "services.on_created"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(stats: PrometheusStats, path: str = "/metrics") -> Samples:
    """Every sample of the endpoint, parsed by prometheus_client's own parser."""

    def get() -> str:
        with urllib.request.urlopen(f"http://{stats.address}{path}", timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/plain")
            return str(response.read().decode())

    text = await asyncio.to_thread(get)
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def _stats(service: Service) -> PrometheusStats:
    stats = service.debug._stats  # type: ignore[union-attr]
    assert isinstance(stats, PrometheusStats)
    return stats


@pytest.fixture(params=["memory", "http"])
async def services(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[Service, Service, asyncio.Queue[Any]]]:
    registry = MemoryRegistry()
    # One in-process broker, or the default http broker: one per service, messages over loopback HTTP.
    shared = MemoryBroker() if request.param == "memory" else None
    environ = {
        "MICRO_STATS": "prometheus",
        "MICRO_STATS_ADDRESS": "127.0.0.1:0",
        "XDG_RUNTIME_DIR": str(tmp_path),
    }

    def make(name: str) -> Service:
        return Service(
            name,
            address="127.0.0.1:0",
            registry=registry,
            transport=MemoryTransport(),
            broker=shared,
            handle_signals=False,
            environ=environ,
        )

    orders, users = make("orders"), make("users")
    assert type(users.broker).__name__ == {"memory": "MemoryBroker", "http": "HTTPBroker"}[request.param]
    orders.handle(Orders(orders))
    users.handle(Users())
    created: asyncio.Queue[Any] = asyncio.Queue()

    async def on_created(event: dict[str, str]) -> None:
        if event["order"] == "poison":
            raise ValueError("cannot handle")
        await created.put(event)

    (subscription,) = users.subscribe("orders.created", on_created)
    assert subscription.name == SUBSCRIBER  # the label is the subscriber's registered name
    async with users, orders:
        yield orders, users, created


async def test_calls_errors_latency_and_broker_counts_after_real_traffic(services):
    orders, users, created = services
    for n in range(3):
        await orders.client.call("orders", "Orders.create", {"id": f"o{n}", "user": "u"})
    with pytest.raises(BadRequest):
        await orders.client.call("users", "Users.get", {"id": "bad"})
    for _ in range(3):
        await asyncio.wait_for(created.get(), 10)

    a, b = await scrape(_stats(orders)), await scrape(_stats(users))
    create = {"service": "orders", "endpoint": "Orders.create"}
    get = {"service": "users", "endpoint": "Users.get"}
    # Server side.
    assert value(a, "micro_server_requests_total", **create) == 3
    assert value(a, "micro_server_request_duration_seconds_count", **create) == 3
    assert value(a, "micro_server_request_duration_seconds_bucket", **create, le="+Inf") == 3
    assert (value(a, "micro_server_request_duration_seconds_sum", **create) or 0) > 0
    assert value(a, "micro_server_errors_total", **create, code="500") is None
    assert value(b, "micro_server_requests_total", **get) == 4
    assert value(b, "micro_server_errors_total", **get, code="400") == 1
    # Client side: orders called users four times (three from its handler, one from the test), one failed.
    assert value(a, "micro_client_requests_total", **get) == 4
    assert value(a, "micro_client_errors_total", **get, code="400") == 1
    assert value(a, "micro_client_request_duration_seconds_count", **get) == 4
    # The broker: three published by orders, three consumed by users, each with a lag.
    topic = {"topic": "orders.created"}
    assert value(a, "micro_broker_published_total", service="orders", **topic) == 3
    assert value(b, "micro_broker_consumed_total", service="users", **topic, subscriber=SUBSCRIBER) == 3
    assert value(b, "micro_broker_lag_seconds_count", service="users", **topic) == 3
    lag = value(b, "micro_broker_lag_seconds_sum", service="users", **topic)
    assert lag is not None
    assert 0 <= lag < 60
    assert value(b, "micro_broker_published_total", service="users", **topic) is None
    # The process collectors are there, and micro debug stats still counts.
    assert any(name == "process_cpu_seconds_total" or name == "python_info" for name, _ in a)
    assert (await _stats(users).read())[-1].requests == 4
    assert (await _stats(users).read())[-1].errors == 1


async def test_a_failing_subscriber_is_counted(services):
    orders, users, created = services
    await orders.client.publish("orders.created", {"order": "poison"})
    await orders.client.publish("orders.created", {"order": "fine"})
    await asyncio.wait_for(created.get(), 10)
    consumer = {"service": "users", "topic": "orders.created", "subscriber": SUBSCRIBER}
    deadline = asyncio.get_running_loop().time() + 10
    while True:  # the memory broker redelivers the poison message a few times: every delivery is counted
        b = await scrape(_stats(users))
        errors = value(b, "micro_broker_consume_errors_total", **consumer)
        if errors or asyncio.get_running_loop().time() > deadline:
            break
    assert errors is not None
    assert errors >= 1
    assert value(b, "micro_broker_consumed_total", **consumer) == errors + 1  # the one good message


async def test_an_unknown_endpoint_a_caller_sends_never_becomes_a_server_label(services):
    orders, users, _ = services
    for n in range(5):
        with pytest.raises(NotFound):
            await orders.client.call("users", f"Users.nope{n}", {})
    await orders.client.call("users", "Users.other", {})
    b = await scrape(_stats(users))
    endpoints = {dict(labels).get("endpoint") for name, labels in b if name.startswith("micro_server_")}
    assert endpoints == {"Users.other"}  # only a registered endpoint the server served


async def test_past_max_labels_new_label_sets_are_counted_as_other(tmp_path: Path):
    registry = MemoryRegistry()
    environ = {
        "MICRO_STATS": "prometheus",
        "MICRO_STATS_ADDRESS": "127.0.0.1:0",
        "MICRO_STATS_MAX_LABELS": "1",
        "XDG_RUNTIME_DIR": str(tmp_path),
    }
    users = Service(
        "users",
        address="127.0.0.1:0",
        registry=registry,
        transport=MemoryTransport(),
        broker=MemoryBroker(),
        handle_signals=False,
        environ=environ,
    )
    users.handle(Users())
    async with users:
        await users.client.call("users", "Users.get", {"id": "u"})
        for n in range(3):
            with pytest.raises(NotFound):
                await users.client.call("users", f"Users.nope{n}", {})
        await users.client.call("users", "Users.other", {})
        samples = await scrape(_stats(users))
    client = {
        dict(labels)["endpoint"]: v for (name, labels), v in samples.items() if name == "micro_client_requests_total"
    }
    assert client == {"Users.get": 1, "other": 4}
    server = {
        dict(labels)["endpoint"]: v for (name, labels), v in samples.items() if name == "micro_server_requests_total"
    }
    assert server == {"Users.get": 1, "other": 1}
