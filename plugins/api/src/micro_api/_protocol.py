"""The gateway's HTTP/1.1 server: one lean ``asyncio.Protocol`` on httptools, run by uvicorn's ``Server``.

uvicorn keeps what it is good at (the listening socket, lifespan, signals, graceful shutdown, the
WebSocket protocol); this protocol replaces uvicorn's HTTP one, for two reasons:

* speed: a unary JSON call (``POST`` to a unary endpoint, the gateway's hot path) is answered without
  ASGI: no scope, no ``receive``/``send`` messages, one ``write`` per response, the body handed to the
  service as the bytes that arrived (:meth:`micro_api.gateway.Gateway.post`);
* limits uvicorn does not keep: a request must arrive whole within ``read_timeout`` from its first byte
  (the head as well as the body, so a slowloris head is cut), its head within :data:`MAX_HEAD` and its
  body within ``max_body_size`` (checked while it arrives, chunked bodies included).

Every other request (``GET /health``, ``/openapi.json``, streams, CORS preflights, methods that are
refused) goes to the gateway's ASGI application, through the small ASGI cycle :class:`Exchange`, after
its body has arrived. A WebSocket upgrade is handed to uvicorn's WebSocket protocol, as uvicorn's own HTTP
protocol does.

Requests on one connection are answered one at a time, in order: pipelined requests wait parsed in a
queue (at most :data:`MAX_PIPELINED`; the connection stops reading while one waits, and a client that
pipelines more is answered that many and closed). Errors the protocol finds itself are answered with
Go Micro's error JSON (as the gateway's) and close the connection: 400 for a request httptools cannot
parse, 408 when a request does not arrive in time, 413 and 431 for sizes, 503 over ``max_connections`` (as
the connection is accepted).
"""

from __future__ import annotations

import asyncio
import logging
import re
import urllib.parse
from collections import deque
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar, Final

import httptools
import orjson

from .errors import GATEWAY

if TYPE_CHECKING:
    from .gateway import Gateway

__all__ = ["MAX_HEAD", "MAX_PIPELINED", "Exchange", "GatewayProtocol", "protocol_for"]

log = logging.getLogger("micro.api")

#: Largest request line plus headers, in bytes; more is answered 431 and the connection closed.
MAX_HEAD: Final = 64 * 1024
#: Requests parsed ahead of the one being answered, at most (pipelining); a connection sending more is closed.
MAX_PIPELINED: Final = 64
#: Paths the ASGI application serves whatever the method: never the unary hot path.
_APP_PATHS: Final = frozenset({b"/health", b"/openapi.json"})
#: What a response header's name (``_BAD_NAME``) or value (``_BAD_VALUE``) may not hold (ASGI responses).
_BAD_NAME: Final = re.compile(b'[\x00-\x20\x7f()<>@,;:\\[\\]={}\\\\"/?]')
_BAD_VALUE: Final = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


_STATUS: Final = {status: _status_line(status) for status in range(100, 600)}
_JSON_HEAD: Final = {
    status: line + b"content-type: application/json\r\ncontent-length: " for status, line in _STATUS.items()
}
_CLOSE: Final = b"connection: close\r\n"
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


def _error_body(status: int, detail: str) -> bytes:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    return orjson.dumps({"id": GATEWAY, "code": status, "detail": detail, "status": phrase})


class _Request:
    """One request as it arrived: head, whole body, and whether the connection stays open after it."""

    __slots__ = ("body", "fast", "headers", "keep_alive", "method", "url", "version")

    def __init__(
        self,
        method: bytes,
        url: bytes,
        version: str,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        keep_alive: bool,
        fast: bool,
    ) -> None:
        self.method = method
        self.url = url
        self.version = version
        #: As received: names in their own case, values without trailing blanks.
        self.headers = headers
        self.body = body
        self.keep_alive = keep_alive
        #: Whether it may take the hot path (a ``POST``, and no ``Origin`` for the CORS middleware to see).
        self.fast = fast


