"""``rabbitmq``: a :class:`~micro.broker.Broker` on RabbitMQ (AMQP 0-9-1, through aio-pika).

How the broker's semantics map onto RabbitMQ:

* **Topics.** Every message is published to one topic exchange (``exchange``,
  default ``"micro"``) with the topic as its routing key. A subscriber's queue is
  bound with its topic as the binding key, so ``*`` and ``#`` in a *subscribed*
  topic act as AMQP wildcards, as in Go Micro's rabbitmq broker;
  :attr:`Event.topic <micro.broker.Event.topic>` is always the topic the message
  was published on.
* **Broadcast subscribers** each get an exclusive, auto-delete queue named
  ``<exchange>:<topic>:<random>``: it lives as long as the subscription (and its
  connection), and messages published while it is gone are not kept for it.
* **Queue groups** share one queue named ``<exchange>:<topic>:<group>``, durable
  when ``durable`` is set. RabbitMQ hands each message to one consumer of the
  queue; the queue, with its backlog, outlives its members (see
  ``queue_expires``), so a group that restarts gets what was published meanwhile.
* **Settlement.** Deliveries are acknowledged manually once the handler has
  settled them (:func:`micro.broker.dispatch`). ``nack(requeue=True)`` (and a
  handler failure) publishes a copy back to the same queue with a redelivery
  count in the header ``x-micro-redeliveries``, confirmed before the original is
  acked; past ``max_redeliveries`` the message is rejected, which dead-letters it
  to ``dead_letter_exchange`` if set and drops it otherwise, with a log line.
  ``nack(requeue=False)`` rejects it the same way at once.
* **Ordering and back-pressure.** Each subscriber handles its deliveries one at a
  time, in the order RabbitMQ sends them, holding at most ``prefetch_count``
  unacknowledged. With ``confirm`` (the default) :meth:`publish` returns once
  RabbitMQ has taken responsibility for the message.
* **Faults.** The connection is aio-pika's robust connection: when it drops, it
  reconnects every ``reconnect_interval`` seconds and declares the exchange,
  queues, bindings and consumers again. Deliveries that were not acknowledged
  before the drop are delivered again by RabbitMQ (at-least-once), and
  :meth:`publish` retries through the reconnect for up to ``publish_timeout``
  seconds. Start-up failures raise at once: :class:`~micro.errors.BackendUnavailable`
  for an unreachable server and :class:`~micro.errors.Unauthorized` for refused
  credentials, both naming the address (password masked) and ``MICRO_BROKER_ADDRESS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import decimal
import hashlib
import logging
import os
import re
import socket
import uuid
from collections.abc import Mapping
from typing import Any, ClassVar, Final

import aio_pika
import aiormq.exceptions
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
    AbstractRobustQueue,
)
from micro.broker import Broker, Event, Handler, Message, SubscribeOptions, Subscriber
from micro.broker import dispatch as dispatch_event
from micro.errors import BackendUnavailable, BadRequest, ConnectionClosed, MicroError

from ._errors import TRANSIENT, translate
from .options import RabbitMQBrokerOptions, mask_url

__all__ = ["RabbitMQBroker"]

logger = logging.getLogger("micro.broker.rabbitmq")

#: Header carrying how many times a message was put back by ``nack(requeue=True)``.
REDELIVERIES: Final = "x-micro-redeliveries"
#: Header carrying the original topic of a message put back (its routing key is then the queue's name).
TOPIC: Final = "x-micro-topic"
_INTERNAL: Final = frozenset({REDELIVERIES, TOPIC})

# AMQP short strings (routing keys, queue names, header names) hold at most 255 bytes.
_SHORT: Final = 255

# Characters a queue name may not contain (AMQP's queue-name domain, as aio-pika's codec checks it, minus space).
_UNSAFE: Final = re.compile(r"[^a-zA-Z0-9_.:@,/+-]")

# Seconds between publish attempts while the connection is being restored, doubling to the cap.
_RETRY_FIRST: Final = 0.05
_RETRY_CAP: Final = 1.0


def _check_short(text: str, what: str) -> None:
    if len(text.encode("utf-8")) > _SHORT:
        raise BadRequest(f"{what} must be at most {_SHORT} bytes in UTF-8 (an AMQP limit), got {text[:40]!r}...")


def _queue_name(*parts: str) -> str:
    name = ":".join(parts)
    safe = _UNSAFE.sub("_", name)
    if safe == name and len(name) <= _SHORT:
        return name
    # Wildcards, non-ASCII and long names still need a stable, unique name: a readable head plus a digest.
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:24]
    return f"{safe[: _SHORT - len(digest) - 1]}+{digest}"


def _header_value(value: object) -> str | None:
    """A header of a delivery as a string, or ``None`` for RabbitMQ's own tables and arrays (``x-death``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, decimal.Decimal)):
        return str(value)
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return None


