"""Broker: publish→consume of N small messages through micro's brokers and the clients they wrap.

Every system gets the same pattern: one topic exchange, one queue bound to
it, one consumer; publisher confirms on and a prefetch of ``PREFETCH`` for
RabbitMQ; ``PUBLISHERS`` tasks publish concurrently, each awaiting its own
publish (so a confirm, where there are confirms). The clock runs from the
first publish to the N-th message consumed; a run that does not finish within
its deadline is reported as such, not as a rate.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from _harness import Context, Row, unavailable

GROUP_RABBIT = "broker-rabbitmq"
GROUP_REDIS = "broker-redis"
AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379/0"
PREFETCH = 256
PUBLISHERS = 32
BODY = b'{"order":12345,"status":"paid","amount":19.99,"currency":"EUR"}'


def _up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


class Counter:
    """Counts consumed messages and wakes the waiter at ``target``."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.seen = 0
        self.done = asyncio.Event()

    def hit(self) -> None:
        self.seen += 1
        if self.seen >= self.target:
            self.done.set()


Publish = Callable[[], Awaitable[Any]]


async def drive(publish: Publish, counter: Counter, n: int, timeout: float) -> float:
    """Publish ``n`` messages from ``PUBLISHERS`` tasks; the seconds until ``counter`` saw them all."""
    remaining = n

    async def publisher() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await publish()

    start = time.perf_counter()
    async with asyncio.timeout(timeout):
        await asyncio.gather(*(publisher() for _ in range(PUBLISHERS)))
        await counter.done.wait()
    return time.perf_counter() - start


# -- RabbitMQ ---------------------------------------------------------------------------------------


async def raw_aio_pika(n: int, timeout: float) -> float:
    import aio_pika

    connection = await aio_pika.connect(AMQP_URI)
    try:
        publish_channel = await connection.channel(publisher_confirms=True)
        consume_channel = await connection.channel()
        await consume_channel.set_qos(prefetch_count=PREFETCH)
        name = f"bench-{uuid.uuid4().hex[:8]}"
        exchange = await publish_channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, auto_delete=True)
        c_exchange = await consume_channel.declare_exchange(name, aio_pika.ExchangeType.TOPIC, auto_delete=True)
        queue = await consume_channel.declare_queue(name, auto_delete=True)
        await queue.bind(c_exchange, routing_key="orders.paid")
        counter = Counter(n)

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()
            counter.hit()

        await queue.consume(on_message)

        async def publish() -> None:
            await exchange.publish(aio_pika.Message(BODY), routing_key="orders.paid")

        return await drive(publish, counter, n, timeout)
    finally:
        await connection.close()


async def faststream_rabbit(n: int, timeout: float) -> float:
    from faststream.rabbit import Channel, ExchangeType, RabbitBroker, RabbitExchange, RabbitQueue

    name = f"bench-{uuid.uuid4().hex[:8]}"
    # logger=None: FastStream logs every message by default, which micro and the raw clients do not.
    broker = RabbitBroker(
        AMQP_URI, default_channel=Channel(prefetch_count=PREFETCH, publisher_confirms=True), logger=None
    )
    exchange = RabbitExchange(name, type=ExchangeType.TOPIC, auto_delete=True)
    queue = RabbitQueue(name, auto_delete=True, routing_key="orders.paid")
    counter = Counter(n)

    @broker.subscriber(queue, exchange)
    async def on_message(body: Any) -> None:  # FastStream decodes the JSON body
        counter.hit()

    await broker.start()
    try:

        async def publish() -> None:
            await broker.publish(BODY, routing_key="orders.paid", exchange=exchange)

        return await drive(publish, counter, n, timeout)
    finally:
        await broker.stop()


