"""HTTPBroker: registry-based routing, the wire format, failures and two OS processes."""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import os
import socket
import sys
import time
import tracemalloc
from pathlib import Path

import aiohttp
import micro
import orjson
import pytest
from micro.broker import Event, Message, _proof
from micro.broker.http import BROADCAST_VERSION, SERVICE, HTTPBroker, HTTPBrokerOptions, decode, encode
from micro.errors import (
    BackendUnavailable,
    BadRequest,
    ConnectionClosed,
    InvalidOption,
    MessageTooLarge,
    NotSupported,
    ServiceNotFound,
    Timeout,
)
from micro.registry import LocalRegistryOptions, Node, Registry, Service, Watcher
from micro.registry.local import LocalRegistry
from micro.registry.memory import MemoryRegistry

from .conftest import Collector, eventually

PEER = Path(__file__).with_name("http_peer.py")
FAST = {"retry_interval": 0.05, "request_timeout": 1.0}


@pytest.fixture
async def registry():
    registry = MemoryRegistry()
    yield registry
    await registry.close()


@pytest.fixture
async def make(registry):
    brokers: list[HTTPBroker] = []

    def make(**options) -> HTTPBroker:
        broker = HTTPBroker(HTTPBrokerOptions(**(FAST | options)), registry=registry)
        brokers.append(broker)
        return broker

    yield make
    for broker in brokers:
        await broker.close()


def known(broker: HTTPBroker, topic: str) -> int:
    """How many subscriber nodes of ``topic`` the broker's cache holds."""
    return sum(len(nodes) for nodes in broker._routes.get(topic, {}).values())


async def nodes_of(registry: Registry, topic: str) -> list[tuple[str, Node]]:
    try:
        services = await registry.get_service(SERVICE)
    except ServiceNotFound:
        return []
    return [(s.version, n) for s in services for n in s.nodes if n.metadata.get("topic") == topic]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- construction and options --------------------------------------------------------------------


def test_is_the_default_and_owns_a_default_registry():
    broker = micro.create("broker", environ={})
    assert isinstance(broker, HTTPBroker)
    assert broker.name == "http"
    assert isinstance(broker.registry, Registry)
    assert broker.address == "127.0.0.1:0"


def test_options_from_environment():
    environ = {"MICRO_BROKER_ADDRESS": "127.0.0.1:0", "MICRO_BROKER_REQUEST_TIMEOUT": "250ms"}
    broker = micro.create("broker", environ=environ)
    assert broker.options.request_timeout == 0.25


@pytest.mark.parametrize(
    "options",
    [
        {"address": ("nonsense",)},
        {"address": ()},
        {"advertise": "host:port"},
        {"request_timeout": 0},
        {"register_ttl": 10, "register_interval": 10},
        {"inbox_size": 0},
        {"max_redeliveries": -1},
    ],
)
def test_bad_options(options):
    with pytest.raises(InvalidOption):
        HTTPBrokerOptions(**options)


# -- the wire format -----------------------------------------------------------------------------


def test_encode_decode_round_trip():
    message = Message(bytes(range(256)), {"Content-Type": "application/octet-stream", "ü": "ß"})
    topic, decoded = decode(encode("t.1", message), 1024)
    assert topic == "t.1"
    assert decoded == message


def test_a_large_delivery_body_holds_only_its_size():
    # orjson hands back its working buffer, several times the output; a delivery is held through the fan-out.
    message = Message(os.urandom(1_000_000), {"Content-Type": "application/octet-stream"})
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        data = encode("big", message)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 1.1 * len(data) + 4096
    assert decode(data, 2_000_000) == ("big", message)


def test_decode_reads_go_micro_bodies():
    body = orjson.dumps({"Header": {"Micro-Topic": "go.topic"}, "Body": base64.b64encode(b"hi").decode()})
    topic, message = decode(body, 1024)
    assert (topic, message.body) == ("go.topic", b"hi")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1, 2]",
        orjson.dumps({"topic": "t", "body": "***"}),
        orjson.dumps({"topic": "t", "body": 5}),
        orjson.dumps({"topic": "t", "header": {"a": 1}}),
        orjson.dumps({"topic": "has space"}),
        orjson.dumps({"body": ""}),
    ],
)
def test_decode_refuses_malformed_bodies(body):
    with pytest.raises(BadRequest):
        decode(body, 1024)


