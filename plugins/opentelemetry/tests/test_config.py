"""The standard OTEL_* variables, in a fresh process each (the SDK reads them from os.environ)."""

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

# One service calling itself once, then closing (which flushes the exporters); prints what it saw.
SCRIPT = """
import asyncio, json, sys
from micro.service import Service
from micro.registry.memory import MemoryRegistry
from micro.transport.memory import MemoryTransport
from micro.broker.memory import MemoryBroker

class Greeter:
    async def hello(self, request: dict) -> dict:
        from micro.context import metadata
        return {"traceparent": metadata().get("traceparent", "")}

async def main() -> None:
    service = Service("greeter", address="127.0.0.1:0", registry=MemoryRegistry(), transport=MemoryTransport(),
                      broker=MemoryBroker(), handle_signals=False,
                      environ={"MICRO_TRACER": "opentelemetry", "MICRO_TRACER_SAMPLE": "1",
                               "MICRO_DEBUG_ACCESS": "open"})
    service.handle(Greeter())
    try:
        async with service:
            reply = await service.client.call("greeter", "Greeter.hello", {})
            tracer = service.debug._tracer
            resource = dict(tracer.provider.resource.attributes)
            spans = await tracer.read()
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return
    print(json.dumps({"traceparent": reply["traceparent"], "service_name": resource.get("service.name"),
                      "spans": sorted(s.name for s in spans)}))

asyncio.run(main())
"""


def _run(**otel: str) -> dict[str, object]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "MICRO_"))}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=environ | otel, capture_output=True, text=True, timeout=60, check=True
    )
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _sampled(traceparent: object) -> bool:
    """The sampled bit of a W3C traceparent's flags."""
    version, trace_id, span_id, flags = str(traceparent).split("-")
    assert (version, len(trace_id), len(span_id)) == ("00", 32, 16)
    return bool(int(flags, 16) & 1)


def test_without_otel_variables_the_service_name_is_the_resource_and_nothing_is_exported() -> None:
    result = _run()
    assert result["service_name"] == "greeter"
    assert result["spans"] == ["Greeter/hello", "Greeter/hello"]  # client and server, kept for micro debug trace
    assert _sampled(result["traceparent"])  # at MICRO_TRACER_SAMPLE=1


def test_otel_service_name_and_sampler_are_the_sdks() -> None:
    result = _run(OTEL_SERVICE_NAME="checkout", OTEL_TRACES_SAMPLER="always_off")
    assert result["service_name"] == "checkout"
    assert result["spans"] == []  # nothing recorded...
    assert not _sampled(result["traceparent"])  # ...but the context still travels, marked not sampled


def test_an_exporter_that_is_not_installed_fails_at_start() -> None:
    result = _run(OTEL_TRACES_EXPORTER="nonexistent")
    assert str(result["error"]).startswith("ConfigError: OTEL_TRACES_EXPORTER")


class _Collector(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    received: list[tuple[str, bytes]] = []
    handler = type("Collector", (_Collector,), {"received": received})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()


def test_otlp_exports_to_the_otel_exporter_otlp_endpoint(collector) -> None:
    endpoint, received = collector
    result = _run(
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
        OTEL_EXPORTER_OTLP_ENDPOINT=endpoint,
        OTEL_SERVICE_NAME="exported",
    )
    assert "error" not in result
    assert received, "the collector received nothing"
    names, services = [], set()
    for path, body in received:
        assert path == "/v1/traces"
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            services |= {a.value.string_value for a in resource_spans.resource.attributes if a.key == "service.name"}
            names += [span.name for scope in resource_spans.scope_spans for span in scope.spans]
    assert services == {"exported"}
    assert sorted(names) == ["Greeter/hello", "Greeter/hello"]
