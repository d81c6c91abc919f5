"""The ``grpc`` server: micro handler classes served over gRPC, on grpcio's asyncio API.

A handler method ``Greeter.Hello`` answers the gRPC method ``/<package>.Greeter/Hello`` for any package
(the one of a user's ``.proto``, or the micro service name that ``micro proto`` generates); the
handler kinds map to gRPC's one for one (unary, server, client and bidirectional streams). What the
server does for each call, as the ``mucp`` server does (:mod:`micro.server.rpc`):

* only this server's own endpoints are reached: nothing the caller sends names another service;
* the gRPC deadline becomes the handler's context deadline (:func:`micro.context.remaining`), and the
  call's text metadata its context metadata; headers the handler sets (:func:`micro.context.set_header`)
  go back as trailing metadata;
* a :class:`~micro.errors.MicroError` goes back with the status of :mod:`micro_grpc.status`, its detail
  masked by :func:`micro._redact.redact`; any other exception is logged with a reference and goes back
  as ``INTERNAL`` naming only the endpoint and that reference
  (:func:`micro.server.rpc.internal_error`);
* messages are limited to ``max_message_size``, calls to ``max_concurrent_streams`` per connection and
  ``max_concurrent_rpcs`` running in all (and calls from their arrival, those still waiting for their request
  included, to twice that); connections to ``max_connections``, idle ones to ``idle_timeout`` and handshakes
  to ``handshake_timeout``; while stopping, new calls get ``UNAVAILABLE``.

Besides the handlers it serves ``grpc.health.v1.Health`` (``SERVING`` while running, ``NOT_SERVING`` once
stopping) and server reflection, both optional. Registration, subscribers, wrappers and the drain on
:meth:`stop` are the ``mucp`` server's; the registered node says ``protocol: grpc``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from micro._deadline import Deadline
from micro._redact import redact
from micro.context import serving
from micro.errors import BadRequest, EndpointNotFound, InternalError, MicroError, Timeout, Unavailable
from micro.metadata import Metadata
from micro.registry.base import Service
from micro.server.base import Request
from micro.server.handler import Kind, Method
from micro.server.rpc import Route, RPCServer, internal_error

from ._meta import BODY_TYPE, JSON, outbound
from ._meta import received as received_metadata
from .marshal import Marshal, is_message_class, json_form, json_marshal, proto_marshal, typed_marshal
from .options import GRPCServerOptions, read_pem
from .proto import Described, describe_endpoints, message_classes
from .status import ERROR_CODE, ERROR_ID, to_status

__all__ = ["CONTENT_TYPE", "GRPCServer"]

logger = logging.getLogger("micro.server.grpc")

#: The ``content_type`` handler wrappers see on a gRPC call.
CONTENT_TYPE = "application/grpc+proto"
# Caller-sent method paths quoted in an error are cut to this many characters.
_ECHO = 80
# At most this many method paths are remembered with their handler (see GRPCServer._lookup).
_PATHS = 256


class _UnaryRequest(Request):
    """The :class:`Request` of a unary call, built from positional fields slot by slot rather than by
    ``Request``'s keyword constructor: it runs for every call. Every slot of ``Request`` is set here (a test
    checks them all against ``Request``'s own).

    ``remote`` is read from grpcio's context here, while the call runs: grpcio's ``peer()`` on a call that
    has ended crashes the process, so it cannot be left for a wrapper to read later.
    """

    __slots__ = ()

    def __init__(
        self,
        service: str,
        endpoint: str,
        metadata: Metadata,
        header: dict[str, str],
        body: Any,
        kind: Kind,
        remote: str,
    ) -> None:
        self.service = service
        self.endpoint = endpoint
        self.content_type = CONTENT_TYPE
        self.metadata = metadata
        self.header = header
        self.body = body
        self.id = ""
        self.kind = kind
        self.remote = remote
        self.local = False


class _Endpoint:
    """What serving one endpoint needs besides its route: the request and response marshals, and the JSON
    pair a call flagged with :data:`~micro_grpc._meta.BODY_TYPE` uses instead."""

    __slots__ = ("handler", "json", "request", "response")

    def __init__(self, request: Marshal, response: Marshal, json: _Endpoint | None = None) -> None:
        self.request = request
        self.response = response
        self.json = json
        self.handler: grpc.RpcMethodHandler | None = None

    def chosen(self, body_type: str, name: str) -> _Endpoint:
        """The marshals for a call that said ``body_type`` (``""``: the endpoint's own)."""
        if not body_type:
            return self
        if body_type == JSON and self.json is not None:
            return self.json
        raise BadRequest(f"{name}: unsupported {BODY_TYPE} {body_type[:_ECHO]!r}; only {JSON!r}", id=name)


class _Router(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Finds the endpoint for a gRPC method path; ``None`` for a path it lacks (the next handler's then).

    Consulted first, before health and reflection: grpcio asks each generic handler in turn per call, and
    micro's own calls are the ones that must be cheap.
    """

    def __init__(self, server: GRPCServer) -> None:
        self._server = server

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler | None:
        return self._server._lookup(handler_call_details.method)


class _Unknown(grpc.GenericRpcHandler):  # type: ignore[misc]
    """Consulted last: the ``UNIMPLEMENTED`` answer (carrying micro's 404) for a path nothing else serves."""

    def __init__(self, server: GRPCServer) -> None:
        self._server = server

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler:
        return self._server._grpc_unknown(handler_call_details.method)


class _Limited:
    """What health and reflection register their services on: the grpcio server, their calls counted
    against ``max_concurrent_rpcs`` as micro's are (grpcio's own limiter is off, see ``GRPCServer._listen``)."""

    def __init__(self, server: grpc.aio.Server, owner: GRPCServer) -> None:
        self._server = server
        self._owner = owner

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(tuple(_LimitedHandler(handler, self) for handler in handlers))

    def add_registered_method_handlers(self, service: str, handlers: dict[str, grpc.RpcMethodHandler]) -> None:
        self._server.add_registered_method_handlers(
            service, {name: self.limit(handler) for name, handler in handlers.items()}
        )

    def limit(self, handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler | None:
        """``handler`` with each of its behaviours counted; ``None`` stays ``None``."""
        if handler is None:
            return None
        owner = self._owner
        limit = owner.options.max_concurrent_rpcs
        changed: dict[str, Callable[..., Any]] = {}
        for field in ("unary_unary", "unary_stream", "stream_unary", "stream_stream"):
            behaviour = getattr(handler, field)
            if inspect.isasyncgenfunction(behaviour):
                changed[field] = _limited_stream(owner, limit, behaviour)
            elif inspect.iscoroutinefunction(behaviour):
                changed[field] = _limited_call(owner, limit, behaviour)
            # (Health's and reflection's asyncio servicers, the only ones registered here, have no other kind.)
        return handler._replace(**changed)


class _LimitedHandler(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, handler: grpc.GenericRpcHandler, limited: _Limited) -> None:
        self._handler = handler
        self._limited = limited

    def service(self, handler_call_details: Any) -> grpc.RpcMethodHandler | None:
        return self._limited.limit(self._handler.service(handler_call_details))


def _limited_call(owner: GRPCServer, limit: int, behaviour: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    async def call(received: Any, context: Any) -> Any:
        if owner._grpc_calls >= limit:
            await owner._grpc_busy(context)
        owner._grpc_calls += 1
        try:
            return await behaviour(received, context)
        finally:
            owner._grpc_calls -= 1

    return call


def _limited_stream(owner: GRPCServer, limit: int, behaviour: Callable[..., Any]) -> Callable[..., AsyncIterator[Any]]:
    async def stream(received: Any, context: Any) -> AsyncIterator[Any]:
        if owner._grpc_calls >= limit:
            await owner._grpc_busy(context)
        owner._grpc_calls += 1
        try:
            async for item in behaviour(received, context):
                yield item
        finally:
            owner._grpc_calls -= 1

    return stream


class GRPCServer(RPCServer):
    """Serves handlers over gRPC (``MICRO_SERVER=grpc``); the constructor is :class:`~micro.server.RPCServer`'s.

    The transport it would take is not used: gRPC brings its own HTTP/2 listener.
    """

    options_type: ClassVar[type[GRPCServerOptions]] = GRPCServerOptions
    options: GRPCServerOptions

    def __init__(self, options: GRPCServerOptions | None = None, **parts: Any) -> None:
        super().__init__(options, **parts)
        self._grpc: grpc.aio.Server | None = None
        self._bound: str | None = None
        self._endpoints: dict[str, _Endpoint] = {}
        self._paths: dict[str, grpc.RpcMethodHandler] = {}
        # Calls running now, against max_concurrent_rpcs (counted by micro rather than grpcio: see _listen).
        self._grpc_calls = 0
        self._described: Described | None = None
        self._classes: dict[str, Any] = {}
        self._health: Any = None

    # -- handlers --------------------------------------------------------------------------------

    def handle(
        self, handler: object, *, name: str | None = None, metadata: dict[str, str] | None = None
    ) -> list[Method]:
        methods = super().handle(handler, name=name, metadata=metadata)
        self._described = None
        self._endpoints.clear()
        self._paths.clear()
        return methods

    def described(self) -> Described:
        """The generated proto description of the endpoints whose types are dataclasses or models."""
        if self._described is None:
            self._described = describe_endpoints(
                self.options.name,
                [
                    (m.endpoint(), m.kind.client_streams, m.kind.server_streams)
                    for m in self.methods.values()
                    if not (is_message_class(m.request_type) or is_message_class(m.response_type))
                ],
            )
            self._classes = message_classes(self._described)
        return self._described

    def _marshal(self, method: Method, tp: Any, request: bool) -> Marshal:
        if is_message_class(tp):
            return proto_marshal(tp)
        rpc = self.described().rpcs.get(method.name)
        if rpc is not None:
            return typed_marshal(tp, self._classes[rpc[2] if request else rpc[3]])
        return json_marshal(tp)

    def _lookup(self, path: str) -> grpc.RpcMethodHandler | None:
        """The handler for the gRPC method ``path``, or ``None`` when no endpoint has it."""
        handler = self._paths.get(path)
        if handler is not None:
            return handler
        service, _, name = path[1:].rpartition("/")
        endpoint = f"{service.rpartition('.')[2]}.{name}"
        found = self._endpoints.get(endpoint)
        if found is None:
            route = self.route(endpoint)
            if route is None:
                return None
            method = route.method
            found = _Endpoint(
                self._marshal(method, method.request_type, True),
                self._marshal(method, method.response_type, False),
                _Endpoint(json_form(method.request_type), json_form(method.response_type)),
            )
            found.handler = self._method_handler(method, found)
            self._endpoints[endpoint] = found
        # Paths seen are kept for a one-lookup answer next time; any package prefix reaches an endpoint, so
        # the number kept is bounded (a caller inventing prefixes gets the longer lookup, not more memory).
        if len(self._paths) < _PATHS:
            self._paths[path] = found.handler
        return found.handler

    def _grpc_unknown(self, path: str) -> grpc.RpcMethodHandler:
        """The answer to a method this server lacks: ``UNIMPLEMENTED``, as gRPC clients expect, carrying
        micro's 404 so a micro client raises the same not-found error as over mucp. One shape serves every
        call kind (they differ only in the client's API); built per call, so unknown paths cache nothing."""
        shown = repr(path if len(path) <= _ECHO else path[:_ECHO] + "...")
        error = EndpointNotFound(f"{self.options.name} has no method {shown}", id=self.options.name)

        async def unknown(received: Any, context: Any) -> None:
            await self._grpc_abort(context, error, None, status=grpc.StatusCode.UNIMPLEMENTED)

        return grpc.stream_stream_rpc_method_handler(unknown)

    def _method_handler(self, method: Method, marshals: _Endpoint) -> grpc.RpcMethodHandler:
        kind = method.kind
        if kind is Kind.UNARY:
            return grpc.unary_unary_rpc_method_handler(self._grpc_unary(method, marshals))
        if kind is Kind.SERVER_STREAM:
            return grpc.unary_stream_rpc_method_handler(self._grpc_streaming(method, marshals))
        if kind is Kind.CLIENT_STREAM:
            return grpc.stream_unary_rpc_method_handler(self._grpc_unary(method, marshals))
        return grpc.stream_stream_rpc_method_handler(self._grpc_streaming(method, marshals))

    # -- serving ---------------------------------------------------------------------------------
    # Through RPCServer's API for servers of other protocols: route(), accepting, within(). Calls in flight are
    # counted in _grpc_calls, not with call_started/call_finished: the drain of gRPC calls is grpcio's
    # stop(drain_timeout) (see _drain), which waits for them and then cancels them, so tracking each call's task
    # for RPCServer's drain as well would only cost time on every call.

    def _grpc_request(
        self, method: Method, marshals: _Endpoint, received: Any, context: Any
    ) -> tuple[Request, float | None, _Endpoint]:
        """The :class:`Request` handler wrappers see for a call, the call's deadline (monotonic), and the
        marshals its messages are in (the endpoint's own, or JSON when the client said so)."""
        if not self.accepting:
            raise Unavailable(f"{self.options.name} is shutting down", id=self.options.name)
        metadata, body_type = received_metadata(context.invocation_metadata() or ())
        marshals = marshals.chosen(body_type, self.options.name)
        decode = marshals.request.decode
        remaining = context.time_remaining()
        if method.kind.client_streams:
            body: Any = _decoded(received, decode)
        else:
            body = decode(received) if method.takes_request else None
        request = Request(
            service=self.options.name,
            endpoint=method.name,
            content_type=CONTENT_TYPE,
            metadata=metadata,
            header=dict(metadata) if metadata else {},
            body=body,
            kind=method.kind,
            remote=context.peer() or "",
        )
        return request, (time.monotonic() + remaining if remaining is not None else None), marshals

    def _grpc_route(self, endpoint: str) -> Route:
        route = self.route(endpoint)
        if route is None:  # the handler was replaced since grpcio looked the method up
            raise EndpointNotFound(f"{self.options.name} has no method {endpoint!r}", id=self.options.name)
        return route

    def _grpc_encode(self, marshal: Marshal, value: Any, endpoint: str) -> bytes:
        try:
            return marshal.encode(value)
        except MicroError as exc:
            # The handler returned something the endpoint's type cannot carry: the server's fault.
            raise InternalError(f"{endpoint}: cannot encode the response: {exc}", id=self.options.name) from exc

    def _grpc_unary(self, method: Method, marshals: _Endpoint) -> Callable[[Any, Any], Awaitable[bytes]]:
        """A unary or client-streaming call: one response.

        Made once per endpoint (grpcio keeps the handler), so what a call needs is bound here; a unary
        call's request is built inline (what :meth:`_grpc_request` does), as it runs for every call.
        """
        if method.kind.client_streams:
            return self._grpc_client_stream(method, marshals)
        endpoint = method.name
        takes_request = method.takes_request
        decode = marshals.request.decode if takes_request else None
        encode = marshals.response.encode
        limit = self.options.max_concurrent_rpcs
        name = self.options.name
        kind = method.kind

        async def serve(received: Any, context: Any) -> bytes:
            if self._grpc_calls >= limit:
                await self._grpc_busy(context)
            self._grpc_calls += 1
            headers: Metadata | None = None
            try:
                try:
                    if not self.accepting:
                        raise Unavailable(f"{name} is shutting down", id=name)
                    pairs = context.invocation_metadata()
                    decoder, encoder = decode, encode
                    if pairs:
                        metadata, body_type = received_metadata(pairs)
                        if body_type:  # a JSON body passed through (a gateway, `micro call`): JSON both ways
                            chosen = marshals.chosen(body_type, name)
                            decoder = chosen.request.decode if takes_request else None
                            encoder = chosen.response.encode
                    else:
                        metadata = Metadata()
                    remaining = context.time_remaining()
                    deadline = time.monotonic() + remaining if remaining is not None else None
                    request = _UnaryRequest(
                        name,
                        endpoint,
                        metadata,
                        dict(metadata) if metadata else {},
                        decoder(received) if decoder is not None else None,
                        kind,
                        context.peer() or "",
                    )
                    route = self.route(endpoint)
                    if route is None:  # the handler was replaced since grpcio looked the method up
                        raise EndpointNotFound(f"{name} has no method {endpoint!r}", id=name)
                    with serving(metadata, deadline) as headers:
                        if deadline is None:
                            result = await route.call(request)
                        else:
                            # What self.within does, inline: one coroutine less per call that has a deadline
                            # (every call from micro's client). A plain ``with``: this coroutine runs in the
                            # call's task, which the scope cancels at the deadline.
                            scope = Deadline(deadline)
                            try:
                                with scope:
                                    result = await route.call(request)
                            except TimeoutError as exc:
                                if scope.expired:
                                    raise Timeout(f"{endpoint}: deadline exceeded", id=name) from exc
                                raise
                    try:
                        payload = encoder(result)
                    except MicroError as exc:
                        # The handler returned something the endpoint's type cannot carry: the server's fault.
                        raise InternalError(f"{endpoint}: cannot encode the response: {exc}", id=name) from exc
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    error = internal_error(exc, name, endpoint)
                else:
                    if headers:
                        context.set_trailing_metadata(outbound(headers))
                    return payload
                await self._grpc_abort(context, error, headers)
                raise AssertionError("unreachable")  # pragma: no cover
            finally:
                self._grpc_calls -= 1

        return serve

    def _grpc_client_stream(self, method: Method, marshals: _Endpoint) -> Callable[[Any, Any], Awaitable[bytes]]:
        """A client-streaming call: requests read as the handler iterates them, one response."""
        endpoint = method.name

        async def serve(received: Any, context: Any) -> bytes:
            headers: Metadata | None = None
            try:
                request, deadline, chosen = self._grpc_request(method, marshals, received, context)
                call = self._grpc_route(endpoint).call
                with serving(request.metadata, deadline) as headers:
                    result = await self.within(deadline, endpoint, call(request))
                payload = self._grpc_encode(chosen.response, result, endpoint)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = internal_error(exc, self.options.name, endpoint)
            else:
                if headers:
                    context.set_trailing_metadata(outbound(headers))
                return payload
            await self._grpc_abort(context, error, headers)
            raise AssertionError("unreachable")  # pragma: no cover

        # Counted against max_concurrent_rpcs by the module's one counting wrapper (the unary path counts
        # inline: it runs for every call; a stream can afford the wrapper's coroutine).
        return _limited_call(self, self.options.max_concurrent_rpcs, serve)

    def _grpc_streaming(self, method: Method, marshals: _Endpoint) -> Callable[[Any, Any], Awaitable[None]]:
        """A server-streaming or bidirectional call: responses written as the handler yields them."""
        endpoint = method.name

        async def serve(received: Any, context: Any) -> None:
            headers: Metadata | None = None
            try:
                request, deadline, chosen = self._grpc_request(method, marshals, received, context)
                with serving(request.metadata, deadline) as headers:
                    await self.within(deadline, endpoint, self._grpc_write_all(request, chosen, context))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = internal_error(exc, self.options.name, endpoint)
            else:
                if headers:
                    context.set_trailing_metadata(outbound(headers))
                return
            await self._grpc_abort(context, error, headers)

        return _limited_call(self, self.options.max_concurrent_rpcs, serve)  # counted as the client stream is

    async def _grpc_write_all(self, request: Request, marshals: _Endpoint, context: Any) -> None:
        endpoint = request.endpoint
        result = await self._grpc_route(endpoint).call(request)
        if not hasattr(result, "__aiter__"):
            raise InternalError(
                f"{endpoint}: a streaming handler must return an async iterator, not {type(result).__name__}",
                id=self.options.name,
            )
        iterator: AsyncIterator[Any] = aiter(result)
        try:
            async for item in iterator:
                await context.write(self._grpc_encode(marshals.response, item, endpoint))
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _grpc_busy(self, context: Any) -> None:
        """Refuse a call past ``max_concurrent_rpcs`` with ``RESOURCE_EXHAUSTED`` (what grpcio's own limit says)."""
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"{self.options.name}: {self.options.max_concurrent_rpcs} calls running (max_concurrent_rpcs)",
        )

    async def _grpc_abort(
        self, context: Any, error: MicroError, headers: Metadata | None, *, status: grpc.StatusCode | None = None
    ) -> None:
        # A deliberate error keeps its message, minus any credentials it quotes.
        error.detail = redact(error.detail)
        trailers = outbound(headers)
        trailers.append((ERROR_CODE, str(error.code)))
        if error.id.isascii() and error.id.isprintable():
            trailers.append((ERROR_ID, error.id))
        await context.abort(status or to_status(error), error.detail, tuple(trailers))

    # -- description -----------------------------------------------------------------------------

    @property
    def address(self) -> str:
        if self.options.advertise:
            return self.options.advertise
        return self._bound or self.options.address

    def service(self) -> Service:
        service = super().service()
        for node in service.nodes:
            node.metadata.pop("transport", None)
            node.metadata["server"] = "grpc"
            node.metadata["protocol"] = "grpc"
            node.metadata["max_message_size"] = str(self.options.max_message_size)
            if self.options.tls:
                node.metadata["secure"] = "true"  # as Go Micro's grpc server says it
        return service

    def grpc_services(self) -> list[str]:
        """Full names of the gRPC services the handlers answer as (those reflection lists)."""
        names = {full for full, _, _, _ in self.described().rpcs.values()}
        for method in self.methods.values():
            if is_message_class(method.request_type):
                handler, _, name = method.name.rpartition(".")
                found = method.request_type.DESCRIPTOR.file.services_by_name.get(handler)
                if found is not None and name in found.methods_by_name:
                    names.add(found.full_name)
        return sorted(names)

    def _pool(self) -> descriptor_pool.DescriptorPool:
        """The descriptors reflection answers from: the generated file, and each ``.proto`` file in use."""
        pool = self.described().pool()
        added = {self.described().file.name}

        def add(file: Any) -> None:
            if file.name in added:
                return
            for dependency in file.dependencies:
                add(dependency)
            proto = descriptor_pb2.FileDescriptorProto()
            file.CopyToProto(proto)
            pool.Add(proto)
            added.add(file.name)

        from grpc_health.v1 import health_pb2
        from grpc_reflection.v1alpha import reflection_pb2

        for file in (health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR):
            add(file)
        for method in self.methods.values():
            for tp in (method.request_type, method.response_type):
                if is_message_class(tp):
                    add(tp.DESCRIPTOR.file)
        return pool

    # -- lifecycle -------------------------------------------------------------------------------

    async def _listen(self) -> None:
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc
        from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

        options = self.options
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", options.max_message_size),
                ("grpc.max_send_message_length", options.max_message_size),
                ("grpc.max_concurrent_streams", options.max_concurrent_streams),
                ("grpc.max_allowed_incoming_connections", options.max_connections),
                ("grpc.max_connection_idle_ms", round(options.idle_timeout * 1000)),
                ("grpc.server_handshake_timeout_ms", round(options.handshake_timeout * 1000)),
                # Soft and hard limit alike: between the two grpcio refuses a share of calls at random.
                ("grpc.max_metadata_size", options.max_metadata_size),
                ("grpc.absolute_max_metadata_size", options.max_metadata_size),
                # Without this a second server binds a port already in use and steals half its calls.
                ("grpc.so_reuseport", 0),
            ],
            # max_concurrent_rpcs is counted here (_admit for micro's calls, _Limited for health and reflection),
            # with its own message, from when a handler starts. grpcio's limiter, at twice that, bounds what
            # micro cannot see: calls from their arrival, those still waiting for a request message included (a
            # peer can open streams and never send one; each holds a task and ~12 KiB until the peer goes).
            maximum_concurrent_rpcs=2 * options.max_concurrent_rpcs,
        )
        self._grpc = server
        # micro's router first: grpcio asks the generic handlers in order for every call.
        server.add_generic_rpc_handlers((_Router(self),))
        names = self.grpc_services()
        limited = _Limited(server, self)
        if options.health:
            self._health = health.aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(self._health, limited)
        if options.reflection:
            listed = [*names, reflection.SERVICE_NAME]
            if options.health:
                listed.append(health_pb2.DESCRIPTOR.services_by_name["Health"].full_name)
            # (What reflection.enable_server_reflection does for an asyncio server, on the counting one.)
            reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
                reflection.aio.ReflectionServicer(listed, pool=self._pool()), limited
            )
        server.add_generic_rpc_handlers((_Unknown(self),))
        try:
            if options.tls:
                port = server.add_secure_port(options.address, self._credentials())
            else:
                port = server.add_insecure_port(options.address)
        except RuntimeError as exc:
            raise Unavailable(f"cannot listen on {options.address} (option address): {exc}", id=options.name) from exc
        await server.start()
        host = options.address.rpartition(":")[0]
        self._bound = f"{host}:{port}"
        if self._health is not None:
            for name in ("", *names):
                await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def _credentials(self) -> grpc.ServerCredentials:
        """TLS from ``cert_file``/``key_file``; client certificates signed by ``ca_file`` required when it is set."""
        options = self.options
        key, cert = read_pem(options.key_file, "key_file"), read_pem(options.cert_file, "cert_file")
        # GRPCServerOptions requires both with tls.
        assert key is not None
        assert cert is not None
        ca = read_pem(options.ca_file, "ca_file")
        return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)

    async def _drain(self) -> None:
        if self._health is not None:
            await self._health.enter_graceful_shutdown()
        if self._grpc is not None:
            # New calls are refused from here; running ones get drain_timeout, then grpcio cancels them.
            await self._grpc.stop(self.options.drain_timeout)
        await super()._drain()

    async def _teardown(self) -> None:
        if self._grpc is not None:
            await self._grpc.stop(None)
            self._grpc = None
        self._bound = None
        self._health = None
        await super()._teardown()


async def _decoded(received: AsyncIterator[bytes], decode: Callable[[bytes], Any]) -> AsyncIterator[Any]:
    async for data in received:
        yield decode(data)
