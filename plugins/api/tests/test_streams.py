"""Streams through the gateway: Server-Sent Events read with httpx-sse, WebSockets with the websockets library."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from httpx_sse import aconnect_sse
from shop import TICKING, Running
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus


async def until_nothing_ticks() -> None:
    async with asyncio.timeout(30):
        while TICKING:  # noqa: ASYNC110 - the handler runs in this process; polled with a deadline
            await asyncio.sleep(0.02)


def ws_url(api: Running, path: str) -> str:
    return api.url.replace("http://", "ws://", 1) + path


async def test_a_server_stream_as_server_sent_events(api: Running, service: str) -> None:
    async with (
        httpx.AsyncClient(base_url=api.url, timeout=30) as http,
        aconnect_sse(http, "POST", f"/{service}/Shop/count", json={"to": 5}) as source,
    ):
        assert source.response.status_code == 200
        events = [event async for event in source.aiter_sse()]
    assert [(e.event, json.loads(e.data)) for e in events] == [("message", i) for i in range(5)]


async def test_an_empty_server_stream_is_an_empty_event_stream(api: Running, service: str) -> None:
    async with (
        httpx.AsyncClient(base_url=api.url, timeout=30) as http,
        aconnect_sse(http, "POST", f"/{service}/Shop/count", json={"to": 0}) as source,
    ):
        assert source.response.status_code == 200
        assert [event async for event in source.aiter_sse()] == []


async def test_a_stream_that_fails_midway_sends_an_error_event(api: Running, service: str) -> None:
    async with (
        httpx.AsyncClient(base_url=api.url, timeout=30) as http,
        aconnect_sse(http, "POST", f"/{service}/Shop/explode", json={"to": 2}) as source,
    ):
        events = [event async for event in source.aiter_sse()]
    assert [e.event for e in events] == ["message", "message", "error"]
    error = json.loads(events[-1].data)
    assert error["code"] == 409
    assert error["detail"] == "stream broke"


async def test_a_server_stream_that_fails_before_its_first_response_is_a_json_error(api: Running, service: str) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        response = await http.post(f"/{service}/Shop/count", json={"to": "many"})
    assert response.status_code == 400
    assert response.json()["code"] == 400


async def test_a_client_stream_takes_a_json_array(api: Running, service: str) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        response = await http.post(f"/{service}/Shop/add", json=[{"name": "a", "price": 1}, {"name": "b", "price": 2}])
        assert response.status_code == 200, response.text
        assert response.json() == {"count": 2, "sum": 3.0}
        response = await http.post(f"/{service}/Shop/add", json={"name": "a"})
        assert response.status_code == 400
        response = await http.post(f"/{service}/Shop/chat", json=[{"name": "a"}])
        assert response.status_code == 400
        assert "WebSocket" in response.json()["detail"]


async def test_a_bidirectional_stream_over_a_websocket(api: Running, service: str) -> None:
    async with connect(ws_url(api, f"/{service}/Shop/chat"), additional_headers={"X-User": "bob"}) as ws:
        for i, name in enumerate(["abc", "xyz"]):
            await ws.send(json.dumps({"name": name, "price": i}))
            assert json.loads(await ws.recv()) == {"name": name[::-1], "price": i + 1.0, "tags": []}
        await ws.send("")  # close-send: the handler's request iterator ends, and so does its stream
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1000


async def test_a_client_stream_over_a_websocket(api: Running, service: str) -> None:
    async with connect(ws_url(api, f"/{service}/Shop/add")) as ws:
        for price in (1, 2, 3):
            await ws.send(json.dumps({"name": "x", "price": price}))
        await ws.send("")
        assert json.loads(await ws.recv()) == {"count": 3, "sum": 6.0}


async def test_a_server_stream_over_a_websocket(api: Running, service: str) -> None:
    async with connect(ws_url(api, f"/{service}/Shop/count")) as ws:
        await ws.send(json.dumps({"to": 3}))
        assert [json.loads(m) async for m in ws] == [0, 1, 2]


async def test_websocket_errors_close_with_4000_plus_the_status(api: Running, service: str) -> None:
    async with connect(ws_url(api, f"/{service}/Shop/nothing")) as ws:
        assert json.loads(await ws.recv())["error"]["code"] == 404
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4404
    async with connect(ws_url(api, f"/{service}/Shop/price")) as ws:  # unary: POST it
        assert json.loads(await ws.recv())["error"]["code"] == 400
    async with connect(ws_url(api, f"/{service}/Shop/chat")) as ws:
        await ws.send("{not json")
        assert json.loads(await ws.recv())["error"]["code"] == 400
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4400


@pytest.mark.api_options(max_body_size=1024)
async def test_a_websocket_message_over_the_limit_closes_the_socket(api: Running, service: str) -> None:
    async with connect(ws_url(api, f"/{service}/Shop/chat"), max_size=None) as ws:
        await ws.send(json.dumps({"name": "x" * 4000}))
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


@pytest.mark.api_options(max_websockets=1)
async def test_websockets_over_the_limit_are_refused(api: Running, service: str) -> None:
    async with connect(ws_url(api, f"/{service}/Shop/chat")) as first:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(api, f"/{service}/Shop/chat")):
                pass
        assert refused.value.response.status_code == 403
        await first.send(json.dumps({"name": "ok"}))
        assert json.loads(await first.recv())["name"] == "ko"
    # The slot is free again once the first socket is closed.
    async with asyncio.timeout(20):
        while True:
            try:
                async with connect(ws_url(api, f"/{service}/Shop/chat")) as again:
                    await again.send(json.dumps({"name": "ab"}))
                    assert json.loads(await again.recv())["name"] == "ba"
                    break
            except InvalidStatus:
                await asyncio.sleep(0.05)


async def test_a_client_that_goes_away_ends_the_servers_stream(api: Running, service: str) -> None:
    async with (
        httpx.AsyncClient(base_url=api.url, timeout=30) as http,
        aconnect_sse(http, "POST", f"/{service}/Shop/tick", json={"to": 100_000}) as source,
    ):
        seen = 0
        async for _ in source.aiter_sse():
            seen += 1
            if seen == 3:
                assert TICKING
                break
    await until_nothing_ticks()  # the gateway closes the call, and the service cancels its handler


async def test_a_websocket_that_goes_away_ends_the_servers_stream(api: Running, service: str) -> None:
    async with connect(ws_url(api, f"/{service}/Shop/tick")) as ws:
        await ws.send(json.dumps({"to": 100_000}))
        for _ in range(3):
            await ws.recv()
        assert TICKING
    await until_nothing_ticks()


async def test_a_websocket_that_goes_away_while_the_gateway_waits_to_send_is_no_error(
    api: Running, service: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A client that stops reading, then goes: the gateway's blocked send fails (uvicorn's ClientDisconnected,
    an ``OSError`` as ASGI says); that is the client going, not an error to log with a traceback."""
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"GET /{service}/Shop/count HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    async with asyncio.timeout(10):
        assert b" 101 " in await reader.readuntil(b"\r\n\r\n")
    request = json.dumps({"to": 10_000_000}).encode()
    writer.write(bytes([0x81, 0x80 | len(request)]) + b"\0\0\0\0" + request)  # one masked text frame
    await writer.drain()
    gateway = api.gateway
    async with asyncio.timeout(10):
        while not gateway._websockets:  # noqa: ASYNC110 - polled with a deadline
            await asyncio.sleep(0.02)
    await asyncio.sleep(1.0)  # nothing is read: the socket buffers fill and the gateway's send waits
    with caplog.at_level("ERROR", logger="micro.api"):
        writer.transport.abort()
        # Generous: the in-process service streams as fast as it can, so a loaded machine slows the gateway.
        async with asyncio.timeout(30):
            while gateway._websockets:  # noqa: ASYNC110 - polled with a deadline
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text


@pytest.mark.api_options(read_timeout=0.5)
async def test_a_websocket_server_stream_whose_request_never_comes_is_closed_with_4408(
    api: Running, service: str
) -> None:
    """The socket answers pings but never sends the stream's request: it held a WebSocket slot for
    ``stream_timeout`` (an hour by default); now the request must come within ``read_timeout``."""
    async with connect(ws_url(api, f"/{service}/Shop/tick")) as ws:
        async with asyncio.timeout(10):
            error = json.loads(await ws.recv())["error"]
            with pytest.raises(ConnectionClosed) as closed:
                await ws.recv()
    assert error["code"] == 408
    assert "did not arrive within 0.5s" in error["detail"]
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4408
    assert api.gateway._websockets == 0
