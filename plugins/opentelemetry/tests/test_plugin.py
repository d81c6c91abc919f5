"""The distribution as micro sees it: entry point, registration, lazy imports."""

import subprocess
import sys

import micro_opentelemetry
import pytest
from micro.plugins import get_manager


def test_the_entry_point_registers_the_tracer() -> None:
    manager = get_manager()
    found = {(p.interface, p.name): p for p in manager.providers() if p.plugin.startswith("asyncmicro-opentelemetry")}
    assert set(found) == {("tracer", "opentelemetry")}
    provider = found["tracer", "opentelemetry"]
    assert provider.distribution is not None
    assert provider.distribution.core_range == "<0.2,>=0.1"
    assert manager.factory(provider) is micro_opentelemetry.OpenTelemetryTracer


def test_loading_the_plugin_does_not_import_opentelemetry() -> None:
    code = (
        "import sys, micro_opentelemetry, micro_opentelemetry.plugin\n"
        "from micro.plugins import get_manager\n"
        "get_manager().names('tracer')\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')]\n"
        "micro_opentelemetry.OpenTelemetryTracer\n"
        "assert 'opentelemetry.sdk.trace' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_unknown_attributes_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="Tracing"):
        micro_opentelemetry.Tracing  # noqa: B018
    assert sorted(micro_opentelemetry.__all__) == micro_opentelemetry.__all__
