"""One trace across two services and a broker hop, recorded by the SDK's InMemorySpanExporter."""

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from micro.broker.memory import MemoryBroker
from micro.errors import BadRequest, InternalError
from micro.registry.memory import MemoryRegistry
from micro.service import Service
from micro.transport.memory import MemoryTransport
from micro_opentelemetry import OpenTelemetryTracer
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode


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
            raise BadRequest("no such user: token=s3cr3t")
        if request["id"] == "boom":
            raise RuntimeError("database password=hunter2 leaked")
        return {"name": "user " + request["id"]}


@pytest.fixture(params=["memory", "http"])
async def services(
    request: pytest.FixtureRequest, tmp_path: Path, exporter: InMemorySpanExporter
) -> AsyncIterator[tuple[Service, Service, asyncio.Queue[dict[str, str]]]]:
    registry = MemoryRegistry()
    # One in-process broker, or the default http broker: one per service, messages over loopback HTTP.
    shared = MemoryBroker() if request.param == "memory" else None
    environ = {"MICRO_TRACER": "opentelemetry", "XDG_RUNTIME_DIR": str(tmp_path)}

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
    created: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def on_created(event: dict[str, str]) -> None:
        await created.put(event)

    users.subscribe("orders.created", on_created)
    async with users, orders:
        yield orders, users, created


async def _spans(exporter: InMemorySpanExporter, count: int) -> Sequence[ReadableSpan]:
    deadline = time.monotonic() + 10
    while len(spans := exporter.get_finished_spans()) < count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    return spans


def _one(spans: Sequence[ReadableSpan], kind: SpanKind, service: str) -> ReadableSpan:
    found = [s for s in spans if s.kind is kind and (s.attributes or {}).get("micro.service") == service]
    assert len(found) == 1, [(s.name, s.kind, s.attributes) for s in spans]
    return found[0]


async def test_one_trace_across_two_services_and_a_broker_hop(services, exporter):
    orders, _, created = services
    result = await orders.client.call("orders", "Orders.create", {"id": "o1", "user": "u1"})
    assert result == {"order": "o1", "user": "user u1"}
    assert await asyncio.wait_for(created.get(), 10) == {"order": "o1"}
    spans = await _spans(exporter, 6)
    assert len(spans) == 6, [s.name for s in spans]

    root = _one(spans, SpanKind.CLIENT, "orders")  # the test's call: orders' client calls orders
    served = _one(spans, SpanKind.SERVER, "orders")
    nested = _one(spans, SpanKind.CLIENT, "users")
    served_b = _one(spans, SpanKind.SERVER, "users")
    (published,) = [s for s in spans if s.kind is SpanKind.PRODUCER]
    processed = _one(spans, SpanKind.CONSUMER, "users")

    assert len({s.context.trace_id for s in spans}) == 1  # one trace
    assert root.parent is None
    assert served.parent is not None
    assert served.parent.span_id == root.context.span_id
    assert served.parent.is_remote  # it came over the wire, in traceparent
    assert nested.parent is not None
    assert nested.parent.span_id == served.context.span_id
    assert served_b.parent is not None
    assert served_b.parent.span_id == nested.context.span_id
    assert published.parent is not None
    assert published.parent.span_id == served.context.span_id
    assert processed.parent is not None
    assert processed.parent.span_id == published.context.span_id
    assert processed.parent.is_remote  # through the message headers

    assert served.name == "Orders/create"
    assert (
        dict(served.attributes or {}).items()
        >= {
            "rpc.system": "micro",
            "rpc.service": "Orders",
            "rpc.method": "create",
        }.items()
    )
    assert (nested.attributes or {})["rpc.service"] == "Users"
    assert (nested.attributes or {})["rpc.method"] == "get"
    assert (nested.attributes or {})["server.address"]
    assert published.name == "publish orders.created"
    assert (published.attributes or {})["messaging.system"] == "micro"
    assert (published.attributes or {})["messaging.destination.name"] == "orders.created"
    assert (published.attributes or {})["messaging.operation.type"] == "send"
    assert (processed.attributes or {})["messaging.operation.type"] == "process"
    assert (processed.attributes or {})["messaging.message.id"] == (published.attributes or {})["messaging.message.id"]
    assert all(s.status.status_code is StatusCode.UNSET for s in spans)

    # The same spans, read back the way `micro debug trace` does.
    tracer = orders.debug._tracer  # type: ignore[union-attr]
    assert isinstance(tracer, OpenTelemetryTracer)
    trace_id = f"{root.context.trace_id:032x}"
    names = {s.name for s in await tracer.read(trace_id=trace_id)}
    assert names == {"Orders/create", "Users/get", "publish orders.created"}


async def test_errors_are_recorded_with_status_and_masked_text(services, exporter):
    orders, _, _ = services
    with pytest.raises(BadRequest):
        await orders.client.call("users", "Users.get", {"id": "bad"})
    with pytest.raises(InternalError):
        await orders.client.call("users", "Users.get", {"id": "boom"})
    spans = await _spans(exporter, 4)
    assert len(spans) == 4
    failed = [s for s in spans if s.status.status_code is StatusCode.ERROR]
    assert len(failed) == 4, [(s.name, s.kind, s.status) for s in spans]
    bad_server, boom_server = (s for s in spans if s.kind is SpanKind.SERVER)
    bad_client, boom_client = (s for s in spans if s.kind is SpanKind.CLIENT)
    assert (bad_server.attributes or {})["error.type"] == "BadRequest"
    assert (bad_server.attributes or {})["rpc.micro.status_code"] == 400
    assert (bad_client.attributes or {})["rpc.micro.status_code"] == 400
    assert "no such user" in (bad_server.status.description or "")
    assert "s3cr3t" not in (bad_server.status.description or "")
    assert (boom_client.attributes or {})["rpc.micro.status_code"] == 500
    assert (boom_server.attributes or {})["error.type"] in {"RuntimeError", "InternalError"}
    for span in spans:
        assert "hunter2" not in (span.status.description or "")


