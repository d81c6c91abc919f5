"""Calls through the gateway with httpx: success, each error status, metadata, limits, CORS, health."""

from __future__ import annotations

import asyncio
import contextlib
import re

import httpx
import pytest
from shop import Running, unique_name


async def post(api: Running, path: str, body: object = None, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        return await http.post(path, json=body, **kwargs)  # type: ignore[arg-type]


def is_error(response: httpx.Response, status: int, id: str | None = None) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()
    assert set(error) == {"id", "code", "detail", "status"}
    assert error["code"] == status
    if id is not None:
        assert error["id"] == id
    return error


async def test_a_call_returns_the_handlers_json(api: Running, service: str) -> None:
    response = await post(api, f"/{service}/Shop/price", {"name": "tea", "price": 1.5, "tags": ["hot"]})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"name": "TEA", "price": 3.0, "tags": ["hot", "priced"]}


async def test_nested_types_round_trip(api: Running, service: str) -> None:
    body = {"items": [{"name": "a", "price": 1.0}, {"name": "b", "price": 2.5}], "note": None}
    response = await post(api, f"/{service}/Shop/total", body)
    assert response.json() == {"count": 2, "sum": 3.5}


async def test_go_micro_path_forms(api: Running, service: str) -> None:
    # Case-insensitive handler and method, as Go Micro's title-cased names would be sent.
    response = await post(api, f"/{service}/shop/PRICE", {"name": "x"})
    assert response.status_code == 200, response.text
    # /<service>/<method>: the handler named after the service. This one has none: 404.
    is_error(await post(api, f"/{service}/price", {"name": "x"}), 404, "micro.api")


async def test_the_short_form_calls_the_handler_named_after_the_service(api: Running) -> None:
    import micro
    from shop import Shop

    name = "shop"  # the Shop handler's own name; unique per run is impossible here, so check it is free
    other = unique_name("shop.v2")
    svc = micro.Service(f"{other}.shop", drain_timeout=1.0)
    svc.handle(Shop())
    async with svc:
        response = await post(api, f"/{other}.{name}/price", {"name": "x"})
        assert response.status_code == 200, response.text
        assert response.json()["name"] == "X"


async def test_bad_json_is_400(api: Running, service: str) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        response = await http.post(f"/{service}/Shop/price", content=b"{not json")
    error = is_error(response, 400, "micro.api")
    assert "JSON" in str(error["detail"])


async def test_a_body_the_handler_type_refuses_is_400(api: Running, service: str) -> None:
    is_error(await post(api, f"/{service}/Shop/price", {"name": 5}), 400, service)
    is_error(await post(api, f"/{service}/Shop/price", [1, 2]), 400, service)


async def test_unknown_service_and_endpoint_are_404(api: Running, service: str) -> None:
    error = is_error(await post(api, f"/{unique_name('nobody')}/Shop/price", {}), 404, "micro.api")
    assert "not found" in str(error["detail"])
    error = is_error(await post(api, f"/{service}/Shop/nothing", {}), 404, "micro.api")
    assert "Shop.nothing" in str(error["detail"])
    is_error(await post(api, "/just-one-segment", {}), 404)
    is_error(await post(api, f"/{service}/a/b/c", {}), 404)


async def test_typed_errors_keep_their_status(api: Running, service: str) -> None:
    assert is_error(await post(api, f"/{service}/Shop/missing", {"name": "x"}), 404, service)["detail"] == "no item x"
    is_error(await post(api, f"/{service}/Shop/taken", {"name": "x"}), 409, service)
    is_error(await post(api, f"/{service}/Shop/secret", {"name": "x"}), 403, service)


async def test_a_failing_handler_is_500_without_its_secrets(api: Running, service: str) -> None:
    error = is_error(await post(api, f"/{service}/Shop/boom", {"name": "x"}), 500, service)
    assert "hunter2" not in str(error["detail"])


async def test_a_missed_deadline_is_504(api: Running, service: str) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await post(api, f"/{service}/Shop/wait", {"seconds": 20}, headers={"Timeout": "500ms"})
    is_error(response, 504)
    assert loop.time() - started < 15  # the header's 0.5s, not the handler's 20s


@pytest.mark.api_options(request_timeout=0.5)
async def test_the_request_timeout_is_the_calls_deadline_and_a_header_cannot_raise_it(
    api: Running, service: str
) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    is_error(await post(api, f"/{service}/Shop/wait", {"seconds": 20}, headers={"Timeout": "60s"}), 504)
    assert loop.time() - started < 15
    is_error(await post(api, f"/{service}/Shop/wait", {"seconds": 0}, headers={"Timeout": "soon"}), 400, "micro.api")


async def test_headers_become_metadata_but_never_identity(api: Running, service: str) -> None:
    headers = {
        "Authorization": "Bearer abc.def",
        "X-User": "alice",
        "Micro-Local-Proof": "forged",
        "X-Micro-Local-Proof": "forged",
    }
    response = await post(api, f"/{service}/Shop/whoami", {"to": 0}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"user": "alice", "token": "Bearer abc.def", "proof": ""}
    # Headers the handler set come back as response headers.
    assert response.headers["x-served-by"] == "shop"


async def test_each_call_on_a_warm_route_carries_its_own_headers(api: Running, service: str) -> None:
    # The hot path keeps the header scan of a header set it saw before: requests alike but for one value (the
    # same length, so even Content-Length matches) must each reach the service with their own metadata.
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        for user in ("alice", "bobby", "alice", "bobby", "carol"):
            for _ in range(2):
                response = await http.post(f"/{service}/Shop/whoami", json={"to": 0}, headers={"X-User": user})
                assert response.status_code == 200, response.text
                assert response.json()["user"] == user
        # A bad Timeout header is refused each time, seen before or not, and the next good call is unaffected.
        for _ in range(2):
            bad = await http.post(f"/{service}/Shop/whoami", json={"to": 0}, headers={"Timeout": "soon"})
            is_error(bad, 400, "micro.api")
        response = await http.post(f"/{service}/Shop/whoami", json={"to": 0}, headers={"X-User": "dave"})
        assert response.json()["user"] == "dave"