async def micro_broker(plugin: str, address: str, n: int, timeout: float) -> float:
    import micro
    from micro.broker import Broker, Event, Message

    broker = micro.create("broker", plugin, cls=Broker, address=(address,))
    await broker.start()
    try:
        counter = Counter(n)

        async def on_event(event: Event) -> None:
            counter.hit()

        topic = f"bench.{uuid.uuid4().hex[:8]}"
        await broker.subscribe(topic, on_event, queue="bench")
        message = Message(BODY, {"Content-Type": "application/json"})

        async def publish() -> None:
            await broker.publish(topic, message)

        return await drive(publish, counter, n, timeout)
    finally:
        await broker.close()


# -- Redis --------------------------------------------------------------------------------------------


async def raw_redis(n: int, timeout: float) -> float:
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub()
    channel = f"bench.{uuid.uuid4().hex[:8]}"
    counter = Counter(n)
    try:
        await pubsub.subscribe(channel)
        await pubsub.get_message(timeout=1.0)  # the subscribe confirmation

        async def consume() -> None:
            async for message in pubsub.listen():
                if message["type"] == "message":
                    counter.hit()

        consumer = asyncio.create_task(consume())
        try:

            async def publish() -> None:
                await client.publish(channel, BODY)

            return await drive(publish, counter, n, timeout)
        finally:
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
    finally:
        await pubsub.aclose()
        await client.aclose()


async def _rate(name: str, group: str, n: int, timeout: float, run: Callable[[], Awaitable[float]]) -> Row:
    try:
        seconds = await run()
    except TimeoutError:
        return unavailable(group, name, f"did not deliver {n} messages within {timeout:.0f}s", "msg/s")
    except Exception as exc:
        return unavailable(group, name, f"{type(exc).__name__}: {exc}", "msg/s")
    return Row(group, name, n / seconds, "msg/s", note=f"{n} msgs in {seconds:.2f}s")


def _registered(plugin: str) -> str | None:
    """Why the micro broker ``plugin`` cannot be used, or ``None`` if it is installed."""
    try:
        import micro

        names = set(micro.get_manager().names("broker"))
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    if plugin not in names:
        return f"broker {plugin!r} is not installed (micro-{plugin} plugin missing)"
    return None


async def run(ctx: Context) -> list[Row]:
    n = ctx.pick(3_000, 100_000)
    timeout = ctx.pick(20.0, 120.0)
    rows: list[Row] = []
    if not _up(5672):
        rows += [unavailable(GROUP_RABBIT, s, "RabbitMQ is not reachable on 127.0.0.1:5672", "msg/s") for s in
                 ("micro-rabbitmq", "aio-pika", "faststream")]  # fmt: skip
    else:
        reason = _registered("rabbitmq")
        ctx.log(f"  broker: micro-rabbitmq ({n} messages)")
        rows.append(
            unavailable(GROUP_RABBIT, "micro-rabbitmq", reason, "msg/s")
            if reason
            else await _rate(
                "micro-rabbitmq", GROUP_RABBIT, n, timeout, lambda: micro_broker("rabbitmq", AMQP_URI, n, timeout)
            )
        )
        ctx.log("  broker: aio-pika")
        rows.append(await _rate("aio-pika", GROUP_RABBIT, n, timeout, lambda: raw_aio_pika(n, timeout)))
        ctx.log("  broker: faststream")
        rows.append(await _rate("faststream", GROUP_RABBIT, n, timeout, lambda: faststream_rabbit(n, timeout)))
    if not _up(6379):
        rows += [unavailable(GROUP_REDIS, s, "Redis is not reachable on 127.0.0.1:6379", "msg/s") for s in
                 ("micro-redis", "redis-py")]  # fmt: skip
    else:
        reason = _registered("redis")
        ctx.log("  broker: micro-redis")
        rows.append(
            unavailable(GROUP_REDIS, "micro-redis", reason, "msg/s")
            if reason
            else await _rate(
                "micro-redis", GROUP_REDIS, n, timeout, lambda: micro_broker("redis", "127.0.0.1:6379", n, timeout)
            )
        )
        ctx.log("  broker: redis-py")
        rows.append(await _rate("redis-py", GROUP_REDIS, n, timeout, lambda: raw_redis(n, timeout)))
    return rows
