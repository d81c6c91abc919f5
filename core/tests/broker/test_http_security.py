"""HTTPBroker's subscriber endpoint: signed deliveries, TLS, limits, and what its logs say."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import socket
import time
from pathlib import Path

import aiohttp
import micro
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from micro._private import local_secret
from micro.broker import Message, _proof
from micro.broker.http import BROADCAST_VERSION, SERVICE, HTTPBroker, HTTPBrokerOptions, encode, node_tag
from micro.errors import InvalidOption, Unauthorized
from micro.registry import Node, Service
from micro.registry.memory import MemoryRegistry

from .conftest import Collector, eventually

FAST = {"retry_interval": 0.05, "request_timeout": 1.0}
SECRET = "a shared secret of the test brokers"
OTHER_SECRET = "not the same secret at all, no"


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
    return sum(len(nodes) for nodes in broker._routes.get(topic, {}).values())


async def subscribed(make, topic: str = "t", **options) -> tuple[HTTPBroker, Collector, Node]:
    """A broker with one broadcast subscriber on ``topic``: (broker, what it got, its node)."""
    broker = make(**options)
    collector = Collector()
    subscriber = await broker.subscribe(topic, collector)
    return broker, collector, subscriber.node  # type: ignore[attr-defined]


def signed(secret: bytes, node_id: str, body: bytes, now: float | None = None) -> dict[str, str]:
    return {_proof.HEADER: _proof.sign(secret, node_id, body, now), "Content-Type": "application/json"}


async def raw_exchange(address: str, request: bytes, timeout: float = 5.0) -> bytes:
    """Send ``request`` on a new connection; what comes back until the server closes it (or ``timeout``)."""
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


# -- signed deliveries ---------------------------------------------------------------------------


async def test_forged_posts_are_refused_and_never_delivered(make):
    """Right URL and node id, but no proof, a wrong one, a stale one or a replayed one: 401, no delivery."""
    broker, collector, node = await subscribed(make)
    assert broker._secret is not None
    key = broker._secret
    url = f"http://{broker.address}/"
    body = encode("t", Message(b"forged"))
    other_body = encode("t", Message(b"other"))
    cases = {
        "no proof": {"Content-Type": "application/json"},
        "garbage proof": {_proof.HEADER: "t=1,n=2,h=3,b=4"},
        "wrong secret": signed(OTHER_SECRET.encode(), node.id, body),
        "signed for another node": signed(key, "micro.http.broker-someone-else", body),
        "signed for another body": signed(key, node.id, other_body),
        "signed two minutes ago": signed(key, node.id, body, now=time.time() - 120),
        "signed two minutes ahead": signed(key, node.id, body, now=time.time() + 120),
    }
    async with aiohttp.ClientSession() as session:
        for what, headers in cases.items():
            async with session.post(url, params={"id": node.id}, data=body, headers=headers) as reply:
                assert reply.status == 401, what
                error = await reply.json()
                assert error["code"] == 401
        good = encode("t", Message(b"genuine"))
        headers = signed(key, node.id, good)
        async with session.post(url, params={"id": node.id}, data=good, headers=headers) as reply:
            assert reply.status == 204
        async with session.post(url, params={"id": node.id}, data=good, headers=headers) as reply:
            assert reply.status == 401, "a replayed delivery was accepted"
            assert "used before" in (await reply.json())["detail"]
    await broker.publish("t", Message(b"published"))
    await eventually(lambda: len(collector.events) == 2)
    assert collector.bodies == [b"genuine", b"published"]


async def test_an_unsigned_post_is_refused_before_its_body_is_read(make):
    broker, collector, node = await subscribed(make, read_timeout=30.0)
    started = time.monotonic()
    # Announces 3 MB and sends none of it: the reply must not wait for the body (read_timeout is 30s).
    head = f"POST /?id={node.id} HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\n\r\n".encode()
    answer = await raw_exchange(broker.address, head)
    assert answer.startswith(b"HTTP/1.1 401"), answer[:40]
    assert time.monotonic() - started < 5
    assert collector.events == []


async def test_a_signed_post_over_the_size_limit_is_refused_before_its_body_is_read(make):
    broker, _, node = await subscribed(make, max_message_size=1024, read_timeout=30.0)
    length = broker._max_request + 1
    assert broker._secret is not None
    proof = _proof.sign(broker._secret, node.id, b"x" * length)
    head = f"POST /?id={node.id} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{_proof.HEADER}: {proof}\r\n\r\n"
    answer = await raw_exchange(broker.address, head.encode())
    assert answer.startswith(b"HTTP/1.1 413"), answer[:40]


async def test_the_default_secret_is_the_users_local_secret(make):
    broker, _, _ = await subscribed(make)
    assert broker._secret == local_secret()


async def test_brokers_deliver_with_the_same_configured_secret_and_refuse_any_other(make, caplog):
    publisher = make(secret=SECRET, max_redeliveries=0)
    _, same, _ = await subscribed(make, secret=SECRET)
    _, other, _ = await subscribed(make, secret=OTHER_SECRET)
    _, local, _ = await subscribed(make)  # the local secret
    await publisher.start()
    await eventually(lambda: known(publisher, "t") == 3)
    await publisher.publish("t", Message(b"for the secret holders"))
    await publisher.flush(timeout=5)
    assert same.bodies == [b"for the secret holders"]
    assert other.events == []
    assert local.events == []
    assert caplog.text.count("with 401 (it does not accept this broker's proof: is the secret the same?)") == 2


def test_replays_remember_each_nonce_for_the_window_within_a_bound():
    secret = b"k" * 32
    now = 1_000_000.0

    def proof(at: float) -> _proof.Proof:
        return _proof.verify_head(secret, _proof.sign(secret, "n", b"", now=at), "n", 0, window=10, now=at)

    replays = _proof.Replays(window=10, limit=2)
    first, second, third = proof(now), proof(now + 1), proof(now + 2)
    replays.admit(first, now=now + 2)
    with pytest.raises(Unauthorized):
        replays.admit(first, now=now + 2)
    replays.admit(second, now=now + 2)
    replays.admit(third, now=now + 2)  # full: the oldest is forgotten and becomes the floor
    assert len(replays) == 2
    with pytest.raises(Unauthorized):
        replays.admit(first, now=now + 2)  # forgotten, but under the floor
    with pytest.raises(Unauthorized):
        replays.admit(proof(now - 1), now=now + 2)  # fresh nonce, older than the floor
    replays.admit(proof(now + 3), now=now + 15)  # the others expired meanwhile
    assert len(replays) == 1


# -- TLS -----------------------------------------------------------------------------------------


def self_signed(directory: Path, name: str) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (its own CA) and its key, as PEM files: (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


@pytest.fixture
def tls(tmp_path):
    cert, key = self_signed(tmp_path, "broker")
    return {"tls": True, "cert_file": cert, "key_file": key, "ca_file": cert}


async def test_tls_delivers_between_brokers_that_trust_the_certificate(make, registry, tls):
    publisher = make(**tls)
    _subscriber, collector, node = await subscribed(make, **tls)
    assert node.metadata["secure"] == "true"
    await publisher.start()
    await eventually(lambda: known(publisher, "t") == 1)
    await publisher.publish("t", Message(b"over tls"))
    await eventually(lambda: collector.bodies == [b"over tls"])


async def test_plain_http_to_a_tls_endpoint_fails(make, tls):
    broker, collector, node = await subscribed(make, **tls)
    assert broker._secret is not None
    body = encode("t", Message(b"in clear"))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientError):
            async with session.post(
                f"http://{broker.address}/",
                params={"id": node.id},
                data=body,
                headers=signed(broker._secret, node.id, body),
            ) as reply:
                await reply.read()
    # A publisher without tls posts in clear too: nothing arrives.
    publisher = make(max_redeliveries=0)
    await publisher.start()
    await eventually(lambda: known(publisher, "t") == 1)
    await publisher.publish("t", Message(b"in clear"))
    await publisher.flush(timeout=5)
    assert collector.events == []


async def test_the_publisher_verifies_the_subscribers_certificate(make, tls, tmp_path, caplog):
    impostor_cert, impostor_key = self_signed(tmp_path, "impostor")
    # The subscriber presents a certificate the publisher's CA did not issue.
    _, collector, _ = await subscribed(make, tls=True, cert_file=impostor_cert, key_file=impostor_key)
    publisher = make(**tls, max_redeliveries=0)
    await publisher.start()
    await eventually(lambda: known(publisher, "t") == 1)
    with caplog.at_level(logging.INFO, logger="micro.broker"):
        await publisher.publish("t", Message(b"for the real subscriber only"))
        await publisher.flush(timeout=5)
    assert collector.events == []
    assert "ClientConnectorCertificateError" in caplog.text


# -- limits of the endpoint ----------------------------------------------------------------------


async def test_a_body_that_does_not_arrive_in_read_timeout_gets_408(make):
    broker, collector, node = await subscribed(make, read_timeout=0.3)
    assert broker._secret is not None
    body = encode("t", Message(b"slow"))
    proof = _proof.sign(broker._secret, node.id, body)
    head = f"POST /?id={node.id} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{_proof.HEADER}: {proof}\r\n\r\n"
    started = time.monotonic()
    answer = await raw_exchange(broker.address, head.encode() + body[:5])
    assert answer.startswith(b"HTTP/1.1 408"), answer[:40]
    assert time.monotonic() - started < 5
    assert collector.events == []


async def test_a_connection_that_sends_nothing_is_closed_after_idle_timeout(make):
    broker, _, _ = await subscribed(make, idle_timeout=0.3)
    started = time.monotonic()
    assert await raw_exchange(broker.address, b"", timeout=10) == b""
    assert time.monotonic() - started < 5
    # An unfinished request head counts as idle too.
    assert await raw_exchange(broker.address, b"POST / HTTP/1.1\r\nHost:", timeout=10) == b""


async def test_connections_over_max_connections_are_closed_at_once(make):
    broker, collector, _ = await subscribed(make, max_connections=2, idle_timeout=30.0)
    host, port = broker.address.rsplit(":", 1)
    held = [await asyncio.open_connection(host, int(port)) for _ in range(2)]
    await eventually(lambda: broker._runner is not None and len(broker._runner.server.connections) == 2)
    try:
        assert await raw_exchange(broker.address, b"", timeout=5) == b""
    finally:
        for _, writer in held:
            writer.close()
    await eventually(lambda: len(broker._runner.server.connections) == 0)
    await broker.publish("t", Message(b"room again"))
    await eventually(lambda: collector.bodies == [b"room again"])


# -- options and logs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"secret": "too short"},
        {"tls": True},
        {"key_file": "key.pem"},
        {"max_connections": 0},
        {"max_concurrent_posts": 0},
        {"read_timeout": 0},
        {"idle_timeout": -1},
        {"stall_timeout": 0},
        {"auth_window": float("nan")},
    ],
)
def test_bad_security_and_limit_options(options):
    with pytest.raises(InvalidOption) as info:
        HTTPBrokerOptions(**options)
    assert info.value.option in options or info.value.option == "cert_file"


def test_the_secret_comes_from_the_environment_and_is_never_shown():
    broker = micro.create("broker", "http", environ={"MICRO_BROKER_SECRET": SECRET})
    assert broker.options.secret == SECRET
    assert SECRET not in repr(broker.options)
    with pytest.raises(InvalidOption) as info:
        HTTPBrokerOptions(secret="short secret")
    assert "short secret" not in str(info.value)


async def test_logs_name_no_node_ids_and_no_addresses(make, registry, caplog):
    """Debug.logs hands log lines to callers: subscriber node ids and inbox addresses stay out of them."""
    caplog.set_level(logging.DEBUG, logger="micro")
    publisher = make(max_redeliveries=0)
    _, _, refusing = await subscribed(make, secret=OTHER_SECRET)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead_address = f"127.0.0.1:{probe.getsockname()[1]}"
    dead = Node("micro.http.broker-dead-node", dead_address, {"broker": "http", "topic": "t"})
    await registry.register(Service(SERVICE, BROADCAST_VERSION, nodes=[dead]))
    await publisher.start()
    await eventually(lambda: known(publisher, "t") == 2)
    await publisher.publish("t", Message(b"x"))
    await publisher.flush(timeout=5)
    text = caplog.text
    assert node_tag(dead.id) in text
    assert node_tag(refusing.id) in text
    for secret_ish in (dead.id, refusing.id, dead_address, refusing.address):
        assert secret_ish not in text


async def test_malformed_requests_are_one_line_without_a_traceback(make, caplog):
    """aiohttp logged each request it could not parse as an ERROR with a traceback: a peer could fill the log."""
    broker, _, _ = await subscribed(make)
    too_long = b"POST / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 10_000 + b"\r\n\r\n"
    too_many = b"POST / HTTP/1.1\r\n" + b"".join(b"h%d: v\r\n" % i for i in range(500)) + b"\r\n"
    with caplog.at_level(logging.DEBUG):
        for request in (too_long, too_many, too_long):
            reply = await raw_exchange(broker.address, request)
            assert reply.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), reply[:80]
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR], caplog.text
    lines = [r.getMessage() for r in caplog.records if "malformed HTTP request" in r.getMessage()]
    assert len(lines) == 1, lines  # rate-limited: one line for the three
    assert lines[0].startswith("http broker: refused a malformed HTTP request: ")


async def test_a_burst_of_connections_does_not_overshoot_max_connections(make):
    """aiohttp counts a connection a loop turn after it is accepted: a batch of accepts overshot the limit."""
    broker, _, _ = await subscribed(make, max_connections=20)
    host, port = broker.address.rsplit(":", 1)
    clients = await asyncio.gather(*(asyncio.open_connection(host, int(port)) for _ in range(200)))
    try:
        await asyncio.sleep(0.5)
        open_here = len(broker._runner.server.connections)
        assert open_here <= 20, f"{open_here} connections open, max_connections 20"
    finally:
        for _, writer in clients:
            writer.close()
