"""The broker interface: asynchronous publish/subscribe of messages on topics.

Go Micro's ``broker.Broker`` (section 2.3 of the research note), with its
semantics pinned down where Go's implementations disagree:

* **Broadcast and queue groups.** A subscriber without a queue gets every message
  published on its topic. Subscribers that share a ``queue`` name on one topic form a
  queue group and compete: each message goes to exactly one member of each group
  (redelivery after a failure may pick another member). Broadcast subscribers and every
  group on the topic each get their own copy.
* **Settlement.** A delivery is settled once: by :meth:`Event.ack`, by :meth:`Event.nack`
  or, failing that, by the broker when the handler returns. With ``auto_ack=True`` a
  normal return acks. A handler exception, or a return without settling when
  ``auto_ack=False``, counts as ``nack(requeue=True)``: where the broker supports it the
  message is delivered again (a bounded number of times), otherwise it is dropped.
* **Isolation.** Handler exceptions are logged on the ``micro.broker`` logger and
  stored on :attr:`Event.error`; they never reach the publisher and never end the
  subscription.
* **Lifecycle.** :meth:`Broker.start` connects (Go's ``Connect``) and
  :meth:`Broker.close` disconnects (``Disconnect``), ending every subscription; both
  are idempotent. ``publish`` and ``subscribe`` on a broker that was never started
  start it first; after ``close()`` they raise :class:`~micro.errors.ConnectionClosed`
  until ``start()`` is called again. :meth:`Broker.flush` waits for what ``publish``
  accepted to be handed over.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar, Literal, TypeAlias

from ..component import Component
from ..errors import BadRequest, MessageTooLarge, NotSupported
from ..metadata import Metadata
from .options import BrokerOptions, SubscribeOptions

__all__ = [
    "Broker",
    "Event",
    "Handler",
    "Message",
    "Outcome",
    "Subscriber",
    "check_publish",
    "check_subscribe",
    "check_topic",
    "dispatch",
]

logger = logging.getLogger("micro.broker")

#: How a delivery was settled: acked, dropped (``nack(requeue=False)``) or to be redelivered.
Outcome: TypeAlias = Literal["ack", "drop", "requeue"]

_NO_SPACE = re.compile(r"\S+")


class Message:
    """A message: string headers and an opaque body (Go Micro's ``broker.Message``).

    ``header`` is a case-insensitive :class:`~micro.metadata.Metadata`; the broker
    carries it unchanged. Two messages are equal when their headers and bodies are.
    """

    __slots__ = ("body", "header")

    def __init__(self, body: bytes = b"", header: Mapping[str, str] | None = None) -> None:
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise BadRequest(f"message body must be bytes, not {type(body).__name__}")
        self.body: bytes = bytes(body)
        try:
            self.header: Metadata = Metadata(header or {})
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"message header must map str to str: {exc}") from exc

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return self.body == other.body and self.header == other.header

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        body = self.body if len(self.body) <= 32 else self.body[:32] + b"..."
        return f"Message({body!r}, header={dict(self.header)!r})"


class Event:
    """One delivery of a message to one subscriber, passed to the handler.

    :meth:`ack` and :meth:`nack` settle the delivery; the first call wins and
    later calls (and calls after the broker settled it) do nothing. A backend
    whose server acknowledges messages overrides them to talk to the server,
    and raises :class:`~micro.errors.NotSupported` from :meth:`nack` if it
    cannot return a message.
    """

    __slots__ = ("_outcome", "error", "message", "topic")

    def __init__(self, topic: str, message: Message) -> None:
        self.topic = topic
        self.message = message
        #: The exception the handler raised, once it has raised one.
        self.error: BaseException | None = None
        self._outcome: Outcome | None = None

    @property
    def outcome(self) -> Outcome | None:
        """How the delivery was settled, or ``None`` while it is not."""
        return self._outcome

    async def ack(self) -> None:
        """Mark the message as processed: it will not be delivered again."""
        self._settle("ack")

    async def nack(self, requeue: bool = True) -> None:
        """Reject the message: deliver it again if ``requeue`` (and the broker can), else drop it.

        Redelivery is bounded by the broker (``max_redeliveries`` for the
        embedded ones); past that the message is dropped and logged.
        """
        self._settle("requeue" if requeue else "drop")

    def _settle(self, outcome: Outcome) -> None:
        if self._outcome is None:
            self._outcome = outcome

    def __repr__(self) -> str:
        return f"<Event {self.topic!r} {self.message!r} outcome={self._outcome}>"


#: A subscriber's callback. It may settle the event itself (see :class:`Event`).
Handler: TypeAlias = Callable[[Event], Awaitable[None]]


class Subscriber:
    """A live subscription, returned by :meth:`Broker.subscribe`.

    **Hooks.** The base owns the subscription's task and how it stops. A backend
    gives :meth:`_next` (the next delivery, ``None`` when there is none any more)
    and :meth:`_handle` (run the handler on it and settle it), and the base's
    :meth:`_run` loops over them; a backend with its own reading strategy
    overrides :meth:`_run` instead. :meth:`unsubscribe` is concrete: it calls the
    backend's :meth:`_stop_delivery`, then waits for the task for at most
    :attr:`_close_timeout` seconds and cancels it past that, with a warning.
    """

    #: Seconds a running handler may take to finish when the subscriber stops, before it is
    #: cancelled; a backend sets it from its options (``close_timeout``).
    _close_timeout: float = 5.0
    #: The broker's set of live subscriptions this one leaves when it stops (set by :meth:`Broker.subscribe`).
    _listed_in: set[Subscriber] | None = None

    def __init__(self, topic: str, options: SubscribeOptions) -> None:
        self._topic = topic
        self._options = options
        #: Set once :meth:`unsubscribe` has been called: no new delivery starts after that.
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def queue(self) -> str | None:
        """The queue group, or ``None`` for a broadcast subscriber."""
        return self._options.queue

    @property
    def options(self) -> SubscribeOptions:
        return self._options

    def _start_task(self, name: str) -> asyncio.Task[None]:
        """Start :meth:`_run` as the subscription's task (named ``name`` for debugging)."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=name)
        return self._task

    async def _run(self) -> None:
        """The subscription's task: :meth:`_handle` each of :meth:`_next` until stopped, then :meth:`_finish`."""
        try:
            while not self._stopping:
                item = await self._next()
                if item is None or self._stopping:
                    break
                await self._handle(item)
        finally:
            await self._finish()

    async def _next(self) -> Any:
        """Hook: the next delivery, waiting for one; ``None`` once there will be none (stopped, closed)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither _next nor its own _run")

    async def _handle(self, item: Any) -> None:
        """Hook: run the handler on ``item`` and settle it (usually through :func:`dispatch`)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither _handle nor its own _run")

    async def _finish(self) -> None:
        """Hook: release what the subscription holds once its task ends. The default does nothing."""

    async def _stop_delivery(self) -> None:
        """Hook: stop new deliveries and leave the broker's books (called once, by :meth:`unsubscribe`).

        It runs before the base waits for the task, so it must wake a :meth:`_next` that is waiting.
        """

    def _interruptible(self) -> bool:
        """Hook: whether the task is only waiting for the server now, holding nothing, so it may be cancelled."""
        return False

    async def unsubscribe(self) -> None:
        """Stop delivery to this subscriber. Idempotent; never raises for a closed broker.

        When it returns the handler will not be called again for this
        subscription. A handler call in progress is allowed to finish (the
        broker may cancel it after a grace period); ``unsubscribe`` called from
        inside the handler does not wait for itself. Messages that were queued
        for a queue group stay with the group's remaining members.
        """
        if self._stopping:
            return
        self._stopping = True
        if self._listed_in is not None:
            self._listed_in.discard(self)
        await self._stop_delivery()
        task = self._task
        if task is None or task is asyncio.current_task():
            return  # never started, or called from our own handler: the loop ends when the handler returns
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._close_timeout
        while True:
            # A task that only waits for the server holds nothing, so it is cut short. The cancel is
            # repeated because a driver's asyncio.wait_for (Python 3.11) can swallow one.
            interrupt = self._interruptible()
            if interrupt:
                task.cancel()
            left = deadline - loop.time()
            done, _ = await asyncio.wait({task}, timeout=max(0.0, min(0.05, left) if interrupt else left))
            if done:
                return
            if loop.time() >= deadline:
                break
        logger.warning("cancelling a broker handler for topic %r that did not finish in time", self.topic)
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.05)

    def __repr__(self) -> str:
        queue = f" queue={self.queue!r}" if self.queue else ""
        return f"<{type(self).__name__} {self.topic!r}{queue}>"


