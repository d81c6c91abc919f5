"""The hooks micro finds through the ``micro.plugins`` entry point: factories by name, nothing imported yet."""

from __future__ import annotations

from micro.hookspecs import Register, hookimpl


@hookimpl
def micro_register_tracer(register: Register) -> None:
    register("opentelemetry", "micro_opentelemetry.tracer:OpenTelemetryTracer")
