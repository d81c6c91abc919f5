"""The distribution as micro sees it: entry point, registration, lazy imports."""

import subprocess
import sys

import micro_prometheus
import pytest
from micro.plugins import get_manager


def test_the_entry_point_registers_the_stats() -> None:
    manager = get_manager()
    found = {(p.interface, p.name): p for p in manager.providers() if p.plugin.startswith("asyncmicro-prometheus")}
    assert set(found) == {("stats", "prometheus")}
    provider = found["stats", "prometheus"]
    assert provider.distribution is not None
    assert provider.distribution.core_range == "<0.2,>=0.1"
    assert manager.factory(provider) is micro_prometheus.PrometheusStats


def test_loading_the_plugin_does_not_import_prometheus_client() -> None:
    code = (
        "import sys, micro_prometheus, micro_prometheus.plugin\n"
        "from micro.plugins import get_manager\n"
        "get_manager().names('stats')\n"
        "assert 'prometheus_client' not in sys.modules\n"
        "micro_prometheus.PrometheusStats\n"
        "assert 'prometheus_client' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_unknown_attributes_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="Exporter"):
        micro_prometheus.Exporter  # noqa: B018
    assert sorted(micro_prometheus.__all__) == micro_prometheus.__all__
