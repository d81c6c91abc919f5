"""The gateway's own HTTP/1.1 protocol, over raw sockets: pipelining, chunked bodies, limits, timeouts, curl."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil

import pytest
from shop import Running

CURL = shutil.which("curl")


async def connect(api: Running) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response: status, headers (lower-case names), body (Content-Length or chunked)."""
    async with asyncio.timeout(20):
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        lines = head.split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                body += await reader.readexactly(size)
                await reader.readexactly(2)
            await reader.readexactly(2)
        else:
            body = b""
    return status, headers, body


def call(service: str, body: bytes, *, extra: str = "") -> bytes:
    return (
        f"POST /{service}/Shop/price HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def closed(reader: asyncio.StreamReader) -> bool:
    """Whether the server closes the connection (EOF or reset) within 20 s."""
    async with asyncio.timeout(20):
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass
    return True


async def test_pipelined_requests_are_answered_in_order(api: Running, service: str) -> None:
    reader, writer = await connect(api)
    names = [f"item{i}" for i in range(8)]
    # A slow call first: the fast ones behind it on the connection must wait for it, not overtake it.
    writer.write(
        f"POST /{service}/Shop/wait HTTP/1.1\r\nHost: x\r\nContent-Length: 16\r\n\r\n".encode() + b'{"seconds": 0.3}'
    )
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    writer.write(b"".join(call(service, json.dumps({"name": name}).encode()) for name in names))
    await writer.drain()
    status, _, _ = await response(reader)
    assert status == 200
    status, _, body = await response(reader)
    assert (status, json.loads(body)) == (200, {"status": "ok"})
    for name in names:
        status, _, body = await response(reader)
        assert status == 200
        assert json.loads(body)["name"] == name.upper()
    writer.close()


async def test_a_chunked_body(api: Running, service: str) -> None:
    reader, writer = await connect(api)
    body = json.dumps({"name": "tea", "price": 2.0}).encode()
    writer.write(
        f"POST /{service}/Shop/price HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        + b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + 5]), body[i : i + 5]) for i in range(0, len(body), 5))
        + b"0\r\n\r\n"
    )
    await writer.drain()
    status, headers, answer = await response(reader)
    assert status == 200, answer
    assert headers["content-type"] == "application/json"
    assert json.loads(answer) == {"name": "TEA", "price": 4.0, "tags": ["priced"]}
    writer.close()


@pytest.mark.api_options(max_body_size=100)
async def test_a_chunked_body_over_the_limit_is_413(api: Running, service: str) -> None:
    reader, writer = await connect(api)
    writer.write(f"POST /{service}/Shop/price HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
    for _ in range(5):
        writer.write(b"20\r\n" + b" " * 32 + b"\r\n")
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    status, headers, body = await response(reader)
    assert status == 413
    assert json.loads(body)["id"] == "micro.api"
    assert headers["connection"] == "close"
    assert await closed(reader)
    writer.close()


async def test_a_bad_request_line_is_400(api: Running) -> None:
    for line in (b"NOT HTTP AT ALL\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"GET /health HTTP/1.1\r\nBad Header\r\n\r\n"):
        reader, writer = await connect(api)
        writer.write(line)
        await writer.drain()
        status, headers, body = await response(reader)
        assert status == 400, line
        assert headers["content-type"] == "application/json"
        assert json.loads(body)["code"] == 400
        assert await closed(reader)
        writer.close()


@pytest.mark.api_options(read_timeout=0.5)
async def test_a_head_that_does_not_arrive_is_408(api: Running, service: str) -> None:
    # slowloris: a byte at a time, each well within any per-read timeout, the whole never within read_timeout.
    reader, writer = await connect(api)
    loop = asyncio.get_running_loop()
    started = loop.time()
    head = f"POST /{service}/Shop/price HTTP/1.1\r\nHost: x\r\nX-Slow: ".encode()
    with contextlib.suppress(ConnectionError):
        for byte in head:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.02)
            if reader.at_eof() or loop.time() - started > 0.5:
                break
        for _ in range(100):  # keep trickling
            writer.write(b"a")
            await writer.drain()
            await asyncio.sleep(0.05)
            if reader._buffer:  # type: ignore[attr-defined]  # the answer is in
                break
    status, _, body = await response(reader)
    assert status == 408, body
    assert loop.time() - started < 10
    assert await closed(reader)
    writer.close()


@pytest.mark.api_options(read_timeout=0.5)
async def test_a_connection_that_sends_nothing_is_closed(api: Running) -> None:
    # Idle from the start: closed after idle_timeout (5 s by default), without a response.
    reader, writer = await connect(api)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with asyncio.timeout(20):
        assert await reader.read() == b""
    assert loop.time() - started < 15
    writer.close()


@pytest.mark.api_options(idle_timeout=1.0)
async def test_keep_alive_serves_many_requests_then_closes_when_idle(api: Running, service: str) -> None:
    reader, writer = await connect(api)
    loop = asyncio.get_running_loop()
    for i in range(3):
        if i:
            # Well under idle_timeout between requests: the margin absorbs a loaded machine's late wake-ups.
            await asyncio.sleep(0.3)
        writer.write(call(service, json.dumps({"name": f"n{i}"}).encode()))
        await writer.drain()
        status, headers, _ = await response(reader)
        assert status == 200
        assert "connection" not in headers  # kept alive
    started = loop.time()
    async with asyncio.timeout(20):
        assert await reader.read() == b""
    assert 0.2 < loop.time() - started < 10
    writer.close()


async def test_connection_close_is_honoured(api: Running, service: str) -> None:
    reader, writer = await connect(api)
    writer.write(call(service, b'{"name": "x"}', extra="Connection: close\r\n"))
    await writer.drain()
    status, headers, _ = await response(reader)
    assert status == 200
    assert headers["connection"] == "close"
    assert await closed(reader)
    writer.close()


async def test_http_1_0_and_an_empty_body(api: Running, service: str) -> None:
    reader, writer = await connect(api)
    writer.write(f"POST /{service}/Shop/price HTTP/1.0\r\nContent-Length: 0\r\n\r\n".encode())
    await writer.drain()
    status, _, body = await response(reader)
    assert status == 400  # {} is not an Item: the service's own 400
    assert json.loads(body)["id"] == service
    assert await closed(reader)  # HTTP/1.0 without keep-alive
    writer.close()


async def test_expect_100_continue(api: Running, service: str) -> None:
    reader, writer = await connect(api)
    body = b'{"name": "x"}'
    writer.write(
        f"POST /{service}/Shop/price HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    await writer.drain()
    async with asyncio.timeout(20):
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
    writer.write(body)
    status, _, answer = await response(reader)
    assert status == 200
    assert json.loads(answer)["name"] == "X"
    writer.close()


@pytest.mark.api_options(max_body_size=1000)
async def test_expect_100_continue_over_the_limit_is_413_at_once(api: Running, service: str) -> None:
    reader, writer = await connect(api)
    writer.write(
        f"POST /{service}/Shop/price HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
        "Content-Length: 5000\r\n\r\n".encode()
    )
    await writer.drain()
    status, _, _ = await response(reader)
    assert status == 413
    writer.close()


async def test_a_non_websocket_upgrade_is_ignored(api: Running, service: str) -> None:
    reader, writer = await connect(api)
    writer.write(call(service, b'{"name": "x"}', extra="Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"))
    writer.write(call(service, b'{"name": "y"}'))
    await writer.drain()
    for name in ("X", "Y"):
        status, _, body = await response(reader)
        assert status == 200, body
        assert json.loads(body)["name"] == name
    writer.close()


@pytest.mark.api_options(max_connections=3)
async def test_a_silent_connection_over_the_limit_is_refused_as_it_is_accepted(api: Running) -> None:
    """Connections that send nothing were held for idle_timeout each, however many came (3,000 all open)."""
    held = [await connect(api) for _ in range(3)]
    try:
        await asyncio.sleep(0.2)  # accepted and counted
        reader, writer = await connect(api)  # sends nothing
        async with asyncio.timeout(2):  # well before idle_timeout (5 s)
            status, _, body = await response(reader)
            assert await reader.read() == b""
        assert status == 503, body
        assert b"too many connections" in body
        writer.close()
        for held_reader, _ in held:  # those within the limit are still open
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.3):
                    await held_reader.read()
    finally:
        for _, held_writer in held:
            held_writer.close()


@pytest.mark.api_options(max_connections=3)
async def test_the_connection_limit_answers_503_and_closes(api: Running) -> None:
    held = [await connect(api) for _ in range(3)]
    try:
        for reader, writer in held:  # each counted once it is served
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            assert (await response(reader))[0] == 200
        reader, writer = await connect(api)
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        status, _, body = await response(reader)
        assert status == 503, body
        assert await closed(reader)
        writer.close()
    finally:
        for _, writer in held:
            writer.close()


async def test_head_and_query_strings_go_through_the_application(api: Running, service: str) -> None:
    reader, writer = await connect(api)
    writer.write(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(20):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    writer.write(call(service, b'{"name": "q"}').replace(b"/Shop/price ", b"/Shop/price?x=1 ", 1))
    await writer.drain()
    status, _, body = await response(reader)  # no body was sent for the HEAD: this is the POST's answer
    assert status == 200, body
    assert json.loads(body)["name"] == "Q"
    writer.close()


async def test_server_sent_events_are_chunked_and_keep_the_connection(api: Running, service: str) -> None:
    reader, writer = await connect(api)
    body = b'{"to": 3}'
    writer.write(
        f"POST /{service}/Shop/count HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    )
    await writer.drain()
    status, headers, events = await response(reader)
    assert status == 200
    assert headers["transfer-encoding"] == "chunked"
    assert re.findall(rb"data: (\d+)", events) == [b"0", b"1", b"2"]
    # The connection stays open for the next request, a unary call.
    writer.write(call(service, b'{"name": "after"}'))
    await writer.drain()
    status, _, body = await response(reader)
    assert status == 200, body
    assert json.loads(body)["name"] == "AFTER"
    writer.close()


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
async def test_curl_keep_alive_and_pipelined_uploads(api: Running, service: str) -> None:
    assert CURL is not None
    url = f"{api.url}/{service}/Shop/price"
    argv = [CURL, "-sS", "--max-time", "30"]
    for name in ("a", "b", "c"):  # one curl, three requests on one kept-alive connection
        argv += ["-H", "Content-Type: application/json", "-d", json.dumps({"name": name}), url, "--next"]
    argv += ["-H", "Transfer-Encoding: chunked", "-d", '{"name": "d"}', url]
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err
    names = [json.loads(line)["name"] for line in out.decode().replace("}{", "}\n{").splitlines()]
    assert names == ["A", "B", "C", "D"]