def test_decode_refuses_oversized_bodies():
    with pytest.raises(MessageTooLarge):
        decode(encode("t", Message(b"12345")), 4)


# -- delivery ------------------------------------------------------------------------------------


async def test_subscriber_registers_a_node_as_go_micro_does(make, registry):
    broker = make()
    broadcast = await broker.subscribe("greet", Collector())
    await broker.subscribe("greet", Collector(), queue="workers")
    found = await nodes_of(registry, "greet")
    assert sorted(version for version, _ in found) == sorted([BROADCAST_VERSION, "workers"])
    for _, node in found:
        assert node.address == broker.address
        assert node.metadata["broker"] == "http"
        assert node.address.startswith("127.0.0.1:")
        assert not node.address.endswith(":0")
    await broadcast.unsubscribe()
    assert [version for version, _ in await nodes_of(registry, "greet")] == ["workers"]


async def test_broadcast_between_brokers_keeps_header_and_body(make):
    publisher, first, second = make(), make(), make()
    a, b = Collector(), Collector()
    await first.subscribe("greet", a)
    await second.subscribe("greet", b)
    await publisher.start()
    await eventually(lambda: known(publisher, "greet") == 2, what="the publisher to see both subscribers")
    await publisher.publish("greet", Message("héllo".encode(), {"Content-Type": "text/plain"}))
    await publisher.publish("greet", Message(b""))
    await eventually(lambda: len(a.events) == 2 and len(b.events) == 2)
    for collector in (a, b):
        assert collector.bodies == ["héllo".encode(), b""]
        assert dict(collector.events[0].message.header) == {"Content-Type": "text/plain"}
        assert collector.events[0].topic == "greet"


async def test_queue_group_gets_each_message_once_and_broadcast_gets_all(make):
    publisher = make()
    members = [Collector() for _ in range(3)]
    for member in members:
        await make().subscribe("orders", member, queue="workers")
    everyone = Collector()
    await make().subscribe("orders", everyone)
    await publisher.start()
    await eventually(lambda: known(publisher, "orders") == 4)

    n = 45
    for i in range(n):
        await publisher.publish("orders", Message(str(i).encode()))
    expected = sorted(str(i).encode() for i in range(n))
    await eventually(lambda: sum(len(m.events) for m in members) >= n and len(everyone.events) == n)
    assert sorted(b for m in members for b in m.bodies) == expected
    assert sorted(everyone.bodies) == expected
    assert sum(1 for m in members if m.events) >= 2, "a random member is picked per message"


async def test_each_subscriber_sees_one_publishers_messages_in_order(make):
    broker = make()
    first, second = Collector(), Collector()
    await broker.subscribe("t", first)
    await broker.subscribe("t", second)
    n = 150
    for i in range(n):
        await broker.publish("t", Message(str(i).encode()))
    await eventually(lambda: len(first.events) == n and len(second.events) == n)
    assert first.bodies == second.bodies == [str(i).encode() for i in range(n)]


async def test_publish_without_subscribers_is_fine(make):
    await make().publish("nobody.listens", Message(b"x"))


async def test_unsubscribe_stops_delivery_and_deregisters(make, registry):
    broker = make()
    gone, stays = Collector(), Collector()
    subscriber = await broker.subscribe("t", gone)
    await broker.subscribe("t", stays)
    await broker.publish("t", Message(b"1"))
    await eventually(lambda: len(gone.events) == 1 and len(stays.events) == 1)
    await subscriber.unsubscribe()
    await subscriber.unsubscribe()
    assert len(await nodes_of(registry, "t")) == 1
    await broker.publish("t", Message(b"2"))
    await eventually(lambda: len(stays.events) == 2)
    assert gone.bodies == [b"1"]


async def test_a_subscriber_lost_by_the_registry_is_registered_again(make, registry):
    """The broker's heartbeat (micro.registry.heartbeat) renews every register_interval: a lost node returns."""
    broker = make(register_ttl=5.0, register_interval=0.05)
    await broker.subscribe("t", Collector())
    ((version, node),) = await nodes_of(registry, "t")
    await registry.deregister(Service(SERVICE, version, nodes=[node]))  # a registry restarted, or a lapsed ttl
    assert await nodes_of(registry, "t") == []
    deadline = time.monotonic() + 10
    while not await nodes_of(registry, "t"):
        assert time.monotonic() < deadline, "the subscriber was never registered again"
        await asyncio.sleep(0.02)


