"""The ``grpc`` client: calls gRPC servers by registry name, micro's or anyone's (``MICRO_CLIENT=grpc``).

The endpoint names the gRPC method: ``"helloworld.Greeter.SayHello"`` calls
``/helloworld.Greeter/SayHello``, and ``"Greeter.Hello"`` calls ``/Greeter/Hello``, which a micro
``grpc`` server answers whatever the package. Nodes are picked among the service's nodes whose
registry metadata says ``protocol: grpc`` (a grpc server registers so; register a server not written
with micro with that metadata). Retries, backoff, deadlines, context metadata and call wrappers are
the ``mucp`` client's (:class:`~micro.client.RPCClient`); only the attempt itself speaks gRPC:

* requests and responses are encoded by their types (:mod:`micro_grpc.marshal`): ``protoc``-generated
  classes as themselves, dataclasses and models as their generated messages, anything else as JSON;
* the deadline goes out as the gRPC timeout, the metadata as text metadata; the trailing metadata comes
  back as the response metadata;
* a failed call raises the typed error for its status (:mod:`micro_grpc.status`).

One channel is kept per node address, at most ``max_channels`` (the least recently used is closed).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any, ClassVar, Final

import grpc
from micro.client.base import NO_REQUEST, Request, Response, Stream
from micro.client.rpc import RPCClient
from micro.errors import BadRequest, ConnectionClosed, NoneAvailable
from micro.metadata import Metadata
from micro.registry.base import Endpoint, Node, Service
from micro.selector import filter_protocol
from micro.selector.base import Filter
from micro.server.handler import describe

from ._meta import BODY_TYPE, JSON, inbound, outbound
from .marshal import Marshal, is_message_class, json_form, json_marshal, proto_marshal, typed_marshal
from .options import GRPCClientOptions, read_pem
from .proto import describe_endpoints, message_classes
from .status import from_status

__all__ = ["GRPCClient", "GRPCStream", "grpc_nodes"]

CONTENT_TYPE = "application/grpc+proto"


def grpc_nodes(services: list[Service]) -> list[Service]:
    """The selector filter: only nodes that say ``protocol: grpc`` (:class:`~micro.errors.ServiceNotFound`,
    naming what the nodes speak, when the service has nodes but none of them does)."""
    return _GRPC_ONLY(services)


_GRPC_ONLY: Final = filter_protocol("grpc")


def path_of(endpoint: str) -> str:
    """The gRPC method path for a micro endpoint name: ``"pkg.Svc.Method"`` -> ``"/pkg.Svc/Method"``."""
    service, _, method = endpoint.rpartition(".")
    if not service or not method:
        raise BadRequest(f"endpoint {endpoint!r} must name a gRPC service and method, as Service.Method")
    return f"/{service}/{method}"


_described: dict[Any, Marshal] = {}


def _described_marshal(tp: Any) -> Marshal | None:
    """The generated-message marshal for a dataclass or model, or ``None`` if it has no proto3 form."""
    try:
        return _described[tp]
    except KeyError:
        pass
    except TypeError:  # unhashable annotation
        return None
    value = describe(tp, "request")
    described = describe_endpoints("micro.client", [(Endpoint("T.t", request=value, response=value), False, False)])
    rpc = described.rpcs.get("T.t")
    found = typed_marshal(tp, message_classes(described)[rpc[2]]) if rpc is not None else None
    if found is not None:
        _described[tp] = found
    return found


def marshals(request_type: Any, response_type: Any) -> tuple[Marshal, Marshal]:
    """The request and response marshals for a call, chosen as the ``grpc`` server chooses them."""
    sides = []
    protobuf = is_message_class(request_type) or is_message_class(response_type)
    pair = None if protobuf else (_described_marshal(request_type), _described_marshal(response_type))
    for index, tp in enumerate((request_type, response_type)):
        if is_message_class(tp):
            sides.append(proto_marshal(tp))
        elif pair is not None and pair[0] is not None and pair[1] is not None:
            sides.append(pair[index])  # type: ignore[arg-type]
        else:
            sides.append(json_marshal(tp))
    return sides[0], sides[1]


_pairs: dict[tuple[Any, Any], tuple[Marshal, Marshal]] = {}


def _call_marshals(request_type: Any, response_type: Any) -> tuple[Marshal, Marshal]:
    """What a call sends and reads: :func:`marshals`, or JSON both ways when either side is JSON.

    A JSON side means the caller has no gRPC form for it (a ``dict`` from a gateway or ``micro call``, no
    response type): the call then says :data:`~micro_grpc._meta.BODY_TYPE` JSON, and a micro server reads
    and answers it in JSON whatever its endpoint's own messages are.
    """
    found = marshals(request_type, response_type)
    if "json" in (found[0].kind, found[1].kind) and found[0].kind != found[1].kind:
        return json_form(request_type), json_form(response_type)
    return found


def _marshals(request_type: Any, response_type: Any) -> tuple[Marshal, Marshal]:
    """:func:`_call_marshals`, remembered per pair of types (the unary hot path asks for the same pair every
    call)."""
    key = (request_type, response_type)
    try:
        return _pairs[key]
    except KeyError:
        found = _pairs[key] = _call_marshals(request_type, response_type)
        return found
    except TypeError:  # an unhashable annotation
        return _call_marshals(request_type, response_type)


def _sent(metadata: Metadata | None, as_json: bool) -> list[tuple[str, str]] | None:
    """The gRPC metadata of a call: ``metadata``'s, and :data:`~micro_grpc._meta.BODY_TYPE` when JSON."""
    pairs = outbound(metadata) if metadata else None
    if as_json:
        return [*(pairs or ()), (BODY_TYPE, JSON)]
    return pairs


