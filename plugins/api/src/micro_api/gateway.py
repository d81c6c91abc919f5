"""The gateway: an ASGI application that turns HTTP requests and WebSockets into micro calls.

=================================  ==========================================================
request                            what it does
=================================  ==========================================================
``POST /<service>/<Handler>/<m>``  calls ``Handler.m`` with the JSON body; the JSON response
``POST /<service>/<m>``            the same for ``<Service>.m`` (Go Micro's short form)
  ... to a server stream           answers with Server-Sent Events, one ``data:`` per response
  ... to a client stream           takes a JSON array: each item is one request
WebSocket at the same path         any stream: each text (or binary) message is one JSON request,
                                   each response one text message; an empty message ends the
                                   requests (close-send)
``GET /health``                    ``{"status": "ok"}`` while the gateway serves
``GET /openapi.json``              the OpenAPI 3.1 document of every registered service
=================================  ==========================================================

Request headers become the call's metadata, so ``Authorization: Bearer ...`` reaches the
service, whose auth decides who the caller is. The gateway proves nothing itself: HTTP-level
headers (``Host``, ``Content-Length``...) and every ``Micro-*``/``X-Micro-*`` header (micro's
own routing, and the local-user proof) are dropped, so no caller can speak for the gateway.
A ``Timeout`` header (``"5s"``, ``"250ms"``, seconds) may lower the call's deadline, never raise it.

Errors are Go Micro's error JSON with the HTTP status of :func:`micro_api.errors.status_of`.
A stream that fails after it started sends an ``event: error`` (SSE) or a ``{"error": ...}``
message and closes with code ``4000 + status`` (WebSocket; ``4504`` for a missed deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, MutableMapping
from typing import Any, Final

import orjson
from micro.client.base import NO_REQUEST, Client, Response, Stream
from micro.codec import Codecs
from micro.codec.lookup import normalize
from micro.component import Component
from micro.errors import BadRequest, ConnectionClosed, MessageTooLarge, MicroError, Timeout
from micro.options import parse_duration
from micro.registry.base import Registry

from .errors import GATEWAY, MethodNotAllowed, RequestTimeout, status_of
from .openapi import document
from .options import APIOptions
from .routes import UNARY, Catalog, Route

__all__ = ["Gateway", "metadata_of"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: A unary call's answer: HTTP status, JSON body, extra response headers.
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]

log = logging.getLogger("micro.api")

#: Request headers that describe the HTTP hop, not the call: never copied into metadata.
HOP_HEADERS: Final[frozenset[str]] = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "content-length",
        "content-type",
        "content-encoding",
        "accept",
        "accept-encoding",
        "expect",
        "timeout",
        "sec-websocket-key",
        "sec-websocket-version",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-accept",
    }
)
_JSON: Final = b"application/json"
#: The content types of a reply passed through as it is.
_JSON_TYPES: Final = frozenset({"application/json", "text/json"})
#: What a response header's name (``_BAD_KEY``) or value (``_BAD_VALUE``) may not hold.
_BAD_KEY: Final = re.compile("[\r\n\0 :\t]")
_BAD_VALUE: Final = re.compile("[\r\n\0]")
_DUMP_OPTIONS: Final = orjson.OPT_NON_STR_KEYS
_METHOD_NOT_ALLOWED: Final = [(b"allow", b"POST")]
_SSE_HEADERS: Final = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def _default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=_DUMP_OPTIONS)


def metadata_of(headers: list[tuple[bytes, bytes]] | Any) -> dict[str, str]:
    """The call metadata for an ASGI request's ``headers``: all but :data:`HOP_HEADERS` and ``Micro-*``.

    Repeated headers are joined with ``", "`` as HTTP allows.
    """
    return _scan(headers)[0]


#: Kinds of request header, by what :func:`_scan` does with them.
_METADATA, _DROP, _LENGTH, _TIMEOUT = 0, 1, 2, 3
#: Raw header name -> (lower-case name, kind): header names repeat from request to request, so each is
#: decoded and classified once (bounded: names are caller input).
_NAMES: dict[bytes, tuple[str, int]] = {}


def _classify(raw: bytes | bytearray) -> tuple[str, int]:
    key = bytes(raw).decode("latin-1").lower()
    if key == "content-length":
        kind = _LENGTH
    elif key == "timeout":
        kind = _TIMEOUT
    elif key in HOP_HEADERS or key.startswith(("micro-", "x-micro-")):
        kind = _DROP
    else:
        kind = _METADATA
    if type(raw) is bytes and len(_NAMES) < 4096:
        _NAMES[raw] = (key, kind)
    return key, kind


def _scan(headers: Iterable[tuple[bytes, bytes]] | Any) -> tuple[dict[str, str], bytes | None, bytes | None]:
    """One pass over a request's headers: its metadata (see :func:`metadata_of`), ``Content-Length`` and ``Timeout``.

    Header names may be in any case; values lose trailing blanks (which HTTP does not count as part of them).
    """
    metadata: dict[str, str] = {}
    length: bytes | None = None
    timeout: bytes | None = None
    names = _NAMES
    for raw_key, raw_value in headers:
        key, kind = names.get(raw_key) or _classify(raw_key)
        if kind == _METADATA:
            value = raw_value.decode("latin-1").rstrip(" \t")
            metadata[key] = f"{metadata[key]}, {value}" if key in metadata else value
        elif kind == _LENGTH:
            if length is None:
                length = bytes(raw_value).strip()
        elif kind == _TIMEOUT and timeout is None:
            timeout = bytes(raw_value)
    return metadata, length, timeout


#: :func:`_scan` of the headers :meth:`Gateway._begin` saw lately, keyed by the headers themselves (bounded).
_SCANNED: dict[tuple[tuple[bytes, bytes], ...], tuple[dict[str, str], bytes | None, bytes | None]] = {}


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _safe_header(key: str, value: str) -> tuple[bytes, bytes] | None:
    """A response header from call metadata, or ``None`` for one HTTP could not carry or must not be set."""
    lowered = key.lower()
    if lowered in HOP_HEADERS or lowered.startswith(("micro-", "x-micro-", "content-", "set-cookie")):
        return None
    if not key or _BAD_KEY.search(key) or _BAD_VALUE.search(value):
        return None
    try:
        return key.encode("latin-1"), value.encode("latin-1")
    except UnicodeEncodeError:
        return None


class _Disconnected(Exception):
    """The client went away while its request was read."""


class Gateway:
    """The ASGI application of ``micro api``.

    :param options: limits and settings (:class:`~micro_api.options.APIOptions`).
    :param client: calls the services; built from ``environ`` (``MICRO_CLIENT``, ``MICRO_SELECTOR``...)
        by :meth:`start` when omitted.
    :param registry: where services and their endpoint lists are read; built from ``environ``
        (``MICRO_REGISTRY``) when omitted, and shared with the client's selector.
    :param environ: the variables the missing parts are built from (``os.environ`` when ``None``).

    :meth:`start` and :meth:`close` (also run by the ASGI lifespan) start and close only what the
    gateway built; a ``client`` or ``registry`` handed in is the caller's to start and close.
    """

    def __init__(
        self,
        options: APIOptions | None = None,
        *,
        client: Client | None = None,
        registry: Registry | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.options = options if options is not None else APIOptions()
        self._client = client
        self._registry = registry
        self._environ = environ
        self._owned: list[Component] = []
        self._catalog: Catalog | None = None
        self._websockets = 0
        self._document: tuple[float, bytes] | None = None
        self._codec_lookup: Codecs | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            raise ConnectionClosed("the gateway is not started", id=GATEWAY)
        return self._client

    @property
    def catalog(self) -> Catalog:
        if self._catalog is None:
            raise ConnectionClosed("the gateway is not started", id=GATEWAY)
        return self._catalog

    async def start(self) -> None:
        """Build (from ``environ``) and start the client and registry that were not handed in."""
        if self._catalog is not None:
            return
        if self._client is None or self._registry is None:
            import os

            from micro.plugins import get_manager
            from micro.selector.base import Selector

            manager = get_manager()
            environ = os.environ if self._environ is None else self._environ
            make = manager.maker(environ)
            if self._registry is None:
                self._registry = manager.create(Registry, environ=environ, wiring={"make": make})
                self._owned.append(self._registry)
            if self._client is None:
                selector = manager.create(Selector, environ=environ, wiring={"make": make, "registry": self._registry})
                self._owned.append(selector)
                self._client = manager.create(Client, environ=environ, wiring={"make": make, "selector": selector})
                self._owned.append(self._client)
        for part in self._owned:
            await part.start()
        self._catalog = Catalog(self._registry, ttl=self.options.registry_ttl)

    async def close(self) -> None:
        """Close what :meth:`start` built, newest first. Idempotent."""
        owned, self._owned = self._owned, []
        for part in reversed(owned):
            with contextlib.suppress(Exception):
                await part.close()
            if part is self._client:
                self._client = None
            if part is self._registry:
                self._registry = None
        self._catalog = None

    async def openapi(self) -> dict[str, Any]:
        """The OpenAPI document of every service in the registry now (see :mod:`micro_api.openapi`)."""
        registry = self.catalog.registry
        services = []
        for listed in await registry.list_services():
            with contextlib.suppress(MicroError):  # deregistered since it was listed
                services.extend(await registry.get_service(listed.name))
        return document(services)

    # -- ASGI ------------------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:  # reported to the server, which exits with it
                    await send({"type": "lifespan.startup.failed", "message": f"{type(exc).__name__}: {exc}"})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        try:
            if path == "/health" or path == "/openapi.json":
                if method not in ("GET", "HEAD"):
                    raise MethodNotAllowed(f"{method} {path}: use GET", id=GATEWAY)
                if path == "/health":
                    await _respond(send, 200, b'{"status":"ok"}')
                else:
                    await _respond(send, 200, await self._openapi_bytes())
                return
            route = await self.catalog.resolve(path, self.options.namespace)
            if method != "POST":
                raise MethodNotAllowed(f"{method} {path}: calls are POST (streams also WebSocket)", id=GATEWAY)
            metadata, length, asked = _scan(scope["headers"])
            body = await self._read_body(length, receive)
            if route.kind == "unary":
                status, payload, headers = await self._unary(route, metadata, asked, body)
                await _respond(send, status, payload, extra=headers)
                return
            request = _parse(body)
            if route.kind == "server_stream":
                await self._sse(scope, receive, send, route, request, metadata)
            elif route.kind == "client_stream":
                await self._client_stream(scope, send, route, request, metadata)
            else:
                raise BadRequest(
                    f"{route.endpoint} of {route.service} is a bidirectional stream: open a WebSocket to {path}",
                    id=GATEWAY,
                )
        except _Disconnected:
            return
        except Exception as exc:
            status, error = status_of(exc)
            extra = _METHOD_NOT_ALLOWED if status == 405 else ()
            await _respond(send, status, _dumps(error), extra=extra)

    def _begin(
        self, path: str, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> Coroutine[Any, Any, Response] | Answer | None:
        """Start ``POST path`` without awaiting anything, when its route is known: the hot path's first half.

        The call's coroutine (:meth:`~micro.client.Client.invoke_raw`; its :class:`~micro.client.Response`
        becomes the answer through :meth:`_answer`, its error through :meth:`_failure`), or the answer already
        (a bad body or ``Timeout`` header), or ``None`` when the route is not cached or is a stream: then
        :meth:`post` serves the request. What :meth:`post` would do, minus two coroutines per call.
        """
        options = self.options
        catalog = self._catalog
        route = catalog.cached(path, options.namespace) if catalog is not None else None
        if route is None or route.kind != UNARY:
            return None
        try:
            # The header scan of a request with the same headers as one before (same client, same body
            # size) is read from a small cache: the metadata is only read by the client, which copies it.
            key = tuple(headers)
            scanned = _SCANNED.get(key)
            if scanned is None:
                scanned = _scan(headers)
                if len(_SCANNED) >= 64:  # heads are caller input: a few MiB at most
                    _SCANNED.clear()
                _SCANNED[key] = scanned
            metadata, _, asked = scanned
            return self._start(route, metadata, asked, body)
        except Exception as exc:
            return self._failure(exc)

    def _start(
        self, route: Route, metadata: dict[str, str], asked: bytes | None, body: bytes
    ) -> Coroutine[Any, Any, Response]:
        """The raw call of ``route`` with the JSON ``body`` as it arrived, not yet awaited.

        Raises what the body or the ``Timeout`` header (``asked``) break, before any call is made.
        """
        client = self.client
        timeout = _timeout(asked, self.options.request_timeout)
        if type(client).invoke_raw is Client.invoke_raw:
            # invoke_raw only awaits _invoke_raw (its documented hook): one coroutine fewer per call.
            return client._invoke_raw(
                route.service,
                route.endpoint,
                _json_body(body),
                {"content_type": "application/json", "metadata": metadata, "timeout": timeout},
            )
        return client.invoke_raw(
            route.service,
            route.endpoint,
            _json_body(body),
            content_type="application/json",
            metadata=metadata,
            timeout=timeout,
        )

    def _failure(self, exc: Exception) -> Answer:
        """The answer to a unary call that raised ``exc``: its error JSON and HTTP status."""
        status, error = status_of(exc)
        return status, _dumps(error), []

    async def post(self, path: str, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> Answer | None:
        """The answer to ``POST path`` when ``path`` is a unary call: ``(status, JSON body, extra headers)``.

        The hot path of :mod:`micro_api._protocol`, which has read ``headers`` (names in any case) and the
        whole ``body``. Every error is answered here, as the ASGI application would. ``None`` when the path
        is a stream: only the ASGI application serves those.
        """
        try:
            catalog = self.catalog
            route = catalog.cached(path, self.options.namespace) or await catalog.resolve(path, self.options.namespace)
            if route.kind != UNARY:
                return None
            metadata, _, asked = _scan(headers)
        except Exception as exc:
            return self._failure(exc)
        return await self._unary(route, metadata, asked, body)

    async def _unary(self, route: Route, metadata: dict[str, str], asked: bytes | None, body: bytes) -> Answer:
        """Call ``route`` with the JSON ``body`` as it arrived; the service's JSON reply as it left the service.

        The body is checked to be JSON (a 400 of the gateway's own otherwise) but not decoded into anything:
        it goes to the service as its request bytes (:meth:`~micro.client.Client.invoke_raw`), and a reply in
        JSON comes back untouched.
        """
        try:
            return self._answer(await self._start(route, metadata, asked, body))
        except Exception as exc:
            return self._failure(exc)

    def _answer(self, response: Response) -> Answer:
        """A unary call's answer from its raw :class:`~micro.client.Response`: JSON as it came, else re-encoded."""
        payload: bytes = response.body
        content_type = response.content_type
        if content_type != "application/json" and normalize(content_type) not in _JSON_TYPES:
            payload = _dumps(self._codecs().get(content_type).unmarshal(payload))
        metadata = response.metadata
        headers = [h for h in map(_safe_header, metadata.keys(), metadata.values()) if h] if metadata else []
        return 200, payload, headers

    def _codecs(self) -> Codecs:
        if self._codec_lookup is None:
            self._codec_lookup = Codecs()
        return self._codec_lookup

    async def _openapi_bytes(self) -> bytes:
        now = time.monotonic()
        if self._document is None or now >= self._document[0]:
            self._document = (now + self.options.registry_ttl, _dumps(await self.openapi()))
        return self._document[1]

    def _timeout(self, scope: Scope, limit: float | None) -> float | None:
        return _timeout(_header(scope, b"timeout"), limit)

    async def _read_body(self, declared: bytes | None, receive: Receive) -> bytes:
        """The request body, within ``max_body_size`` and ``read_timeout``; ``declared`` is its ``Content-Length``."""
        limit = self.options.max_body_size
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise MessageTooLarge(f"the body is over the limit of {limit} bytes", id=GATEWAY)
        if _body_ready(receive):
            # The whole body is in already (the usual case for a small JSON request): the one receive() cannot
            # wait, so it needs no timer; the size was bounded by uvicorn's read and the check below.
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk: bytes = message.get("body", b"")
            if len(chunk) > limit:
                raise MessageTooLarge(f"the body is over the limit of {limit} bytes", id=GATEWAY)
            return chunk
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.options.read_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Disconnected
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        raise MessageTooLarge(f"the body is over the limit of {limit} bytes", id=GATEWAY)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise RequestTimeout(
                f"the request body did not arrive within {self.options.read_timeout}s", id=GATEWAY
            ) from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _sse(
        self, scope: Scope, receive: Receive, send: Send, route: Route, request: Any, metadata: dict[str, str]
    ) -> None:
        timeout = self._timeout(scope, self.options.stream_timeout)
        stream = await self.client.stream(route.service, route.endpoint, request, metadata=metadata, timeout=timeout)
        async with stream:
            await stream.close_send()
            # The first response (or the error) decides the status: an error before any response is a
            # plain JSON error with its HTTP status, as for a unary call.
            try:
                first = await stream.recv()
            except ConnectionClosed:
                if not stream.done:
                    raise
                await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
                await send({"type": "http.response.body", "body": b""})
                return
            await send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
            sending = asyncio.current_task()
            assert sending is not None
            gone = asyncio.Event()

            async def watch() -> None:  # a client that goes away ends the stream (and the service's handler)
                while (await receive())["type"] != "http.disconnect":
                    pass
                gone.set()
                sending.cancel()

            watcher = asyncio.create_task(watch())
            try:
                await send(
                    {"type": "http.response.body", "body": b"data: " + _dumps(first) + b"\n\n", "more_body": True}
                )
                async for item in stream:
                    chunk = b"data: " + _dumps(item) + b"\n\n"
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            except asyncio.CancelledError:
                if not gone.is_set():
                    raise
                sending.uncancel()
            except Exception as exc:  # the head is sent: from here an error can only be an event
                _, error = status_of(exc)
                with contextlib.suppress(Exception):  # the client may be gone
                    chunk = b"event: error\ndata: " + _dumps(error) + b"\n\n"
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    await send({"type": "http.response.body", "body": b""})
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher

    async def _client_stream(
        self, scope: Scope, send: Send, route: Route, request: Any, metadata: dict[str, str]
    ) -> None:
        if not isinstance(request, list):
            raise BadRequest(
                f"{route.endpoint} of {route.service} is a client stream: send a JSON array of requests", id=GATEWAY
            )
        timeout = self._timeout(scope, self.options.request_timeout)
        stream = await self.client.stream(route.service, route.endpoint, metadata=metadata, timeout=timeout)
        async with stream:
            for item in request:
                await stream.send(item)
            await stream.close_send()
            result = await stream.recv()
        await _respond(send, 200, _dumps(result))

    # -- WebSocket ---------------------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if self._websockets >= self.options.max_websockets:
            # Refused before the handshake completes: the client sees HTTP 403 and may retry later.
            await send({"type": "websocket.close", "code": 1013, "reason": "too many WebSockets, try again later"})
            return
        self._websockets += 1
        try:
            await send({"type": "websocket.accept"})
            await self._websocket_call(scope, receive, send)
        finally:
            self._websockets -= 1

    async def _websocket_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        closed = False

        async def close(code: int, reason: str = "") -> None:
            nonlocal closed
            if not closed:
                closed = True
                with contextlib.suppress(Exception):  # the peer may be gone already
                    await send(
                        {
                            "type": "websocket.close",
                            "code": code,
                            "reason": reason.encode()[:120].decode("utf-8", "ignore"),
                        }
                    )

        async def fail(exc: BaseException) -> None:
            status, error = status_of(exc)
            with contextlib.suppress(Exception):
                await send({"type": "websocket.send", "text": _dumps({"error": error}).decode()})
            await close(4000 + status, str(error.get("detail", "")))

        try:
            async with asyncio.timeout(self.options.stream_timeout):
                route = await self.catalog.resolve(scope["path"], self.options.namespace)
                if route.kind == "unary":
                    raise BadRequest(f"{route.endpoint} of {route.service} is not a stream: POST it", id=GATEWAY)
                metadata = metadata_of(scope["headers"])
                timeout = self._timeout(scope, self.options.stream_timeout)
                if route.kind == "server_stream":
                    # Its one request must arrive as a request body must, within read_timeout: a socket that
                    # never sent it (and answered pings) held one of max_websockets for all of stream_timeout.
                    try:
                        async with asyncio.timeout(self.options.read_timeout):
                            first = await _next_message(receive)
                    except TimeoutError:
                        seconds = self.options.read_timeout
                        raise RequestTimeout(
                            f"the stream's request did not arrive within {seconds}s", id=GATEWAY
                        ) from None
                    if first is None:
                        return
                    stream = await self.client.stream(
                        route.service, route.endpoint, first, metadata=metadata, timeout=timeout
                    )
                else:
                    stream = await self.client.stream(
                        route.service, route.endpoint, NO_REQUEST, metadata=metadata, timeout=timeout
                    )
                async with stream:
                    if route.kind == "server_stream":
                        await stream.close_send()
                    outcome = await _pump(stream, receive, send, sends=route.kind != "server_stream")
                if outcome == "done":
                    await close(1000)
        except TimeoutError as exc:  # the call's deadline, or stream_timeout for the whole socket
            limit = f"the stream lasted longer than {self.options.stream_timeout}s"
            await fail(exc if isinstance(exc, MicroError) else Timeout(limit, id=GATEWAY))
        except _Disconnected:
            closed = True
        except Exception as exc:
            await fail(exc)


async def _next_message(receive: Receive) -> Any:
    """The next client message as JSON; ``None`` at the empty message; :class:`_Disconnected` if it went away."""
    message = await receive()
    if message["type"] == "websocket.disconnect":
        raise _Disconnected
    data = message.get("text")
    if data is None:
        data = message.get("bytes") or b""
    if not data:
        return None
    return _parse(data.encode() if isinstance(data, str) else data)


async def _pump(stream: Stream, receive: Receive, send: Send, *, sends: bool) -> str:
    """Responses to the socket and (``sends``) socket messages to the stream, until the stream ends.

    Returns ``"done"`` when the service ended the stream, ``"gone"`` when the client went away;
    raises what the stream or a bad message raised.
    """

    async def inbound() -> str:
        ended = not sends
        while True:
            try:
                item = await _next_message(receive)
            except _Disconnected:
                return "gone"
            if ended:
                continue  # after close-send (or for a server stream) only a disconnect matters
            if item is None:
                ended = True
                await stream.close_send()
            else:
                await stream.send(item)

    async def outbound() -> str:
        async for item in stream:
            try:
                await send({"type": "websocket.send", "text": _dumps(item).decode()})
            except OSError:  # ASGI: a send to a client that went away raises an OSError (uvicorn's ClientDisconnected)
                return "gone"
        return "done"

    reader = asyncio.create_task(inbound())
    writer = asyncio.create_task(outbound())
    try:
        done, _ = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        first = writer if writer in done else reader
        result: str = first.result()  # raises the task's error, if it failed
        return result
    finally:
        for task in (reader, writer):
            task.cancel()
        for task in (reader, writer):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _body_ready(receive: Receive) -> bool:
    """Whether ``receive`` is the gateway's own server's (:class:`micro_api._protocol.Exchange`), which
    holds the whole request body before the application starts.

    Then its next call returns at once, so the body is read without arming a read timer (the server
    kept ``read_timeout`` itself). ``False`` for any other server's ``receive``.
    """
    return getattr(getattr(receive, "__self__", None), "body_complete", False) is True


def _timeout(raw: bytes | None, limit: float | None) -> float | None:
    """The call's deadline in seconds: the ``Timeout`` header's value (``raw``), never over ``limit``."""
    if raw is None:
        return limit
    try:
        asked = parse_duration(raw.decode("latin-1").strip())
    except ValueError as exc:
        raise BadRequest(f"Timeout header: {exc}", id=GATEWAY) from None
    if asked <= 0:
        raise BadRequest("Timeout header: must be positive", id=GATEWAY)
    return asked if limit is None else min(asked, limit)


def _json_body(body: bytes) -> bytes:
    """``body`` if it is JSON (``{}`` if it is blank); :class:`~micro.errors.BadRequest` if not."""
    if not body or body.isspace():
        return b"{}"
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", id=GATEWAY) from None
    return body


def _parse(body: bytes) -> Any:
    if not body.strip():
        return {}
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", id=GATEWAY) from None


async def _respond(send: Send, status: int, body: bytes, *, extra: Any = (), content_type: bytes = _JSON) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
