import time

import pytest
from micro.client.base import Request as CallRequest
from micro.client.base import Response
from micro.debug.handler import Debug, LogsRequest, TraceRequest
from micro.debug.log import LogRecord, MemoryLog
from micro.debug.stats import MemoryStats, Stat
from micro.debug.trace import SPAN_ID_HEADER, TRACE_ID_HEADER, MemoryTracer, Span, SpanType, current_span
from micro.debug.wrappers import stats_handler, trace_call, trace_handler
from micro.errors import BadRequest, NotSupported
from micro.metadata import Metadata
from micro.registry.base import Node
from micro.server.base import Request


def inbound(endpoint: str = "Greeter.hello", metadata: Metadata | None = None) -> Request:
    return Request(
        service="greeter",
        endpoint=endpoint,
        content_type="application/json",
        metadata=metadata or Metadata(),
        header={},
        body={},
    )


def outbound(metadata: Metadata | None = None) -> CallRequest:
    return CallRequest(
        service="users",
        endpoint="Users.get",
        body={},
        content_type="application/json",
        metadata=metadata or Metadata(),
    )


async def test_debug_endpoints_serve_json_able_data():
    log, tracer, stats = MemoryLog(), MemoryTracer(), MemoryStats()
    log.write(LogRecord(time.time(), "info", "hello", {"logger": "micro"}))
    log.write(LogRecord(time.time(), "error", "bad", {}))
    with tracer.start_span("work") as span:
        pass
    with tracer.start_span("other"):
        pass
    stats.record(RuntimeError())
    debug = Debug(log=log, tracer=tracer, stats=stats)

    assert await debug.health() == {"status": "ok"}
    (stat,) = (await debug.stats())["stats"]
    assert Stat.from_dict(stat).errors == 1
    records = (await debug.logs(LogsRequest(level="error")))["records"]
    assert [LogRecord.from_dict(r).message for r in records] == ["bad"]
    assert len((await debug.logs(LogsRequest(count=1)))["records"]) == 1
    spans = (await debug.trace(TraceRequest(id=span.trace_id)))["spans"]
    assert [Span.from_dict(s).id for s in spans] == [span.id]
    assert len((await debug.trace(TraceRequest()))["spans"]) == 2
    with pytest.raises(BadRequest):
        await debug.logs(LogsRequest(level="nope"))


async def test_missing_parts_are_not_supported():
    debug = Debug()
    assert await debug.health() == {"status": "ok"}
    with pytest.raises(NotSupported):
        await debug.stats()
    with pytest.raises(NotSupported):
        await debug.logs(LogsRequest())
    with pytest.raises(NotSupported):
        await debug.trace(TraceRequest())


async def test_trace_crosses_a_call_from_client_wrapper_to_server_wrapper():
    tracer_a, tracer_b = MemoryTracer(), MemoryTracer()
    sent: list[CallRequest] = []

    async def network(request: CallRequest) -> Response:
        sent.append(request)
        # service B receives the headers A sent
        served = await trace_handler(tracer_b)(handler_b)(inbound("Users.get", Metadata(request.metadata)))
        return Response(served, metadata=Metadata())

    async def handler_b(request: Request) -> str:
        span = current_span()
        assert span is not None
        assert span.type is SpanType.INBOUND
        return span.trace_id

    async def handler_a(request: Request) -> str:
        call = trace_call(tracer_a)(network)
        request_out = outbound()
        request_out.node = Node(id="n1", address="127.0.0.1:1")
        return (await call(request_out)).body

    trace_id = await trace_handler(tracer_a)(handler_a)(inbound())

    a_spans = {s.type: s for s in await tracer_a.read()}
    (b_span,) = await tracer_b.read()
    assert trace_id == a_spans[SpanType.INBOUND].trace_id == b_span.trace_id
    assert a_spans[SpanType.OUTBOUND].parent == a_spans[SpanType.INBOUND].id
    assert a_spans[SpanType.OUTBOUND].metadata == {"service": "users", "node": "127.0.0.1:1"}
    assert b_span.parent == a_spans[SpanType.OUTBOUND].id
    assert b_span.name == "Users.get"
    assert sent[0].metadata[TRACE_ID_HEADER] == trace_id
    assert sent[0].metadata[SPAN_ID_HEADER] == a_spans[SpanType.OUTBOUND].id


async def test_call_wrapper_continues_a_trace_from_metadata_without_a_current_span():
    tracer = MemoryTracer()

    async def send(request: CallRequest) -> Response:
        return Response(None, metadata=Metadata())

    await trace_call(tracer)(send)(outbound(Metadata({TRACE_ID_HEADER: "t-1", SPAN_ID_HEADER: "s-1"})))
    (span,) = await tracer.read()
    assert (span.trace_id, span.parent, span.type) == ("t-1", "s-1", SpanType.OUTBOUND)


async def test_failures_are_recorded_by_both_wrappers():
    tracer, stats = MemoryTracer(), MemoryStats()

    async def ok(request: Request) -> str:
        return "fine"

    async def broken(request: Request) -> str:
        raise BadRequest("no")

    assert await stats_handler(stats)(trace_handler(tracer)(ok))(inbound()) == "fine"
    with pytest.raises(BadRequest):
        await stats_handler(stats)(trace_handler(tracer)(broken))(inbound())
    (now,) = await stats.read()
    assert (now.requests, now.errors) == (2, 1)
    spans = await tracer.read()
    assert "error" not in spans[0].metadata
    assert spans[1].metadata["error"] == "BadRequest: no"
    assert spans[0].trace_id != spans[1].trace_id