class _Failure:
    """A request that failed in the protocol (size, time, syntax): answered with ``status``, then the connection
    closes."""

    __slots__ = ("detail", "status")

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.detail = detail


class _Upgrade:
    """A WebSocket handshake: handed, with every byte after it, to uvicorn's WebSocket protocol when its turn comes."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data


_Item = _Request | _Failure | _Upgrade

#: Seconds a connection closed after an error keeps reading (and dropping) what the client still sends, so
#: that the close does not reset the connection before the client has read the error (a lingering close).
_LINGER: Final = 2.0


class GatewayProtocol(asyncio.Protocol):
    """One HTTP/1.1 connection to ``micro api`` (see the module's docstring).

    Built by uvicorn's ``Server`` for each connection (as its ``http`` protocol class: the subclass
    :func:`protocol_for` makes for one gateway), with uvicorn's ``config``, shared ``server_state`` (the
    open connections and running tasks it waits for on shutdown) and lifespan ``app_state``.
    """

    #: The gateway whose calls this protocol serves (set by :func:`protocol_for`).
    gateway: ClassVar[Gateway]

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        if not config.loaded:
            config.load()
        self.config = config
        self.server_state = server_state
        self.app_state = app_state
        self.app = config.loaded_app
        options = self.gateway.options
        self.max_body = options.max_body_size
        self.max_connections = options.max_connections
        self.read_timeout = options.read_timeout
        self.idle_timeout = options.idle_timeout
        #: With CORS configured, a request with an ``Origin`` goes through the ASGI app (its CORS middleware).
        self.cors = bool(options.cors_origins)
        self.loop = _loop or asyncio.get_event_loop()
        self.connections: set[Any] = server_state.connections
        self.tasks: set[asyncio.Task[None]] = server_state.tasks
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.client: tuple[str, int] | None = None
        self.server: tuple[str, int] | None = None
        # The request being parsed.
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.size = 0
        self.in_message = False
        self.continued = False  # Expect: 100-continue was answered (or refused)
        self.upgrading = False
        self.in_head = True
        self.head_bytes = 0
        #: ``loop.time()`` when the request being parsed began, ``None`` between requests.
        self.began: float | None = None
        # The connection.
        self.queue: deque[_Item] = deque()
        self.busy = False
        self.closing = False  # no more requests: answer what is queued, then close
        self.lingering = False  # an error was answered: drop what arrives until the client closes
        self.done = False  # handed over or closed: nothing more happens here
        self.reading = True
        self.write_paused = False
        self.drained: asyncio.Future[None] | None = None
        self.exchange: Exchange | None = None
        self.task: asyncio.Task[None] | None = None
        self.idle_since = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at = 0.0

    # -- asyncio.Protocol ----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.connections.add(self)
        self.client = _address(transport.get_extra_info("peername"))
        self.server = _address(transport.get_extra_info("sockname"))
        if len(self.connections) > self.max_connections:
            # Refused as it is accepted, not when a request comes: connections that send nothing were held for
            # idle_timeout each, as many as arrived (3,000 silent ones all open; at the descriptor limit asyncio
            # logs a traceback per failed accept). The 503 goes out first; closing at once keeps the bound hard.
            self._write_error(503, "too many connections, try again later", close=True)
            self.done = True  # what the client sends is dropped
            transport.close()
            return
        self.idle_since = now = self.loop.time()
        self._arm(now + self.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        self.done = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.queue.clear()
        if self.exchange is not None:
            self.exchange.lost()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.closing or self.done:
            return  # after the last request (or an error) what arrives is dropped
        if self.in_head:
            before = self.head_bytes
            self.head_bytes = before + len(data)
            # Over the limit only if the head does not end within it: a read that holds a small head and the
            # start of a large body (one 70 KB POST) is no head over the limit.
            if self.head_bytes > MAX_HEAD and data.find(b"\r\n\r\n", 0, max(0, MAX_HEAD - before) + 4) < 0:
                self._fail(431, "the request head is over 64 KiB")
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if not self.closing:
                self._upgrade(data[upgrade.args[0] :] if upgrade.args else b"")
        except httptools.HttpParserCallbackError:
            log.exception("micro api: error in the HTTP protocol")  # a bug of this module's callbacks
            self._fail(500, "internal error in the gateway")
        except httptools.HttpParserError as exc:
            if not self.closing:
                self._fail(400, f"invalid HTTP request: {exc}")
        if self.in_message and not self.closing:
            self._partial()

    def _partial(self) -> None:
        """A read ended inside a request (rare for a small one): time it, and answer ``Expect: 100-continue``."""
        if self.began is None:
            self.began = self.loop.time()  # it began in this read
            # A request is half in: it must be whole within read_timeout of its first byte.
            deadline = self.began + self.read_timeout
            if self.timer_at > deadline:
                self._arm(deadline)
        if self.in_head or self.continued or self.upgrading or self.chunks:
            return
        expect = _value(self.headers, b"expect")
        if expect is not None and expect.strip().lower() == b"100-continue":
            self.continued = True
            declared = (_value(self.headers, b"content-length") or b"0").strip()
            if not declared.isdigit() or int(declared) > self.max_body:
                self._fail(413, f"the body is over the limit of {self.max_body} bytes")
            elif not self.busy and not self.queue:
                self.transport.write(_CONTINUE)

    def eof_received(self) -> bool | None:
        # The client sends no more: answer what it sent (the transport closes once that is written).
        self.closing = True
        if self.lingering or (not self.busy and not self.queue):
            self.transport.close()
            return None
        return True

    def pause_writing(self) -> None:
        self.write_paused = True
        self._reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._reading()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    async def drain(self) -> None:
        """Return once the transport takes more (or the connection is gone)."""
        if self.write_paused and not self.done:
            if self.drained is None or self.drained.done():
                self.drained = self.loop.create_future()
            await self.drained

    def shutdown(self) -> None:
        """Called by uvicorn's server on shutdown: close when idle, else after the response in progress."""
        self.closing = True
        if not self.busy:
            self.transport.close()

    # -- httptools callbacks ---------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.in_message = True
        self.url = b""
        self.headers = []
        self.chunks = []
        self.size = 0
        self.upgrading = self.continued = False
        self.in_head = True
        self.head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # As they came: names in their case, values with any trailing blanks (llhttp keeps them; the gateway's
        # header scan and the ASGI scope drop them).
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.in_head = False
        if self.parser.should_upgrade() and not self.closing:
            self.upgrading = True  # its body, if any, is not parsed: see _upgrade

    def on_body(self, body: bytes) -> None:
        if self.upgrading or self.closing:
            return
        self.size += len(body)
        if self.size > self.max_body:
            self._fail(413, f"the body is over the limit of {self.max_body} bytes")
            return
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.in_message = False
        if self.upgrading or self.closing:
            return
        self.began = None
        self.in_head = True
        self.head_bytes = 0
        parser = self.parser
        chunks = self.chunks
        method = parser.get_method()
        keep_alive = parser.should_keep_alive()
        headers = self.headers
        request = _Request(
            method,
            self.url,
            parser.get_http_version(),
            headers,
            chunks[0] if len(chunks) == 1 else b"".join(chunks),
            keep_alive,
            method == b"POST" and not (self.cors and _has(headers, b"origin")),
        )
        if not keep_alive:
            self.closing = True  # the client said so: nothing after this request is read
        self._push(request)

    # -- requests, in order --------------------------------------------------------------------------

    def _push(self, item: _Item) -> None:
        if self.busy:
            self.queue.append(item)
            if len(self.queue) >= MAX_PIPELINED:
                self.closing = True  # answer those, read no more
            self._reading()
        else:
            self._dispatch(item)

    def _dispatch(self, item: _Item) -> None:
        self.busy = True
        if type(item) is _Request:
            if len(self.connections) > self.max_connections:
                self._refuse(503, "too many connections, try again later")
                return
            task = self.loop.create_task(self._post(item) if item.fast else self._asgi(item))
            self.task = task
            self.tasks.add(task)
        elif type(item) is _Failure:
            self._refuse(item.status, item.detail)
        else:
            assert isinstance(item, _Upgrade)
            self._hand_over(item.data)

    def _finished(self, keep_alive: bool) -> None:
        """The response to the current request is written: start the next one, or wait for it."""
        self.busy = False
        self.exchange = None
        task, self.task = self.task, None
        if task is not None:
            self.tasks.discard(task)
        if self.done or self.lingering:
            return
        if not keep_alive:
            self.closing = True
        if self.queue:
            self._dispatch(self.queue.popleft())
            self._reading()
        elif self.closing:
            self.transport.close()
        else:
            self.idle_since = self.loop.time()
            if not self.reading:
                self._reading()

    async def _post(self, request: _Request) -> None:
        """A ``POST``: a unary call answered here; a stream (or an unusual URL) passed to the ASGI app."""
        url = request.url
        if b"?" in url or b"%" in url or b"#" in url or url in _APP_PATHS or not url.startswith(b"/"):
            await self._asgi(request)
            return
        keep_alive = False
        stream = False
        gateway = self.gateway
        try:
            path = url.decode("latin-1")
            call = gateway._begin(path, request.headers, request.body)
            if call is None:
                answer = await gateway.post(path, request.headers, request.body)
            elif isinstance(call, tuple):
                answer = call
            else:
                try:
                    answer = gateway._answer(await call)
                except Exception as exc:
                    answer = gateway._failure(exc)
            if answer is None:
                stream = True  # served below by the application, which finishes the request itself
            else:
                status, body, extra = answer
                keep_alive = request.keep_alive and not self.closing
                head = [_JSON_HEAD[status], str(len(body)).encode(), b"\r\n"]
                for name, value in extra:
                    head += (name, b": ", value, b"\r\n")
                if not keep_alive:
                    head.append(_CLOSE)
                head.append(b"\r\n")
                head.append(body)
                if not self.done:
                    self.transport.write(b"".join(head))
        except Exception:  # a bug: gateway.post answers every error of a call itself
            log.exception("micro api: error answering a call")
            if not self.done:
                self.transport.close()
        except BaseException:  # cancelled (a shutdown that ran out of time)
            if not self.done:
                self.transport.close()
            raise
        finally:
            if not stream:
                self._finished(keep_alive)
        if stream:
            await self._asgi(request)

    async def _asgi(self, request: _Request) -> None:
        """Run the ASGI application for ``request`` (its body already whole)."""
        exchange = self.exchange = Exchange(self, request)
        try:
            await self.app(exchange.scope(), exchange.receive, exchange.send)
        except Exception:
            log.exception("micro api: exception in the ASGI application")
        finally:
            if not exchange.started:
                if not self.done and not exchange.gone:
                    self._write_error(500, "the gateway sent no response", close=True)
                exchange.keep_alive = False
            elif not exchange.complete:
                exchange.keep_alive = False  # an unfinished response: the connection cannot carry another
            if not exchange.keep_alive and not self.done:
                self.transport.close()
            self._finished(exchange.keep_alive)

    # -- errors, timeouts, flow ------------------------------------------------------------------------

    def _fail(self, status: int, detail: str) -> None:
        """The request being read cannot be served: answer ``status`` in its turn, then close; read no more."""
        if self.closing:
            return
        self.closing = True
        self.began = None
        self._push(_Failure(status, detail))
        self._reading()

    def _refuse(self, status: int, detail: str) -> None:
        """Answer the current request with an error and close (lingering: see :data:`_LINGER`)."""
        self._write_error(status, detail, close=True)
        self.closing = self.lingering = True
        self.queue.clear()
        if self.done:
            return
        transport = self.transport
        if transport.can_write_eof():
            transport.write_eof()  # sent once the response is; the client sees the end, we read on
            self._reading()
            self._arm(self.loop.time() + _LINGER)
        else:
            transport.close()
        self._finished(False)

    def _write_error(self, status: int, detail: str, *, close: bool) -> None:
        if self.done or self.transport.is_closing():
            return
        body = _error_body(status, detail)
        head = (_JSON_HEAD[status], str(len(body)).encode(), b"\r\n", _CLOSE if close else b"", b"\r\n", body)
        self.transport.write(b"".join(head))

    def _reading(self) -> None:
        """Read while nothing waits (no queued request, a transport that takes writes), or to drop what lingers."""
        if self.done:
            return
        want = self.lingering or not (self.queue or self.write_paused or self.closing)
        if want != self.reading and not self.transport.is_closing():
            self.reading = want
            if want:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_at = when
        self.timer = self.loop.call_at(when, self._watch)

    def _watch(self) -> None:
        """The connection's one timer: a request arriving too slowly is 408, an idle connection is closed."""
        self.timer = None
        if self.done:
            return
        now = self.loop.time()
        if self.lingering:
            self.transport.close()
        elif self.began is not None:
            deadline = self.began + self.read_timeout
            if now >= deadline:
                self._fail(408, f"the request did not arrive within {self.read_timeout:g}s")
                return
            self._arm(min(deadline, now + self.idle_timeout))
        elif self.busy or self.queue:
            self._arm(now + self.idle_timeout)
        else:
            deadline = self.idle_since + self.idle_timeout
            if now >= deadline:
                self.closing = True
                self.transport.close()
                return
            self._arm(deadline)

    # -- upgrades --------------------------------------------------------------------------------------

    def _upgrade(self, rest: bytes) -> None:
        """httptools stopped at an ``Upgrade`` (or ``CONNECT``) request; ``rest`` is what followed its head."""
        headers = self.headers
        parser = self.parser
        method = parser.get_method()
        self.began = None
        self.in_head = True
        self.head_bytes = 0
        if method == b"CONNECT":
            self._fail(405, "CONNECT is not served")
            return
        upgrade = next((value.strip().lower() for name, value in headers if name.lower() == b"upgrade"), b"")
        head = [method, b" ", self.url, b" HTTP/", parser.get_http_version().encode(), b"\r\n"]
        if upgrade == b"websocket" and self.config.ws_protocol_class is not None:
            for name, value in headers:
                head += (name, b": ", value, b"\r\n")
            head.append(b"\r\n")
            # This protocol reads nothing more: the bytes after the head belong to the WebSocket.
            item = _Upgrade(b"".join(head) + rest)
            self._push(item)
            if not self.done:
                self.closing = True
                self._reading()
            return
        # Another protocol (h2c...): ignored, as HTTP allows; the request is parsed again without asking for it.
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"upgrade" or lowered == b"http2-settings":
                continue
            if lowered == b"connection":
                kept = [
                    t.strip() for t in value.split(b",") if t.strip().lower() not in (b"upgrade", b"http2-settings")
                ]
                if not kept:
                    continue
                value = b", ".join(kept)
            head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        self.parser = httptools.HttpRequestParser(self)
        self.data_received(b"".join(head) + rest)

    def _hand_over(self, data: bytes) -> None:
        """Give the connection to uvicorn's WebSocket protocol, as uvicorn's HTTP protocol does."""
        self.done = True
        self.busy = False
        self.connections.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        protocol = self.config.ws_protocol_class(
            config=self.config, server_state=self.server_state, app_state=self.app_state
        )
        protocol.connection_made(self.transport)
        self.transport.set_protocol(protocol)
        if not self.reading:
            self.transport.resume_reading()
        protocol.data_received(data)