def _error(exc: grpc.aio.AioRpcError, request: Request) -> Exception:
    trailers = {k: v for k, v in (exc.trailing_metadata() or ()) if isinstance(v, str)}
    return from_status(exc.code(), exc.details(), trailers, service=request.service)


class GRPCClient(RPCClient):
    """Calls gRPC servers (``MICRO_CLIENT=grpc``); the constructor is :class:`~micro.client.RPCClient`'s."""

    options_type: ClassVar[type[GRPCClientOptions]] = GRPCClientOptions
    options: GRPCClientOptions

    def __init__(self, options: GRPCClientOptions | None = None, **parts: Any) -> None:
        super().__init__(options, **parts)
        self._channels: OrderedDict[str, grpc.aio.Channel] = OrderedDict()
        # The unary method objects per (address, endpoint), made once: grpcio builds a new one per call otherwise.
        self._unary: dict[tuple[str, str], Any] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._tls_credentials: grpc.ChannelCredentials | None = None

    def _protocol_filters(self) -> tuple[Filter, ...]:
        """Nodes that say ``protocol: grpc``, whatever their transport (what :func:`grpc_nodes` keeps, without
        its extra call: the selector applies this on every call)."""
        return (_GRPC_ONLY,)

    def _channel(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is not None:
            self._channels.move_to_end(address)
            return channel
        options = self.options
        size = options.max_message_size
        settings: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", size),
            ("grpc.max_receive_message_length", size),
        ]
        if options.tls:
            if options.server_name:
                settings.append(("grpc.ssl_target_name_override", options.server_name))
            channel = grpc.aio.secure_channel(address, self._credentials(), options=settings)
        else:
            channel = grpc.aio.insecure_channel(address, options=settings)
        self._channels[address] = channel
        while len(self._channels) > self.options.max_channels:
            evicted, oldest = self._channels.popitem(last=False)
            for key in [k for k in self._unary if k[0] == evicted]:
                del self._unary[key]
            # Calls still on it get a second; the task is kept so the loop's weak reference does not drop it.
            task = asyncio.get_running_loop().create_task(oldest.close(grace=1.0))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return channel

    def _credentials(self) -> grpc.ChannelCredentials:
        """The channel credentials from ``ca_file``, ``cert_file`` and ``key_file``, read once."""
        if self._tls_credentials is None:
            options = self.options
            self._tls_credentials = grpc.ssl_channel_credentials(
                root_certificates=read_pem(options.ca_file, "ca_file"),
                private_key=read_pem(options.key_file, "key_file"),
                certificate_chain=read_pem(options.cert_file, "cert_file"),
            )
        return self._tls_credentials

    async def close(self) -> None:
        channels = list(self._channels.values())
        self._channels.clear()
        self._unary.clear()
        for channel in channels:
            await channel.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        await super().close()

    @staticmethod
    def _timeout(request: Request) -> float | None:
        return None if request.deadline is None else max(0.0, request.deadline - time.monotonic())

    def _node(self, request: Request) -> Node:
        if request.node is None:
            raise NoneAvailable(f"no node chosen for {request.service}")
        return request.node

    async def _attempt(self, request: Request) -> Response:
        """One attempt of a unary call, over gRPC (:class:`~micro.client.RPCClient`'s ``_attempt`` hook)."""
        node = self._node(request)
        request_marshal, response_marshal = _marshals(type(request.body), request.response_type)
        payload = request_marshal.encode(request.body)
        as_json = request_marshal.kind == "json"
        address = node.address
        method = self._unary.get((address, request.endpoint))
        if method is None or address not in self._channels:
            method = self._unary[(address, request.endpoint)] = self._channel(address).unary_unary(
                path_of(request.endpoint)
            )
        else:
            self._channels.move_to_end(address)
        deadline = request.deadline
        call = method(
            payload,
            timeout=None if deadline is None else max(0.0, deadline - time.monotonic()),
            metadata=_sent(request.metadata, as_json) if request.metadata or as_json else None,
        )
        try:
            data = await call
        except grpc.aio.AioRpcError as exc:
            raise _error(exc, request) from None
        try:
            # The call is over, so grpcio already holds its status, trailers included: read them there rather
            # than through trailing_metadata(), which costs two coroutines and an empty grpc Metadata per call.
            trailers = call._cython_call._status.trailing_metadata()
        except AttributeError:  # a call object without that state (an intercepted channel's, another grpcio's)
            trailers = await call.trailing_metadata()
        return Response(
            response_marshal.decode(data),
            metadata=inbound(trailers) if trailers else Metadata(),
            content_type=CONTENT_TYPE,
            node=node,
        )

    async def _open_stream(self, request: Request) -> Response:
        """Open a streaming call (:class:`~micro.client.RPCClient`'s ``_open_stream`` hook); every gRPC call kind
        is one HTTP/2 stream, so one shape serves all three."""
        node = self._node(request)
        response_type = request.response_type
        if request.body is not NO_REQUEST:
            as_json = _marshals(type(request.body), response_type)[0].kind == "json"
        else:  # what the requests will be is known at the first send: the response type decides
            as_json = _marshals(response_type, response_type)[1].kind == "json"
        method = self._channel(node.address).stream_stream(path_of(request.endpoint))
        call = method(timeout=self._timeout(request), metadata=_sent(request.metadata, as_json) or ())
        stream = GRPCStream(call, request, as_json=as_json)
        try:
            if request.body is not NO_REQUEST:
                await stream.send(request.body)
                await stream.close_send()
        except BaseException:
            await stream.close()
            raise
        return Response(stream, metadata=stream.metadata, content_type=CONTENT_TYPE, node=node)