def _message_of(delivery: AbstractIncomingMessage) -> Message:
    header: dict[str, str] = {}
    for key, value in (delivery.headers or {}).items():
        if key in _INTERNAL:
            continue
        text = _header_value(value)
        if text is not None:
            header[key] = text
    return Message(delivery.body, header)


def _redeliveries(headers: Mapping[str, Any] | None) -> int:
    try:
        return max(0, int((headers or {}).get(REDELIVERIES, 0)))
    except (TypeError, ValueError):
        return 0


def _stale(delivery: AbstractIncomingMessage) -> bool:
    """Whether ``delivery`` came on a channel that has closed since (its delivery tag is then meaningless)."""
    try:
        return delivery.channel.is_closed
    except aiormq.exceptions.ChannelInvalidStateError:
        return True


async def _quietly(what: str, awaitable: Any, timeout: float) -> bool:
    """Await ``awaitable`` within ``timeout``; log and return ``False`` if the server is gone or refuses."""
    try:
        async with asyncio.timeout(timeout):
            await awaitable
    except (*TRANSIENT, aiormq.exceptions.AMQPError, TimeoutError) as exc:
        logger.debug("rabbitmq: %s failed: %r", what, exc)
        return False
    return True


class _RabbitMQEvent(Event):
    """An event whose ack and nack reach RabbitMQ at once (the first settlement wins)."""

    __slots__ = ("_delivery", "_subscription")

    def __init__(
        self, topic: str, message: Message, delivery: AbstractIncomingMessage, subscription: _Subscription
    ) -> None:
        super().__init__(topic, message)
        self._delivery = delivery
        self._subscription = subscription

    async def ack(self) -> None:
        if self.outcome is not None:
            return
        await super().ack()
        await self._subscription._ack(self._delivery)

    async def nack(self, requeue: bool = True) -> None:
        if self.outcome is not None:
            return
        await super().nack(requeue)
        await self._subscription._nack(self, self._delivery, requeue=requeue)


