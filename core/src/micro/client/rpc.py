"""The ``mucp`` RPC client: selector → transport socket → codec, with deadlines and retries.

The per-call path is kept short because it runs for every request: a warm
selector answers from its cache, the transport multiplexes the socket over an
open connection, and the codec for a content type is looked up once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import Coroutine, Mapping, Sequence
from typing import Any, ClassVar

from .. import _mucp
from .._deadline import Deadline
from ..broker.base import Broker
from ..broker.base import Message as BrokerMessage
from ..codec import Codec, Codecs, MessageType
from ..codec import Message as CodecMessage
from ..component import Make, Parts
from ..context import current_metadata
from ..context import deadline as context_deadline
from ..errors import (
    BadRequest,
    ConnectionClosed,
    MessageTooLarge,
    MicroError,
    NoneAvailable,
    Timeout,
    is_retryable,
)
from ..metadata import Metadata
from ..registry.base import Node
from ..selector.base import Filter, Next, Selector
from ..selector.filter import filter_protocol
from ..transport.base import Message as Frame
from ..transport.base import Socket, Transport
from .base import (
    NO_REQUEST,
    Backoff,
    CallFunc,
    CallOptions,
    CallWrapper,
    Client,
    Publication,
    PublishFunc,
    PublishWrapper,
    Request,
    Response,
    Stream,
    StreamOptions,
    exponential_backoff,
)
from .options import ClientOptions

__all__ = ["RPCClient", "RPCStream"]


def _tcp() -> Transport:
    from ..transport.tcp import TCPTransport

    return TCPTransport()


def _random() -> Selector:
    from ..selector.cache import RandomSelector

    return RandomSelector()


def _http() -> Broker:
    from ..broker.http import HTTPBroker

    return HTTPBroker()


_ids = itertools.count(1)
#: The service network nodes answer as (``micro.network.mucp.SERVICE``; not imported: the client is below the network).
NETWORK_SERVICE = "micro.network"
_ERROR = _mucp.ERROR.lower()
_CONTENT_TYPE = _mucp.CONTENT_TYPE.lower()


def _plain_codec(codec: Codec) -> bool:
    return type(codec).encode is Codec.encode and type(codec).decode is Codec.decode


def _fixed(addresses: str) -> Next:
    """A :data:`~micro.selector.Next` cycling over explicit ``host:port`` addresses."""
    nodes = [Node(id=a.strip(), address=a.strip()) for a in addresses.split(",") if a.strip()]
    if not nodes:
        raise BadRequest(f"address must be host:port (or a comma-separated list), got {addresses!r}")
    cycle = itertools.cycle(nodes)
    return lambda: next(cycle)


class RPCClient(Client):
    """The default client (Go Micro's ``rpcClient``).

    :param transport: dials nodes.
    :param selector: picks nodes.
    :param broker: for :meth:`publish`.
    :param codecs: the codecs by content type (:class:`~micro.codec.Codecs` of the built-in ones, ``json``
        by default, when omitted).
    :param make: builds a transport, selector or broker not given, on first use (see
        :class:`~micro.component.Make`); without it, the built-in default (``tcp``, ``random`` over the
        ``local`` registry, ``http``). Components the client built are closed by :meth:`close`; those
        passed in are not.
    :param wrappers: call middleware, outermost first.
    :param backoff: the default :data:`~micro.client.Backoff` (from ``options.backoff`` and
        ``options.backoff_max`` when omitted).

    A client for another wire protocol (asyncmicro-grpc's) subclasses this one and keeps its call path
    (names check, metadata, deadline, selection, retries, backoff, wrappers), replacing only these
    protected hooks, which are a stable API:

    * ``_attempt(request) -> Response``: one attempt of a unary call on ``request.node`` (the innermost
      :data:`~micro.client.CallFunc` under the wrappers; ``request.deadline`` is the call's, monotonic);
    * ``_open_stream(request) -> Response``: open a stream on ``request.node``, the
      :class:`~micro.client.Stream` as the response body, the first request sent unless it is
      :data:`~micro.client.NO_REQUEST`;
    * ``_protocol_filters() -> tuple[Filter, ...]``: the selector filters for the nodes it can speak to.

    An error an attempt raises is retried on another node when it is retryable
    (:func:`~micro.errors.is_retryable`), as over mucp.
    """

    options_type: ClassVar[type[ClientOptions]] = ClientOptions
    options: ClientOptions

    def __init__(
        self,
        options: ClientOptions | None = None,
        *,
        transport: Transport | None = None,
        selector: Selector | None = None,
        broker: Broker | None = None,
        codecs: Codecs | None = None,
        make: Make | None = None,
        wrappers: Sequence[CallWrapper] = (),
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(options)
        self._transport = transport
        self._selector = selector
        self._broker = broker
        self._codecs = codecs if codecs is not None else Codecs()
        self._parts = Parts(make)
        self._wrappers: list[CallWrapper] = list(wrappers)
        self._call: CallFunc = self._chain(self._attempt)
        self._open: CallFunc = self._chain(self._open_stream)
        self._raw_call: CallFunc | None = None  # the chain of invoke_raw, built on its first use
        self._publish_wrappers: list[PublishWrapper] = []
        self._send: PublishFunc = self._deliver
        options_ = self.options
        self._backoff: Backoff = backoff or (
            lambda attempt: exponential_backoff(attempt, base=options_.backoff, cap=options_.backoff_max)
        )
        self._started: set[int] = set()
        self._default_codec: Codec | None = None
        self._node_filters: tuple[Filter, ...] | None = None
        proxy = (self.options.proxy or "").strip()
        #: The proxy's addresses (``host:port``), or ``None``; a proxy given by service name is in ``_proxy_name``.
        self._proxy_next: Next | None = _fixed(proxy) if ":" in proxy else None
        self._proxy_name: str | None = proxy if proxy and ":" not in proxy else None

    # -- wiring ----------------------------------------------------------------------------------

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = self._parts.make(Transport, _tcp)
        return self._transport

    @property
    def selector(self) -> Selector:
        if self._selector is None:
            self._selector = self._parts.make(Selector, _random)
        return self._selector

    @property
    def broker(self) -> Broker:
        if self._broker is None:
            self._broker = self._parts.make(Broker, _http)
        return self._broker

    @property
    def codecs(self) -> Codecs:
        """The codecs this client encodes and decodes with."""
        return self._codecs

    def wrap(self, *wrappers: CallWrapper) -> None:
        self._wrappers.extend(wrappers)
        self._call = self._chain(self._attempt)
        self._open = self._chain(self._open_stream)
        self._raw_call = None

    def wrap_publish(self, *wrappers: PublishWrapper) -> None:
        self._publish_wrappers.extend(wrappers)
        send: PublishFunc = self._deliver
        for wrapper in reversed(self._publish_wrappers):
            send = wrapper(send)
        self._send = send

    def _chain(self, innermost: CallFunc) -> CallFunc:
        call = innermost
        for wrapper in reversed(self._wrappers):
            call = wrapper(call)
        return call

    def _protocol_filters(self) -> tuple[Filter, ...]:
        """The selector filters of every call: the nodes this client can speak to. Read once, on the first call.

        ``mucp`` nodes over this client's transport (:func:`~micro.selector.filter_protocol`), so a
        registry that also holds gRPC nodes, or mucp nodes on another transport, never routes a call to
        one; a client for another protocol overrides this.
        """
        return (filter_protocol("mucp", self.transport.name or None),)

    async def start(self) -> None:
        """Start the transport and selector (each once; a call starts them too)."""
        await self._ensure(self.transport)
        await self._ensure(self.selector)

    async def _ensure(self, component: Any) -> None:
        if id(component) not in self._started:
            await component.start()
            self._started.add(id(component))

    async def close(self) -> None:
        """Close what the client built itself; it builds them afresh on next use. Idempotent."""
        owned = await self._parts.close()
        # Components the client made are made afresh on next use; those passed in stay.
        if any(self._transport is c for c in owned):
            self._transport = None
            self._node_filters = None  # they name the transport
        if any(self._selector is c for c in owned):
            self._selector = None
        if any(self._broker is c for c in owned):
            self._broker = None
        self._started.clear()

    # -- calls -----------------------------------------------------------------------------------

    def _codec(self, content_type: str) -> Codec:
        """The codec for ``content_type``; the default one (looked up once) for ``""``."""
        if content_type:
            return self._codecs.get(content_type)
        if self._default_codec is None:
            self._default_codec = self._codecs.default()
        return self._default_codec

    def _deadline(self, timeout: float | None, default: float | None) -> float | None:
        seconds = default if timeout is None else timeout
        if seconds is not None and (seconds != seconds or seconds <= 0):  # NaN or not positive
            raise BadRequest(f"timeout must be a positive number of seconds, got {timeout!r}")
        inherited = context_deadline()
        if seconds is None:
            return inherited
        own = time.monotonic() + seconds
        return own if inherited is None or own < inherited else inherited

    def _metadata(self, metadata: Mapping[str, str] | None) -> Metadata:
        outgoing = current_metadata().copy()
        if metadata:
            outgoing._merge(metadata)
        return outgoing

    def _invoke(
        self, service: str, endpoint: str, request: Any, response_type: Any, options: CallOptions
    ) -> Coroutine[Any, Any, Response]:
        # Not a coroutine itself: it returns the retry loop's, which the caller awaits (one coroutine less per
        # call). Its checks raise from ``call`` and ``invoke`` as before: they await what it returns at once.
        _check_names(service, endpoint)
        content_type = options.get("content_type")
        retries = options.get("retries")
        call = Request(
            service=service,
            endpoint=endpoint,
            body=request,
            content_type=content_type or self.options.content_type or "",
            metadata=self._metadata(options.get("metadata")),
            response_type=response_type,
            deadline=self._deadline(options.get("timeout"), self.options.request_timeout),
        )
        attempts = (self.options.retries if retries is None else retries) + 1
        backoff = options.get("backoff") or self._backoff
        return self._attempts(call, self._call, attempts, backoff, options.get("address"))

    async def _attempts(
        self, request: Request, function: CallFunc, attempts: int, backoff: Backoff, address: str | None
    ) -> Response:
        """Run ``function`` on nodes until one answers, within the request's deadline (one timer for all)."""
        deadline = request.deadline
        scope = Deadline(deadline)
        try:
            with scope:  # the deadline and the retries in one coroutine: this runs for every call
                service = request.service
                started = self._started
                if address:
                    choose, selector = _fixed(address), None
                elif self._proxy_next is not None:
                    choose, selector = self._proxy_next, None
                else:
                    if self._proxy_name is not None:
                        service = self._proxy_name  # the proxies are selected; the request keeps its service
                    selector = self.selector
                    if id(selector) not in started:  # checked here: awaiting _ensure costs a coroutine per call
                        await self._ensure(selector)
                    filters = self._node_filters
                    if filters is None:
                        filters = self._node_filters = self._protocol_filters()
                    choose = await selector.select(service, filters=filters)
                transport = self.transport
                if id(transport) not in started:
                    await self._ensure(transport)
                error: MicroError | None = None
                for attempt in range(attempts):
                    if attempt:
                        delay = backoff(attempt)
                        if deadline is not None and time.monotonic() + delay >= deadline:
                            break
                        if delay > 0:
                            await asyncio.sleep(delay)
                    try:
                        node = choose()
                    except NoneAvailable:
                        if error is not None:
                            break
                        raise
                    request.node = node
                    try:
                        response = await function(request)
                    except MicroError as exc:
                        retryable = is_retryable(exc)
                        if selector is not None:
                            # A node that answered with an application error is healthy; only unreachable ones
                            # are demoted.
                            selector.mark(service, node, exc if retryable else None)
                        if not retryable:
                            raise
                        error = exc
                        continue
                    except asyncio.CancelledError:
                        if selector is not None:
                            if deadline is not None and time.monotonic() >= deadline:
                                selector.mark(service, node, Timeout(f"{node.address} did not answer in time"))
                            else:
                                selector.release(service, node)  # no outcome, but no longer in flight
                        raise
                    except BaseException:
                        if selector is not None:
                            selector.release(service, node)
                        raise
                    if selector is not None:
                        selector.mark(service, node, None)
                    return response
                assert error is not None
                raise error
        except TimeoutError as exc:
            if isinstance(exc, MicroError) or not scope.expired:
                raise  # a remote 408, or a timeout of the caller's own
            raise Timeout(
                f"call to {request.service} {request.endpoint} timed out (deadline exceeded)", id="micro.client"
            ) from None

    def _encode(self, codec: Codec, request: Request) -> bytes:
        if _plain_codec(codec):
            return codec.marshal(request.body)
        return codec.encode(
            CodecMessage(
                id=str(next(_ids)),
                type=MessageType.REQUEST,
                service=request.service,
                endpoint=request.endpoint,
                body=request.body,
            )
        )

    def _header(self, request: Request, content_type: str, call_id: str) -> dict[str, str]:
        metadata = request.metadata
        if not metadata:
            header = {}
        elif type(metadata) is Metadata:
            header = metadata._plain()
        else:
            header = dict(metadata)
        header[_mucp.SERVICE] = request.service
        header[_mucp.ENDPOINT] = request.endpoint
        header[_mucp.ID] = call_id
        header[_mucp.CONTENT_TYPE] = content_type
        if request.deadline is not None:
            header[_mucp.TIMEOUT] = _mucp.encode_timeout(request.deadline - time.monotonic())
        return header

    async def _dial(self, request: Request) -> Socket:
        node = request.node
        if node is None:
            raise NoneAvailable(f"no node chosen for {request.service}")
        return await self.transport.dial(node.address, timeout=self._dial_timeout(request))

    def _dial_timeout(self, request: Request) -> float | None:
        timeout = self.options.dial_timeout
        if request.deadline is not None:
            remaining = request.deadline - time.monotonic()
            timeout = remaining if timeout is None else min(timeout, remaining)
        return timeout

    async def _attempt(self, request: Request) -> Response:
        """One attempt of a unary call: the innermost :data:`CallFunc`."""
        codec = self._codec(request.content_type)
        call_id = str(next(_ids))
        payload = self._encode(codec, request)
        _check_size(request, payload)
        header = self._header(request, codec.content_type, call_id)
        return self._response(await self._exchange(request, header, payload), codec, request)

    def _exchange(self, request: Request, header: dict[str, str], payload: bytes) -> Coroutine[Any, Any, Frame]:
        """Send one request frame to ``request.node`` and return the reply frame (unary and raw calls):
        the transport's :meth:`~micro.transport.Transport.exchange` (on tcp, one frame each way and no socket
        object; elsewhere the socket steps).

        Not a coroutine itself: it returns the one that does the work, one coroutine fewer per call.
        """
        node = request.node
        if node is None:
            raise NoneAvailable(f"no node chosen for {request.service}")
        return self.transport.exchange(node.address, Frame(header, payload), timeout=self._dial_timeout(request))

    def _response(self, frame: Frame, codec: Codec, request: Request) -> Response:
        routing, metadata = _mucp.parse(frame.header)
        failure = routing.get(_ERROR)
        if failure is not None:
            raise _mucp.error_from(failure)
        content_type = routing.get(_CONTENT_TYPE)
        if content_type and content_type != codec.content_type:
            codec = self._codecs.get(content_type)
        if _plain_codec(codec):
            body = codec.unmarshal(frame.body, request.response_type)
        else:
            body = codec.decode(frame.body, MessageType.RESPONSE, request.response_type).body
        return Response(body, metadata=metadata, content_type=codec.content_type, node=request.node)

    # -- raw calls: encoded bodies passed through ----------------------------------------------

    def _raw_codec(self, content_type: str | None) -> Codec:
        return self._codec(content_type or self.options.content_type or "")

    def _invoke_raw(
        self, service: str, endpoint: str, body: bytes, options: CallOptions
    ) -> Coroutine[Any, Any, Response]:
        """Send ``body`` as it is and return the reply's bytes (see :meth:`Client.invoke_raw`).

        A subclass that speaks another wire in :meth:`_attempt` (gRPC) gets the decoding default instead.
        Not a coroutine itself (the gateway's hot path): it checks the call and returns the one that makes it.
        """
        if type(self)._attempt is not RPCClient._attempt:
            return super()._invoke_raw(service, endpoint, body, options)
        _check_names(service, endpoint)
        given: object = body
        if type(given) is not bytes:
            if not isinstance(given, (bytes, bytearray, memoryview)):
                raise BadRequest(f"body must be bytes, got {type(given).__qualname__}")
            body = bytes(given)
        content_type = options.get("content_type") or self.options.content_type or self._codec("").content_type
        retries = options.get("retries")
        call = Request(
            service=service,
            endpoint=endpoint,
            body=body,
            content_type=content_type,
            metadata=self._metadata(options.get("metadata")),
            deadline=self._deadline(options.get("timeout"), self.options.request_timeout),
        )
        raw = self._raw_call
        if raw is None:
            raw = self._raw_call = self._chain(self._attempt_raw)
        attempts = (self.options.retries if retries is None else retries) + 1
        return self._attempts(call, raw, attempts, options.get("backoff") or self._backoff, options.get("address"))

    async def _attempt_raw(self, request: Request) -> Response:
        """One attempt of a raw call (the innermost :data:`CallFunc` of :meth:`invoke_raw`): bytes out, bytes in."""
        payload: bytes = request.body
        _check_size(request, payload)
        header = self._header(request, request.content_type, str(next(_ids)))
        frame = await self._exchange(request, header, payload)
        routing, metadata = _mucp.parse(frame.header)
        failure = routing.get(_ERROR)
        if failure is not None:
            raise _mucp.error_from(failure)
        content_type = routing.get(_CONTENT_TYPE) or request.content_type
        return Response(frame.body, metadata=metadata, content_type=content_type, node=request.node)

    # -- streams ---------------------------------------------------------------------------------

    async def _stream(
        self, service: str, endpoint: str, request: Any, response_type: Any, options: StreamOptions
    ) -> Stream:
        timeout, metadata, address, content_type = (
            options.get("timeout"),
            options.get("metadata"),
            options.get("address"),
            options.get("content_type"),
        )
        _check_names(service, endpoint)
        call = Request(
            service=service,
            endpoint=endpoint,
            body=request,
            content_type=content_type or self.options.content_type or "",
            metadata=self._metadata(metadata),
            response_type=response_type,
            stream=True,
            deadline=self._deadline(timeout, self.options.stream_timeout),
        )
        response = await self._attempts(call, self._open, self.options.retries + 1, self._backoff, address)
        stream = response.body
        assert isinstance(stream, Stream)  # an RPCStream, or what a subclass's _open_stream opens
        return stream

    async def _open_stream(self, request: Request) -> Response:
        """Open a stream (the innermost :data:`CallFunc` of :meth:`stream`); the response body is the stream."""
        codec = self._codec(request.content_type)
        call_id = str(next(_ids))
        header = self._header(request, codec.content_type, call_id)
        header[_mucp.STREAM] = call_id
        socket = await self._dial(request)
        stream = RPCStream(socket, codec, request, self)
        try:
            await socket.send(Frame(header, b""))
            if request.body is not NO_REQUEST:
                await stream.send(request.body)
        except BaseException:
            await socket.close()
            raise
        return Response(stream, metadata=stream.metadata, content_type=codec.content_type, node=request.node)

    # -- publish ---------------------------------------------------------------------------------

    async def publish(
        self,
        topic: str,
        message: Any,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        codec = self._codec(content_type or self.options.content_type or "")
        body = codec.marshal(message)
        header = self._metadata(metadata)
        header[_mucp.CONTENT_TYPE] = codec.content_type
        header[_mucp.TOPIC] = topic
        header[_mucp.ID] = str(uuid.uuid4())
        await self._send(
            Publication(topic=topic, payload=message, body=body, header=header, content_type=codec.content_type)
        )

    async def _deliver(self, publication: Publication) -> None:
        """Hand an encoded message to the broker (the innermost :data:`PublishFunc` of :meth:`publish`), or to
        the network node when the client has a proxy."""
        if self._proxy_next is not None or self._proxy_name is not None:
            await self._publish_through_proxy(publication.topic, publication.body, publication.header)
            return
        broker = self.broker
        await self._ensure(broker)
        await broker.publish(publication.topic, BrokerMessage(publication.body, publication.header))

    async def _publish_through_proxy(self, topic: str, body: bytes, header: Metadata) -> None:
        """Hand a publication to the network node (``micro.network`` ``Network.Publish``), which floods it."""
        request = Request(
            service=NETWORK_SERVICE,
            endpoint="Network.Publish",
            body=body,
            content_type=header[_mucp.CONTENT_TYPE],
            metadata=header,
            deadline=self._deadline(None, self.options.request_timeout),
        )

        async def publish(request: Request) -> Response:
            frame_header = dict(request.metadata)
            frame_header[_mucp.SERVICE] = NETWORK_SERVICE
            frame_header[_mucp.ENDPOINT] = "Network.Publish"
            if request.deadline is not None:
                frame_header[_mucp.TIMEOUT] = _mucp.encode_timeout(request.deadline - time.monotonic())
            socket = await self._dial(request)
            try:
                await socket.send(Frame(frame_header, body))
                await socket.close_send()
                frame = await socket.recv()
            finally:
                await socket.close()
            failure = _mucp.header(frame.header, _mucp.ERROR)
            if failure is not None:
                raise _mucp.error_from(failure)
            return Response(None, metadata=Metadata(), node=request.node)

        await self._attempts(request, publish, self.options.retries + 1, self._backoff, None)


def _check_size(request: Request, payload: bytes) -> None:
    """Refuse a request body larger than the node accepts (its ``max_message_size`` metadata) with 413.

    The receiving transport would otherwise close the whole connection, failing
    every other call on it, and the client would see a retryable 503.
    """
    node = request.node
    limit = node.metadata.get("max_message_size") if node is not None and node.metadata else None
    if limit is not None and limit.isdigit() and len(payload) > int(limit):
        raise MessageTooLarge(
            f"request to {request.service} {request.endpoint} is {len(payload)} bytes; "
            f"node {node.address if node else '?'} accepts at most {limit}",
            id="micro.client",
        )


def _check_names(service: object, endpoint: object) -> None:
    if not isinstance(service, str) or not service.strip():
        raise BadRequest(f"service must be a non-empty name, got {service!r}")
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise BadRequest(f"endpoint must be a non-empty 'Class.method' name, got {endpoint!r}")


class RPCStream(Stream):
    """A streaming call over one transport socket (see :mod:`micro._mucp` for the framing)."""

    def __init__(self, socket: Socket, codec: Codec, request: Request, client: RPCClient) -> None:
        self._socket = socket
        self._codec = codec
        self._request = request
        self._client = client
        self._metadata = Metadata()
        self._done = False
        self._sent_eos = False
        self._closed = False

    @property
    def request(self) -> Request:
        return self._request

    @property
    def metadata(self) -> Metadata:
        return self._metadata

    @property
    def done(self) -> bool:
        return self._done

    def _remaining(self) -> float | None:
        deadline = self._request.deadline
        return None if deadline is None else deadline - time.monotonic()

    async def send(self, message: Any) -> None:
        if self._closed or self._sent_eos:
            raise ConnectionClosed(f"stream to {self._request.service} {self._request.endpoint} is closed for sending")
        request = self._request
        if _plain_codec(self._codec):
            payload = self._codec.marshal(message)
        else:
            payload = self._codec.encode(
                CodecMessage(type=MessageType.REQUEST, service=request.service, endpoint=request.endpoint, body=message)
            )
        _check_size(request, payload)
        await self._socket.send(Frame({}, payload))

    async def recv(self) -> Any:
        if self._done or self._closed:
            raise ConnectionClosed(f"stream from {self._request.service} {self._request.endpoint} has ended")
        remaining = self._remaining()
        if remaining is not None and remaining <= 0:
            await self.close()
            raise Timeout(
                f"stream {self._request.service} {self._request.endpoint}: deadline exceeded", id="micro.client"
            )
        try:
            frame = await self._socket.recv(timeout=remaining)
        except Timeout:
            await self.close()
            raise Timeout(
                f"stream {self._request.service} {self._request.endpoint}: deadline exceeded", id="micro.client"
            ) from None
        except ConnectionClosed:
            await self.close()
            raise ConnectionClosed(
                f"stream from {self._request.service} {self._request.endpoint} was cut before it ended"
            ) from None
        failure = _mucp.header(frame.header, _mucp.ERROR) if frame.header else None
        if failure is not None:
            self._metadata.update(_mucp.inbound_metadata(frame.header))
            self._done = failure == _mucp.EOS
            await self.close()
            if self._done:
                raise ConnectionClosed(f"stream from {self._request.service} {self._request.endpoint} has ended")
            raise _mucp.error_from(failure)
        if _plain_codec(self._codec):
            return self._codec.unmarshal(frame.body, self._request.response_type)
        return self._codec.decode(frame.body, MessageType.RESPONSE, self._request.response_type).body

    async def close_send(self) -> None:
        if self._sent_eos or self._closed:
            return
        self._sent_eos = True
        with contextlib.suppress(ConnectionClosed):
            await self._socket.send(Frame({_mucp.ERROR: _mucp.EOS}, b""))
            await self._socket.close_send()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._socket.close()

    def __repr__(self) -> str:
        return f"<RPCStream {self._request.service} {self._request.endpoint}>"
