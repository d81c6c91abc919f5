"""TransportOptions: defaults, checks, and the MICRO_TRANSPORT_* variables."""

from __future__ import annotations

import pytest
from micro.errors import InvalidOption
from micro.plugins import PluginManager
from micro.transport import Transport, TransportOptions
from micro.transport.memory import MemoryTransport
from micro.transport.tcp import TCPTransport


def test_defaults() -> None:
    options = TransportOptions()
    assert options.address == ":0"
    assert options.dial_timeout == 5.0
    assert options.max_message_size == 4 * 1024 * 1024
    assert (options.tls, options.insecure) == (False, False)
    assert (options.cert_file, options.key_file, options.ca_file) == (None, None, None)
    assert (options.max_connections, options.max_streams) == (1024, 256)
    assert (options.idle_timeout, options.first_message_timeout, options.read_timeout) == (300.0, 10.0, 30.0)
    assert options.max_partial_bytes == 64 * 1024 * 1024


@pytest.mark.parametrize(
    ("values", "option"),
    [
        ({"dial_timeout": 0}, "dial_timeout"),
        ({"dial_timeout": -1.0}, "dial_timeout"),
        ({"max_message_size": 0}, "max_message_size"),
        ({"max_message_size": 2**32}, "max_message_size"),
        ({"max_message_size": 1.5}, "max_message_size"),
        ({"key_file": "key.pem"}, "cert_file"),
        ({"max_connections": 0}, "max_connections"),
        ({"max_streams": -1}, "max_streams"),
        ({"max_streams": True}, "max_streams"),
        ({"max_partial_bytes": 1.5}, "max_partial_bytes"),
        ({"idle_timeout": 0}, "idle_timeout"),
        ({"first_message_timeout": -1.0}, "first_message_timeout"),
        ({"read_timeout": 0.0}, "read_timeout"),
    ],
)
def test_bad_values(values: dict[str, object], option: str) -> None:
    with pytest.raises(InvalidOption) as info:
        TransportOptions(**values)  # type: ignore[arg-type]
    assert info.value.option == option


def test_created_by_name_from_the_environment() -> None:
    manager = PluginManager(entry_points=False)
    environ = {
        "MICRO_TRANSPORT": "memory",
        "MICRO_TRANSPORT_DIAL_TIMEOUT": "250ms",
        "MICRO_TRANSPORT_MAX_MESSAGE_SIZE": "1024",
        "MICRO_TRANSPORT_TLS": "false",
    }
    transport = manager.create("transport", environ=environ, cls=Transport)
    assert isinstance(transport, MemoryTransport)
    assert transport.name == "memory"
    assert transport.options.dial_timeout == 0.25
    assert transport.options.max_message_size == 1024
    default = manager.create("transport", environ={}, cls=Transport)
    assert isinstance(default, TCPTransport)


def test_the_limits_from_the_environment() -> None:
    manager = PluginManager(entry_points=False)
    environ = {
        "MICRO_TRANSPORT_MAX_CONNECTIONS": "10",
        "MICRO_TRANSPORT_MAX_STREAMS": "20",
        "MICRO_TRANSPORT_IDLE_TIMEOUT": "2m",
        "MICRO_TRANSPORT_FIRST_MESSAGE_TIMEOUT": "500ms",
        "MICRO_TRANSPORT_READ_TIMEOUT": "5s",
        "MICRO_TRANSPORT_MAX_PARTIAL_BYTES": "1048576",
    }
    options = manager.create("transport", environ=environ, cls=Transport).options
    assert (options.max_connections, options.max_streams, options.max_partial_bytes) == (10, 20, 1048576)
    assert (options.idle_timeout, options.first_message_timeout, options.read_timeout) == (120.0, 0.5, 5.0)
    with pytest.raises(InvalidOption, match="MICRO_TRANSPORT_MAX_STREAMS"):
        manager.create("transport", environ={"MICRO_TRANSPORT_MAX_STREAMS": "0"})


def test_a_bad_variable_names_itself() -> None:
    manager = PluginManager(entry_points=False)
    with pytest.raises(InvalidOption, match="MICRO_TRANSPORT_DIAL_TIMEOUT"):
        manager.create("transport", environ={"MICRO_TRANSPORT_DIAL_TIMEOUT": "-1s"})
    with pytest.raises(InvalidOption, match="MICRO_TRANSPORT_TIMEOUT_MS"):
        manager.create("transport", environ={"MICRO_TRANSPORT_TIMEOUT_MS": "1"})
