"""The ``mucp`` RPC server: handlers over a transport, registered in a registry, subscribers on a broker.

Serving a call (see :mod:`micro._mucp` for the headers):

1. The transport runs :meth:`RPCServer._serve` for each socket a client opens.
2. The first message names the endpoint. Unknown endpoint, or a ``Micro-Service``
   naming another service: 404. Unknown content type, undecodable body or bad
   ``Timeout``: 400. While stopping: 503.
3. The handler runs under :func:`micro.context.serving`: the inbound metadata
   and the ``Timeout`` deadline are in the context, so calls it makes carry
   both on. Past the deadline it is cancelled and the caller gets 408.
4. Its result is encoded with the request's codec and sent with the response
   metadata it set (:func:`micro.context.set_header`). A
   :class:`~micro.errors.MicroError` goes back with its own code and message
   (secrets masked by :func:`micro._redact.redact`); any other exception is
   logged here with a reference and goes back as a 500 that says only the
   endpoint and that reference, never the exception's text. Either way the
   server keeps serving.

What the caller's headers decide is listed in ``docs/service.md`` ("What the
server trusts"): routing within this server only; never who the caller is,
which service it reaches, or what the auth rules check.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import secrets
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar, Final, TypeAlias, TypeVar

from .. import _mucp
from .._deadline import Deadline
from .._redact import redact
from ..auth.local import LocalProofs
from ..broker.base import Broker, Event, check_topic
from ..broker.base import Subscriber as BrokerSubscriber
from ..codec import Codec, Codecs, MessageType
from ..codec import Message as CodecMessage
from ..component import Make, Parts
from ..context import serving
from ..errors import (
    BadRequest,
    ConfigError,
    ConnectionClosed,
    EndpointNotFound,
    Forbidden,
    InternalError,
    MessageTooLarge,
    MicroError,
    ServiceNotFound,
    Timeout,
    Unavailable,
)
from ..metadata import Metadata
from ..registry.base import Endpoint, Node, Registry, Service
from ..registry.heartbeat import Heartbeat
from ..transport.base import Listener, Socket, Transport
from ..transport.base import Message as Frame
from .base import HandlerFunc, HandlerWrapper, Message, Request, Server, SubscriberFunc, SubscriberWrapper
from .handler import Kind, Method, Subscription, methods_of, subscriptions_of
from .options import ServerOptions

__all__ = ["RPCServer", "Route"]

_T = TypeVar("_T")


def _tcp() -> Transport:
    from ..transport.tcp import TCPTransport

    return TCPTransport()


def _local() -> Registry:
    from ..registry.local import LocalRegistry

    return LocalRegistry()


def _http() -> Broker:
    from ..broker.http import HTTPBroker

    return HTTPBroker()


logger = logging.getLogger("micro.server")

#: Registration attempts on start before giving up (Go Micro tries 3 times).
_REGISTER_ATTEMPTS = 3


def _plain_codec(codec: Codec) -> bool:
    """Whether the codec frames a message as its bare body, so marshal/unmarshal can be called directly."""
    return type(codec).encode is Codec.encode and type(codec).decode is Codec.decode


_ID = _mucp.ID.lower()
_ENDPOINT = _mucp.ENDPOINT.lower()
_METHOD = _mucp.METHOD.lower()
_SERVICE = _mucp.SERVICE.lower()
_CONTENT_TYPE = _mucp.CONTENT_TYPE.lower()
_TIMEOUT = _mucp.TIMEOUT.lower()
_STREAM = _mucp.STREAM.lower()
_LOCAL_PROOF = _mucp.LOCAL_PROOF.lower()
# Longer Content-Type values are refused before the codec lookup (which echoes the value in its error).
_MAX_CONTENT_TYPE = 256
# Looked up once: an Enum member read through its class costs a metaclass lookup on every call.
_UNARY = Kind.UNARY
# Caller-sent names echoed in an error are cut to this many characters.
_ECHO = 80


def _shown(value: str) -> str:
    """A caller-sent value as quoted in an error reply: repr'd (no control characters) and bounded."""
    return repr(value if len(value) <= _ECHO else value[:_ECHO] + "...")


