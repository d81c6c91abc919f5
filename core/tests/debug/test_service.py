"""The debug block on real services: trace propagation across a call, and the Debug endpoints over RPC."""

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from micro.auth.local import local_proof
from micro.broker.memory import MemoryBroker
from micro.debug.handler import Debug, TraceRequest
from micro.debug.trace import SPAN_ID_HEADER, TRACE_ID_HEADER, SpanType
from micro.errors import BadRequest
from micro.registry.memory import MemoryRegistry
from micro.service import Service
from micro.transport.memory import MemoryTransport


@dataclass
class Order:
    id: str


class Orders:
    """Service A: asks service B (users) while serving a call."""

    def __init__(self) -> None:
        self.service: Service | None = None

    async def create(self, request: Order) -> dict[str, str]:
        assert self.service is not None
        logging.getLogger("micro.orders").warning("creating %s", request.id)
        user = await self.service.client.call("users", "Users.get", {"id": "u1"})
        return {"order": request.id, "user": user["name"]}


class Users:
    async def get(self, request: dict[str, str]) -> dict[str, str]:
        return {"name": f"user {request['id']}"}


@pytest.fixture
async def services(
    tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Service, Service, Debug, Debug]]:
    registry = MemoryRegistry()
    # The per-user secret behind the Debug endpoints' local proofs lives in the runtime dir: a private one here.
    # Every span is recorded unless a test asks for a sample rate (indirect parametrization).
    environ = {"XDG_RUNTIME_DIR": str(tmp_path), "MICRO_TRACER_SAMPLE": getattr(request, "param", "1")}

    def make(name: str) -> Service:
        service = Service(
            name,
            address="127.0.0.1:0",
            registry=registry,
            transport=MemoryTransport(),
            broker=MemoryBroker(),
            handle_signals=False,
            environ=environ,
        )
        service.wrap_call(local_proof(environ=environ))  # calls as the same local user, as `micro debug` does
        return service

    orders, users = make("orders"), make("users")
    handler = Orders()
    handler.service = orders
    orders.handle(handler)
    users.handle(Users())
    debug_a, debug_b = orders.debug, users.debug  # every service serves Debug by default
    assert isinstance(debug_a, Debug)
    assert isinstance(debug_b, Debug)
    async with users, orders:
        yield orders, users, debug_a, debug_b


async def test_a_span_started_in_a_reaches_b_with_the_same_trace_id(services):
    orders, _, debug_a, debug_b = services
    result = await orders.client.call("orders", "Orders.create", {"id": "o1"})
    assert result == {"order": "o1", "user": "user u1"}

    spans_a = (await debug_a.trace(TraceRequest()))["spans"]
    inbound_a = next(s for s in spans_a if s["name"] == "Orders.create")
    trace_id = inbound_a["trace_id"]
    outbound_a = next(s for s in spans_a if s["name"] == "users Users.get")
    assert outbound_a["trace_id"] == trace_id
    assert outbound_a["parent"] == inbound_a["id"]
    assert outbound_a["type"] == SpanType.OUTBOUND

    # read B's spans the way `micro debug trace users --id ...` does: through B's Debug endpoint
    spans_b = (await orders.client.call("users", "Debug.trace", {"id": trace_id}))["spans"]
    (inbound_b,) = spans_b
    assert (inbound_b["name"], inbound_b["trace_id"]) == ("Users.get", trace_id)
    assert inbound_b["parent"] == outbound_a["id"]
    assert spans_b == (await debug_b.trace(TraceRequest(id=trace_id)))["spans"]


@pytest.mark.parametrize("services", ["0.1"], indirect=True)
async def test_a_sampled_trace_is_complete_in_both_services_and_an_unsampled_one_absent(services):
    orders, _, debug_a, debug_b = services
    kept, dropped = "00000001" + "a" * 24, "ffffffff" + "a" * 24  # kept, and not, at the default 0.1
    for trace_id in (kept, dropped):
        metadata = {TRACE_ID_HEADER: trace_id, SPAN_ID_HEADER: "00f067aa0ba902b7"}
        await orders.client.call("orders", "Orders.create", {"id": "o1"}, metadata=metadata)

    spans_a = (await debug_a.trace(TraceRequest(id=kept)))["spans"]
    inbound_a = next(s for s in spans_a if s["name"] == "Orders.create")
    outbound_a = next(s for s in spans_a if s["name"] == "users Users.get")
    (inbound_b,) = (await debug_b.trace(TraceRequest(id=kept)))["spans"]
    caller = next(s for s in spans_a if s["name"] == "orders Orders.create")  # the test's call, made by A's client
    assert caller["parent"] == "00f067aa0ba902b7"
    assert inbound_a["parent"] == caller["id"]
    assert outbound_a["parent"] == inbound_a["id"]
    assert inbound_b["parent"] == outbound_a["id"]
    assert (await debug_a.trace(TraceRequest(id=dropped)))["spans"] == []
    assert (await debug_b.trace(TraceRequest(id=dropped)))["spans"] == []


def test_debug_can_be_turned_off():
    loud = Service("loud", registry=MemoryRegistry(), transport=MemoryTransport(), broker=MemoryBroker())
    assert "Debug.health" in {endpoint.name for endpoint in loud.server.endpoints()}
    service = Service(
        "quiet", registry=MemoryRegistry(), transport=MemoryTransport(), broker=MemoryBroker(), debug=False
    )
    assert service.debug is None
    assert not any(endpoint.name.startswith("Debug.") for endpoint in service.server.endpoints())


async def test_debug_endpoints_over_rpc(services):
    orders, users, _, _ = services
    await orders.client.call("orders", "Orders.create", {"id": "o2"})

    assert await users.client.call("orders", "Debug.health") == {"status": "ok"}
    logs = await users.client.call("orders", "Debug.logs", {"level": "warning"})
    assert [r["message"] for r in logs["records"]] == ["creating o2"]
    stats = (await users.client.call("orders", "Debug.stats"))["stats"]
    assert (stats[-1]["requests"], stats[-1]["errors"]) == (3, 0)  # create, health, logs
    with pytest.raises(BadRequest, match="unknown log level"):
        await users.client.call("orders", "Debug.logs", {"level": "shouting"})
    stats = (await users.client.call("orders", "Debug.stats"))["stats"]
    assert (stats[-1]["requests"], stats[-1]["errors"]) == (5, 1)