class GRPCStream(Stream):
    """A streaming call over gRPC; requests are encoded by their own type, responses into ``response_type``."""

    def __init__(self, call: Any, request: Request, *, as_json: bool = False) -> None:
        self._call = call
        self._request = request
        #: The call said BODY_TYPE JSON: every message both ways is JSON of its type.
        self._json = as_json
        self._metadata = Metadata()
        self._done = False
        self._closed = False
        self._sending = True
        # Chosen on the first recv, with the type of the first request sent (the server chooses from both).
        self._response: Marshal | None = None
        self._first: Any = None
        self._marshals: dict[type, Marshal] = {}

    @property
    def request(self) -> Request:
        return self._request

    @property
    def metadata(self) -> Metadata:
        return self._metadata

    @property
    def done(self) -> bool:
        return self._done

    async def send(self, message: Any) -> None:
        if not self._sending or self._closed or self._done:
            raise ConnectionClosed(f"stream to {self._request.service} {self._request.endpoint} is closed for sending")
        kind = type(message)
        if self._first is None:
            self._first = kind
        marshal = self._marshals.get(kind)
        if marshal is None:
            marshal = self._marshals[kind] = (
                json_form(kind) if self._json else marshals(kind, self._request.response_type)[0]
            )
        try:
            await self._call.write(marshal.encode(message))
        except grpc.aio.AioRpcError as exc:
            raise _error(exc, self._request) from None
        except asyncio.InvalidStateError as exc:
            raise ConnectionClosed(f"the server ended the stream: {exc}") from None

    async def recv(self) -> Any:
        if self._closed or self._done:
            raise ConnectionClosed(f"stream to {self._request.service} {self._request.endpoint} has ended")
        try:
            data = await self._call.read()
            if data is grpc.aio.EOF:
                code = await self._call.code()
                trailers = await self._call.trailing_metadata()
                self._metadata.update(inbound(trailers))
                if code != grpc.StatusCode.OK:
                    self._closed = True
                    raise from_status(
                        code, await self._call.details(), dict(trailers or ()), service=self._request.service
                    )
                self._done = True
                raise ConnectionClosed("the server ended the stream")
        except grpc.aio.AioRpcError as exc:
            self._closed = True  # a failed stream is over: later calls raise ConnectionClosed
            self._metadata.update(inbound(exc.trailing_metadata()))
            raise _error(exc, self._request) from None
        if self._response is None:
            response_type = self._request.response_type
            first = self._first if self._first is not None else response_type
            self._response = json_form(response_type) if self._json else marshals(first, response_type)[1]
        return self._response.decode(data)

    async def close_send(self) -> None:
        if self._sending and not self._closed:
            self._sending = False
            try:
                await self._call.done_writing()
            except grpc.aio.AioRpcError as exc:
                raise _error(exc, self._request) from None

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._call.cancel()

    def __repr__(self) -> str:
        return f"<GRPCStream {self._request.service} {self._request.endpoint}>"