class Broker(Component, abc.ABC):
    """Publish/subscribe on named topics; see the module docstring for the semantics.

    An instance is safe to share between tasks of one event loop.

    **Hooks.** :meth:`publish` and :meth:`subscribe` are concrete: they check the
    arguments (:func:`check_publish`, :func:`check_subscribe`, capabilities
    included), start a never-started broker and refuse a closed one (the lifecycle
    rule of :class:`~micro.component.Component`, with :attr:`starts_on_use`),
    translate driver errors (``_translate``) and keep the books of live
    subscriptions, which :meth:`close` unsubscribes before the backend's
    ``_close`` runs. A backend implements :meth:`_publish` and :meth:`_subscribe`,
    its ``_start``/``_close``, and a :class:`Subscriber` with its hooks.
    """

    interface: ClassVar[str] = "broker"
    options_type: ClassVar[type[BrokerOptions]] = BrokerOptions
    options: BrokerOptions
    starts_on_use: ClassVar[bool] = True

    #: What the implementation supports beyond publish/subscribe/broadcast:
    #: ``"queue"`` (queue groups), ``"ack"`` (``auto_ack=False`` is honoured),
    #: ``"nack"`` (``nack(requeue=True)`` redelivers), ``"ordered"`` (one
    #: publisher's messages reach each subscriber in publish order, redeliveries
    #: aside), ``"cross-process"`` (publishers and subscribers may be in
    #: different processes).
    capabilities: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, options: BrokerOptions | None = None) -> None:
        super().__init__(options)
        self._subscriptions: set[Subscriber] = set()

    @property
    @abc.abstractmethod
    def address(self) -> str:
        """Where the broker is: the server it talks to, or the address it listens on once started."""

    async def start(self) -> None:
        """Connect (Go's ``Connect``). Idempotent. Raises :class:`~micro.errors.BackendUnavailable`."""
        await super().start()

    async def close(self) -> None:
        """Disconnect (Go's ``Disconnect``): unsubscribe everything, then release connections.

        Idempotent. A broker that delivers in the background first waits a
        bounded time for what :meth:`publish` accepted (see :meth:`flush`);
        what is still undelivered after that is lost. ``publish`` and
        ``subscribe`` raise :class:`~micro.errors.ConnectionClosed` from the
        moment ``close`` begins.
        """
        await super().close()

    async def _close_steps(self) -> None:
        try:
            await self._drain_published()
        finally:
            subscriptions = list(self._subscriptions)
            if subscriptions:
                await asyncio.gather(*(s.unsubscribe() for s in subscriptions))
            await self._close()

    async def _drain_published(self) -> None:
        """Hook: wait (bounded) for accepted publishes to be delivered, before subscriptions end.

        Runs first in :meth:`close`, once new publishes are refused. The default does nothing:
        a broker whose :meth:`publish` hands each message over before returning has nothing
        left to deliver.
        """

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until messages accepted by :meth:`publish` have been handed to the backend.

        The default does nothing, because :meth:`publish` already does that.
        A broker that delivers in the background (the ``http`` broker)
        overrides it to wait, at most ``timeout`` seconds (its own default
        when ``None``), until each message published so far is delivered or
        has definitively failed, and raises :class:`~micro.errors.Timeout`
        if some are still pending then. Call it before a short-lived
        process exits.
        """

    async def publish(self, topic: str, message: Message) -> None:
        """Send ``message`` to the subscribers of ``topic``.

        Returns once the broker has accepted the message, not when handlers
        have run; a topic with no subscribers is not an error and the message
        is discarded. Publish waits (back-pressure) rather than buffer without
        bound when subscribers are slow.

        :raises BadRequest: ``topic`` is empty or contains whitespace, or
            ``message`` is not a :class:`Message`.
        :raises MessageTooLarge: the body is larger than ``max_message_size``.
        :raises ConnectionClosed: the broker was closed.
        :raises BackendUnavailable: the broker (or, for the http broker, the
            registry) cannot be reached.
        """
        topic, message = check_publish(self, topic, message)
        self._check_names(topic, message)
        if self._component_state != "started":
            await self._open_for_use()
        try:
            await self._publish(topic, message)
        except Exception as exc:
            self._fail(exc)

    async def subscribe(
        self, topic: str, handler: Handler, *, queue: str | None = None, auto_ack: bool = True
    ) -> Subscriber:
        """Call ``handler`` with an :class:`Event` for each message on ``topic``.

        Without ``queue`` the subscriber gets every message; with one it
        competes with the other subscribers of that queue on the topic, and
        each message goes to exactly one of them. Messages published before
        ``subscribe`` returns may not be delivered to it. See the module
        docstring for ``auto_ack`` and handler failures.

        :raises BadRequest: ``topic`` or ``queue`` is empty or contains
            whitespace, or ``handler`` is not callable.
        :raises NotSupported: ``queue`` or ``auto_ack=False`` was given and
            the broker lacks the ``"queue"`` or ``"ack"`` capability.
        :raises ConnectionClosed: the broker was closed.
        """
        topic, options = check_subscribe(self, topic, handler, queue, auto_ack)
        self._check_names(topic, None)
        if self._component_state != "started":
            await self._open_for_use()
        try:
            subscriber = await self._subscribe(topic, handler, options)
        except Exception as exc:
            self._fail(exc)
        if not self._component_started():  # closed while the backend subscribed
            await subscriber.unsubscribe()
            raise self._closed_error()
        subscriber._listed_in = self._subscriptions
        self._subscriptions.add(subscriber)
        return subscriber

    # -- the hooks a backend implements --------------------------------------------------------
    # Arguments are checked and the broker is started.

    def _check_names(self, topic: str, message: Message | None) -> None:
        """Hook: the backend's own limits on a topic (and a published message's header names).

        Raise :class:`~micro.errors.BadRequest`. Runs after the generic checks and before the
        broker is started, so bad input never opens a connection. The default accepts everything.
        """

    @abc.abstractmethod
    async def _publish(self, topic: str, message: Message) -> None:
        """Hand ``message`` to the subscribers of ``topic`` (see :meth:`publish`)."""

    @abc.abstractmethod
    async def _subscribe(self, topic: str, handler: Handler, options: SubscribeOptions) -> Subscriber:
        """A running :class:`Subscriber` calling ``handler`` for ``topic`` (see :meth:`subscribe`)."""


def check_topic(topic: object, what: str = "topic") -> str:
    """``topic`` if it is a non-empty string without whitespace, else :class:`~micro.errors.BadRequest`."""
    if not isinstance(topic, str) or not _NO_SPACE.fullmatch(topic):
        raise BadRequest(f"{what} must be a non-empty string without whitespace, got {topic!r}")
    return topic


def check_publish(broker: Broker, topic: object, message: object) -> tuple[str, Message]:
    """The arguments of :meth:`Broker.publish`, checked as its docstring says."""
    topic = check_topic(topic)
    if not isinstance(message, Message):
        raise BadRequest(f"message must be a micro.broker.Message, not {type(message).__name__}")
    if len(message.body) > broker.options.max_message_size:
        raise MessageTooLarge(
            f"message body is {len(message.body)} bytes; max_message_size is {broker.options.max_message_size}"
        )
    return topic, message


def check_subscribe(
    broker: Broker, topic: object, handler: object, queue: object, auto_ack: object
) -> tuple[str, SubscribeOptions]:
    """The arguments of :meth:`Broker.subscribe`, checked as its docstring says."""
    topic = check_topic(topic)
    if not callable(handler):
        raise BadRequest(f"handler must be an async callable, not {type(handler).__name__}")
    if queue is not None:
        queue = check_topic(queue, "queue")
        if "queue" not in broker.capabilities:
            raise NotSupported(f"{type(broker).__name__} has no queue groups")
    if not isinstance(auto_ack, bool):
        raise BadRequest(f"auto_ack must be a bool, not {type(auto_ack).__name__}")
    if not auto_ack and "ack" not in broker.capabilities:
        raise NotSupported(f"{type(broker).__name__} cannot leave acknowledgement to the handler")
    return topic, SubscribeOptions(queue=queue, auto_ack=auto_ack)


async def dispatch(handler: Handler, event: Event, *, auto_ack: bool) -> Outcome:
    """Run ``handler`` on ``event`` and settle it as the module docstring says; return the outcome.

    Exceptions from the handler are logged and stored on ``event.error``;
    only cancellation propagates.
    """
    try:
        await handler(event)
    except Exception as exc:
        event.error = exc
        logger.exception("broker handler for topic %r failed", event.topic)
        await event.nack(requeue=True)
    else:
        if auto_ack:
            await event.ack()
        else:
            await event.nack(requeue=True)
    # The handler (or a subclass's ack/nack) may have settled it already: the first settlement wins.
    return event.outcome or "requeue"
