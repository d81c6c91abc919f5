"""The distribution as micro sees it: entry point, the api command, lazy imports."""

from __future__ import annotations

import subprocess
import sys

import micro_api
import pytest
from micro.plugins import get_manager


def test_the_entry_point_registers_the_api_command() -> None:
    manager = get_manager()
    found = {(p.interface, p.name): p for p in manager.providers() if p.plugin == "asyncmicro-api:api"}
    assert set(found) == {("command", "api")}
    provider = found["command", "api"]
    assert provider.distribution is not None
    assert provider.distribution.core_range == "<0.2,>=0.1"


def test_loading_the_plugin_imports_neither_starlette_nor_uvicorn() -> None:
    code = (
        "import sys, micro_api, micro_api.plugin\n"
        "from micro.plugins import get_manager\n"
        "get_manager().names('command')\n"
        "assert 'uvicorn' not in sys.modules and 'starlette' not in sys.modules\n"
        "micro_api.Gateway\n"
        "assert 'uvicorn' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_micro_help_lists_the_api_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "micro", "--help"], check=True, capture_output=True, timeout=60, text=True
    )
    assert "api" in out.stdout


def test_unknown_attributes_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="Nothing"):
        micro_api.Nothing  # noqa: B018
    assert sorted(micro_api.__all__) == micro_api.__all__