class _Subscription(Subscriber):
    """One subscriber: its own channel and consumer, and a task that runs the handler one delivery at a time."""

    def __init__(self, broker: RabbitMQBroker, topic: str, options: SubscribeOptions, handler: Handler) -> None:
        super().__init__(topic, options)
        self._broker = broker
        self._handler = handler
        opts = broker.options
        if options.queue is not None:
            self._queue_name = _queue_name(opts.exchange, topic, options.queue)
        else:
            self._queue_name = _queue_name(opts.exchange, topic, f"sub-{uuid.uuid4().hex[:16]}")
        # Bounded in practice by prefetch_count: RabbitMQ sends no more than that unacknowledged.
        self._inbox: asyncio.Queue[AbstractIncomingMessage | None] = asyncio.Queue()
        self._channel: AbstractRobustChannel | None = None
        self._queue: AbstractRobustQueue | None = None
        self._tag: str | None = None
        self._close_timeout = opts.close_timeout

    @property
    def queue_name(self) -> str:
        """The RabbitMQ queue this subscriber consumes from."""
        return self._queue_name

    async def _open(self, connection: AbstractRobustConnection) -> None:
        broker = self._broker
        opts = broker.options
        arguments: dict[str, Any] = {}
        if opts.dead_letter_exchange is not None:
            arguments["x-dead-letter-exchange"] = opts.dead_letter_exchange
        group = self.options.queue is not None
        if group and opts.queue_expires is not None:
            arguments["x-expires"] = max(1, round(opts.queue_expires * 1000))
        try:
            async with asyncio.timeout(opts.connect_timeout):
                # Publisher confirms on this channel make a requeued copy safe before the original is acked.
                self._channel = channel = await connection.channel(publisher_confirms=True)
                await channel.set_qos(prefetch_count=opts.prefetch_count)
                exchange = await broker._declare_exchange(channel)
                if group:
                    queue = await channel.declare_queue(
                        self._queue_name, durable=opts.durable, arguments=arguments or None
                    )
                else:
                    queue = await channel.declare_queue(
                        self._queue_name, exclusive=True, auto_delete=True, arguments=arguments or None
                    )
                self._queue = queue
                await queue.bind(exchange, routing_key=self.topic)
                self._tag = await queue.consume(self._deliver)
        except Exception as exc:
            await self._release()
            raise translate(exc, broker.address, f"subscribing to {self.topic!r}") from exc
        self._start_task(f"micro.broker.rabbitmq:{self.topic}")

    async def _deliver(self, delivery: AbstractIncomingMessage) -> None:
        # Left unacknowledged when stopping: RabbitMQ gives it back when the channel closes.
        if not self._stopping:
            self._inbox.put_nowait(delivery)

    async def _next(self) -> AbstractIncomingMessage | None:
        return await self._inbox.get()

    async def _handle(self, delivery: AbstractIncomingMessage) -> None:
        if _stale(delivery):
            return  # it arrived before a reconnect: RabbitMQ has queued it again and will redeliver it
        topic = delivery.headers.get(TOPIC) if delivery.headers else None
        event = _RabbitMQEvent(
            topic if isinstance(topic, str) else delivery.routing_key or self.topic,
            _message_of(delivery),
            delivery,
            self,
        )
        try:
            await dispatch_event(self._handler, event, auto_ack=self.options.auto_ack)
        except Exception:
            # Settling failed in a way _ack/_nack did not foresee; the subscription must outlive it.
            logger.exception("rabbitmq: settling a message on topic %r failed", event.topic)

    async def _finish(self) -> None:
        await self._release()

    async def _ack(self, delivery: AbstractIncomingMessage) -> None:
        if _stale(delivery):
            return  # the delivery tag died with its channel; RabbitMQ will deliver the message again
        timeout = self._broker.options.publish_timeout
        if not await _quietly("ack", delivery.ack(), timeout):
            logger.warning("could not ack a message on topic %r; RabbitMQ will deliver it again", self.topic)

    async def _nack(self, event: Event, delivery: AbstractIncomingMessage, *, requeue: bool) -> None:
        if _stale(delivery):
            return
        opts = self._broker.options
        if requeue:
            count = _redeliveries(delivery.headers)
            if count < opts.max_redeliveries:
                await self._requeue(event, delivery, count + 1)
                return
            where = (
                f"dead-lettering it to {opts.dead_letter_exchange!r}" if opts.dead_letter_exchange else "dropping it"
            )
            logger.warning(
                "a message on topic %r was redelivered %d times; %s", event.topic, opts.max_redeliveries, where
            )
        if not await _quietly("reject", delivery.reject(requeue=False), opts.publish_timeout):
            logger.warning("could not reject a message on topic %r; RabbitMQ will deliver it again", event.topic)

    async def _requeue(self, event: Event, delivery: AbstractIncomingMessage, count: int) -> None:
        channel = self._channel
        if channel is None:
            return
        headers = dict(delivery.headers or {})
        headers[REDELIVERIES] = count
        headers[TOPIC] = event.topic
        copy = aio_pika.Message(
            delivery.body,
            headers=headers,
            content_type=delivery.content_type,
            content_encoding=delivery.content_encoding,
            delivery_mode=delivery.delivery_mode,
            message_id=delivery.message_id,
            correlation_id=delivery.correlation_id,
            timestamp=delivery.timestamp,
        )
        timeout = self._broker.options.publish_timeout
        # The copy goes straight to this queue (default exchange), so other queues on the topic do not see it again.
        published = await _quietly(
            "requeue", channel.default_exchange.publish(copy, routing_key=self._queue_name), timeout
        )
        if published:
            await self._ack(delivery)
        else:
            logger.warning("could not requeue a message on topic %r; RabbitMQ will deliver it again", event.topic)

    async def _release(self) -> None:
        """Stop consuming and close the channel: what was delivered but not acknowledged goes back to the queue."""
        timeout = self._broker.options.close_timeout
        queue, tag, self._tag = self._queue, self._tag, None
        if queue is not None and tag is not None:
            await _quietly("cancel", queue.cancel(tag), timeout)
        channel, self._channel = self._channel, None
        if channel is not None and not channel.is_closed:
            await _quietly("channel close", channel.close(), timeout)

    async def _stop_delivery(self) -> None:
        queue, tag = self._queue, self._tag
        if queue is not None and tag is not None:
            # Stop deliveries now; the channel itself closes once the handler in progress has settled its event.
            self._tag = None
            await _quietly("cancel", queue.cancel(tag), self._broker.options.close_timeout)
        self._inbox.put_nowait(None)
        if self._task is None:
            await self._release()  # never got as far as its task: nothing else will


