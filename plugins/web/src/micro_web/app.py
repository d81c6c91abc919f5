"""The dashboard's HTTP side: a static page and a small JSON API over the registry and the client.

Every ``/api`` request must carry the run's token in ``X-Micro-Web-Token`` (the page reads it from the
URL's fragment, which browsers never send to a server), and a ``Host`` naming the dashboard itself
(a page elsewhere cannot reach the API by DNS rebinding). The dashboard can call every service, so
the token, not the caller's address, decides who may use it.
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web
from micro.client.base import Client
from micro.errors import BadRequest, MicroError, ServiceNotFound
from micro.registry.base import Registry

from .options import WebOptions

__all__ = ["TOKEN_HEADER", "make_app"]

#: The header every ``/api`` request carries the token in.
TOKEN_HEADER = "X-Micro-Web-Token"
_STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
#: The page may load only what the dashboard serves; it is never framed by another site.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_DEBUG = {"logs": "Debug.logs", "stats": "Debug.stats", "trace": "Debug.trace"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(value), status=status, content_type="application/json")


def _error(error: MicroError) -> web.Response:
    status = error.code if 400 <= error.code <= 599 else 500
    return _json({"error": error.to_dict()}, status)


def _asset(name: str) -> bytes:
    return importlib.resources.files("micro_web").joinpath("static", name).read_bytes()


def make_app(
    *,
    registry: Registry,
    client: Client,
    debug_client: Client,
    options: WebOptions,
    token: str,
) -> web.Application:
    """The dashboard as an aiohttp application; the caller starts and closes ``registry`` and the clients.

    :param client: makes the calls a user asks for in the page.
    :param debug_client: reads ``Debug.logs|stats|trace`` (wrapped with the local proof by ``micro web``).
    :param token: the secret every ``/api`` request must present.
    """
    if len(token) < 16:
        raise ValueError("the token must be at least 16 characters")
    gate = asyncio.Semaphore(options.max_requests)
    expected = token.encode()
    bound = options.address.rpartition(":")[0].strip("[]")
    # Bound to every interface, the user chose to expose it: any Host then, the token still required.
    allowed_hosts = set() if bound in ("0.0.0.0", "::", "") else {"127.0.0.1", "localhost", "::1", bound}

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if gate.locked():  # at the limit: refuse at once, never queue without bound
            return _json({"error": {"code": 503, "detail": "too many requests at once"}}, 503)
        async with gate:
            if request.path.startswith("/api/"):
                host = (request.host or "").rpartition(":")[0].strip("[]") or request.host
                if allowed_hosts and host not in allowed_hosts:
                    return _json({"error": {"code": 403, "detail": "unexpected Host header"}}, 403)
                given = request.headers.get(TOKEN_HEADER, "").encode()
                if not hmac.compare_digest(given, expected):
                    return _json({"error": {"code": 401, "detail": f"missing or wrong {TOKEN_HEADER}"}}, 401)
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                if exc.status == 413:
                    return _json({"error": {"code": 413, "detail": f"body over {options.max_body} bytes"}}, 413)
                raise
            response.headers.update(_HEADERS)
            return response

    async def index(_: web.Request) -> web.Response:
        return web.Response(body=_asset("index.html"), content_type="text/html", charset="utf-8")

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise web.HTTPNotFound()
        return web.Response(body=_asset(name), content_type=_STATIC[name], charset="utf-8")

    async def no_content(_: web.Request) -> web.Response:  # the browser's favicon probe, answered quietly
        return web.Response(status=204)

    async def services(_: web.Request) -> web.Response:
        try:
            found = await registry.list_services()
        except MicroError as exc:
            return _error(exc)
        names: dict[str, list[str]] = {}
        for service in found:
            names.setdefault(service.name, []).append(service.version)
        return _json({"services": [{"name": n, "versions": sorted(v)} for n, v in sorted(names.items())]})

    async def service(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            entries = await registry.get_service(name)
        except MicroError as exc:
            return _error(exc)
        if not entries:
            return _error(ServiceNotFound(f"service {name!r} is not registered"))
        return _json({"name": name, "versions": [entry.to_dict() for entry in entries]})

    async def call(request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(options.read_timeout):
                raw = await request.read()
        except TimeoutError:
            return _json({"error": {"code": 408, "detail": f"the body took over {options.read_timeout:g}s"}}, 408)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return _error(BadRequest(f"the body is not JSON: {exc}"))
        if not isinstance(body, dict) or not all(isinstance(body.get(k), str) for k in ("service", "endpoint")):
            return _error(BadRequest('expected {"service": str, "endpoint": str, "request": any}'))
        try:
            reply = await client.call(
                body["service"], body["endpoint"], body.get("request"), timeout=options.call_timeout
            )
        except MicroError as exc:
            return _error(exc)
        return _json({"response": reply})

    async def debug(request: web.Request) -> web.Response:
        name, what = request.match_info["name"], request.match_info["what"]
        if what not in _DEBUG:
            raise web.HTTPNotFound()
        query: dict[str, Any] = {}
        if what == "trace" and request.query.get("id"):
            query["id"] = request.query["id"]
        if what == "logs":
            count = request.query.get("count", "200")
            if not count.isdigit() or not 0 < int(count) <= 10_000:
                return _error(BadRequest("count must be an integer from 1 to 10000"))
            query["count"] = int(count)
        try:
            reply = await debug_client.call(name, _DEBUG[what], query, timeout=options.call_timeout)
        except MicroError as exc:
            return _error(exc)
        return _json(reply)

    app = web.Application(middlewares=[guard], client_max_size=options.max_body)
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/favicon.ico", no_content)
    app.router.add_get("/api/services", services)
    app.router.add_get("/api/services/{name}", service)
    app.router.add_post("/api/call", call)
    app.router.add_get("/api/debug/{name}/{what}", debug)
    return app
