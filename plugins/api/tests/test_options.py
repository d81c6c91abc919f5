"""APIOptions: MICRO_API_* variables, checked values, unknown variables refused."""

from __future__ import annotations

import pytest
from micro.errors import InvalidOption
from micro_api import APIOptions, api_options


def test_safe_defaults() -> None:
    options = APIOptions()
    assert options.address == "127.0.0.1:8080"  # loopback unless asked
    assert options.cors_origins == ()
    assert options.max_body_size == 1024 * 1024
    assert options.max_connections == 1000
    assert options.max_websockets == 100
    assert options.request_timeout == 30.0
    assert options.stream_timeout == 3600.0


def test_read_from_the_environment() -> None:
    options = api_options(
        {
            "MICRO_API_ADDRESS": "0.0.0.0:9000",
            "MICRO_API_CORS_ORIGINS": "https://a.example,https://b.example",
            "MICRO_API_MAX_BODY_SIZE": "2048",
            "MICRO_API_REQUEST_TIMEOUT": "250ms",
            "MICRO_API_STREAM_TIMEOUT": "",
            "MICRO_API_NAMESPACE": "go.micro.api",
            "MICRO_REGISTRY": "memory",  # another block's: not ours
        }
    )
    assert options.address == "0.0.0.0:9000"
    assert options.cors_origins == ("https://a.example", "https://b.example")
    assert options.max_body_size == 2048
    assert options.request_timeout == 0.25
    assert options.stream_timeout is None
    assert options.namespace == "go.micro.api"
    assert api_options({"MICRO_API_ADDRESS": "x:1"}, address="127.0.0.1:0").address == "127.0.0.1:0"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MICRO_API_MAX_BODY_SIZE", "0"),
        ("MICRO_API_MAX_BODY_SIZE", "lots"),
        ("MICRO_API_MAX_WEBSOCKETS", "-1"),
        ("MICRO_API_REQUEST_TIMEOUT", "0s"),
        ("MICRO_API_ADDRESS", "nowhere"),
        ("MICRO_API_ADDRESS", "host:99999"),
        ("MICRO_API_NAMESPACE", "a/b"),
        ("MICRO_API_MAX_BODDY_SIZE", "10"),
    ],
)
def test_bad_values_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(InvalidOption) as raised:
        api_options({variable: value})
    assert variable in str(raised.value)
