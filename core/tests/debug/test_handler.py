import asyncio
import time

import micro
import pytest
from micro.client.base import Request as CallRequest
from micro.client.base import Response
from micro.debug.handler import Debug, LogsRequest, TraceRequest
from micro.debug.log import LogRecord, MemoryLog
from micro.debug.stats import MemoryStats, Stat
from micro.debug.trace import (
    SPAN_ID_HEADER,
    TRACE_ID_HEADER,
    MemoryTracer,
    Span,
    SpanType,
    TracerOptions,
    current_span,
    keep,
    sampled_trace_id,
)
from micro.debug.wrappers import stats_handler, trace_call, trace_handler, traced_and_counted_handler
from micro.errors import BadRequest, InvalidOption, NotSupported
from micro.metadata import Metadata
from micro.registry.base import Node
from micro.server.base import Request

#: Record every call (the default samples 10%): for tests that read back every span.
EVERY = TracerOptions(sample=1.0)


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
    tracer_a, tracer_b = MemoryTracer(EVERY), MemoryTracer(EVERY)
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
    tracer = MemoryTracer(EVERY)

    async def send(request: CallRequest) -> Response:
        return Response(None, metadata=Metadata())

    await trace_call(tracer)(send)(outbound(Metadata({TRACE_ID_HEADER: "t-1", SPAN_ID_HEADER: "s-1"})))
    (span,) = await tracer.read()
    assert (span.trace_id, span.parent, span.type) == ("t-1", "s-1", SpanType.OUTBOUND)


async def test_failures_are_recorded_by_both_wrappers():
    tracer, stats = MemoryTracer(EVERY), MemoryStats()

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


@pytest.mark.parametrize("options", [EVERY, TracerOptions(sample=0.0, slow=0.05)], ids=["sampled", "unsampled"])
async def test_the_one_layer_wrapper_records_what_the_two_do(options):
    # debug_handler installs traced_and_counted_handler for the built-in tracer and stats: the same counts,
    # and the same spans (sampled calls, or failed and slow ones when nothing is sampled).
    recorded = []
    for wrap in (
        lambda tracer, stats, next: trace_handler(tracer)(stats_handler(stats)(next)),
        lambda tracer, stats, next: traced_and_counted_handler(tracer, stats)(next),
    ):
        tracer, stats = MemoryTracer(options), MemoryStats()

        async def ok(request: Request) -> str:
            return "fine"

        async def slow(request: Request) -> str:
            await asyncio.sleep(0.06)
            return "late"

        async def broken(request: Request) -> str:
            raise BadRequest("no")

        assert await wrap(tracer, stats, ok)(inbound()) == "fine"
        assert await wrap(tracer, stats, slow)(inbound()) == "late"
        with pytest.raises(BadRequest):
            await wrap(tracer, stats, broken)(inbound())
        (now,) = await stats.read()
        spans = await tracer.read()
        recorded.append(((now.requests, now.errors), [(s.name, s.type, dict(s.metadata)) for s in spans]))
    assert recorded[0] == recorded[1]
    assert recorded[1][0] == (3, 1)
    assert len(recorded[1][1]) == (3 if options is EVERY else 2)


def test_the_debug_guard_wraps_only_the_debug_endpoints():
    # The guard checks Debug.* calls only; RPCServer leaves it out of every other endpoint's chain.
    class Greeter:
        async def hello(self, name: str) -> str:
            return name

    service = micro.Service("guarded")
    service.handle(Greeter())
    outer = {
        name: service.server.route(name).call.__qualname__.partition(".")[0]
        for name in ("Greeter.hello", "Debug.stats")
    }
    assert outer == {"Greeter.hello": "traced_and_counted_handler", "Debug.stats": "debug_guard"}


def test_debug_handler_installs_one_server_wrapper_for_the_built_in_tracer_and_stats():
    service = micro.Service("one.layer")
    names = [wrapper.__qualname__.partition(".")[0] for wrapper in service.server._wrappers]
    assert names == ["debug_guard", "traced_and_counted_handler"]


# -- sampling: every error and slow call, a fraction of the rest, the same choice in every service ----------

KEPT_AT_HALF = "10000000" + "0" * 24  # first 8 hex digits 0x10000000: 1/16 of the id space, kept at 0.5
DROPPED_AT_HALF = "f0000000" + "0" * 24


