"""The hooks micro finds through the ``micro.plugins`` entry point: factories by name, nothing imported yet."""

from __future__ import annotations

from micro.hookspecs import Register, hookimpl


@hookimpl
def micro_register_stats(register: Register) -> None:
    register("prometheus", "micro_prometheus.stats:PrometheusStats")
