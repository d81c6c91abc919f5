"""Broker: publish→consume of N small messages through micro's brokers and the clients they wrap.

Every system gets the same pattern: one topic exchange, one queue bound to
it, one consumer; publisher confirms on and a prefetch of ``PREFETCH`` for
RabbitMQ; ``PUBLISHERS`` tasks publish concurrently, each awaiting its own
publish (so a confirm, where there are confirms). The clock runs from the
first publish to the last message consumed. micro-redis's broker uses Redis streams
with a consumer group, so raw redis-py does the same (``XADD``, ``XREADGROUP``, ``XACK``);
pub/sub is listed too, for scale. Publishing stops early at a time
cap (the note then says how many of the N were sent), so a slow machine
bounds the run instead of stretching it; a consumer that cannot catch up is
reported as a failure, not as a rate.

The http broker's fan-out line publishes to 1, 10 and 50 broadcast subscribers
(each its own broker, so its own port, all in one worker process) and reports
deliveries per second, and the unloaded latency of one publish until every
subscriber has it (p50 column).
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from _harness import Context, Row, Worker, unavailable

GROUP_RABBIT = "broker-rabbitmq"
GROUP_REDIS = "broker-redis"
GROUP_NATS = "broker-nats"
GROUP_JETSTREAM = "broker-nats jetstream"
GROUP_FANOUT = "broker-http fan-out"
FANOUT = (1, 10, 50)
#: Sequential publishes timed for the unloaded latency of one fan-out.
LATENCY_SAMPLES = 30
AMQP_URI = "amqp://guest:guest@127.0.0.1:5672/"
REDIS_URL = "redis://127.0.0.1:6379/0"
NATS_URL = "nats://127.0.0.1:4222"
PREFETCH = 256
PUBLISHERS = 32
#: Seconds the consumer may lag behind the last publish before the run counts as failed.
DRAIN = 30.0
BODY = b'{"order":12345,"status":"paid","amount":19.99,"currency":"EUR"}'


def _up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


class Counter:
    """Counts consumed messages and wakes the waiter once ``target`` were seen."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.seen = 0
        self.done = asyncio.Event()

    def hit(self) -> None:
        self.seen += 1
        if self.seen >= self.target:
            self.done.set()

    def expect(self, target: int) -> None:
        self.target = target
        if self.seen >= target:
            self.done.set()


Publish = Callable[[], Awaitable[Any]]


async def drive(publish: Publish, counter: Counter, n: int, cap: float, drain: float) -> tuple[int, float]:
    """Publish up to ``n`` messages from ``PUBLISHERS`` tasks, for at most ``cap`` seconds, then wait up to
    ``drain`` seconds for the consumer to see every published one; (messages, seconds until the last was consumed).

    Raises ``TimeoutError`` if the consumer falls ``drain`` seconds behind.
    """
    remaining = n
    published = 0
    start = time.perf_counter()
    stop = start + cap

    async def publisher() -> None:
        nonlocal remaining, published
        while remaining > 0 and time.perf_counter() < stop:
            remaining -= 1
            await publish()
            published += 1

    await asyncio.gather(*(publisher() for _ in range(PUBLISHERS)))
    counter.expect(published)
    async with asyncio.timeout(drain):
        await counter.done.wait()
    return published, time.perf_counter() - start


# -- RabbitMQ ---------------------------------------------------------------------------------------


async def raw_aio_pika(n: int, cap: float) -> tuple[int, float]:
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

        return await drive(publish, counter, n, cap, DRAIN)
    finally:
        await connection.close()


async def faststream_rabbit(n: int, cap: float) -> tuple[int, float]:
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

        return await drive(publish, counter, n, cap, DRAIN)
    finally:
        await broker.stop()


