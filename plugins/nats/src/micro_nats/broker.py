"""``nats``: a broker on NATS subjects, with JetStream for durable queue groups.

**Subjects.** Topic ``t`` is the subject ``<subject_prefix>.t`` (``micro.broker.t``); a topic is one
or more dot-separated tokens without the wildcards ``*`` and ``>`` (anything else raises
:class:`~micro.errors.BadRequest` before a connection is opened). The message body is the NATS
payload; a non-empty micro header travels as one NATS header, ``Micro-Header``, holding a JSON
object (so header names and values may hold any character, and no caller's header can reach the
server's own ``Nats-*`` headers).

**Core NATS** (``jetstream=False``, the default). ``publish`` hands the message to the client's
outgoing buffer (at most once, as NATS itself: nothing is stored on the server). A broadcast
subscriber is a plain subscription, a queue group a NATS queue subscription named after the queue,
so the server gives each message to one member. A delivery that is nacked with requeue (or whose
handler fails) is delivered again by the same subscriber, up to ``max_deliveries`` deliveries in all,
then published to the dead-letter subject. A member that unsubscribes, or a process that dies, loses
the messages it held; a subscriber that falls ``pending_msgs_limit`` messages behind loses the newest
ones (the NATS "slow consumer", logged).

**JetStream** (``jetstream=True``). The broker uses the stream ``stream`` over ``<subject_prefix>.>``,
creating it on ``start()`` if it is missing, with interest retention (a message is kept until every
queue group on its topic has acked it), ``discard=new`` and the ``stream_max_*`` bounds: a publish
that would exceed them fails with :class:`~micro.errors.InternalError` naming the limit, and nothing
stored is dropped for it. ``publish`` returns once the server has stored the message (its ``PubAck``).

* A queue group on a topic is a durable pull consumer (explicit acks, ``deliver_policy=new``) shared
  by its members: each message goes to one member, and messages published while the group has no
  member wait for the next one (the consumer is removed after ``queue_inactive`` seconds without
  members). Members fetch up to ``prefetch`` messages at a time.
* ``ack`` (explicit or automatic) is a JetStream ack, ``nack(requeue=False)`` a ``TERM`` (the message
  is not delivered again), ``nack(requeue=True)`` or a failing handler a ``NAK`` (delivered again at
  once, perhaps to another member). While a handler runs, its member tells the server every third of
  ``ack_wait`` that it is still working, so a slow handler keeps its message; a member that dies or is
  cut off stops doing so, and its unsettled messages go to another member ``ack_wait`` seconds later.
  A member that unsubscribes NAKs the messages it fetched but did not hand to its handler.
* A message delivered ``max_deliveries`` times (JetStream counts every delivery, whichever member got
  it) that is nacked with requeue once more, or that arrives past the bound, is published to the
  dead-letter subject ``<dead_letter_prefix>.<topic>`` and then acked. The dead letter carries the
  body and the header, plus ``Micro-Dead-Topic`` and ``Micro-Dead-Deliveries``; it is stored if a
  stream of yours captures that subject (its publish is confirmed then), otherwise it reaches whoever
  subscribes to it at that moment. Either way a warning is logged.
* Broadcast subscribers are core NATS subscriptions, as without JetStream (nothing is kept on the
  server for them).

Delivery to queue groups is at least once: a member cut off after it handled a message but before its
ack reached the server has it delivered again.

**Connections.** One NATS connection per broker instance. The client reconnects by itself (every
0.5 s, for ever) when the connection breaks; meanwhile core publishes are buffered (up to the client's
pending size, then they fail with :class:`~micro.errors.BackendUnavailable`) and JetStream publishes
fail after ``request_timeout``. ``start()`` fails with :class:`~micro.errors.BackendUnavailable`
naming the address and ``MICRO_BROKER_ADDRESS`` when no server answers within ``connect_timeout``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import json
import logging
import re
from typing import TYPE_CHECKING, Any, ClassVar, Final

from micro.broker import Broker, Event, Handler, Message, SubscribeOptions, Subscriber
from micro.broker.base import dispatch
from micro.errors import BadRequest, ConfigError, ConnectionClosed, MicroError

from ._client import connect, subscribed
from ._errors import translate
from .options import NatsBrokerOptions, display_address, server_urls

if TYPE_CHECKING:
    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription
    from nats.js import JetStreamContext

__all__ = ["NatsBroker"]

logger = logging.getLogger("micro.broker")

#: The NATS header that carries a message's micro header, as a JSON object.
HEADER: Final = "Micro-Header"
# Seconds one fetch of a JetStream queue member waits for messages: how long unsubscribe() may
# wait for it (a fetch is not cancelled, so no message is fetched for a member that is gone).
_FETCH_WAIT: Final = 0.5
_FIRST_BACKOFF: Final = 0.05
_MAX_BACKOFF: Final = 2.0
# The longest subject (prefix included) the broker sends, well under the server's max_control_line.
_MAX_SUBJECT: Final = 1024
# Messages a core subscriber takes from the driver ahead of its handler.
_INBOX: Final = 256
_TOKEN: Final = re.compile(r"[^\s.*>]+")
_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_-]")


def _headers(message: Message) -> dict[str, str] | None:
    if not message.header:
        return None
    return {HEADER: json.dumps(dict(message.header), ensure_ascii=True, separators=(",", ":"))}


def _decode(msg: Msg) -> tuple[bytes, dict[str, str]] | None:
    """The body and header in ``msg`` (a :class:`Message` is built from them per delivery), or ``None`` if
    its ``Micro-Header`` is not a JSON object of strings."""
    text = (msg.headers or {}).get(HEADER)
    if text is None:
        return msg.data, {}
    try:
        header = json.loads(text)
    except ValueError:
        return None
    if not isinstance(header, dict) or not all(isinstance(v, str) for v in header.values()):
        return None
    return msg.data, header


def _consumer_name(topic: str, queue: str) -> str:
    """A durable consumer name for ``queue`` on ``topic``: readable, and unique per (topic, queue)."""
    digest = hashlib.sha256(f"{topic}\0{queue}".encode()).hexdigest()[:16]
    return f"{_UNSAFE.sub('_', queue)[:64]}-{digest}"


class _CoreSubscriber(Subscriber):
    """A core NATS subscription (a queue subscription for a queue group); redeliveries stay in it."""

    def __init__(self, broker: NatsBroker, topic: str, options: SubscribeOptions, handler: Handler) -> None:
        super().__init__(topic, options)
        self._broker = broker
        self._handler = handler
        self._sub: Subscription | None = None
        # Filled by the driver's callback, which waits while it is full: the driver's own pending
        # limits (pending_msgs_limit, pending_bytes_limit) then bound what is held.
        self._inbox: asyncio.Queue[Msg] = asyncio.Queue(_INBOX)
        self._waiting = False
        self._close_timeout = broker.options.close_timeout

    async def _received(self, msg: Msg) -> None:
        await self._inbox.put(msg)

    async def _next(self) -> Msg | None:
        self._waiting = True
        try:
            return await self._inbox.get()
        finally:
            self._waiting = False

    def _interruptible(self) -> bool:
        return self._waiting

    async def _handle(self, item: Msg) -> None:
        decoded = _decode(item)
        if decoded is None:
            logger.warning("dropping a message on topic %r: its %s header is not a JSON object", self.topic, HEADER)
            return
        body, header = decoded
        limit = self._broker.options.max_deliveries
        for _ in range(limit):
            # Each delivery gets its own Message, so a handler changing the header cannot affect the next.
            event = Event(self.topic, Message(body, header))
            outcome = await dispatch(self._handler, event, auto_ack=self.options.auto_ack)
            if outcome != "requeue" or self._stopping:
                return
        await self._broker._dead_letter(self.topic, Message(body, header), limit)

    async def _stop_delivery(self) -> None:
        # Unsubscribing from a connection that is already closed is not an error: nothing is delivered anyway.
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()


class _JetStreamMember(Subscriber):
    """A member of a durable queue group: fetches from the group's pull consumer, acks on the server."""

    def __init__(
        self,
        broker: NatsBroker,
        topic: str,
        options: SubscribeOptions,
        handler: Handler,
        psub: JetStreamContext.PullSubscription,
    ) -> None:
        super().__init__(topic, options)
        self._broker = broker
        self._handler = handler
        self._psub = psub
        self._batch: collections.deque[Msg] = collections.deque()
        self._keeper: asyncio.TimerHandle | None = None
        self._close_timeout = broker.options.close_timeout

    async def _next(self) -> Msg | None:
        import nats.errors

        backoff = _FIRST_BACKOFF
        while not self._stopping:
            if self._batch:
                return self._batch.popleft()
            try:
                messages = await self._psub.fetch(self._broker.options.prefetch, timeout=_FETCH_WAIT)
            except nats.errors.TimeoutError:
                continue
            except Exception as exc:
                if self._broker._nc is None or self._broker._nc.is_closed:
                    return None
                # Cut off or reconnecting: the client reconnects by itself; ask again with backoff.
                logger.debug("queue member on topic %r could not fetch: %r", self.topic, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)
                continue
            backoff = _FIRST_BACKOFF
            self._batch.extend(messages)
        return None

    async def _handle(self, item: Msg) -> None:
        options = self._broker.options
        deliveries = _deliveries(item)
        decoded = _decode(item)
        if decoded is None:
            logger.warning("dropping a message on topic %r: its %s header is not a JSON object", self.topic, HEADER)
            await self._settle(item, "term")
            return
        message = Message(*decoded)
        if deliveries > options.max_deliveries:  # members died holding it: no handler gets it again
            await self._broker._dead_letter(self.topic, message, deliveries - 1)
            await self._settle(item, "ack")
            return
        event = Event(self.topic, Message(*decoded))
        # A timer rather than a task per message: most handlers finish long before it fires.
        loop = asyncio.get_running_loop()
        self._keeper = loop.call_later(options.ack_wait / 3, self._keep, item)
        try:
            outcome = await dispatch(self._handler, event, auto_ack=self.options.auto_ack)
        finally:
            self._keeper.cancel()
        if outcome == "ack":
            await self._settle(item, "ack")
        elif outcome == "drop":
            await self._settle(item, "term")
        elif deliveries >= options.max_deliveries:
            # Stored (or at least sent) as a dead letter first, then acked: the message is never in neither place.
            await self._broker._dead_letter(self.topic, message, deliveries)
            await self._settle(item, "ack")
        else:
            await self._settle(item, "nak")

    def _keep(self, item: Msg) -> None:
        """Tell the server, every third of ``ack_wait``, that the handler is still working on ``item``."""
        task = asyncio.create_task(item.in_progress(), name="micro.broker.nats.in-progress")
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        loop = asyncio.get_running_loop()
        self._keeper = loop.call_later(self._broker.options.ack_wait / 3, self._keep, item)

    async def _settle(self, item: Msg, how: str) -> None:
        try:
            if how == "ack":
                await item.ack()
            elif how == "term":
                await item.term()
            else:
                await item.nak()
        except Exception as exc:
            # The connection is gone: the server delivers the message again after ack_wait.
            logger.warning("could not %s a message on topic %r (it will be delivered again): %r", how, self.topic, exc)

    async def _finish(self) -> None:
        # Messages fetched but never handed to the handler go back to the group at once.
        while self._batch:
            await self._settle(self._batch.popleft(), "nak")
        with contextlib.suppress(Exception):
            await self._psub.unsubscribe()