async def test_messages_queued_for_a_leaving_member_go_to_the_rest_of_the_group(make):
    broker = make()
    release = asyncio.Event()
    slow_got: list[bytes] = []

    async def slow(event: Event) -> None:
        slow_got.append(event.message.body)
        await release.wait()

    leaving = await broker.subscribe("t", slow, queue="q")
    staying = Collector()
    await broker.subscribe("t", staying, queue="q")
    n = 30
    for i in range(n):
        await broker.publish("t", Message(str(i).encode()))
    await eventually(lambda: len(slow_got) == 1)  # the rest of its share waits in its outbox
    unsubscribing = asyncio.create_task(leaving.unsubscribe())
    await eventually(lambda: broker._subscribers.get(leaving.node.id) is None)
    release.set()
    await asyncio.wait_for(unsubscribing, 3)
    await eventually(lambda: len(staying.events) == n - 1)
    assert sorted(slow_got + staying.bodies) == sorted(str(i).encode() for i in range(n))


async def test_handler_exception_is_redelivered_and_never_reaches_the_publisher(make, caplog):
    broker = make()
    attempts: collections.Counter[bytes] = collections.Counter()

    async def flaky(event: Event) -> None:
        attempts[event.message.body] += 1
        if event.message.body == b"bad" and attempts[b"bad"] == 1:
            raise RuntimeError("first try fails")

    await broker.subscribe("t", flaky)
    await broker.publish("t", Message(b"bad"))
    await broker.publish("t", Message(b"good"))
    await eventually(lambda: attempts[b"bad"] == 2 and attempts[b"good"] == 1)
    assert "first try fails" in caplog.text


async def test_redelivery_is_bounded(make):
    broker = make(max_redeliveries=2)
    tries: list[bytes] = []

    async def always_fails(event: Event) -> None:
        tries.append(event.message.body)
        raise ValueError("poison")

    await broker.subscribe("t", always_fails)
    await broker.publish("t", Message(b"poison"))
    await eventually(lambda: len(tries) == 3)
    marker = Collector()
    await broker.subscribe("t", marker)
    await broker.publish("t", Message(b"after"))
    await eventually(lambda: len(marker.events) == 1 and tries.count(b"after") == 3)
    assert tries.count(b"poison") == 3


async def test_manual_ack(make):
    broker = make(max_redeliveries=1)
    acked: list[bytes] = []
    forgotten: list[bytes] = []

    async def acks(event: Event) -> None:
        acked.append(event.message.body)
        await event.ack()

    async def forgets(event: Event) -> None:
        forgotten.append(event.message.body)

    await broker.subscribe("a", acks, auto_ack=False)
    await broker.subscribe("f", forgets, auto_ack=False)
    await broker.publish("a", Message(b"x"))
    await broker.publish("f", Message(b"y"))
    await eventually(lambda: forgotten == [b"y", b"y"] and acked == [b"x"])


@pytest.mark.parametrize("topic", ["", "a b", None])
async def test_bad_topic_is_a_bad_request(make, topic):
    broker = make()
    with pytest.raises(BadRequest):
        await broker.publish(topic, Message())
    with pytest.raises(BadRequest):
        await broker.subscribe(topic, Collector())


async def test_oversized_message_is_refused(make):
    with pytest.raises(MessageTooLarge):
        await make(max_message_size=4).publish("t", Message(b"12345"))


async def test_lifecycle(make, registry):
    broker = make()
    await broker.subscribe("t", Collector())  # starts lazily
    assert not broker.address.endswith(":0")
    await broker.close()
    await broker.close()
    assert await nodes_of(registry, "t") == []
    with pytest.raises(ConnectionClosed):
        await broker.publish("t", Message(b"x"))
    with pytest.raises(ConnectionClosed):
        await broker.subscribe("t", Collector())
    await broker.start()
    again = Collector()
    await broker.subscribe("t", again)
    await broker.publish("t", Message(b"back"))
    await eventually(lambda: again.bodies == [b"back"])


# -- bad requests --------------------------------------------------------------------------------


def proof(broker: HTTPBroker, node_id: str, body: bytes, secret: bytes | None = None) -> dict[str, str]:
    """The headers of a delivery POST signed as ``broker`` (or with ``secret``) signs them."""
    key = secret if secret is not None else broker._secret
    assert key is not None, "the broker is not started"
    return {_proof.HEADER: _proof.sign(key, node_id, body), "Content-Type": "application/json"}


