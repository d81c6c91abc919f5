"""The distribution as micro sees it: entry point, registrations, lazy imports, the proto command."""

from __future__ import annotations

import subprocess
import sys

import micro_grpc
import pytest
from micro.plugins import get_manager


def test_the_entry_point_registers_server_client_and_command():
    manager = get_manager()
    found = {(p.interface, p.name): p for p in manager.providers() if p.plugin == "asyncmicro-grpc:grpc"}
    assert set(found) == {("server", "grpc"), ("client", "grpc"), ("command", "proto"), ("codec", "proto-rpc")}
    for provider in found.values():
        assert provider.distribution is not None
        assert provider.distribution.core_range == "<0.2,>=0.1"
    assert manager.factory(found["server", "grpc"]) is micro_grpc.GRPCServer
    assert manager.factory(found["client", "grpc"]) is micro_grpc.GRPCClient
    assert manager.factory(found["codec", "proto-rpc"]) is micro_grpc.ProtoRPCCodec


def test_selected_by_environment():
    code = (
        "import micro, micro_grpc\n"
        "from micro.server import Server\n"
        "from micro.client import Client\n"
        "env = {'MICRO_SERVER': 'grpc', 'MICRO_SERVER_MAX_MESSAGE_SIZE': '2048'}\n"
        "s = micro.create('server', cls=Server, environ=env)\n"
        "c = micro.create('client', cls=Client, environ={'MICRO_CLIENT': 'grpc'})\n"
        "assert isinstance(s, micro_grpc.GRPCServer), s\n"
        "assert s.options.max_message_size == 2048, s.options\n"
        "assert isinstance(c, micro_grpc.GRPCClient), c\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_loading_the_plugin_does_not_import_grpc():
    code = (
        "import sys, micro_grpc, micro_grpc.plugin\n"
        "from micro.plugins import get_manager\n"
        "get_manager().names('server')\n"
        "assert 'grpc' not in sys.modules, sorted(m for m in sys.modules if 'grpc' in m)\n"
        "assert 'google.protobuf' not in sys.modules\n"
        "micro_grpc.GRPCServer\n"
        "assert 'grpc' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_micro_help_lists_the_proto_command():
    out = subprocess.run(
        [sys.executable, "-m", "micro", "--help"], check=True, capture_output=True, timeout=60, text=True
    )
    assert "proto" in out.stdout


def test_unknown_attributes_are_attribute_errors():
    with pytest.raises(AttributeError, match="GRPCThing"):
        micro_grpc.GRPCThing  # noqa: B018
    assert sorted(micro_grpc.__all__) == micro_grpc.__all__