def _deliveries(item: Msg) -> int:
    """How many times JetStream delivered ``item``, the first included (1 for a message not from JetStream).

    Read from the ack subject, ``$JS.ACK.<stream>.<consumer>.<delivered>...`` (or, with a domain
    and account hash, ``$JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>...``), without
    building the driver's whole metadata object (a datetime and two sequence pairs) per message.
    """
    tokens = (item.reply or "").split(".")
    if (len(tokens) == 9 or len(tokens) >= 11) and tokens[0] == "$JS" and tokens[1] == "ACK":
        field = tokens[4] if len(tokens) == 9 else tokens[6]
        if field.isdigit():
            return int(field)
    try:
        return int(item.metadata.num_delivered)
    except Exception:  # not a JetStream message: nothing to settle
        return 1


class NatsBroker(Broker):
    """Publish/subscribe on NATS; see the module docstring."""

    options_type: ClassVar[type[NatsBrokerOptions]] = NatsBrokerOptions
    options: NatsBrokerOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"queue", "ack", "nack", "ordered", "cross-process"})

    def __init__(self, options: NatsBrokerOptions | None = None) -> None:
        super().__init__(options)
        self._urls = server_urls(self.options.address)
        self._where = f"nats at {display_address(self._urls)} (MICRO_BROKER_ADDRESS)"
        self._prefix = self.options.subject_prefix + "."
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None

    @property
    def address(self) -> str:
        return display_address(self._urls)

    def _translate(self, exc: Exception) -> MicroError | None:
        return translate(exc, self._where)

    def _check_names(self, topic: str, message: Message | None) -> None:
        # The server closes a connection whose protocol line exceeds max_control_line (4 KiB by default).
        if len(topic.encode()) + len(self._prefix) > _MAX_SUBJECT:
            raise BadRequest(f"topic is {len(topic.encode())} bytes; with subject_prefix at most {_MAX_SUBJECT} in all")
        if not all(_TOKEN.fullmatch(token) for token in topic.split(".")):
            raise BadRequest(
                f"topic {topic!r} is not a NATS subject: use dot-separated tokens, none empty, without '*' or '>'"
            )

    async def _start(self) -> None:
        options = self.options
        self._nc = await connect(
            self._urls, where=self._where, connect_timeout=options.connect_timeout, role="broker", logger=logger
        )
        if options.jetstream:
            try:
                self._js = self._nc.jetstream(timeout=options.request_timeout)
                await self._ensure_stream(self._js)
            except BaseException:
                await self._nc.close()
                self._nc, self._js = None, None
                raise

    async def _ensure_stream(self, js: JetStreamContext) -> None:
        """Use the stream ``stream``, creating it as the module docstring says when it is missing."""
        from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig
        from nats.js.errors import BadRequestError, NotFoundError

        options = self.options
        wanted = f"{options.subject_prefix}.>"
        try:
            info = await js.stream_info(options.stream)
        except NotFoundError:
            config = StreamConfig(
                name=options.stream,
                subjects=[wanted],
                retention=RetentionPolicy.INTEREST,
                discard=DiscardPolicy.NEW,
                storage=StorageType.FILE,
                max_msgs=options.stream_max_msgs,
                max_bytes=options.stream_max_bytes,
                max_age=options.stream_max_age or None,
            )
            try:
                await js.add_stream(config)
                return
            except BadRequestError as exc:
                if exc.err_code != 10058:  # 10058: another broker created it meanwhile, and that is fine
                    raise
                info = await js.stream_info(options.stream)
        subjects = info.config.subjects or []
        if wanted not in subjects:
            raise ConfigError(
                f"{self._where}: the JetStream stream {options.stream!r} holds {subjects}, not {wanted!r}: "
                "set MICRO_BROKER_STREAM to a stream of its own, or MICRO_BROKER_SUBJECT_PREFIX to match it"
            )

    async def _close(self) -> None:
        nc, self._nc, self._js = self._nc, None, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()

    def _client(self) -> Client:
        if self._nc is None:
            raise ConnectionClosed("the nats broker is closed")
        return self._nc

    async def _publish(self, topic: str, message: Message) -> None:
        nc = self._client()
        subject = self._prefix + topic
        if self._js is not None:
            await self._js.publish(
                subject,
                message.body,
                timeout=self.options.request_timeout,
                stream=self.options.stream,
                headers=_headers(message),
            )
        else:
            await nc.publish(subject, message.body, headers=_headers(message))

    async def _subscribe(self, topic: str, handler: Handler, options: SubscribeOptions) -> Subscriber:
        nc = self._client()
        subject = self._prefix + topic
        subscriber: Subscriber
        if options.queue is not None and self._js is not None:
            subscriber = _JetStreamMember(
                self, topic, options, handler, await self._join(self._js, subject, topic, options.queue)
            )
        else:
            core = _CoreSubscriber(self, topic, options, handler)
            core._sub = await nc.subscribe(
                subject,
                queue=options.queue or "",
                cb=core._received,
                pending_msgs_limit=self.options.pending_msgs_limit,
                pending_bytes_limit=self.options.pending_bytes_limit,
            )
            # A publish after subscribe() returns must find the subscription on the server.
            await subscribed(nc, self.options.request_timeout)
            subscriber = core
        subscriber._start_task(f"micro.broker.nats:{topic}")
        return subscriber

    async def _join(self, js: JetStreamContext, subject: str, topic: str, queue: str) -> Any:
        """The pull subscription of a member of ``queue`` on ``topic``, its durable consumer made if missing."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        options = self.options
        durable = _consumer_name(topic, queue)
        config = ConsumerConfig(
            durable_name=durable,
            filter_subject=subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.NEW,
            ack_wait=options.ack_wait,
            max_deliver=-1,  # counted here instead, so that the last delivery can become a dead letter
            inactive_threshold=options.queue_inactive,
        )
        return await js.pull_subscribe(
            subject,
            durable=durable,
            stream=options.stream,
            config=config,
            pending_msgs_limit=options.pending_msgs_limit,
            pending_bytes_limit=options.pending_bytes_limit,
        )

    async def _dead_letter(self, topic: str, message: Message, deliveries: int) -> None:
        """Publish ``message`` to ``<dead_letter_prefix>.<topic>``, confirmed when a stream stores it."""
        subject = f"{self.options.dead_letter_prefix}.{topic}"
        header = dict(message.header)
        header.update({"Micro-Dead-Topic": topic, "Micro-Dead-Deliveries": str(deliveries)})
        dead = Message(message.body, header)
        logger.warning(
            "message on topic %r moved to the dead-letter subject %r after %d deliveries (max_deliveries=%d)",
            topic,
            subject,
            deliveries,
            self.options.max_deliveries,
        )
        nc = self._client()
        if self._js is not None and await self._stored(self._js, subject):
            await self._js.publish(subject, dead.body, timeout=self.options.request_timeout, headers=_headers(dead))
        else:
            await nc.publish(subject, dead.body, headers=_headers(dead))
            await nc.flush(timeout=max(1, round(self.options.request_timeout)))

    async def _stored(self, js: JetStreamContext, subject: str) -> bool:
        """Whether a JetStream stream captures ``subject`` (then a publish to it is confirmed)."""
        from nats.js.errors import NotFoundError

        try:
            await js.find_stream_name_by_subject(subject)
        except NotFoundError:
            return False
        return True