async def test_bad_requests_get_4xx_and_the_broker_keeps_delivering(make, registry):
    broker = make(max_message_size=16)
    collector = Collector()
    await broker.subscribe("t", collector)
    [(_, node)] = await nodes_of(registry, "t")
    url = f"http://{broker.address}/"
    good = encode("t", Message(b"ok"))
    cases = [
        ("POST", url, node.id, b"{not json", 400),
        ("POST", url, node.id, orjson.dumps({"topic": "t", "body": "!!"}), 400),
        ("POST", url, node.id, encode("other", Message(b"x")), 400),
        ("POST", url, node.id, encode("t", Message(b"x" * 17)), 413),
        ("POST", url, node.id, b"x" * (1024 * 1024), 413),
        ("POST", url, "nobody", good, 404),
        ("POST", url + "elsewhere", node.id, good, 404),
        ("GET", url, node.id, b"", 405),
    ]
    async with aiohttp.ClientSession() as session:
        for method, target, node_id, body, status in cases:
            headers = proof(broker, node_id, body)
            async with session.request(method, target, params={"id": node_id}, data=body, headers=headers) as reply:
                assert reply.status == status, (target, body[:40])
                if status != 405:
                    error = await reply.json()
                    assert error["code"] == status
        # Raw garbage on the socket is the HTTP layer's to refuse.
        reader, writer = await asyncio.open_connection(*broker.address.rsplit(":", 1))
        writer.write(b"\x00\x01garbage\r\n\r\n")
        await writer.drain()
        assert (await asyncio.wait_for(reader.read(12), 2)).startswith(b"HTTP/1.")
        writer.close()
        async with session.post(url, params={"id": node.id}, data=good, headers=proof(broker, node.id, good)) as reply:
            assert reply.status == 204
    await broker.publish("t", Message(b"still works"))
    await eventually(lambda: collector.bodies == [b"ok", b"still works"])


# -- failing nodes -------------------------------------------------------------------------------


async def test_dead_and_hung_nodes_do_not_block_live_ones(make, registry):
    publisher = make(request_timeout=0.5)
    live = Collector()
    await make().subscribe("t", live)
    hung = socket.socket()  # accepts connections (backlog) but never answers
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)
    try:
        addresses = {"dead": f"127.0.0.1:{closed_port()}", "hung": f"127.0.0.1:{hung.getsockname()[1]}"}
        for name, address in addresses.items():
            node = Node(f"{name}-node", address, {"broker": "http", "topic": "t"})
            await registry.register(Service(SERVICE, BROADCAST_VERSION, nodes=[node]))
        await publisher.start()
        await eventually(lambda: known(publisher, "t") == 3)
        n = 30
        started = time.monotonic()
        for i in range(n):
            await publisher.publish("t", Message(str(i).encode()))
        # Waiting on the hung node would take n * request_timeout.
        assert time.monotonic() - started < 2.0, "publish must not wait for failing nodes"
        await eventually(lambda: len(live.events) == n, timeout=3)
        assert live.bodies == [str(i).encode() for i in range(n)]
    finally:
        hung.close()


async def test_a_stalled_subscriber_does_not_hold_up_the_others(make):
    """A subscriber whose handler hangs, with a full outbox, delays neither publish nor the other subscribers.

    Its messages wait in the retry inbox meanwhile, and reach it, in order, once it moves again.
    """
    publisher = make(outbox_size=4, request_timeout=60.0)
    release = asyncio.Event()
    stalled_got: list[bytes] = []

    async def stalled(event: Event) -> None:
        stalled_got.append(event.message.body)
        await release.wait()

    await make().subscribe("t", stalled)
    others = [Collector() for _ in range(3)]
    for other in others:
        await make().subscribe("t", other)
    await publisher.start()
    await eventually(lambda: known(publisher, "t") == 4)
    n = 40
    expected = [str(i).encode() for i in range(n)]

    async def publish_all() -> None:
        for body in expected:
            await publisher.publish("t", Message(body))

    publishing = asyncio.create_task(publish_all())
    try:
        # Serial fan-out waited on the stalled node's outbox: the others got outbox_size + 1 messages, then
        # nothing until its POST timed out (request_timeout, a minute here). stall_timeout is 1s.
        await eventually(lambda: all(len(o.events) == n for o in others), timeout=15, what="the others' messages")
        await asyncio.wait_for(publishing, 5)
        assert all(o.bodies == expected for o in others)
        assert stalled_got == [b"0"]
    finally:
        release.set()
        publishing.cancel()
    await eventually(lambda: len(stalled_got) == n, timeout=10, what="the stalled subscriber to catch up")
    assert stalled_got == expected