async def micro_broker(plugin: str, address: str, n: int, cap: float, **options: Any) -> tuple[int, float]:
    import micro
    from micro.broker import Broker, Event, Message

    broker = micro.create("broker", plugin, cls=Broker, address=(address,), **options)
    await broker.start()
    topic = f"bench.{uuid.uuid4().hex[:8]}"
    try:
        counter = Counter(n)

        async def on_event(event: Event) -> None:
            counter.hit()

        await broker.subscribe(topic, on_event, queue="bench")
        message = Message(BODY, {"Content-Type": "application/json"})

        async def publish() -> None:
            await broker.publish(topic, message)

        return await drive(publish, counter, n, cap, DRAIN)
    finally:
        await broker.close()
        if plugin == "redis":  # the stream outlives its subscribers by design: drop this run's
            import redis.asyncio as redis

            client = redis.Redis.from_url(REDIS_URL)
            try:
                await client.delete(f"{broker.options.key_prefix}{topic}")  # type: ignore[attr-defined]
            finally:
                await client.aclose()


# -- NATS ---------------------------------------------------------------------------------------------


def _nats_names() -> dict[str, Any]:
    """A subject prefix and a stream of this run's own (the stream is deleted afterwards)."""
    run = uuid.uuid4().hex[:8]
    return {"subject_prefix": f"bench{run}", "stream": f"BENCH_{run}"}


async def _drop_stream(name: str) -> None:
    import nats

    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_stream(name)
    except Exception:
        pass  # never created
    finally:
        await nc.close()


async def micro_nats(n: int, cap: float, *, jetstream: bool) -> tuple[int, float]:
    """micro-nats: a queue-group subscriber; JetStream: confirmed publishes, a durable consumer with acks."""
    names = _nats_names()
    try:
        return await micro_broker("nats", NATS_URL, n, cap, jetstream=jetstream, **names)
    finally:
        await _drop_stream(names["stream"])


async def raw_nats_core(n: int, cap: float) -> tuple[int, float]:
    """What micro-nats does without JetStream, by hand: a queue subscription, ``publish`` with a header."""
    import nats

    nc = await nats.connect(NATS_URL)
    subject = f"bench{uuid.uuid4().hex[:8]}.t"
    try:
        counter = Counter(n)
        sub = await nc.subscribe(subject, queue="bench", pending_msgs_limit=65_536)
        await nc.flush()

        async def consume() -> None:
            while True:
                await sub.next_msg(timeout=None)
                counter.hit()

        consumer = asyncio.create_task(consume())
        headers = {"Micro-Header": '{"Content-Type":"application/json"}'}

        async def publish() -> None:
            await nc.publish(subject, BODY, headers=headers)

        try:
            return await drive(publish, counter, n, cap, DRAIN)
        finally:
            consumer.cancel()
            await asyncio.wait({consumer}, timeout=5)
    finally:
        await nc.close()


async def raw_nats_jetstream(n: int, cap: float) -> tuple[int, float]:
    """What micro-nats does with JetStream, by hand: ``js.publish`` (awaiting the PubAck), a durable pull
    consumer fetching 32 at a time, each message acked."""
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RetentionPolicy

    names = _nats_names()
    nc = await nats.connect(NATS_URL)
    subject = f"{names['subject_prefix']}.t"
    stop = False
    try:
        js = nc.jetstream()
        await js.add_stream(name=names["stream"], subjects=[f"{names['subject_prefix']}.>"],
                            retention=RetentionPolicy.INTEREST)  # fmt: skip
        config = ConsumerConfig(durable_name="bench", ack_policy=AckPolicy.EXPLICIT,
                                deliver_policy=DeliverPolicy.NEW, filter_subject=subject)  # fmt: skip
        psub = await js.pull_subscribe(subject, durable="bench", stream=names["stream"], config=config)
        counter = Counter(n)

        async def consume() -> None:
            while not stop:
                try:
                    messages = await psub.fetch(32, timeout=0.5)
                except nats.errors.TimeoutError:
                    continue
                for message in messages:
                    counter.hit()
                    await message.ack()

        consumer = asyncio.create_task(consume())
        headers = {"Micro-Header": '{"Content-Type":"application/json"}'}

        async def publish() -> None:
            await js.publish(subject, BODY, headers=headers, stream=names["stream"])

        try:
            return await drive(publish, counter, n, cap, DRAIN)
        finally:
            stop = True
            await _finish(consumer)
    finally:
        await nc.close()
        await _drop_stream(names["stream"])