def test_keep_follows_the_trace_id_so_every_service_agrees():
    assert keep(KEPT_AT_HALF, 0.5)
    assert not keep(DROPPED_AT_HALF, 0.5)
    assert keep(DROPPED_AT_HALF, 1.0)
    assert not keep(KEPT_AT_HALF, 0.0)
    # Go Micro's UUIDs start with 8 hex digits too; other shapes are hashed, deterministically
    assert keep("10000000-aaaa-bbbb-cccc-dddddddddddd", 0.5)
    assert keep("t-1", 0.3) == keep("t-1", 0.3)
    kept = sum(keep(f"x{i}", 0.25) for i in range(4000))
    assert 700 < kept < 1300  # about a quarter


def test_a_new_sampled_trace_id_is_one_keep_keeps():
    ids = [sampled_trace_id(0.2) for _ in range(2000)]
    chosen = [i for i in ids if i is not None]
    assert 200 < len(chosen) < 600  # about a fifth
    assert all(len(i) == 32 and keep(i, 0.2) for i in chosen)
    assert sampled_trace_id(0.0) is None


async def test_an_unsampled_call_runs_without_a_span_and_is_not_recorded():
    tracer = MemoryTracer(TracerOptions(sample=0.5))
    seen: list[Span | None] = []

    async def ok(request: Request) -> str:
        seen.append(current_span())
        return "fine"

    metadata = Metadata({TRACE_ID_HEADER: DROPPED_AT_HALF, SPAN_ID_HEADER: "00f067aa0ba902b7"})
    assert await trace_handler(tracer)(ok)(inbound(metadata=metadata)) == "fine"
    assert seen == [None]
    assert await tracer.read() == []

    await trace_handler(tracer)(ok)(inbound(metadata=Metadata({TRACE_ID_HEADER: KEPT_AT_HALF})))
    (span,) = await tracer.read()
    assert span.trace_id == KEPT_AT_HALF
    assert seen[-1] is span


async def test_errors_and_slow_calls_are_recorded_whatever_the_sample():
    tracer = MemoryTracer(TracerOptions(sample=0.0, slow=0.05))

    async def broken(request: Request) -> str:
        raise BadRequest("no")

    async def slow(request: Request) -> str:
        await asyncio.sleep(0.06)
        return "late"

    async def quick(request: Request) -> str:
        return "fine"

    parent = Metadata({TRACE_ID_HEADER: DROPPED_AT_HALF, SPAN_ID_HEADER: "00f067aa0ba902b7"})
    with pytest.raises(BadRequest):
        await trace_handler(tracer)(broken)(inbound(metadata=parent))
    assert await trace_handler(tracer)(slow)(inbound()) == "late"
    assert await trace_handler(tracer)(quick)(inbound()) == "fine"
    failed, late = await tracer.read()
    assert (failed.trace_id, failed.parent, failed.type) == (DROPPED_AT_HALF, "00f067aa0ba902b7", SpanType.INBOUND)
    assert failed.metadata["error"] == "BadRequest: no"
    assert failed.metadata["recorded"] == "error"
    assert late.metadata["recorded"] == "slow"
    assert late.duration >= 0.05
    assert late.parent is None
    assert len(late.trace_id) == 32


async def test_an_unsampled_outbound_call_keeps_the_ids_it_received_and_records_only_failures():
    tracer = MemoryTracer(TracerOptions(sample=0.0))
    sent: list[CallRequest] = []

    async def send(request: CallRequest) -> Response:
        sent.append(request)
        return Response(None, metadata=Metadata())

    async def refuse(request: CallRequest) -> Response:
        raise BadRequest("refused")

    carried = Metadata({TRACE_ID_HEADER: DROPPED_AT_HALF, SPAN_ID_HEADER: "00f067aa0ba902b7"})
    await trace_call(tracer)(send)(outbound(carried))
    assert sent[0].metadata[TRACE_ID_HEADER] == DROPPED_AT_HALF  # the ids keep flowing
    assert sent[0].metadata[SPAN_ID_HEADER] == "00f067aa0ba902b7"
    assert await tracer.read() == []
    with pytest.raises(BadRequest):
        await trace_call(tracer)(refuse)(outbound(Metadata(carried)))
    (span,) = await tracer.read()
    assert (span.trace_id, span.parent, span.type) == (DROPPED_AT_HALF, "00f067aa0ba902b7", SpanType.OUTBOUND)
    assert span.metadata["error"] == "BadRequest: refused"


def test_sampling_options_are_checked_and_read_from_the_environment():
    tracer = micro.create("tracer", environ={"MICRO_TRACER_SAMPLE": "0.25", "MICRO_TRACER_SLOW": "250ms"})
    assert (tracer.options.sample, tracer.options.slow) == (0.25, 0.25)
    with pytest.raises(InvalidOption, match="sample"):
        TracerOptions(sample=1.5)
    with pytest.raises(InvalidOption, match="slow"):
        TracerOptions(slow=-1.0)
