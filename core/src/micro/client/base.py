"""The client interface: calls, streams and publishes (Go Micro ``client``).

Every outgoing call carries the metadata in :mod:`micro.context` (inside a
handler: the inbound metadata, so ``Authorization`` and trace ids flow on) and
never outlives the context's deadline. Errors the remote side returned are
raised with :func:`micro.errors.from_wire`: ``except NotFound`` catches a
remote 404, ``except RPCError`` any remote failure.

Call middleware wraps each *attempt*, after a node was chosen (Go Micro's
``CallWrapper``); ``request.node`` says which. The first wrapper added is
the outermost::

    def tagged(next: CallFunc) -> CallFunc:
        async def call(request: Request) -> Response:
            request.metadata["X-Caller"] = "billing"
            return await next(request)
        return call

Publish middleware (:meth:`Client.wrap_publish`) wraps each publish after the
message is encoded and its headers are set, before the broker sends it; a
wrapper may add headers (trace context, a timestamp) to ``publication.header``.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self, TypeAlias, TypedDict, TypeVar, Unpack, overload

from ..component import Component
from ..metadata import Metadata
from ..registry.base import Node
from .options import ClientOptions

if TYPE_CHECKING:
    from ..codec.base import Codec

__all__ = [
    "NO_REQUEST",
    "Backoff",
    "CallFunc",
    "CallOptions",
    "CallWrapper",
    "Client",
    "Publication",
    "PublishFunc",
    "PublishWrapper",
    "Request",
    "Response",
    "Stream",
    "StreamOptions",
    "exponential_backoff",
]

T = TypeVar("T")

#: Seconds to wait before retry number ``attempt`` (1 for the first retry).
Backoff: TypeAlias = Callable[[int], float]


class StreamOptions(TypedDict, total=False):
    """The keywords of :meth:`Client.stream` (and, with :class:`CallOptions`' own, of ``call``/``invoke``).

    Written once here: the client base, every client and every helper that passes them on take
    ``**options: Unpack[StreamOptions]``. A keyword left out means the client's option.
    """

    #: Seconds for the whole call (retries included) or stream, never beyond the context's deadline;
    #: ``options.request_timeout`` / ``options.stream_timeout`` when ``None``.
    timeout: float | None
    #: Extra headers, over the context's metadata.
    metadata: Mapping[str, str] | None
    #: Call this ``host:port`` (or comma-separated list) instead of asking the selector.
    address: str | None
    #: Encode with this codec instead of ``options.content_type``.
    content_type: str | None


class CallOptions(StreamOptions, total=False):
    """The keywords of :meth:`Client.call` and :meth:`Client.invoke` (see :class:`StreamOptions`)."""

    #: Extra attempts after a retryable failure (``options.retries`` when ``None``); each picks a
    #: node through the selector, which skips nodes that just failed.
    retries: int | None
    #: Seconds to wait before retry ``n``; Go Micro's exponential shape by default.
    backoff: Backoff | None


class _NoRequest:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_REQUEST"


#: Passed as ``request`` to :meth:`Client.stream` to open a stream without sending a first message.
NO_REQUEST: Final = _NoRequest()


def exponential_backoff(attempt: int, *, base: float = 0.1, cap: float = 2.0) -> float:
    """Go Micro's backoff shape: ``base * 2**(attempt - 1)`` seconds, at most ``cap``; 0 before the first attempt."""
    if attempt <= 0:
        return 0.0
    return float(min(cap, base * 2.0 ** min(attempt - 1, 62)))


class Request:
    """One outgoing call, as call wrappers see it.

    Satisfies the ``Request`` protocol of :mod:`micro.auth.wrappers`.
    """

    __slots__ = (
        "body",
        "content_type",
        "deadline",
        "endpoint",
        "metadata",
        "node",
        "response_type",
        "service",
        "stream",
    )

    def __init__(
        self,
        *,
        service: str,
        endpoint: str,
        body: Any,
        content_type: str,
        metadata: Metadata,
        response_type: Any = None,
        stream: bool = False,
        deadline: float | None = None,
    ) -> None:
        self.service = service
        #: ``"Class.method"``.
        self.endpoint = endpoint
        #: The request value, encoded when the attempt is sent.
        self.body = body
        self.content_type = content_type
        #: Outgoing metadata, sent as headers; wrappers may change it.
        self.metadata = metadata
        #: The type the response is decoded into (``None``: plain values).
        self.response_type = response_type
        self.stream = stream
        #: The ``time.monotonic()`` instant the whole call must finish by (``None``: no limit).
        self.deadline = deadline
        #: The node this attempt goes to; set by the client before the wrappers run.
        self.node: Node | None = None

    def __repr__(self) -> str:
        return f"<Request {self.service} {self.endpoint}>"


class Response:
    """What one call returned: the decoded ``body`` and the response ``metadata`` (headers the handler set)."""

    __slots__ = ("body", "content_type", "metadata", "node")

    def __init__(self, body: Any, *, metadata: Metadata, content_type: str = "", node: Node | None = None) -> None:
        self.body = body
        self.metadata = metadata
        self.content_type = content_type
        #: The node that answered.
        self.node = node

    def __repr__(self) -> str:
        return f"<Response {self.body!r}>"


#: Runs one attempt of a call.
CallFunc: TypeAlias = Callable[[Request], Awaitable[Response]]
#: Middleware around :data:`CallFunc`.
CallWrapper: TypeAlias = Callable[[CallFunc], CallFunc]


class Publication:
    """One outgoing broker message, as publish wrappers see it."""

    __slots__ = ("body", "content_type", "header", "payload", "topic")

    def __init__(self, *, topic: str, payload: Any, body: bytes, header: Metadata, content_type: str) -> None:
        self.topic = topic
        #: The message as the caller gave it (already encoded into :attr:`body`).
        self.payload = payload
        #: The encoded message.
        self.body = body
        #: The headers that will be sent (``Content-Type``, ``Micro-Topic``, ``Micro-Id``, the context's
        #: metadata); wrappers may add to them.
        self.header = header
        self.content_type = content_type

    def __repr__(self) -> str:
        return f"<Publication {self.topic!r}>"


#: Publishes one encoded message.
PublishFunc: TypeAlias = Callable[[Publication], Awaitable[None]]
#: Middleware around :data:`PublishFunc`.
PublishWrapper: TypeAlias = Callable[[PublishFunc], PublishFunc]


class Stream(abc.ABC):
    """A streaming call: send requests, receive responses, both at once if the endpoint is bidirectional.

    ``async for response in stream`` receives until the server ends the
    stream; ``async with`` closes it. Errors the server sends are raised from
    :meth:`recv` (and iteration) as typed remote errors.
    """

    @property
    @abc.abstractmethod
    def request(self) -> Request:
        """The call this stream belongs to."""

    @property
    @abc.abstractmethod
    def metadata(self) -> Metadata:
        """The response metadata (trailers), complete once the server ended the stream."""

    @abc.abstractmethod
    async def send(self, message: Any) -> None:
        """Send one request. Raises :class:`~micro.errors.ConnectionClosed` after :meth:`close_send`
        or :meth:`close`, or if the server already ended the stream."""

    @abc.abstractmethod
    async def recv(self) -> Any:
        """The next response.

        Raises :class:`~micro.errors.ConnectionClosed` once the server has
        ended the stream (and after :meth:`close`), the remote error if it
        failed, and :class:`~micro.errors.Timeout` (closing the stream) past the deadline.
        """

    @abc.abstractmethod
    async def close_send(self) -> None:
        """Tell the server no more requests follow (its request iterator ends). Idempotent."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the stream. The server's handler is cancelled if it is still running. Idempotent."""

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        from ..errors import ConnectionClosed

        while True:
            try:
                item = await self.recv()
            except ConnectionClosed:
                if self.done:
                    return
                raise
            yield item

    @property
    @abc.abstractmethod
    def done(self) -> bool:
        """Whether the server has ended the stream normally."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class Client(Component, abc.ABC):
    """Calls services by name, streams to them, publishes to topics."""

    interface: ClassVar[str] = "client"
    options_type: ClassVar[type[ClientOptions]] = ClientOptions
    options: ClientOptions

    @overload
    async def call(
        self,
        service: str,
        endpoint: str,
        request: Any = None,
        *,
        response_type: type[T],
        **options: Unpack[CallOptions],
    ) -> T: ...

    @overload
    async def call(
        self,
        service: str,
        endpoint: str,
        request: Any = None,
        *,
        response_type: None = None,
        **options: Unpack[CallOptions],
    ) -> Any: ...

    async def call(
        self,
        service: str,
        endpoint: str,
        request: Any = None,
        *,
        response_type: Any = None,
        **options: Unpack[CallOptions],
    ) -> Any:
        """Call ``endpoint`` (``"Class.method"``) of ``service`` and return the decoded response.

        Same arguments as :meth:`invoke` (the keywords of :class:`CallOptions`), which also returns
        the response metadata.
        """
        return (await self._invoke(service, endpoint, request, response_type, options)).body

    async def invoke(
        self,
        service: str,
        endpoint: str,
        request: Any = None,
        *,
        response_type: Any = None,
        **options: Unpack[CallOptions],
    ) -> Response:
        """Call ``endpoint`` of ``service``; return the :class:`Response` (body and metadata).

        :param request: the request value (a dataclass, pydantic model, dict...), encoded with the codec.
        :param response_type: decode the response into this type; plain values when ``None``.
        :param options: the keywords of :class:`CallOptions` (``timeout``, ``retries``, ``backoff``,
            ``metadata``, ``address``, ``content_type``).
        :raises ~micro.errors.ServiceNotFound: no node of ``service`` is registered (404).
        :raises ~micro.errors.Timeout: the deadline passed (408).
        :raises ~micro.errors.Unavailable: no node could be reached (503).
        :raises ~micro.errors.CodecError: the request cannot be encoded or the response decoded.
        :raises ~micro.errors.RPCError: the error the server returned, also an instance of the class for its code.
        """
        return await self._invoke(service, endpoint, request, response_type, options)

    async def invoke_raw(self, service: str, endpoint: str, body: bytes, **options: Unpack[CallOptions]) -> Response:
        """Call ``endpoint`` of ``service`` with a body that is encoded already; return the encoded response.

        For a proxy or gateway that receives bodies in the service's own format (JSON over HTTP) and hands
        them on: nothing is decoded and encoded again on the way. ``body`` is sent as it is, labelled with
        ``content_type`` (the client's content type when omitted: ``options.content_type``, else the default
        codec's); the service decodes it into its handler's type as for any call. The returned
        :class:`Response` holds the service's reply as ``bytes`` in ``body``, its ``content_type`` (the
        service answers in the request's content type) and the response metadata. Selection, deadline,
        retries and call wrappers are those of :meth:`invoke`; wrappers see the encoded bytes as
        ``request.body``.

        :param body: the encoded request.
        :param options: the keywords of :class:`CallOptions`.
        :raises ~micro.errors.CodecError: a client that cannot pass bytes through (see below) could not
            decode ``body`` or encode the response.
        :raises: as :meth:`invoke` otherwise; an error the service returned is raised, never returned as bytes.

        A client that does not implement :meth:`_invoke_raw` itself decodes ``body`` with the built-in codec
        for ``content_type``, calls :meth:`invoke`, and encodes the response with that codec.
        """
        return await self._invoke_raw(service, endpoint, body, options)

    async def stream(
        self,
        service: str,
        endpoint: str,
        request: Any = NO_REQUEST,
        *,
        response_type: Any = None,
        **options: Unpack[StreamOptions],
    ) -> Stream:
        """Open a streaming call to ``endpoint`` of ``service``.

        For a server-streaming endpoint pass its single ``request``; for
        client-streaming and bidirectional ones leave it out and :meth:`Stream.send`
        each request, then :meth:`Stream.close_send`. Opening is retried on
        another node when a node cannot be reached; nothing is retried once open.

        :param options: the keywords of :class:`StreamOptions`; its ``timeout`` is the seconds the
            whole stream may take (``options.stream_timeout`` when ``None``; no limit if that is
            ``None`` too), never beyond the context's deadline.
        :raises: as :meth:`invoke`, for opening.
        """
        return await self._stream(service, endpoint, request, response_type, options)

    # -- the hooks a client implements ----------------------------------------------------------

    @abc.abstractmethod
    async def _invoke(
        self, service: str, endpoint: str, request: Any, response_type: Any, options: CallOptions
    ) -> Response:
        """Hook of :meth:`call` and :meth:`invoke`: make the call; ``options`` holds only the keywords given."""

    async def _invoke_raw(self, service: str, endpoint: str, body: bytes, options: CallOptions) -> Response:
        """Hook of :meth:`invoke_raw`. This default decodes and encodes around :meth:`_invoke`, with
        :meth:`_raw_codec`; a client that can send bytes as they are overrides it."""
        codec = self._raw_codec(options.get("content_type"))
        given: CallOptions = {**options, "content_type": codec.content_type}
        response = await self._invoke(service, endpoint, codec.unmarshal(bytes(body)), None, given)
        return Response(
            codec.marshal(response.body),
            metadata=response.metadata,
            content_type=codec.content_type,
            node=response.node,
        )

    def _raw_codec(self, content_type: str | None) -> Codec:
        """The codec :meth:`_invoke_raw`'s default decodes and encodes with: the built-in one for ``content_type``
        (``application/json`` when ``None``)."""
        from ..codec import Codecs

        return Codecs().get(content_type or "application/json")

    @abc.abstractmethod
    async def _stream(
        self, service: str, endpoint: str, request: Any, response_type: Any, options: StreamOptions
    ) -> Stream:
        """Hook of :meth:`stream`: open the stream; ``options`` holds only the keywords given."""

    @abc.abstractmethod
    async def publish(
        self,
        topic: str,
        message: Any,
        *,
        metadata: Mapping[str, str] | None = None,
        content_type: str | None = None,
    ) -> None:
        """Encode ``message`` and publish it on ``topic`` through the broker.

        Headers are the context's metadata, ``metadata``, then ``Content-Type``,
        ``Micro-Topic`` and a fresh ``Micro-Id``.

        :raises ~micro.errors.BadRequest: a bad topic.
        :raises ~micro.errors.CodecError: ``message`` cannot be encoded.
        :raises: what :meth:`micro.broker.Broker.publish` raises.
        """

    @abc.abstractmethod
    def wrap(self, *wrappers: CallWrapper) -> None:
        """Add call middleware; the first ever added is the outermost."""

    def wrap_publish(self, *wrappers: PublishWrapper) -> None:
        """Add publish middleware (see :class:`Publication`); the first ever added is the outermost.

        :raises ~micro.errors.NotSupported: this client does not run publish middleware (the default).
        """
        from ..errors import NotSupported

        raise NotSupported(f"{type(self).__name__} does not support publish wrappers")