async def test_the_users_own_debug_endpoints_refuse_gateway_callers(api: Running, service: str) -> None:
    # micro call proves the local user; the gateway proves nothing, so a forged proof header does not help.
    response = await post(api, f"/{service}/Debug/stats", {}, headers={"Micro-Local-Proof": "forged"})
    assert response.status_code in (401, 403), response.text


async def test_methods_other_than_post_are_405(api: Running, service: str) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        response = await http.get(f"/{service}/Shop/price")
        is_error(response, 405)
        assert response.headers["allow"] == "POST"
        is_error(await http.post("/health"), 405)


@pytest.mark.api_options(max_body_size=1024)
async def test_a_body_over_the_limit_is_413(api: Running, service: str) -> None:
    is_error(await post(api, f"/{service}/Shop/price", {"name": "x" * 2000}), 413, "micro.api")

    async def chunks() -> object:  # no Content-Length: the limit holds while reading
        for _ in range(10):
            yield b" " * 200

    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        response = await http.post(f"/{service}/Shop/price", content=chunks())  # type: ignore[arg-type]
    is_error(response, 413)


@pytest.mark.api_options(read_timeout=0.5)
async def test_a_body_that_does_not_arrive_is_408(api: Running, service: str) -> None:
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"POST /{service}/Shop/price HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{{".encode())
    await writer.drain()
    async with asyncio.timeout(20):
        head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), head
    writer.close()


async def test_health(api: Running) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        response = await http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_no_cors_headers_unless_configured(api: Running, service: str) -> None:
    response = await post(api, f"/{service}/Shop/price", {"name": "x"}, headers={"Origin": "https://a.example"})
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.api_options(cors_origins=("https://a.example",))
async def test_cors_allows_the_configured_origins(api: Running, service: str) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
        preflight = await http.options(
            f"/{service}/Shop/price",
            headers={
                "Origin": "https://a.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://a.example"
        other = await http.options(
            f"/{service}/Shop/price",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert other.status_code == 400
        response = await http.post(
            f"/{service}/Shop/price", json={"name": "x"}, headers={"Origin": "https://a.example"}
        )
        assert response.headers["access-control-allow-origin"] == "https://a.example"


async def test_a_request_head_over_64_kib_is_431(api: Running) -> None:
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    for size, status in ((10_000, b"200"), (100_000, b"431"), (2_000_000, b"431")):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n")
        with contextlib.suppress(ConnectionError):  # the gateway may close before reading it all
            await writer.drain()
        async with asyncio.timeout(20):
            head = await reader.readuntil(b"\r\n")
        assert head.split()[1] == status, (size, head)
        writer.close()


@pytest.mark.api_options(max_body_size=1000)
async def test_a_large_body_read_with_its_head_is_413_not_431(api: Running, service: str) -> None:
    # Head and a 70 KB body in one write usually reach the gateway in one read: only the head counts for 431.
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    body = b'{"name": "' + b"x" * 70_000 + b'"}'
    head = f"POST /{service}/Shop/price HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    writer.write(head + body)
    with contextlib.suppress(ConnectionError):  # the gateway may answer before reading it all
        await writer.drain()
    async with asyncio.timeout(20):
        status = await reader.readuntil(b"\r\n")
    assert status.split()[1] == b"413", status
    writer.close()


@pytest.mark.api_options(max_connections=2)
async def test_connections_over_the_limit_get_503(api: Running) -> None:
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    held = [await asyncio.open_connection(host, int(port)) for _ in range(2)]
    try:
        async with httpx.AsyncClient(base_url=api.url, timeout=30) as http:
            async with asyncio.timeout(20):
                while True:  # the held connections are counted once the server has accepted them
                    response = await http.get("/health")
                    if response.status_code == 503:
                        break
                    await asyncio.sleep(0.05)
    finally:
        for _, writer in held:
            writer.close()
    async with httpx.AsyncClient(base_url=api.url, timeout=30) as http, asyncio.timeout(20):
        while (await http.get("/health")).status_code != 200:  # noqa: ASYNC110 - polled: served again once they are gone
            await asyncio.sleep(0.05)


@pytest.mark.api_options(idle_timeout=1.0)
async def test_an_idle_keep_alive_connection_is_closed(api: Running) -> None:
    host, port = api.url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(20):
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        await reader.readexactly(int(re.search(rb"content-length: (\d+)", head.lower()).group(1)))  # type: ignore[union-attr]
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await reader.read() == b""  # the server closed it
    assert loop.time() - started < 15
    writer.close()


async def test_a_service_without_an_endpoint_list_is_called_as_the_path_says(api: Running, service: str) -> None:
    # A Go service may register no endpoint descriptions: the gateway then calls what the path names, and
    # the service answers for itself. Here the Shop service's entry is registered again without its list.
    import micro
    from micro.registry import Registry

    registry = micro.create("registry", cls=Registry)
    async with registry:
        entry = (await registry.get_service(service))[0]
        await registry.register(entry.replace(endpoints=[]), ttl=60)
        assert (await registry.get_service(service))[0].endpoints == []
        response = await post(api, f"/{service}/Shop/price", {"name": "x"})
        assert response.status_code == 200, response.text
        assert response.json()["name"] == "X"
        is_error(await post(api, f"/{service}/Shop/nothing", {}), 404, service)  # the service's own 404
