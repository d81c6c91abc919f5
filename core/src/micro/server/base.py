"""The server interface: handlers and subscribers in, a registered service out (Go Micro ``server``).

A server turns handler objects into ``Class.method`` endpoints (see
:mod:`micro.server.handler`), listens on a transport, registers itself in a
registry while it runs, and attaches subscribers to a broker.

Middleware has the same shape on both sides of micro: a *wrapper* takes the
next function and returns a function with the same signature. The first
wrapper added is the outermost, so it runs first on the way in and last on the
way out::

    def logged(next: HandlerFunc) -> HandlerFunc:
        async def handler(request: Request) -> Any:
            started = time.perf_counter()
            try:
                return await next(request)
            finally:
                log.info("%s took %.3fs", request.endpoint, time.perf_counter() - started)
        return handler

    server.wrap(logged)
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, ClassVar, TypeAlias

from ..component import Component
from ..metadata import Metadata
from ..registry.base import Endpoint, Service
from .handler import Kind, Method, Subscription
from .options import ServerOptions

__all__ = [
    "HandlerFunc",
    "HandlerWrapper",
    "Message",
    "Request",
    "Server",
    "SubscriberFunc",
    "SubscriberWrapper",
]


class Request:
    """One call as a handler wrapper sees it.

    Satisfies the ``Request`` protocol of :mod:`micro.auth.wrappers`
    (``service``, ``endpoint``, ``metadata``).
    """

    __slots__ = (
        "body",
        "content_type",
        "endpoint",
        "header",
        "id",
        "kind",
        "local",
        "metadata",
        "remote",
        "service",
    )

    def __init__(
        self,
        *,
        service: str,
        endpoint: str,
        content_type: str,
        metadata: Metadata,
        header: dict[str, str],
        body: Any,
        id: str = "",
        kind: Kind = Kind.UNARY,
        remote: str = "",
        local: bool = False,
    ) -> None:
        #: The service this server serves: its own name, never the caller's ``Micro-Service`` (a call naming
        #: another service is refused before any wrapper runs), so auth rules check what really runs.
        self.service = service
        #: ``"Class.method"``.
        self.endpoint = endpoint
        self.content_type = content_type
        #: The inbound metadata (request headers minus routing headers); also what
        #: :func:`micro.context.metadata` returns inside the handler.
        self.metadata = metadata
        #: Every header of the request message, as received.
        self.header = header
        #: The decoded request; for client-streaming handlers, the async iterator of requests.
        self.body = body
        #: The caller's call id (``Micro-Id``).
        self.id = id
        self.kind = kind
        #: The peer address, when the transport knows it.
        self.remote = remote
        #: Whether the server checked (and used up) a valid local proof for this call: set only by a server
        #: with ``local_only`` (see :mod:`micro.auth.local`); never from a header as such.
        self.local = local

    @property
    def stream(self) -> bool:
        """Whether this is a streaming call."""
        return self.kind is not Kind.UNARY

    def __repr__(self) -> str:
        return f"<Request {self.service} {self.endpoint} {self.kind.value}>"


class Message:
    """A broker message as a subscriber wrapper sees it (Go Micro ``server.Message``)."""

    __slots__ = ("body", "content_type", "header", "metadata", "payload", "subscriber", "topic")

    def __init__(
        self,
        *,
        topic: str,
        payload: Any,
        content_type: str,
        header: Metadata,
        body: bytes,
        subscriber: str = "",
    ) -> None:
        self.topic = topic
        #: The decoded payload, as the subscriber will receive it.
        self.payload = payload
        self.content_type = content_type
        #: The message headers (also the context metadata while the subscriber runs).
        self.header = header
        #: Alias of :attr:`header`, so auth-style wrappers that read ``.metadata`` work on messages too.
        self.metadata = header
        #: The raw body bytes.
        self.body = body
        #: The subscriber's endpoint name (``"Class.method"`` or the function name).
        self.subscriber = subscriber

    def __repr__(self) -> str:
        return f"<Message {self.topic!r} for {self.subscriber}>"


#: Serves one call: returns the response (or, for server-streaming endpoints, an async iterator of them).
HandlerFunc: TypeAlias = Callable[[Request], Awaitable[Any]]
#: Middleware around :data:`HandlerFunc`.
HandlerWrapper: TypeAlias = Callable[[HandlerFunc], HandlerFunc]
#: Handles one broker message.
SubscriberFunc: TypeAlias = Callable[[Message], Awaitable[None]]
#: Middleware around :data:`SubscriberFunc`.
SubscriberWrapper: TypeAlias = Callable[[SubscriberFunc], SubscriberFunc]


class Server(Component, abc.ABC):
    """Serves handlers and subscribers, and keeps the service registered while it runs.

    ``handle``, ``subscribe`` and the ``wrap`` methods may be called before or
    after :meth:`start`; endpoints added while running are published with the
    next registration. :meth:`start` and :meth:`stop` are idempotent.
    """

    interface: ClassVar[str] = "server"
    options_type: ClassVar[type[ServerOptions]] = ServerOptions
    options: ServerOptions

    @abc.abstractmethod
    def handle(
        self, handler: object, *, name: str | None = None, metadata: dict[str, str] | None = None
    ) -> list[Method]:
        """Serve every public async method of ``handler`` as ``<name>.<method>``.

        :param name: the endpoint prefix; the class name by default.
        :param metadata: added to each endpoint's registry metadata.
        :returns: the endpoints added.
        :raises ~micro.errors.ConfigError: a bad handler (see
            :func:`~micro.server.handler.methods_of`) or an endpoint name already served.
        """

    @abc.abstractmethod
    def subscribe(self, topic: str, subscriber: object, *, queue: str | None = None) -> list[Subscription]:
        """Deliver messages on ``topic`` to ``subscriber``, decoded by their ``Content-Type``.

        ``subscriber`` is an async function taking the payload, or an instance
        whose public async methods each get every message. With ``queue``, the
        servers subscribed with the same queue share the messages: each goes to
        one of them.

        :raises ~micro.errors.ConfigError: a bad subscriber.
        :raises ~micro.errors.BadRequest: an empty topic or queue, or one with whitespace.
        """

    @abc.abstractmethod
    def wrap(self, *wrappers: HandlerWrapper) -> None:
        """Add handler middleware; the first ever added is the outermost."""

    @abc.abstractmethod
    def wrap_subscriber(self, *wrappers: SubscriberWrapper) -> None:
        """Add subscriber middleware; the first ever added is the outermost."""

    @property
    @abc.abstractmethod
    def address(self) -> str:
        """The address clients dial: ``advertise`` if set, else the bound ``host:port`` once started."""

    @abc.abstractmethod
    def endpoints(self) -> Sequence[Endpoint]:
        """Registry descriptions of every handler and subscriber endpoint."""

    @abc.abstractmethod
    def service(self) -> Service:
        """What the server registers: name, version, endpoints and this node."""

    async def start(self) -> None:
        """Listen, subscribe, and register (retrying a failing registry a few times). Idempotent.

        The server's :meth:`_start` hook, run by :class:`~micro.component.Component`'s one
        lifecycle rule: concurrent calls start once, and a :meth:`stop` that is running finishes first.

        :raises ~micro.errors.Unavailable: the address cannot be bound or the
            registry cannot be reached; nothing is left running.
        """
        await super().start()

    async def stop(self) -> None:
        """Stop gracefully (the :meth:`_close` hook): deregister, stop taking calls and messages, wait up
        to ``drain_timeout`` for the ones in flight, cancel the rest, then close. Idempotent; same as
        :meth:`close`, and the server can be started again afterwards.

        Calls that arrive while stopping are answered with
        :class:`~micro.errors.Unavailable` (503), which clients retry on another node.
        """
        await self.close()
