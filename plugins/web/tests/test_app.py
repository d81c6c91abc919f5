"""The dashboard's API against a real service: token and Host checks, calls, errors, Debug reads, limits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import micro
import pytest
from aiohttp.test_utils import TestServer
from micro.auth.local import local_proof
from micro.client.base import Client
from micro.registry.base import Registry
from micro_web import WebOptions, make_app
from micro_web.app import TOKEN_HEADER

TOKEN = "t" * 32


@pytest.fixture
async def web(greeter: micro.Service, environ: dict[str, str]) -> AsyncIterator[TestServer]:
    async with await _server(environ, WebOptions(max_body=4096)) as server:
        yield server


class _Running:
    def __init__(self, server: TestServer, parts: list[Any]) -> None:
        self.server, self.parts = server, parts

    async def __aenter__(self) -> TestServer:
        return self.server

    async def __aexit__(self, *_: object) -> None:
        await self.server.close()
        for part in self.parts:
            await part.close()


async def _server(environ: dict[str, str], options: WebOptions) -> _Running:
    registry = micro.create("registry", cls=Registry)
    client = micro.create("client", cls=Client)
    debug_client = micro.create("client", cls=Client)
    debug_client.wrap(local_proof())
    for part in (registry, client, debug_client):
        await part.start()
    app = make_app(registry=registry, client=client, debug_client=debug_client, options=options, token=TOKEN)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return _Running(server, [registry, client, debug_client])


async def _get(server: TestServer, path: str, **headers: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(server.make_url(path), headers=headers) as r:
        return r.status, await r.json() if r.content_type == "application/json" else await r.text()


async def _post(server: TestServer, path: str, body: bytes, **headers: str) -> tuple[int, Any]:
    headers = {TOKEN_HEADER: TOKEN, "Content-Type": "application/json", **headers}
    async with aiohttp.ClientSession() as session, session.post(server.make_url(path), data=body, headers=headers) as r:
        return r.status, await r.json()


async def test_the_api_needs_the_token(web: TestServer) -> None:
    assert (await _get(web, "/api/services"))[0] == 401
    status, body = await _get(web, "/api/services", **{TOKEN_HEADER: "x" * 32})
    assert status == 401
    assert TOKEN_HEADER in body["error"]["detail"]


async def test_a_foreign_host_is_refused_even_with_the_token(web: TestServer) -> None:
    # A page on evil.example that resolves its name to 127.0.0.1 (DNS rebinding) sends Host: evil.example.
    status, _ = await _get(web, "/api/services", **{TOKEN_HEADER: TOKEN, "Host": "evil.example:8082"})
    assert status == 403


async def test_the_page_and_its_assets_are_served_with_a_strict_policy(web: TestServer) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(web.make_url("/")) as r:
            assert r.status == 200
            assert "default-src 'self'" in r.headers["Content-Security-Policy"]
            assert '<script src="/static/app.js"' in await r.text()
        async with session.get(web.make_url("/static/app.js")) as r:
            assert r.status == 200
            assert "X-Micro-Web-Token" in await r.text()
        async with session.get(web.make_url("/static/..%2fapp.py")) as r:
            assert r.status == 404


async def test_services_and_their_endpoints_with_shapes(web: TestServer) -> None:
    status, body = await _get(web, "/api/services", **{TOKEN_HEADER: TOKEN})
    assert status == 200
    assert {"name": "greeter", "versions": ["latest"]} in body["services"] or any(
        s["name"] == "greeter" for s in body["services"]
    )
    status, body = await _get(web, "/api/services/greeter", **{TOKEN_HEADER: TOKEN})
    assert status == 200
    endpoints = {e["name"]: e for v in body["versions"] for e in v["endpoints"]}
    assert endpoints["Say.hello"]["request"]["type"] == "HelloRequest"
    assert [f["name"] for f in endpoints["Say.hello"]["request"]["values"]] == ["name"]
    assert (await _get(web, "/api/services/nobody", **{TOKEN_HEADER: TOKEN}))[0] == 404


async def test_a_call_returns_the_reply_or_the_typed_error(web: TestServer) -> None:
    status, body = await _post(
        web, "/api/call", b'{"service": "greeter", "endpoint": "Say.hello", "request": {"name": "Ada"}}'
    )
    assert (status, body) == (200, {"response": {"message": "Hello Ada"}})
    status, body = await _post(
        web, "/api/call", b'{"service": "greeter", "endpoint": "Say.hello", "request": {"name": ""}}'
    )
    assert status == 400
    assert body["error"]["detail"] == "name must not be empty"
    status, body = await _post(
        web, "/api/call", b'{"service": "greeter", "endpoint": "Say.hello", "request": {"name": "boom"}}'
    )
    assert status == 500
    assert "a bug in the handler" not in str(body)  # the server masks internal errors; the page shows the reference
    status, body = await _post(web, "/api/call", b'{"service": "nobody", "endpoint": "X.y", "request": {}}')
    assert status == 404


@pytest.mark.parametrize(
    "body",
    [b"{not json", b"[1, 2]", b'{"service": 1, "endpoint": "Say.hello"}', b'{"service": "greeter"}'],
    ids=["not-json", "not-an-object", "service-not-a-string", "no-endpoint"],
)
async def test_a_malformed_call_is_a_400(web: TestServer, body: bytes) -> None:
    status, reply = await _post(web, "/api/call", body)
    assert status == 400
    assert reply["error"]["code"] == 400


async def test_a_body_over_the_limit_is_a_413(web: TestServer) -> None:
    status, reply = await _post(web, "/api/call", b'{"service": "greeter", "pad": "' + b"x" * 8192 + b'"}')
    assert status == 413
    assert "4096" in reply["error"]["detail"]


async def test_debug_logs_stats_and_traces_of_a_service(web: TestServer) -> None:
    await _post(web, "/api/call", b'{"service": "greeter", "endpoint": "Say.hello", "request": {"name": "Lin"}}')
    status, body = await _get(web, "/api/debug/greeter/logs?count=50", **{TOKEN_HEADER: TOKEN})
    assert status == 200
    assert any("greeting Lin" in r["message"] for r in body["records"])
    status, body = await _get(web, "/api/debug/greeter/stats", **{TOKEN_HEADER: TOKEN})
    assert status == 200
    assert body["stats"][-1]["requests"] >= 1
    status, body = await _get(web, "/api/debug/greeter/trace", **{TOKEN_HEADER: TOKEN})
    assert status == 200
    assert any(s["name"] == "Say.hello" for s in body["spans"])
    assert (await _get(web, "/api/debug/greeter/logs?count=-1", **{TOKEN_HEADER: TOKEN}))[0] == 400
    assert (await _get(web, "/api/debug/greeter/secrets", **{TOKEN_HEADER: TOKEN}))[0] == 404


async def test_requests_over_the_limit_are_refused_not_queued(greeter: micro.Service, environ: dict[str, str]) -> None:
    async with await _server(environ, WebOptions(max_requests=2)) as server:
        # Two requests whose bodies never finish hold both slots (their handlers wait reading the body).
        held = [(await _half_sent(server))[1] for _ in range(2)]
        try:
            await asyncio.sleep(0.3)
            status, body = await _get(server, "/api/services", **{TOKEN_HEADER: TOKEN})
        finally:
            for writer in held:
                writer.close()
        assert status == 503
        assert "too many" in body["error"]["detail"]
        await asyncio.sleep(0.3)  # the held slots are given back when their connections close
        assert (await _get(server, "/api/services", **{TOKEN_HEADER: TOKEN}))[0] == 200


async def _half_sent(server: TestServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(server.host, server.port)
    head = (
        f"POST /api/call HTTP/1.1\r\nHost: 127.0.0.1\r\n{TOKEN_HEADER}: {TOKEN}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
    )
    writer.write(head.encode())
    await writer.drain()
    return reader, writer


async def test_a_body_that_never_finishes_times_out(greeter: micro.Service, environ: dict[str, str]) -> None:
    async with await _server(environ, WebOptions(read_timeout=0.5)) as server:
        reader, writer = await _half_sent(server)
        try:
            async with asyncio.timeout(10):
                status_line = await reader.readline()
        finally:
            writer.close()
        assert status_line.startswith(b"HTTP/1.1 408")