class Exchange:
    """One request and its response as an ASGI HTTP cycle (``receive``/``send``), for the ASGI application.

    The request body has arrived whole before the application starts: the first ``receive()`` returns it
    at once, the next ones wait until the client goes away or the response is complete
    (``http.disconnect``), as the gateway's Server-Sent Events use them.
    """

    __slots__ = (
        "chunked",
        "complete",
        "connection",
        "delivered",
        "gone",
        "head",
        "keep_alive",
        "length",
        "request",
        "started",
        "waiter",
    )

    #: The request body is whole when the application starts (the gateway reads it without a timer then).
    body_complete: Final = True

    def __init__(self, connection: GatewayProtocol, request: _Request) -> None:
        self.connection = connection
        self.request = request
        self.keep_alive = request.keep_alive and not connection.closing
        self.started = False
        self.complete = False
        self.gone = False
        self.delivered = False
        self.head = request.method == b"HEAD"
        self.chunked = False
        self.length: int | None = None
        self.waiter: asyncio.Future[None] | None = None

    def scope(self) -> dict[str, Any]:
        request = self.request
        connection = self.connection
        parsed = httptools.parse_url(request.url)
        raw_path: bytes = parsed.path
        path = raw_path.decode("latin-1")
        if "%" in path:
            path = urllib.parse.unquote(path)
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.version,
            "server": connection.server,
            "client": connection.client,
            "scheme": "http",
            "method": request.method.decode("ascii"),
            "root_path": "",
            "path": path,
            "raw_path": raw_path,
            "query_string": parsed.query or b"",
            "headers": [(name.lower(), value.rstrip(b" \t")) for name, value in request.headers],
            "state": connection.app_state.copy(),
        }

    def lost(self) -> None:
        """The connection closed."""
        self.gone = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    async def receive(self) -> dict[str, Any]:
        if not self.delivered:
            self.delivered = True
            return {"type": "http.request", "body": self.request.body, "more_body": False}
        if not self.gone and not self.complete:
            self.waiter = self.connection.loop.create_future()
            await self.waiter
        return {"type": "http.disconnect"}

    async def send(self, message: Any) -> None:
        connection = self.connection
        if connection.write_paused:
            await connection.drain()
        if self.gone or connection.done:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise RuntimeError(f"expected http.response.start, got {kind!r}")
            self.started = True
            status = int(message["status"])
            out = [_STATUS.get(status) or _status_line(status)]
            for name, value in message.get("headers", ()):
                name, value = bytes(name).lower(), bytes(value)
                if _BAD_NAME.search(name) or _BAD_VALUE.search(value):
                    raise RuntimeError(f"invalid response header {name!r}")
                if name == b"content-length":
                    self.length = int(value)
                elif name == b"connection":
                    if b"close" in value.lower():
                        self.keep_alive = False
                    continue
                elif name == b"transfer-encoding":
                    continue  # chosen here
                out += (name, b": ", value, b"\r\n")
            if self.length is None and not self.head and status not in (204, 304) and status >= 200:
                if self.request.version == "1.1":
                    self.chunked = True
                    out.append(b"transfer-encoding: chunked\r\n")
                else:
                    self.keep_alive = False  # an HTTP/1.0 body without a length ends with the connection
            if not self.keep_alive:
                out.append(_CLOSE)
            out.append(b"\r\n")
            connection.transport.write(b"".join(out))
            return
        if self.complete:
            raise RuntimeError(f"unexpected {kind!r} after the response was complete")
        if kind != "http.response.body":
            raise RuntimeError(f"expected http.response.body, got {kind!r}")
        body = bytes(message.get("body", b""))
        more = bool(message.get("more_body", False))
        if not self.head:
            if self.chunked:
                out = [b"%x\r\n" % len(body), body, b"\r\n"] if body else []
                if not more:
                    out.append(b"0\r\n\r\n")
                if out:
                    connection.transport.write(b"".join(out))
            elif body:
                if self.length is not None:
                    self.length -= len(body)
                    if self.length < 0:
                        raise RuntimeError("response body longer than its content-length")
                connection.transport.write(body)
        if not more:
            self.complete = True
            if self.length and not self.head:
                self.keep_alive = False  # shorter than announced: the client cannot find the next response
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(None)


def _value(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower case), or ``None``."""
    return next((value for key, value in headers if key.lower() == name), None)


def _has(headers: list[tuple[bytes, bytes]], name: bytes) -> bool:
    return any(key.lower() == name for key, _ in headers)


def _address(value: Any) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return None


def protocol_for(gateway: Gateway) -> type[GatewayProtocol]:
    """The ``http`` protocol class of a uvicorn ``Config`` serving ``gateway``."""
    return type("GatewayProtocol", (GatewayProtocol,), {"gateway": gateway})