async def test_a_subscriber_that_stalled_for_a_while_still_gets_one_publishers_messages_in_order(make):
    """Messages kept in the retry inbox while a node stalled are not overtaken by later ones once it moves."""
    publisher = make(outbox_size=2, stall_timeout=0.2, request_timeout=30.0)
    got: list[bytes] = []

    async def slow_start(event: Event) -> None:
        got.append(event.message.body)
        if len(got) == 1:
            await asyncio.sleep(0.6)  # long enough to count as stalled; then it keeps up again

    await make().subscribe("t", slow_start)
    await publisher.start()
    await eventually(lambda: known(publisher, "t") == 1)
    expected = [str(i).encode() for i in range(60)]
    for body in expected:
        await publisher.publish("t", Message(body))
        await asyncio.sleep(0.02)  # publishes keep coming while the inbox is retried
    await eventually(lambda: len(got) >= len(expected), timeout=10, what="every message")
    assert got == expected


async def test_queue_message_for_a_dead_member_goes_to_a_live_one(make, registry):
    publisher = make()
    live = Collector()
    await make().subscribe("t", live, queue="q")
    dead = Node("dead-member", f"127.0.0.1:{closed_port()}", {"broker": "http", "topic": "t"})
    await registry.register(Service(SERVICE, "q", nodes=[dead]))
    await publisher.start()
    await eventually(lambda: known(publisher, "t") == 2)
    n = 20
    for i in range(n):
        await publisher.publish("t", Message(str(i).encode()))
    await eventually(lambda: len(live.events) == n, timeout=5)
    assert sorted(live.bodies) == sorted(str(i).encode() for i in range(n))


async def register_dead_node(registry: Registry, topic: str) -> Node:
    """A broadcast subscriber node of ``topic`` in the registry whose address refuses connections."""
    node = Node("dead-node", f"127.0.0.1:{closed_port()}", {"broker": "http", "topic": topic})
    await registry.register(Service(SERVICE, BROADCAST_VERSION, nodes=[node]))
    return node


# -- flush and close -----------------------------------------------------------------------------


async def test_close_delivers_what_publish_accepted(make):
    publisher = make()
    own, other = Collector(), Collector()
    await publisher.subscribe("t", own)
    await make().subscribe("t", other)
    await eventually(lambda: known(publisher, "t") == 2)
    n = 20
    for i in range(n):
        await publisher.publish("t", Message(str(i).encode()))
    await publisher.close()
    # A subscriber replies only once its handler ran, so both have them when close returns.
    expected = [str(i).encode() for i in range(n)]
    assert own.bodies == expected
    assert other.bodies == expected


async def test_flush_waits_until_each_message_is_delivered_or_has_failed(make, registry):
    assert await make().flush() is None  # never started: nothing to wait for
    publisher = make(max_redeliveries=0)
    live = Collector()
    await make().subscribe("t", live)
    await register_dead_node(registry, "t")
    await publisher.start()
    await eventually(lambda: known(publisher, "t") == 2)
    await publisher.publish("t", Message(b"once"))
    started = time.monotonic()
    await publisher.flush(timeout=3)
    # The dead node's delivery failed for good (no retries allowed) rather than timing out.
    assert time.monotonic() - started < 1
    assert live.bodies == [b"once"]


async def test_flush_times_out_while_retries_are_pending(make, registry):
    publisher = make(max_redeliveries=3)
    await register_dead_node(registry, "t")
    await publisher.start()
    await eventually(lambda: known(publisher, "t") == 1)
    await publisher.publish("t", Message(b"x"))
    started = time.monotonic()
    with pytest.raises(Timeout, match="1 deliveries still queued"):
        await publisher.flush(timeout=0.2)
    assert time.monotonic() - started < 1
    for bad in (-1, float("nan"), "1", True):
        with pytest.raises(BadRequest):
            await publisher.flush(timeout=bad)