def internal_error(exc: BaseException, service: str, endpoint: str) -> MicroError:
    """The :class:`~micro.errors.MicroError` that stands for ``exc`` when a handler raised it.

    A :class:`MicroError` is the handler's deliberate answer and is returned as
    it is (its ``id`` set to ``service`` if empty). A :class:`TimeoutError` of
    the handler's own becomes a 408. Anything else is a bug or a backend
    failure whose text may hold anything (a connection URL with its password,
    another caller's data): it is logged here, masked, with its traceback and
    a random reference, and the caller gets an :class:`InternalError` naming
    only the endpoint and that reference.
    """
    if isinstance(exc, MicroError):
        if not exc.id:
            exc.id = service
        return exc
    if isinstance(exc, TimeoutError):
        return Timeout(f"{endpoint}: timed out", id=service)
    reference = secrets.token_hex(6)
    details = "".join(traceback.format_exception(exc))
    # Formatted here rather than with exc_info so every handler of the record (stderr, Debug.logs) gets it masked.
    logger.error(
        "%s: handler %s failed (error ref %s): %s",
        service,
        endpoint,
        reference,
        redact(details.rstrip()),
        extra={"error_ref": reference},
    )
    error = InternalError(f"{endpoint}: internal error (ref {reference}; details in {service}'s log)", id=service)
    error.__cause__ = exc
    return error


def _raise_gc_threshold(young: int) -> None:
    """Raise the collector's young-generation threshold to ``young`` (never lower it; 0: leave it).

    Hundreds of calls in flight allocate in bursts (a read of many frames, a batch of replies): with
    Python's default of 700 the young generation is collected ~20 times per 1,000 calls at 512
    callers, each pass scanning every call's live objects and promoting them (about 15% of the CPU
    per call; see docs/benchmarks.md). A process that chose a higher threshold, or disabled
    automatic collection (threshold 0), keeps its choice.
    """
    first, *rest = gc.get_threshold()
    if 0 < first < young:
        gc.set_threshold(young, *rest)


#: The attribute in which a handler wrapper of micro's may hold ``(endpoint: str) -> bool``: the endpoints it
#: wraps (``RPCServer._chain`` leaves it out of the others' chains). Absent: every endpoint.
_ENDPOINTS: Final = "_micro_endpoints"


class _Route:
    """Everything needed to serve one endpoint, computed when handlers or wrappers change."""

    __slots__ = ("call", "method")

    def __init__(self, method: Method, call: HandlerFunc) -> None:
        self.method = method
        self.call = call


class _Call:
    """One call being served: what :meth:`RPCServer._route` worked out from its first message."""

    __slots__ = ("call_id", "codec", "deadline", "frame", "local", "metadata", "route", "routing", "socket")

    def __init__(
        self,
        socket: Socket,
        frame: Frame,
        routing: dict[str, str],
        metadata: Metadata,
        route: _Route,
        codec: Codec,
        deadline: float | None,
        call_id: str,
        local: bool = False,
    ) -> None:
        self.socket = socket
        self.frame = frame
        self.routing = routing
        self.metadata = metadata
        self.route = route
        self.codec = codec
        self.deadline = deadline
        self.call_id = call_id
        self.local = local


