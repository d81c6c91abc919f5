"""Who may call what: auth rules that a caller's headers cannot get around, and TLS that is required."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import micro
import pytest
from conftest import Figure
from micro.errors import MicroError
from micro.transport import Message, Transport
from procs import ServiceProcess


def _header(service: str, endpoint: str, n: int) -> dict[str, str]:
    return {
        "Micro-Id": f"attempt-{n}",
        "Content-Type": "application/json",
        "Micro-Service": service,
        "Micro-Endpoint": endpoint,
    }


async def _ask(transport: Transport, address: str, header: dict[str, str]) -> Message:
    async with await transport.dial(address) as socket:
        await socket.send(Message(header, b"{}"))
        return await socket.recv(timeout=10)


@pytest.fixture
async def transport() -> Any:
    made = micro.create("transport", cls=Transport)
    async with made:
        yield made


def _spoofs(name: str) -> dict[str, dict[str, str]]:
    """Requests for the denied endpoint that name the service otherwise than the rule does."""
    spoofs: dict[str, dict[str, str]] = {}
    for label, service in (
        ("another service", "not-" + name),
        ("a wildcard", "*"),
        ("an empty name", ""),
        ("another case", name.upper()),
        ("padding", name + " "),
    ):
        spoofs[label] = _header(service, "Echo.secret", len(spoofs))
    go = _header(name, "Echo.secret", 90)
    go["X-Micro-Service"] = go.pop("Micro-Service") + "-x"  # Go's spelling only, naming another service
    spoofs["Go's X-Micro-Service spelling"] = go
    method = _header("not-" + name, "Echo.hello", 91)
    method["Micro-Method"] = "Echo.secret"  # the endpoint given twice, differently
    spoofs["Micro-Method against Micro-Endpoint"] = method
    return spoofs


async def test_headers_do_not_get_around_a_deny_rule(
    spawn: Any, unique: str, transport: Transport, figure: Figure
) -> None:
    server: ServiceProcess = await spawn(unique, {"RELIABILITY_DENY": "Echo.secret"})
    honest = await _ask(transport, server.address, _header(unique, "Echo.secret", 0))
    assert json.loads(honest.header["Micro-Error"])["code"] == 403
    allowed = await _ask(transport, server.address, _header(unique, "Echo.hello", 1))
    assert "Micro-Error" not in allowed.header, allowed.header
    for label, header in _spoofs(unique).items():
        reply = await _ask(transport, server.address, header)
        assert b"only for the allowed" not in reply.body, f"{label}: the deny rule was bypassed"
        assert "Micro-Error" in reply.header, f"{label}: answered without an error"
    figure("auth bypass attempts through routing headers, all refused", len(_spoofs(unique)))
    await server.stop()


async def test_a_tls_service_refuses_plain_connections(
    spawn: Any, unique: str, tls_files: dict[str, str], figure: Figure
) -> None:
    env = {
        "MICRO_TRANSPORT_TLS": "true",
        "MICRO_TRANSPORT_CERT_FILE": tls_files["cert_file"],
        "MICRO_TRANSPORT_KEY_FILE": tls_files["key_file"],
    }
    server: ServiceProcess = await spawn(unique, env)
    plain = micro.create("transport", cls=Transport)
    async with plain:
        with pytest.raises(MicroError):
            await _ask(plain, server.address, _header(unique, "Echo.hello", 0))
    # Plain bytes on the TLS port: the server drops the connection, it never answers in clear.
    host, _, port = server.address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"MICRO/1\n" + b"\x00" * 64)
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 10) == b""
    writer.close()
    secure = micro.create("transport", cls=Transport, tls=True, ca_file=tls_files["ca_file"])
    async with secure:
        reply = await _ask(secure, server.address, _header(unique, "Echo.hello", 1))
    assert json.loads(reply.body)["message"] == "Hello None"
    figure("TLS required: plain dial and plain bytes refused, verified TLS call served", "yes")
    await server.stop()


async def test_debug_endpoints_answer_no_stranger(
    spawn: Any, unique: str, transport: Transport, figure: Figure
) -> None:
    """With auth at its default, Debug.logs/stats/trace answer only the service's own user (a local
    proof); a caller without one, or with a forged one, gets an error and no data."""
    server: ServiceProcess = await spawn(unique)
    refused = 0
    for endpoint in ("Debug.logs", "Debug.stats", "Debug.trace"):
        for proof in (None, "v1.0.00.00", "garbage"):
            header = _header(unique, endpoint, refused)
            if proof is not None:
                header["Micro-Local-Proof"] = proof
            reply = await _ask(transport, server.address, header)
            error = reply.header.get("Micro-Error")
            assert error is not None, f"{endpoint} answered a stranger: {reply.body[:80]!r}"
            assert json.loads(error)["code"] in (401, 403), error
            refused += 1
    figure("Debug endpoints: calls without a valid local proof refused", refused)
    await server.stop()


async def test_a_forged_broker_delivery_is_refused(spawn: Any, unique: str, figure: Figure) -> None:
    """curl posts to the subscriber's http broker port with the right URL and node id but no proof:
    401, and the subscriber never sees it; a real publish still arrives."""
    await spawn(unique)
    async with micro.create("registry") as registry:
        nodes = [
            node
            for service in await registry.get_service("micro.http.broker")
            for node in service.nodes
            if node.metadata.get("topic") == f"{unique}.events"
        ]
    assert nodes, "the subscriber's broker node is not registered"
    node = nodes[0]
    # The envelope a genuine delivery has (see micro.broker.http.encode), carrying {"forged": true}.
    forged = json.dumps(
        {
            "topic": f"{unique}.events",
            "header": {"Content-Type": "application/json"},
            "body": base64.b64encode(b'{"forged": true}').decode(),
        }
    )
    curl = await asyncio.create_subprocess_exec(
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data",
        forged,
        f"http://{node.address}/?id={node.id}",
        stdout=asyncio.subprocess.PIPE,
    )
    status, _ = await curl.communicate()
    assert status == b"401", status
    client = micro.create("client")
    async with client:
        await client.publish(f"{unique}.events", {"genuine": True})
        for _ in range(200):
            received = await client.call(unique, "Echo.received", {})
            if received:
                break
            await asyncio.sleep(0.05)
    assert received == [{"genuine": True}]
    figure("http broker: a forged delivery (curl, right URL and node id, no proof) refused with", int(status))