async def test_a_dead_node_does_not_hold_close_past_close_timeout(make, registry, caplog):
    publisher = make(close_timeout=0.3, max_redeliveries=3)
    live = Collector()
    await make().subscribe("t", live)
    await register_dead_node(registry, "t")
    await publisher.start()
    await eventually(lambda: known(publisher, "t") == 2)
    for i in range(5):
        await publisher.publish("t", Message(str(i).encode()))
    started = time.monotonic()
    closing = asyncio.create_task(publisher.close())
    await asyncio.sleep(0.05)
    assert not closing.done()  # still waiting for the dead node...
    with pytest.raises(ConnectionClosed):  # ...and accepting nothing new meanwhile
        await publisher.publish("t", Message(b"late"))
    await closing
    assert time.monotonic() - started < 0.3 + 1.0
    assert live.bodies == [str(i).encode() for i in range(5)]
    assert "closed with 5 deliveries still queued" in caplog.text


class _NoWatchRegistry(MemoryRegistry):
    """A registry without watch whose reads can be made to fail."""

    capabilities = frozenset({"ttl"})
    down = False

    def watch(self, service: str | None = None) -> Watcher:
        raise NotSupported("no watch here")

    async def get_service(self, name: str) -> list[Service]:
        if self.down:
            raise BackendUnavailable("registry is down")
        return await super().get_service(name)


async def test_without_watch_the_cache_is_read_again_and_registry_failure_is_reported():
    registry = _NoWatchRegistry()
    publisher = HTTPBroker(HTTPBrokerOptions(**FAST), registry=registry)
    subscriber = HTTPBroker(HTTPBrokerOptions(**FAST), registry=registry)
    async with publisher, subscriber:
        collector = Collector()
        await subscriber.subscribe("t", collector)
        deadline = time.monotonic() + 3
        while not collector.events:
            assert time.monotonic() < deadline, "the publisher never read the registry again"
            await publisher.publish("t", Message(b"probe"))
            await asyncio.sleep(0.05)
    registry.down = True
    broker = HTTPBroker(HTTPBrokerOptions(**FAST), registry=registry)
    try:
        with pytest.raises(BackendUnavailable):
            await broker.publish("t", Message(b"x"))
    finally:
        await broker.close()


# -- two OS processes ----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def peer(registry_path: Path, topic: str, queue: str | None = None):
    env = dict(os.environ, MICRO_REGISTRY_PATH=str(registry_path))
    for key in [k for k in env if k.startswith(("MICRO_BROKER", "MICRO_REGISTRY_")) and k != "MICRO_REGISTRY_PATH"]:
        del env[key]
    env.pop("MICRO_REGISTRY", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PEER),
        topic,
        *([queue] if queue else []),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        assert line == b"ready\n", line
        yield process
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def read_lines(process, n: int, timeout: float = 5.0) -> list[str]:
    lines = []
    async with asyncio.timeout(timeout):
        while len(lines) < n:
            line = await process.stdout.readline()
            assert line, "the peer exited early"
            lines.append(line.decode().strip())
    return lines


async def test_pub_sub_across_two_os_processes(tmp_path):
    path = tmp_path / "registry.db"
    registry = LocalRegistry(LocalRegistryOptions(path=str(path)))
    publisher = HTTPBroker(HTTPBrokerOptions(**FAST), registry=registry)
    async with peer(path, "cross") as process, publisher:
        local = Collector()
        await publisher.subscribe("cross", local)
        await eventually(lambda: known(publisher, "cross") == 2, what="the other process's subscriber")
        n = 20
        for i in range(n):
            await publisher.publish("cross", Message(f"m{i}".encode()))
        assert await read_lines(process, n) == [f"got m{i}" for i in range(n)]
        await eventually(lambda: len(local.events) == n)

        # A subscriber process that dies without deregistering must not hold up the others.
        process.kill()
        await process.wait()
        for i in range(n):
            await publisher.publish("cross", Message(f"after{i}".encode()))
        await eventually(lambda: len(local.events) == 2 * n)
    await registry.close()


async def test_publish_then_close_reaches_another_os_process(tmp_path):
    path = tmp_path / "registry.db"
    registry = LocalRegistry(LocalRegistryOptions(path=str(path)))
    try:
        async with peer(path, "last-words") as process:
            publisher = HTTPBroker(HTTPBrokerOptions(**FAST), registry=registry)
            try:
                await publisher.start()
                await eventually(lambda: known(publisher, "last-words") == 1, what="the other process's subscriber")
                n = 10
                for i in range(n):
                    await publisher.publish("last-words", Message(f"m{i}".encode()))
            finally:
                await publisher.close()
            assert await read_lines(process, n) == [f"got m{i}" for i in range(n)]
    finally:
        await registry.close()