class RPCServer(Server):
    """The default server (Go Micro's ``rpcServer``).

    :param transport: where to listen.
    :param registry: where to register.
    :param broker: for subscribers (only needed once a subscriber is added).
    :param codecs: the codecs by content type (:class:`~micro.codec.Codecs` of the built-in ones when omitted).
    :param make: builds a transport, registry or broker not given, on first use (see
        :class:`~micro.component.Make`); without it, the built-in default (``tcp``, ``local``, ``http``).
        Components passed in are started but never closed by the server; those it built are closed by
        :meth:`stop` (and built afresh on the next start).
    :param wrappers: handler middleware, outermost first.
    :param subscriber_wrappers: subscriber middleware, outermost first.
    :param local_secret: returns the per-user secret that ``local_only`` checks proofs with;
        :func:`micro._private.local_secret` when omitted. Read on the first call, then kept.
    """

    options_type: ClassVar[type[ServerOptions]] = ServerOptions
    options: ServerOptions

    def __init__(
        self,
        options: ServerOptions | None = None,
        *,
        transport: Transport | None = None,
        registry: Registry | None = None,
        broker: Broker | None = None,
        codecs: Codecs | None = None,
        make: Make | None = None,
        wrappers: Sequence[HandlerWrapper] = (),
        subscriber_wrappers: Sequence[SubscriberWrapper] = (),
        local_secret: Callable[[], bytes] | None = None,
    ) -> None:
        super().__init__(options)
        self._transport = transport
        self._registry = registry
        self._broker = broker
        self._codecs = codecs if codecs is not None else Codecs()
        self._parts = Parts(make)
        self._node_id = self.options.id or f"{self.options.name}-{uuid.uuid4()}"
        self._methods: dict[str, Method] = {}
        self._routes: dict[str, _Route] = {}
        self._subscriptions: list[Subscription] = []
        self._wrappers: list[HandlerWrapper] = list(wrappers)
        self._subscriber_wrappers: list[SubscriberWrapper] = list(subscriber_wrappers)
        self._listener: Listener | None = None
        self._broker_subscribers: list[BrokerSubscriber] = []
        # The node's registration, renewed every register_interval (the helper the http broker uses too).
        self._heartbeat = Heartbeat(
            lambda: self.registry,
            ttl=self.options.register_ttl,
            interval=self.options.register_interval,
            label=self.options.name,
        )
        self._background: set[asyncio.Task[None]] = set()
        self._inflight: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._running = False
        self._stopping = False
        self._proofs: LocalProofs | None = None
        if self.options.local_only:
            from .. import _private

            secret = local_secret or _private.local_secret
            self._proofs = LocalProofs(self.options.name, secret, self.options.local_proof_window)

    # -- wiring ----------------------------------------------------------------------------------

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = self._parts.make(Transport, _tcp)
        return self._transport

    @property
    def registry(self) -> Registry:
        if self._registry is None:
            self._registry = self._parts.make(Registry, _local)
        return self._registry

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            self._broker = self._parts.make(Broker, _http)
        return self._broker

    @property
    def codecs(self) -> Codecs:
        """The codecs requests are decoded and answered with."""
        return self._codecs

    @property
    def running(self) -> bool:
        return self._running

    @property
    def node_id(self) -> str:
        return self._node_id

    # -- handlers and subscribers ----------------------------------------------------------------

    def handle(
        self, handler: object, *, name: str | None = None, metadata: dict[str, str] | None = None
    ) -> list[Method]:
        methods = methods_of(handler, name=name, metadata=metadata)
        for method in methods:
            if method.name in self._methods:
                raise ConfigError(f"endpoint {method.name} is already served by {self.options.name}")
        for method in methods:
            self._methods[method.name] = method
            self._routes[method.name] = _Route(method, self._chain(method))
        self._changed()
        return methods

    def subscribe(self, topic: str, subscriber: object, *, queue: str | None = None) -> list[Subscription]:
        check_topic(topic)
        if queue is not None:
            check_topic(queue, "queue")
        subscriptions = subscriptions_of(topic, subscriber, queue=queue)
        self._subscriptions.extend(subscriptions)
        if self._running:
            for subscription in subscriptions:
                self._spawn_subscribe(subscription)
        self._changed()
        return subscriptions

    def wrap(self, *wrappers: HandlerWrapper) -> None:
        self._wrappers.extend(wrappers)
        for name, route in self._routes.items():
            self._routes[name] = _Route(route.method, self._chain(route.method))

    def wrap_subscriber(self, *wrappers: SubscriberWrapper) -> None:
        self._subscriber_wrappers.extend(wrappers)

    def _chain(self, method: Method) -> HandlerFunc:
        function = method.function
        takes_request = method.takes_request
        service, endpoint = self.options.name, method.name
        # The innermost layer replaces a handler's unexpected exception (logged, see internal_error), so no
        # wrapper (tracing, stats, the user's) carries its text any further; the original is its __cause__.
        # One try per variant rather than one more layer: this runs on every call.
        if method.kind.server_streams:
            # An async generator function is called, not awaited; a coroutine returning an iterator is awaited.
            async def call(request: Request) -> Any:
                try:
                    result = function(request.body) if takes_request else function()
                    return await result if inspect.isawaitable(result) else result
                except MicroError:
                    raise
                except Exception as exc:
                    raise internal_error(exc, service, endpoint) from exc

        elif takes_request:

            async def call(request: Request) -> Any:
                try:
                    return await function(request.body)
                except MicroError:
                    raise
                except Exception as exc:
                    raise internal_error(exc, service, endpoint) from exc

        else:

            async def call(request: Request) -> Any:
                try:
                    return await function()
                except MicroError:
                    raise
                except Exception as exc:
                    raise internal_error(exc, service, endpoint) from exc

        handler: HandlerFunc = call
        for wrapper in reversed(self._wrappers):
            # A wrapper of micro's own that does something for some endpoints only says which (a predicate in
            # _ENDPOINTS, e.g. the Debug guard: Debug.* only): the others are served without its layer.
            applies = getattr(wrapper, _ENDPOINTS, None)
            if applies is None or applies(endpoint):
                handler = wrapper(handler)
        return handler

    def _changed(self) -> None:
        """Publish a changed endpoint list soon, if running."""
        if self._running and not self._stopping:
            self._heartbeat.renew(self._node_id)

    # -- description -----------------------------------------------------------------------------

    @property
    def address(self) -> str:
        if self.options.advertise:
            return self.options.advertise
        if self._listener is not None:
            return self._listener.address
        return self.options.address

    def endpoints(self) -> list[Endpoint]:
        found = [method.endpoint() for method in self._methods.values()]
        found.extend(subscription.endpoint() for subscription in self._subscriptions)
        return found

    def service(self) -> Service:
        metadata = dict(self.options.metadata)
        metadata.setdefault("server", self.name or "mucp")
        metadata.setdefault("protocol", "mucp")
        if self._transport is not None:
            metadata.setdefault("transport", self._transport.name or type(self._transport).__name__)
            # Clients check requests against it, so an oversized one fails with 413 before it is sent
            # instead of costing the shared connection.
            metadata.setdefault("max_message_size", str(self._transport.options.max_message_size))
        if self._registry is not None:
            metadata.setdefault("registry", self._registry.name or type(self._registry).__name__)
        if self._broker is not None:
            metadata.setdefault("broker", self._broker.name or type(self._broker).__name__)
        return Service(
            name=self.options.name,
            version=self.options.version,
            endpoints=self.endpoints(),
            nodes=[Node(id=self._node_id, address=self.address, metadata=metadata)],
        )

    # -- lifecycle -------------------------------------------------------------------------------

    async def _start(self) -> None:
        """Listen, subscribe, register; on failure release everything (the base runs one start at a time)."""
        self._stopping = False
        try:
            await self._listen()
            if self._subscriptions:
                await self.broker.start()
                for subscription in self._subscriptions:
                    self._broker_subscribers.append(await self._attach(subscription))
            await self.registry.start()
            await self._register_first()
        except BaseException:
            await self._teardown()
            raise
        self._running = True
        _raise_gc_threshold(self.options.gc_threshold)
        logger.info("%s serving on %s (node %s)", self.options.name, self.address, self._node_id)

    async def _listen(self) -> None:
        """Hook: start taking calls at ``options.address`` (a server over another protocol replaces it)."""
        await self.transport.start()
        self._listener = await self.transport.listen(self.options.address, _Serving(self))

    async def _close(self) -> None:
        """Deregister, stop taking calls and messages, drain, release (the base runs it once per start)."""
        self._stopping = True
        try:
            # Stop renewals (and late re-registrations) first, or one could land after deregistering.
            await self._heartbeat.close()
            background = list(self._background)
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            for subscriber in self._broker_subscribers:
                await subscriber.unsubscribe()
            self._broker_subscribers.clear()
            if self._listener is not None:
                await self._listener.close()
            await self._drain()
        finally:
            await self._teardown()
            self._running = False

    async def _drain(self) -> None:
        if not self._inflight:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.options.drain_timeout):
                await self._idle.wait()
        if self._inflight:
            logger.warning(
                "%s: cancelling %d call(s) still running after drain_timeout=%ss",
                self.options.name,
                len(self._inflight),
                self.options.drain_timeout,
            )
            tasks = list(self._inflight)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _teardown(self) -> None:
        """Release what start() acquired; safe after a partial start."""
        for subscriber in self._broker_subscribers:
            with contextlib.suppress(Exception):
                await subscriber.unsubscribe()
        self._broker_subscribers.clear()
        if self._listener is not None:
            with contextlib.suppress(Exception):
                await self._listener.close()
            self._listener = None
        owned = await self._parts.close()
        # What the server built is built afresh on the next start; what it was given stays.
        if any(self._transport is c for c in owned):
            self._transport = None
        if any(self._registry is c for c in owned):
            self._registry = None
        if any(self._broker is c for c in owned):
            self._broker = None

    # -- registration ----------------------------------------------------------------------------

    async def _register_first(self) -> None:
        try:
            await self._heartbeat.add(self._node_id, self.service, attempts=_REGISTER_ATTEMPTS)
        except MicroError as exc:
            raise Unavailable(
                f"{self.options.name}: cannot register in the registry: {exc}", id=self.options.name
            ) from exc

    # -- serving calls ---------------------------------------------------------------------------

    def _track(self) -> asyncio.Task[Any] | None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
            self._idle.clear()
        return task

    def _untrack(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None:
            self._inflight.discard(task)
            if not self._inflight:
                self._idle.set()

    async def _serve(self, socket: Socket) -> None:
        """Serve the one call carried by ``socket`` (run by the transport, one task per socket)."""
        try:
            first = await socket.recv()
        except MicroError:
            return
        # _track and _untrack inlined: this runs for every call served.
        task = asyncio.current_task()
        inflight = self._inflight
        if task is not None:
            inflight.add(task)
            self._idle.clear()
        try:
            routing, metadata = _mucp.parse(first.header)
            call_id = routing.get(_ID, "")
            try:
                call = self._route(socket, first, routing, metadata, call_id)
            except MicroError as exc:
                await self._send_error(socket, call_id, exc)
                return
            except Exception as exc:  # a bug in routing: still a typed answer, never a dropped call
                await self._send_error(socket, call_id, internal_error(exc, self.options.name, "routing"))
                return
            if call.route.method.kind is _UNARY:
                await self._unary(call)
            else:
                await self._stream(call)
        except ConnectionClosed:
            pass  # the caller went away; there is nobody to answer
        finally:
            if task is not None:
                inflight.discard(task)
                if not inflight:
                    self._idle.set()

    def _one_shot(self, reply: Socket, header: dict[str, str], body: bytes) -> bool:
        """Take a unary request that came whole in one frame (the tcp transport's hook, see
        :class:`micro.transport.tcp.OneShotHandler`): start its task and return ``True``.

        Anything but a plainly routable unary call (streaming, ``local_only``,
        stopping, any routing error) returns ``False``, and the transport serves
        it through :meth:`_serve`, which runs the same checks and answers them:
        nothing is answered from here, so both paths answer alike.
        """
        if self._stopping or self._proofs is not None:
            return False
        try:
            routing, metadata = _mucp.parse(header)
            if _STREAM in routing:
                return False
            call = self._route(reply, Frame(header, body), routing, metadata, routing.get(_ID, ""))
        except Exception:
            return False
        task = asyncio.get_running_loop().create_task(self._serve_one_shot(call))
        # Tracked here, not when the task first runs: a stop that begins meanwhile must wait for it.
        self._inflight.add(task)
        self._idle.clear()
        task.add_done_callback(self._untrack)
        return True

    async def _serve_one_shot(self, call: _Call) -> None:
        try:
            await self._unary(call)
        except ConnectionClosed:
            pass  # the caller went away; there is nobody to answer
        except Exception:
            logger.exception("%s: serving %r failed", self.options.name, call.socket)
        finally:
            await call.socket.close()  # ends the stream unless the reply did

    def _route(self, socket: Socket, frame: Frame, routing: dict[str, str], metadata: Metadata, call_id: str) -> _Call:
        """The call a first message asks for; raises the :class:`MicroError` to answer with if it cannot be."""
        if self._stopping:
            raise Unavailable(f"{self.options.name} is shutting down", id=self.options.name)
        service = routing.get(_SERVICE)
        if service and service != self.options.name:
            # This node serves one service: a call addressed to another must not run here under that name
            # (the auth rules check the service the server is, not the one the caller says).
            raise ServiceNotFound(
                f"this node serves {self.options.name!r}, not {_shown(service)}", id=self.options.name
            )
        endpoint = routing.get(_ENDPOINT) or routing.get(_METHOD) or ""
        local = False
        if self._proofs is not None:
            # Before the endpoint lookup: a stranger does not even learn which endpoints exist.
            self._check_local(routing.get(_LOCAL_PROOF), endpoint)
            local = True
        route = self._routes.get(endpoint)
        if route is None:
            raise EndpointNotFound(
                f"{self.options.name} has no endpoint {_shown(endpoint)}" if endpoint else "no endpoint in request",
                id=self.options.name,
            )
        content_type = routing.get(_CONTENT_TYPE)
        if content_type is not None and len(content_type) > _MAX_CONTENT_TYPE:
            raise BadRequest(
                f"{_mucp.CONTENT_TYPE} header of {len(content_type)} characters (at most {_MAX_CONTENT_TYPE})",
                id=self.options.name,
            )
        codec = self._codecs.get(content_type)
        timeout = routing.get(_TIMEOUT)
        deadline = time.monotonic() + _mucp.decode_timeout(timeout) if timeout is not None else None
        streaming = route.method.kind is not _UNARY
        if (_STREAM in routing) != streaming:
            use = "client.stream()" if streaming else "client.call()"
            what = "a streaming" if streaming else "a unary"
            raise BadRequest(f"{endpoint} is {what} endpoint; call it with {use}", id=self.options.name)
        return _Call(socket, frame, routing, metadata, route, codec, deadline, call_id, local)

    def _check_local(self, proof: str | None, endpoint: str) -> None:
        """Refuse (403) a call without a valid local proof; for ``local_only`` servers."""
        assert self._proofs is not None
        try:
            verdict = "no local proof" if proof is None else self._proofs.check(proof, endpoint)
        except (MicroError, OSError) as exc:
            logger.error("%s: cannot read the local secret to check callers: %s", self.options.name, exc)
            verdict = "the local secret is unavailable (see the service's log)"
        if verdict is not None:
            raise Forbidden(
                f"{self.options.name} answers only its own local user (local_only): {verdict}", id=self.options.name
            )

    def _request(self, call: _Call, body: Any) -> Request:
        return Request(
            service=self.options.name,
            endpoint=call.route.method.name,
            content_type=call.codec.content_type,
            metadata=call.metadata,
            header=call.frame.header,
            body=body,
            id=call.call_id,
            kind=call.route.method.kind,
            remote=call.socket.remote,
            local=call.local,
        )

    def _decode(self, codec: Codec, data: bytes, into: Any) -> Any:
        if _plain_codec(codec):
            return codec.unmarshal(data, into)
        return codec.decode(data, MessageType.REQUEST, into).body

    def _encode(self, codec: Codec, value: Any, endpoint: str, call_id: str) -> bytes:
        try:
            if _plain_codec(codec):
                return codec.marshal(value)
            return codec.encode(
                CodecMessage(
                    id=call_id, type=MessageType.RESPONSE, service=self.options.name, endpoint=endpoint, body=value
                )
            )
        except MicroError as exc:
            # The handler returned something the codec cannot encode: the server's fault, not the caller's.
            raise InternalError(f"{endpoint}: cannot encode the response: {exc}", id=self.options.name) from exc

    def _error(self, exc: BaseException, endpoint: str) -> MicroError:
        return internal_error(exc, self.options.name, endpoint)

    async def _unary(self, call: _Call) -> None:
        method = call.route.method
        codec, deadline, call_id, socket = call.codec, call.deadline, call.call_id, call.socket
        try:
            body = self._decode(codec, call.frame.body, method.request_type) if method.takes_request else None
            request = self._request(call, body)
            with serving(request.metadata, deadline) as response_headers:
                if deadline is None:
                    result = await call.route.call(request)
                else:
                    scope = Deadline(deadline)
                    try:
                        async with scope:
                            result = await call.route.call(request)
                    except TimeoutError as exc:
                        if scope.expired:
                            raise Timeout(f"{method.name}: deadline exceeded", id=self.options.name) from exc
                        raise
            payload = self._encode(codec, result, method.name, call_id)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._send_error(socket, call_id, self._error(exc, method.name))
            return
        header = {_mucp.CONTENT_TYPE: codec.content_type}
        if call_id:
            header[_mucp.ID] = call_id
        if response_headers:
            header.update(response_headers)
        try:
            # With the caller's end already in, the call is over: no close frame follows.
            await socket.send_last(Frame(header, payload))
        except MessageTooLarge as exc:
            await self._send_error(
                socket, call_id, MessageTooLarge(f"{method.name}: response too large: {exc}", id=self.options.name)
            )

    async def _send_error(self, socket: Socket, call_id: str, error: MicroError, extra: Metadata | None = None) -> None:
        # A deliberate error keeps its message, minus any credentials it quotes.
        error.detail = redact(error.detail)
        header = {_mucp.ERROR: _mucp.error_json(error)}
        if call_id:
            header[_mucp.ID] = call_id
        if extra:
            header.update(extra)
        with contextlib.suppress(ConnectionClosed):
            await socket.send_last(Frame(header, b""))

    # -- streams ---------------------------------------------------------------------------------

    async def _stream(self, call: _Call) -> None:
        route, codec, deadline, call_id, socket = call.route, call.codec, call.deadline, call.call_id, call.socket
        method = route.method
        inbound = _Inbound(socket, codec, method.request_type, self)
        response_headers: Metadata | None = None
        try:
            if method.kind.client_streams:
                body: Any = inbound
            elif method.takes_request:
                body = await inbound.first()
            else:
                body = None
            request = self._request(call, body)
            with serving(request.metadata, deadline) as response_headers:
                async with Deadline(deadline) as scope:
                    try:
                        result = await route.call(request)
                        if method.kind.server_streams:
                            await self._send_all(socket, codec, result, method.name, call_id)
                        else:
                            await socket.send(Frame({}, self._encode(codec, result, method.name, call_id)))
                    except TimeoutError as exc:
                        if scope.expired:
                            raise Timeout(f"{method.name}: deadline exceeded", id=self.options.name) from exc
                        raise
        except asyncio.CancelledError:
            raise
        except ConnectionClosed:
            return  # the caller went away mid-stream
        except Exception as exc:
            await self._send_error(socket, call_id, self._error(exc, method.name), response_headers)
            return
        header = {_mucp.ERROR: _mucp.EOS}
        if response_headers:
            header.update(response_headers)
        with contextlib.suppress(ConnectionClosed):
            await socket.send(Frame(header, b""))

    async def _send_all(self, socket: Socket, codec: Codec, result: Any, endpoint: str, call_id: str) -> None:
        if not hasattr(result, "__aiter__"):
            raise InternalError(
                f"{endpoint}: a streaming handler must return an async iterator, not {type(result).__name__}",
                id=self.options.name,
            )
        iterator: AsyncIterator[Any] = aiter(result)
        try:
            async for item in iterator:
                await socket.send(Frame({}, self._encode(codec, item, endpoint, call_id)))
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()

    # -- subscribers -----------------------------------------------------------------------------

    def _spawn_subscribe(self, subscription: Subscription) -> None:
        async def attach() -> None:
            try:
                self._broker_subscribers.append(await self._attach(subscription))
            except MicroError as exc:
                logger.error("%s: cannot subscribe to %r: %s", self.options.name, subscription.topic, exc)

        self._spawn(attach())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background, keeping a reference (the loop holds tasks only weakly)."""
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _attach(self, subscription: Subscription) -> BrokerSubscriber:
        return await self.broker.subscribe(
            subscription.topic, self._event_handler(subscription), queue=subscription.queue
        )

    def _event_handler(self, subscription: Subscription) -> Any:
        function = subscription.function

        async def innermost(message: Message) -> None:
            await function(message.payload)

        async def on_event(event: Event) -> None:
            task = self._track()
            try:
                chain: SubscriberFunc = innermost
                for wrapper in reversed(self._subscriber_wrappers):
                    chain = wrapper(chain)
                header = event.message.header
                content_type = header.get(_mucp.CONTENT_TYPE) or ""
                codec = self._codecs.get(content_type)
                payload = codec.unmarshal(event.message.body, subscription.message_type)
                message = Message(
                    topic=event.topic,
                    payload=payload,
                    content_type=codec.content_type,
                    header=header,
                    body=event.message.body,
                    subscriber=subscription.name,
                )
                with serving(header, None):
                    await chain(message)
            finally:
                self._untrack(task)

        return on_event

    # -- for servers of other wire protocols ------------------------------------------------------
    # A stable API: a server that speaks another protocol (asyncmicro-grpc's) subclasses RPCServer,
    # replaces _listen (and _drain/_teardown for its listener) and serves each call with these.

    @property
    def methods(self) -> Mapping[str, Method]:
        """The registered handler methods by endpoint name (``"Handler.method"``), a read-only view."""
        return MappingProxyType(self._methods)

    def route(self, endpoint: str) -> Route | None:
        """How the endpoint ``endpoint`` is served, or ``None`` when no handler has it.

        ``route.method`` is its :class:`~micro.server.handler.Method`, and ``await route.call(request)``
        runs the handler inside this server's wrappers (what the mucp server does for each call), for a
        :class:`~micro.server.Request` the caller builds. The route is replaced when handlers or wrappers
        change: look it up per call (a dict lookup), do not keep it.
        """
        return self._routes.get(endpoint)

    @property
    def accepting(self) -> bool:
        """Whether new calls are served: ``False`` once :meth:`stop` began (answer them ``Unavailable``)."""
        return not self._stopping

    def call_started(self) -> asyncio.Task[Any] | None:
        """Count the running task as a call in flight, which :meth:`stop` waits for (up to ``drain_timeout``).

        Pass the result to :meth:`call_finished` when the call is over, in a ``finally``.
        """
        return self._track()

    def call_finished(self, token: asyncio.Task[Any] | None) -> None:
        """The call :meth:`call_started` counted is over."""
        self._untrack(token)

    async def within(self, deadline: float | None, endpoint: str, work: Awaitable[_T]) -> _T:
        """Await ``work`` (a handler's) until ``deadline``, a ``time.monotonic()`` instant (``None``: no limit).

        At the deadline ``work`` is cancelled and :class:`~micro.errors.Timeout` (408) naming ``endpoint``
        raised, as the mucp server does for its handlers; a cancellation from elsewhere propagates as it is.
        The deadline timer is shared with other calls (up to 10 ms late, never early).
        """
        if deadline is None:
            return await work
        scope = Deadline(deadline)
        try:
            async with scope:
                return await work
        except TimeoutError as exc:
            if scope.expired:
                raise Timeout(f"{endpoint}: deadline exceeded", id=self.options.name) from exc
            raise


#: How a server serves one endpoint: ``.method`` and ``.call`` (see :meth:`RPCServer.route`).
Route: TypeAlias = _Route


class _Serving:
    """The listener handler of an :class:`RPCServer`: a socket per call, or a one-shot request whole (the tcp
    transport's :class:`~micro.transport.tcp.OneShotHandler`)."""

    __slots__ = ("_server", "one_shot")

    def __init__(self, server: RPCServer) -> None:
        self._server = server
        #: The server's own method, not a method of this class: one call less per request.
        self.one_shot: Callable[[Socket, dict[str, str], bytes], bool] = server._one_shot

    def __call__(self, socket: Socket, /) -> Awaitable[None]:
        return self._server._serve(socket)


class _Inbound:
    """The requests of a client-streaming call, as an async iterator over the socket."""

    __slots__ = ("_codec", "_done", "_into", "_server", "_socket")

    def __init__(self, socket: Socket, codec: Codec, into: Any, server: RPCServer) -> None:
        self._socket = socket
        self._codec = codec
        self._into = into
        self._server = server
        self._done = False

    def __aiter__(self) -> _Inbound:
        return self

    async def __anext__(self) -> Any:
        if self._done:
            raise StopAsyncIteration
        frame = await self._socket.recv()  # ConnectionClosed here: the caller vanished without ending its stream
        if frame.header and _mucp.header(frame.header, _mucp.ERROR) is not None:
            self._done = True
            raise StopAsyncIteration
        return self._server._decode(self._codec, frame.body, self._into)

    async def first(self) -> Any:
        """The single request of a server-streaming call."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise BadRequest("the stream ended before its request was sent") from None
