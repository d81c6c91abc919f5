import asyncio
import json

import micro
import pytest
from micro.debug.trace import (
    SPAN_ID_HEADER,
    TRACE_ID_HEADER,
    MemoryTracer,
    Span,
    SpanContext,
    SpanType,
    TracerOptions,
    current_span,
    extract,
    inject,
)
from micro.errors import BadRequest, InvalidOption
from micro.metadata import Metadata


def test_created_by_name():
    tracer = micro.create("tracer", environ={"MICRO_TRACER_SIZE": "5"})
    assert isinstance(tracer, MemoryTracer)
    assert tracer.options.size == 5
    with pytest.raises(InvalidOption, match="MICRO_TRACER_SIZE"):
        micro.create("tracer", environ={"MICRO_TRACER_SIZE": "0"})
    with pytest.raises(InvalidOption):
        TracerOptions(size=-1)


async def test_span_as_sync_context_manager_is_current_and_recorded():
    tracer = MemoryTracer()
    assert current_span() is None
    with tracer.start_span("outer", metadata={"k": "v"}) as outer:
        assert current_span() is outer
        with tracer.start_span("inner") as inner:
            assert current_span() is inner
        assert current_span() is outer
    assert current_span() is None

    assert inner.trace_id == outer.trace_id
    assert inner.parent == outer.id
    assert outer.parent is None
    assert outer.metadata == {"k": "v"}
    assert outer.duration >= inner.duration > 0
    assert [s.name for s in await tracer.read()] == ["inner", "outer"]


async def test_span_as_async_context_manager_records_errors():
    tracer = MemoryTracer()
    seen = []

    async def fail() -> None:
        async with tracer.start_span("failing", type=SpanType.INBOUND) as span:
            seen.append(current_span() is span)
            raise KeyError("missing")

    with pytest.raises(KeyError):
        await fail()
    assert seen == [True]
    assert current_span() is None
    (recorded,) = await tracer.read()
    assert recorded.name == "failing"
    assert recorded.type is SpanType.INBOUND
    assert recorded.metadata["error"] == "KeyError: 'missing'"


async def test_current_span_is_per_task():
    tracer = MemoryTracer()
    seen: dict[str, str | None] = {}

    async def work(name: str) -> None:
        async with tracer.start_span(name) as span:
            await asyncio.sleep(0)
            current = current_span()
            seen[name] = current.id if current else None
            assert current is span

    with tracer.start_span("root") as root:
        await asyncio.gather(work("a"), work("b"))
    spans = {s.name: s for s in await tracer.read()}
    assert spans["a"].parent == spans["b"].parent == root.id
    assert seen == {"a": spans["a"].id, "b": spans["b"].id}


async def test_finish_is_idempotent_and_read_filters_by_trace():
    tracer = MemoryTracer()
    first = tracer.start_span("first")
    tracer.finish(first)
    tracer.finish(first)
    duration = first.duration
    other = tracer.start_span("other")
    tracer.finish(other)
    assert first.finished
    assert first.duration == duration
    assert await tracer.read(trace_id=first.trace_id) == [first]
    assert await tracer.read(trace_id="nope") == []
    assert len(await tracer.read()) == 2


async def test_ring_keeps_the_last_spans():
    tracer = MemoryTracer(TracerOptions(size=2))
    for name in "abc":
        with tracer.start_span(name):
            pass
    assert [s.name for s in await tracer.read()] == ["b", "c"]


def test_inject_and_extract_round_trip():
    tracer = MemoryTracer()
    with tracer.start_span("client call", type=SpanType.OUTBOUND) as span:
        outgoing = inject(Metadata({"Other": "x"}))
    assert outgoing[TRACE_ID_HEADER] == span.trace_id
    assert outgoing[SPAN_ID_HEADER] == span.id
    assert extract(outgoing) == SpanContext(span.trace_id, span.id)

    # the server side: a plain dict with Go Micro's spelling of the headers
    incoming = {"micro-trace-id": span.trace_id, "MICRO-SPAN-ID": span.id}
    with tracer.start_span("Greeter.Hello", parent=extract(incoming), type=SpanType.INBOUND) as served:
        pass
    assert served.trace_id == span.trace_id
    assert served.parent == span.id


def test_inject_without_a_span_leaves_metadata_alone():
    md = {TRACE_ID_HEADER: "t1", SPAN_ID_HEADER: "s1"}
    assert inject(md) == {TRACE_ID_HEADER: "t1", SPAN_ID_HEADER: "s1"}
    assert inject({}) == {}
    assert inject({}, SpanContext("t", "s")) == {TRACE_ID_HEADER: "t", SPAN_ID_HEADER: "s"}


def test_extract_without_trace_id():
    assert extract({}) is None
    assert extract({SPAN_ID_HEADER: "s"}) is None
    assert extract({TRACE_ID_HEADER: ""}) is None
    assert extract({TRACE_ID_HEADER: "t"}) == SpanContext("t", "")
    span = MemoryTracer().start_span("joins", parent=extract({TRACE_ID_HEADER: "t"}))
    assert (span.trace_id, span.parent) == ("t", None)


def test_span_to_dict_round_trip_and_garbage():
    tracer = MemoryTracer()
    with tracer.start_span("x", metadata={"a": "b"}) as span:
        pass
    data = json.loads(json.dumps(span.to_dict()))
    copy = Span.from_dict(data)
    assert copy.to_dict() == span.to_dict()
    assert copy.finished
    with pytest.raises(BadRequest):
        Span.from_dict({"name": "x"})
    with pytest.raises(BadRequest):
        Span.from_dict({**data, "type": "sideways"})