async def test_a_foreign_traceparent_is_continued_and_a_malformed_one_ignored(tmp_path, exporter):
    registry = MemoryRegistry()
    environ = {"MICRO_TRACER": "opentelemetry", "XDG_RUNTIME_DIR": str(tmp_path)}
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
    # A caller without tracing of its own: what it puts in the metadata is all the server sees.
    caller = Service(
        "caller",
        registry=registry,
        transport=MemoryTransport(),
        broker=MemoryBroker(),
        handle_signals=False,
        debug=False,
        environ={},
    )
    trace_id, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    async with users:
        await caller.client.call(
            "users",
            "Users.get",
            {"id": "u"},
            metadata={"traceparent": f"00-{trace_id}-{parent}-01", "tracestate": "vendor=1"},
        )
        (span,) = await _spans(exporter, 1)
        assert f"{span.context.trace_id:032x}" == trace_id
        assert span.parent is not None
        assert f"{span.parent.span_id:016x}" == parent
        assert span.context.trace_state.get("vendor") == "1"
        exporter.clear()
        await caller.client.call(
            "users", "Users.get", {"id": "u"}, metadata={"traceparent": f"00-{trace_id}-zz{parent[2:]}-01<script>"}
        )
        (span,) = await _spans(exporter, 1)
        assert span.parent is None  # not continued: a new trace
        assert f"{span.context.trace_id:032x}" != trace_id


async def test_spans_started_with_the_micro_api_are_opentelemetry_spans(exporter):
    from micro.debug.trace import SpanType, current_span
    from opentelemetry import trace

    tracer = OpenTelemetryTracer()
    async with tracer:
        with tracer.start_span("checkout", metadata={"cart": "7"}) as outer:
            assert current_span() is outer
            # The OpenTelemetry API inside a micro span: its child.
            with (
                tracer.start_span("charge", type=SpanType.OUTBOUND) as inner,
                trace.get_tracer("app").start_as_current_span("sql"),
            ):
                pass
            with pytest.raises(ValueError, match="declined"), tracer.start_span("refund"):
                raise ValueError("declined")
        spans = {s.name: s for s in exporter.get_finished_spans()}
        assert set(spans) == {"checkout", "charge", "sql", "refund"}
        assert spans["checkout"].parent is None
        assert spans["checkout"].attributes == {"cart": "7"}
        assert spans["charge"].parent is not None
        assert spans["charge"].parent.span_id == spans["checkout"].context.span_id
        assert spans["charge"].kind is SpanKind.CLIENT
        assert spans["sql"].parent is not None
        assert spans["sql"].parent.span_id == spans["charge"].context.span_id
        assert spans["refund"].status.status_code is StatusCode.ERROR
        assert f"{spans['charge'].context.span_id:016x}" == inner.id
        assert inner.trace_id == outer.trace_id == f"{spans['checkout'].context.trace_id:032x}"
        assert inner.parent == outer.id
        read = {s.name: s for s in await tracer.read(trace_id=outer.trace_id)}
        assert set(read) == {"checkout", "charge", "refund"}  # the spans of this tracer
        assert read["refund"].metadata["error"].startswith("ValueError")


async def test_services_on_the_built_in_tracer_share_the_trace(tmp_path, exporter):
    """Micro-Trace-Id both ways: a fleet moving to OpenTelemetry one service at a time keeps one trace."""
    registry = MemoryRegistry()

    def make(name: str, environ: dict[str, str]) -> Service:
        service = Service(
            name,
            address="127.0.0.1:0",
            registry=registry,
            transport=MemoryTransport(),
            broker=MemoryBroker(),
            handle_signals=False,
            environ={"XDG_RUNTIME_DIR": str(tmp_path), "MICRO_DEBUG_ACCESS": "open", **environ},
        )
        service.handle(Users())
        return service

    # The same sample everywhere, as a fleet configures it: a Micro-Trace-Id trace is recorded where keep() says so.
    users = make("users", {"MICRO_TRACER": "opentelemetry", "MICRO_TRACER_SAMPLE": "1"})
    legacy = make("legacy", {"MICRO_TRACER_SAMPLE": "1"})  # the built-in memory tracer
    async with users, legacy:
        await legacy.client.call("users", "Users.get", {"id": "u"})
        (served,) = [s for s in await _spans(exporter, 1) if s.kind is SpanKind.SERVER]
        (sent,) = [s for s in await legacy.debug._tracer.read() if s.type.value == "outbound"]  # type: ignore[union-attr]
        assert f"{served.context.trace_id:032x}" == sent.trace_id
        assert served.parent is not None
        assert f"{served.parent.span_id:016x}" == sent.id
        exporter.clear()

        await users.client.call("legacy", "Users.get", {"id": "u"})
        (call,) = [s for s in await _spans(exporter, 1) if s.kind is SpanKind.CLIENT]
        (received,) = [s for s in await legacy.debug._tracer.read(trace_id=f"{call.context.trace_id:032x}")]  # type: ignore[union-attr]
        assert received.type.value == "inbound"
        assert received.parent == f"{call.context.span_id:016x}"