class RabbitMQBroker(Broker):
    """Publish/subscribe through a RabbitMQ server. See the module docstring for the mapping."""

    options_type: ClassVar[type[RabbitMQBrokerOptions]] = RabbitMQBrokerOptions
    options: RabbitMQBrokerOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"queue", "ack", "nack", "ordered", "cross-process"})

    def __init__(self, options: RabbitMQBrokerOptions | None = None) -> None:
        super().__init__(options)
        self._url = self.options.urls[0]
        self._connection: AbstractRobustConnection | None = None
        self._channel: AbstractRobustChannel | None = None
        self._exchange: AbstractRobustExchange | None = None
        self._delivery_mode = (
            aio_pika.DeliveryMode.PERSISTENT if self.options.durable else aio_pika.DeliveryMode.NOT_PERSISTENT
        )
        #: Shown by RabbitMQ's tools (``rabbitmqctl list_connections client_properties``) for this broker.
        self.connection_name = f"micro {socket.gethostname()}:{os.getpid()} {uuid.uuid4().hex[:8]}"

    @property
    def address(self) -> str:
        """The server's URL with the password masked: the one connected to once started."""
        return mask_url(self._url)

    @property
    def connection(self) -> AbstractRobustConnection | None:
        """The aio-pika connection while started (for diagnostics; do not close it)."""
        return self._connection

    async def _start(self) -> None:
        """Connect, open the publishing channel and declare the exchange.

        Tries each URL of ``address`` in order. Raises
        :class:`~micro.errors.BackendUnavailable` if none answers within
        ``connect_timeout``, :class:`~micro.errors.Unauthorized` if the server
        refuses the credentials, and :class:`~micro.errors.InvalidOption` if the
        exchange exists with another durability.
        """
        connection = await self._connect()
        try:
            async with asyncio.timeout(self.options.connect_timeout):
                channel: AbstractRobustChannel = await connection.channel(publisher_confirms=self.options.confirm)
                exchange = await self._declare_exchange(channel)
        except Exception as exc:
            await _quietly("connection close", connection.close(), self.options.close_timeout)
            raise translate(exc, self.address, f"declaring the exchange {self.options.exchange!r}") from exc
        self._connection, self._channel, self._exchange = connection, channel, exchange

    async def _connect(self) -> AbstractRobustConnection:
        failures: list[MicroError] = []
        for url in self.options.urls:
            try:
                async with asyncio.timeout(self.options.connect_timeout):
                    connection = await aio_pika.connect_robust(
                        url,
                        timeout=self.options.connect_timeout,
                        reconnect_interval=self.options.reconnect_interval,
                        client_properties={"connection_name": self.connection_name},
                    )
            except Exception as exc:
                error = translate(exc, mask_url(url), "connecting")
                if not isinstance(error, BackendUnavailable):
                    raise error from exc  # refused credentials are not cured by another address
                failures.append(error)
                continue
            self._url = url
            return connection
        if len(failures) == 1:
            raise failures[0]
        raise BackendUnavailable("; ".join(str(f) for f in failures))

    async def _declare_exchange(self, channel: AbstractRobustChannel) -> AbstractRobustExchange:
        exchange = await channel.declare_exchange(
            self.options.exchange, aio_pika.ExchangeType.TOPIC, durable=self.options.durable
        )
        return exchange

    async def _close(self) -> None:
        """Close the connection, once the base has unsubscribed everything. Never raises."""
        connection, self._connection = self._connection, None
        self._channel = self._exchange = None
        if connection is not None:
            await _quietly("connection close", connection.close(), self.options.close_timeout)

    def _check_names(self, topic: str, message: Message | None) -> None:
        _check_short(topic, "topic")
        for key in message.header if message is not None else ():
            _check_short(key, "header name")

    def _open_connection(self) -> AbstractRobustConnection:
        connection = self._connection
        if connection is None:  # closed meanwhile
            raise ConnectionClosed("the rabbitmq broker is closed; start() it again to use it")
        return connection

    async def _publish(self, topic: str, message: Message) -> None:
        """Publish to the exchange with ``topic`` as routing key; see :meth:`micro.broker.Broker.publish`.

        With ``confirm`` it returns once RabbitMQ confirmed the message. A lost
        connection is retried until ``publish_timeout`` (a message whose confirm
        was lost with the connection may then arrive twice); after that, or if
        RabbitMQ rejects the message, it raises :class:`~micro.errors.BackendUnavailable`.
        """
        self._open_connection()
        amqp_message = aio_pika.Message(
            message.body,
            headers=dict(message.header),
            delivery_mode=self._delivery_mode,
            message_id=uuid.uuid4().hex,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.publish_timeout
        pause = _RETRY_FIRST
        while True:
            exchange, channel = self._exchange, self._channel
            if exchange is None or channel is None:
                raise ConnectionClosed("the rabbitmq broker was closed while publishing")
            try:
                async with asyncio.timeout(max(0.0, deadline - loop.time())):
                    await exchange.publish(amqp_message, routing_key=topic)
                return
            except TimeoutError as exc:
                raise BackendUnavailable(
                    f"rabbitmq at {self.address}: publishing to {topic!r} did not complete within "
                    f"publish_timeout ({self.options.publish_timeout:g}s)"
                ) from exc
            except aiormq.exceptions.DeliveryError as exc:
                raise BackendUnavailable(f"rabbitmq at {self.address} refused a message on {topic!r}: {exc}") from exc
            except TRANSIENT as exc:
                if not self._component_started():
                    raise ConnectionClosed("the rabbitmq broker was closed while publishing") from exc
                if loop.time() + pause >= deadline:
                    raise translate(exc, self.address, f"publishing to {topic!r}") from exc
                logger.debug("rabbitmq: publish failed (%r); retrying once the connection is back", exc)
                await asyncio.sleep(pause)
                pause = min(pause * 2, _RETRY_CAP)
                with contextlib.suppress(TimeoutError, *TRANSIENT):
                    async with asyncio.timeout(max(0.0, deadline - loop.time())):
                        await channel.ready()
            except aiormq.exceptions.AMQPError as exc:
                raise translate(exc, self.address, f"publishing to {topic!r}") from exc

    async def _subscribe(self, topic: str, handler: Handler, options: SubscribeOptions) -> Subscriber:
        """Consume ``topic`` from a queue of its own, or from the group's shared queue; see the module docstring.

        Raises :class:`~micro.errors.InvalidOption` if the group's queue exists with
        other settings (durability, dead-letter exchange, expiry).
        """
        connection = self._open_connection()
        subscription = _Subscription(self, topic, options, handler)
        await subscription._open(connection)
        if not self._component_started():  # closed while we were subscribing
            await subscription.unsubscribe()
            raise ConnectionClosed("the rabbitmq broker was closed while subscribing")
        return subscription
