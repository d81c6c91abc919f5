"""micro.address: the one parser of backend addresses the plugins use; never a password in a message."""

from __future__ import annotations

import pytest
from micro.address import display_address, masked, server_url
from micro.errors import InvalidOption

REDIS = ("redis", "rediss", "unix")


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("redis://user:s3cret@example.com:6379/0", "redis://***@example.com:6379/0"),
        ("redis://user:s3c@ret@example.com:1", "redis://***@example.com:1"),  # an @ in the password
        ("redis://:s3cret", "redis://:***"),  # the @host forgotten: the password reads as a port
        ("example.com:bad/0?password=s3cret&db=1", "example.com:***/0?password=***&db=1"),
        ("http://h:1/?token=abc", "http://h:1/?token=***"),
        ("127.0.0.1:6379", "127.0.0.1:6379"),
        ("[::1]:6379", "[::1]:6379"),
    ],
)
def test_masked_hides_what_may_be_a_credential(given: str, shown: str) -> None:
    assert masked(given) == shown
    assert "s3c" not in masked(given)


def test_server_url_adds_the_default_scheme_and_checks() -> None:
    assert server_url(" 127.0.0.1:6379 ", schemes=REDIS, what="Redis") == "redis://127.0.0.1:6379"
    assert server_url("rediss://h:1/2", schemes=REDIS, what="Redis") == "rediss://h:1/2"
    assert server_url("unix:///tmp/r.sock", schemes=REDIS, what="Redis") == "unix:///tmp/r.sock"


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("redis://user:s3cret@example.com:notaport", "port is not a number"),
        ("redis://:s3cret", "port is not a number"),
        ("http://user:s3cret@example.com:1", "unknown scheme 'http'; use redis://, rediss://, unix://"),
        ("redis://user:s3cret@", "names no host"),
        ("redis://user:s3cret@example.com:0", "port 0"),
        ("unix://", "no socket path"),
    ],
)
def test_server_url_refuses_without_echoing_a_secret(given: str, why: str) -> None:
    with pytest.raises(InvalidOption, match=why) as info:
        server_url(given, schemes=REDIS, what="Redis", variable="MICRO_STORE_ADDRESS")
    text = str(info.value)
    assert "s3cret" not in text
    assert "is not a Redis address" in text
    assert info.value.option == "address"
    assert "MICRO_STORE_ADDRESS" in text


def test_user_information_and_paths_can_be_refused() -> None:
    with pytest.raises(InvalidOption, match="user information is not supported"):
        server_url("http://u:p@h:1", schemes=("http", "https"), what="etcd", user_info=False)
    with pytest.raises(InvalidOption, match="no path or query"):
        server_url("http://h:1/v3?x=1", schemes=("http", "https"), what="etcd", path=False)
    assert server_url("h:2379", schemes=("http", "https"), what="etcd", path=False) == "http://h:2379"


def test_display_address_drops_credentials() -> None:
    assert display_address("postgresql://app:s3cret@db.local:5433/test", 5432) == "db.local:5433/test"
    assert display_address("postgresql://db.local", 5432) == "db.local:5432"
    assert display_address("redis://[::1]:6379", 6379) == "[::1]:6379"
    assert display_address("unix:///tmp/r.sock", 6379) == "/tmp/r.sock"
