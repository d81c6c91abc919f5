"""The /metrics listener: what it answers, and the limits that keep a scraper from holding it."""

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

import pytest
from micro.errors import InvalidOption
from micro.plugins import create
from micro_prometheus import PrometheusStats, PrometheusStatsOptions
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture
async def stats() -> AsyncIterator[PrometheusStats]:
    stats = PrometheusStats(PrometheusStatsOptions(address="127.0.0.1:0", max_connections=2, timeout=0.5))
    async with stats:
        yield stats


async def read_all(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """Everything until the server closes; ``b""`` if it closed (or reset) without answering."""
    try:
        return await asyncio.wait_for(reader.read(), 10)
    except ConnectionResetError:  # closed with our request unread: the kernel resets
        return b""
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def request(stats: PrometheusStats, raw: bytes) -> bytes:
    host, port = stats.address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(raw)
    await writer.drain()
    return await read_all(reader, writer)


async def test_get_metrics_answers_the_text_format(stats):
    answer = await request(stats, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert b"Content-Type: text/plain" in head
    names = {family.name for family in text_string_to_metric_families(body.decode())}
    assert "micro_server_requests" in names  # declared even before any call
    assert "process_cpu_seconds" in names


async def test_openmetrics_when_the_scraper_asks_for_it(stats):
    answer = await request(
        stats, b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n"
    )
    assert b"Content-Type: application/openmetrics-text" in answer
    assert answer.endswith(b"# EOF\n")


async def test_a_malformed_accept_header_gets_the_text_format(stats):
    answer = await request(stats, b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=abc\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200 OK")
    assert b"Content-Type: text/plain" in answer


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", b"405"),
        (b"GET /admin HTTP/1.1\r\n\r\n", b"404"),
        (b"GET /metrics\r\n\r\n", b"400"),
        (b"\x16\x03\x01 garbage\r\n\r\n", b"400"),
    ],
)
async def test_other_requests_are_refused(stats, raw, status):
    answer = await request(stats, raw)
    assert answer.split(b" ")[1] == status


async def test_an_oversized_request_head_is_dropped(stats):
    answer = await request(stats, b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
    assert answer == b""


async def test_a_silent_scraper_is_dropped_after_the_timeout(stats):
    host, port = stats.address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /metr")  # and nothing more
    assert await read_all(reader, writer) == b""  # closed by the server, well before 10s


async def test_connections_past_the_limit_are_closed_unanswered(stats):
    host, port = stats.address.rsplit(":", 1)
    held = [await asyncio.open_connection(host, int(port)) for _ in range(2)]
    await asyncio.sleep(0.05)  # let the server accept both (nothing to poll for: they send nothing)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /metrics HTTP/1.1\r\n\r\n")
    assert await read_all(reader, writer) == b""
    for r, w in held:
        await read_all(r, w)  # the server drops them after its timeout
    # Once they are gone (or timed out), scrapes are answered again.
    deadline = asyncio.get_running_loop().time() + 10
    while (answer := await request(stats, b"GET /metrics HTTP/1.1\r\n\r\n")) == b"":
        assert asyncio.get_running_loop().time() < deadline
    assert answer.startswith(b"HTTP/1.1 200")


async def test_a_busy_address_fails_at_start_naming_the_option():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        stats = PrometheusStats(PrometheusStatsOptions(address=f"127.0.0.1:{port}"))
        with pytest.raises(InvalidOption, match="address"):
            await stats.start()
        await stats.close()


async def test_an_empty_address_serves_nothing_but_exposition_works():
    stats = create("stats", "prometheus", environ={"MICRO_STATS_ADDRESS": ""})
    assert isinstance(stats, PrometheusStats)
    async with stats:
        assert stats.address == ""
        body, content_type = stats.exposition()
        assert content_type.startswith("text/plain")
        names = {family.name for family in text_string_to_metric_families(body.decode())}
        assert {"micro_client_requests", "micro_broker_lag_seconds"} <= names


@pytest.mark.parametrize(
    ("variable", "bad"),
    [
        ("MICRO_STATS_ADDRESS", "9464"),
        ("MICRO_STATS_ADDRESS", "host:99999"),
        ("MICRO_STATS_MAX_CONNECTIONS", "0"),
        ("MICRO_STATS_TIMEOUT", "0"),
        ("MICRO_STATS_MAX_LABELS", "0"),
    ],
)
def test_bad_options_are_refused_naming_the_variable(variable, bad):
    with pytest.raises(InvalidOption, match=variable):
        create("stats", "prometheus", environ={variable: bad})