# -- Redis --------------------------------------------------------------------------------------------


async def _finish(consumer: asyncio.Task[None]) -> None:
    """Wait for a consumer task that was told to stop; cancel it if it has not within a few seconds."""
    try:
        await asyncio.wait_for(asyncio.shield(consumer), 5)
    except TimeoutError:
        consumer.cancel()
        await asyncio.wait({consumer}, timeout=5)
    except Exception:
        pass  # the consumer's failure already showed as missing messages


async def raw_redis_streams(n: int, cap: float) -> tuple[int, float]:
    """What micro-redis's broker does, by hand: ``XADD`` to a stream, one consumer group reading with
    ``XREADGROUP`` (``PREFETCH`` entries at a time) and acknowledging each batch with ``XACK``."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL)
    reader = redis.Redis.from_url(REDIS_URL)  # the blocking read holds its connection
    stream = f"bench.{uuid.uuid4().hex[:8]}"
    counter = Counter(n)
    try:
        await client.xgroup_create(stream, "bench", id="$", mkstream=True)

        stop = False

        async def consume() -> None:
            # Stopped by a flag, not by cancelling: redis-py may swallow a cancellation that lands in a read.
            while not stop:
                batches = await reader.xreadgroup("bench", "c1", {stream: ">"}, count=PREFETCH, block=100)
                for _, entries in batches or ():
                    if entries:
                        await reader.xack(stream, "bench", *(entry_id for entry_id, _ in entries))
                        for _ in entries:
                            counter.hit()

        consumer = asyncio.create_task(consume())
        try:

            async def publish() -> None:
                await client.xadd(stream, {"body": BODY})

            return await drive(publish, counter, n, cap, DRAIN)
        finally:
            stop = True
            await _finish(consumer)
    finally:
        await client.delete(stream)
        await client.aclose()
        await reader.aclose()


async def raw_redis_pubsub(n: int, cap: float) -> tuple[int, float]:
    """Redis pub/sub (``PUBLISH``, ``SUBSCRIBE``): no persistence and no acks, for scale."""
    import redis.asyncio as redis

    client = redis.Redis.from_url(REDIS_URL)
    pubsub = client.pubsub()
    channel = f"bench.{uuid.uuid4().hex[:8]}"
    counter = Counter(n)
    try:
        await pubsub.subscribe(channel)
        await pubsub.get_message(timeout=1.0)  # the subscribe confirmation

        stop = False

        async def consume() -> None:
            while not stop:
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                if message is not None:
                    counter.hit()

        consumer = asyncio.create_task(consume())
        try:

            async def publish() -> None:
                await client.publish(channel, BODY)

            return await drive(publish, counter, n, cap, DRAIN)
        finally:
            stop = True
            await _finish(consumer)
    finally:
        await pubsub.aclose()
        await client.aclose()


# -- http broker fan-out --------------------------------------------------------------------------------


async def fanout_worker(topic: str, subscribers: int) -> None:
    """The subscribing side: ``subscribers`` http brokers in this process, one broadcast subscription each.

    Prints ``READY`` once subscribed; then, for each ``<count>`` line on stdin, prints ``DONE`` once that many
    deliveries (in all) have arrived. Exits at the end of stdin.
    """
    import micro
    from micro.broker import Broker, Event

    brokers = [micro.create("broker", "http", cls=Broker) for _ in range(subscribers)]
    seen = 0
    target = 0
    reached = asyncio.Event()

    async def on_event(event: Event) -> None:
        nonlocal seen
        seen += 1
        if seen >= target:
            reached.set()

    for broker in brokers:
        await broker.subscribe(topic, on_event)
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            target = int(line)
            if seen < target:
                reached.clear()
                await reached.wait()
            print("DONE", flush=True)
    finally:
        for broker in brokers:
            await broker.close()


async def http_fanout(ctx: Context, subscribers: int, n: int, cap: float) -> tuple[int, float, float]:
    """Publish up to ``n`` messages to ``subscribers`` subscribers in a worker process, from ``PUBLISHERS``
    tasks and for at most ``cap`` seconds; (messages, seconds until the last delivery, p50 ms of one publish
    until all subscribers have it, unloaded)."""
    import micro
    from micro.broker import Broker, Message

    topic = f"bench.fanout.{uuid.uuid4().hex[:8]}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "fanout-worker",
        topic,
        str(subscribers),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=ctx.env,
        start_new_session=True,
    )
    worker = Worker(process, "fan-out worker")  # for its stop(): SIGTERM, then SIGKILL
    stdin, stdout = process.stdin, process.stdout
    assert stdin is not None
    assert stdout is not None
    publisher = micro.create("broker", "http", cls=Broker)

    async def delivered(total: int) -> None:
        stdin.write(f"{total}\n".encode())
        await stdin.drain()
        line = await asyncio.wait_for(stdout.readline(), DRAIN)
        if line.strip() != b"DONE":
            raise RuntimeError(f"the fan-out worker said {line!r}")

    try:
        ready = await asyncio.wait_for(stdout.readline(), 60)
        if ready.strip() != b"READY":
            raise RuntimeError(f"the fan-out worker did not start (said {ready!r})")
        await publisher.start()
        # The publisher learns subscribers through a registry watch: wait until it routes to all of them.
        routes = getattr(publisher, "_routes", {})
        deadline = time.monotonic() + 30
        while sum(len(nodes) for nodes in routes.get(topic, {}).values()) < subscribers:
            if time.monotonic() > deadline:
                raise RuntimeError("the publisher did not see every subscriber within 30s")
            await asyncio.sleep(0.02)
            routes = getattr(publisher, "_routes", {})
        message = Message(BODY, {"Content-Type": "application/json"})
        remaining, published = n, 0
        start = time.perf_counter()
        stop = start + cap

        async def publish() -> None:
            nonlocal remaining, published
            while remaining > 0 and time.perf_counter() < stop:
                remaining -= 1
                await publisher.publish(topic, message)
                published += 1

        await asyncio.gather(*(publish() for _ in range(PUBLISHERS)))
        await delivered(published * subscribers)
        seconds = time.perf_counter() - start
        latencies = []
        for i in range(LATENCY_SAMPLES):
            began = time.perf_counter()
            await publisher.publish(topic, message)
            await delivered((published + i + 1) * subscribers)
            latencies.append(time.perf_counter() - began)
        latencies.sort()
        return published, seconds, latencies[len(latencies) // 2] * 1e3
    finally:
        await publisher.close()
        stdin.close()
        await worker.stop()


async def _fanout_rows(ctx: Context) -> list[Row]:
    deliveries = ctx.pick(3_000, 30_000)
    cap = ctx.pick(3.0, 20.0)
    rows: list[Row] = []
    single: float | None = None
    for subscribers in FANOUT:
        name = f"micro http, {subscribers} subscriber{'s' if subscribers > 1 else ''}"
        n = max(100, deliveries // subscribers)
        ctx.log(f"  broker: http fan-out to {subscribers} ({n} messages)")
        try:
            count, seconds, p50 = await http_fanout(ctx, subscribers, n, cap)
        except Exception as exc:
            rows.append(unavailable(GROUP_FANOUT, name, f"{type(exc).__name__}: {exc}", "deliveries/s"))
            continue
        rate = count * subscribers / seconds
        single = rate if subscribers == 1 else single
        share = f"; {rate / single:.0%} of 1 subscriber's" if single and subscribers > 1 else ""
        capped = "" if count == n else f" (time cap; {n} planned)"
        note = f"{count} msgs x {subscribers} in {seconds:.2f}s{capped}{share}"
        rows.append(Row(GROUP_FANOUT, name, rate, "deliveries/s", p50_ms=p50, note=note))
    return rows


async def _rate(name: str, group: str, n: int, run: Callable[[], Awaitable[tuple[int, float]]]) -> Row:
    try:
        count, seconds = await run()
    except TimeoutError:
        return unavailable(group, name, f"the consumer was still {DRAIN:.0f}s behind the publishers", "msg/s")
    except Exception as exc:
        return unavailable(group, name, f"{type(exc).__name__}: {exc}", "msg/s")
    capped = "" if count == n else f" (time cap; {n} planned)"
    return Row(group, name, count / seconds, "msg/s", note=f"{count} msgs in {seconds:.2f}s{capped}")


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
    n = ctx.pick(1_000, 100_000)
    cap = ctx.pick(3.0, 35.0)
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
            else await _rate("micro-rabbitmq", GROUP_RABBIT, n, lambda: micro_broker("rabbitmq", AMQP_URI, n, cap))
        )
        ctx.log("  broker: aio-pika")
        rows.append(await _rate("aio-pika", GROUP_RABBIT, n, lambda: raw_aio_pika(n, cap)))
        ctx.log("  broker: faststream")
        rows.append(await _rate("faststream", GROUP_RABBIT, n, lambda: faststream_rabbit(n, cap)))
    if not _up(6379):
        rows += [unavailable(GROUP_REDIS, s, "Redis is not reachable on 127.0.0.1:6379", "msg/s") for s in
                 ("micro-redis", "redis-py", "redis-py pub/sub")]  # fmt: skip
    else:
        reason = _registered("redis")
        ctx.log("  broker: micro-redis")
        rows.append(
            unavailable(GROUP_REDIS, "micro-redis", reason, "msg/s")
            if reason
            else await _rate("micro-redis", GROUP_REDIS, n, lambda: micro_broker("redis", "127.0.0.1:6379", n, cap))
        )
        ctx.log("  broker: redis-py streams")
        rows.append(await _rate("redis-py", GROUP_REDIS, n, lambda: raw_redis_streams(n, cap)))
        ctx.log("  broker: redis-py pub/sub")
        rows.append(await _rate("redis-py pub/sub", GROUP_REDIS, n, lambda: raw_redis_pubsub(n, cap)))
    if not _up(4222):
        rows += [unavailable(GROUP_NATS, s, "NATS is not reachable on 127.0.0.1:4222", "msg/s") for s in
                 ("micro-nats", "nats-py")]  # fmt: skip
        rows += [unavailable(GROUP_JETSTREAM, s, "NATS is not reachable on 127.0.0.1:4222", "msg/s") for s in
                 ("micro-nats jetstream", "nats-py jetstream")]  # fmt: skip
    else:
        reason = _registered("nats")
        ctx.log("  broker: micro-nats")
        rows.append(
            unavailable(GROUP_NATS, "micro-nats", reason, "msg/s")
            if reason
            else await _rate("micro-nats", GROUP_NATS, n, lambda: micro_nats(n, cap, jetstream=False))
        )
        ctx.log("  broker: nats-py")
        rows.append(await _rate("nats-py", GROUP_NATS, n, lambda: raw_nats_core(n, cap)))
        ctx.log("  broker: micro-nats jetstream")
        rows.append(
            unavailable(GROUP_JETSTREAM, "micro-nats jetstream", reason, "msg/s")
            if reason
            else await _rate("micro-nats jetstream", GROUP_JETSTREAM, n, lambda: micro_nats(n, cap, jetstream=True))
        )
        ctx.log("  broker: nats-py jetstream")
        rows.append(await _rate("nats-py jetstream", GROUP_JETSTREAM, n, lambda: raw_nats_jetstream(n, cap)))
    rows += await _fanout_rows(ctx)
    return rows


if __name__ == "__main__" and sys.argv[1:2] == ["fanout-worker"]:
    asyncio.run(fanout_worker(sys.argv[2], int(sys.argv[3])))
