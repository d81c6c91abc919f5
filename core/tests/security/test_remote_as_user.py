"""Another local user calling the user's service over loopback: no Debug data, no error details.

The attacker is the real second user of ``conftest.py``; it runs the system Python with the
standard library only (micro is not readable to it) and speaks the tcp transport's wire format
by hand, as any local process could. What it tries: the Debug endpoints without a proof, with a
made-up proof, and a handler whose exception text holds a database password.
"""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
from pathlib import Path
from typing import Any

import micro
import pytest

from .conftest import _SETPRIV, Attacker

SYSTEM_PYTHON = "/usr/bin/python3"
SECRET = "hunter2-db-password"

# One request per argument after host and port, "endpoint[:proof]"; prints one JSON line per reply.
_CALLER = r"""
import json, socket, struct, sys

def pack_str(text):
    data = text.encode()
    if len(data) < 32:
        return bytes([0xA0 | len(data)]) + data
    return bytes([0xD9, len(data)]) + data

def pack_map(items):
    out = bytes([0x80 | len(items)])
    for key, value in items.items():
        out += pack_str(key) + pack_str(value)
    return out

def unpack(data, at):
    tag = data[at]
    if tag & 0xF0 == 0x80:
        size, at, items = tag & 0x0F, at + 1, {}
        for _ in range(size):
            key, at = unpack(data, at)
            items[key], at = unpack(data, at)
        return items, at
    if tag & 0xE0 == 0xA0:
        size, at = tag & 0x1F, at + 1
    elif tag == 0xD9:
        size, at = data[at + 1], at + 2
    elif tag == 0xDA:
        size, at = struct.unpack("!H", data[at + 1 : at + 3])[0], at + 3
    else:
        raise ValueError(hex(tag))
    return data[at : at + size].decode(), at + size

def exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data

host, port = sys.argv[1], int(sys.argv[2])
for stream, spec in enumerate(sys.argv[3:], start=1):
    endpoint, _, proof = spec.partition(":")
    sock = socket.create_connection((host, port), timeout=10)
    header = {"Micro-Endpoint": endpoint, "Micro-Id": str(stream), "Content-Type": "application/json"}
    if proof:
        header["Micro-Local-Proof"] = proof
    head = pack_map(header)
    body = b"{}"
    sock.sendall(b"MICRO/1\n" + struct.pack("!IIBI", 9 + len(head) + len(body), 1, 0x07, len(head)) + head + body)
    while True:
        size, sid, flags, hsize = struct.unpack("!IIBI", exact(sock, 13))
        rest = exact(sock, size - 9)
        if sid == 1 and flags & 0x02:
            reply, _ = unpack(rest[:hsize], 0) if hsize else ({}, 0)
            print(json.dumps({"endpoint": endpoint, "header": reply, "body": rest[hsize:].decode("utf-8", "replace")}))
            break
    sock.close()
"""


class Leaky:
    async def fail(self, req: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError(f"could not connect to postgres://app:{SECRET}@db.internal/prod")


async def _as(attacker: Attacker, *argv: str) -> str:
    process = await asyncio.create_subprocess_exec(
        str(_SETPRIV),
        f"--reuid={attacker.uid}",
        f"--regid={attacker.gid}",
        "--clear-groups",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin"},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, f"the attacker's caller failed: {err.decode()}"
    return out.decode()


@pytest.mark.skipif(shutil.which("python3", path="/usr/bin") is None, reason="no system Python for the attacker")
async def test_another_user_reads_no_debug_data_and_no_error_details(attacker: Attacker, shared: Path) -> None:
    script = shared / "caller.py"
    script.write_text(_CALLER)
    script.chmod(0o644)
    service = micro.Service("victim", handle_signals=False, environ={})
    service.handle(Leaky())
    async with service:
        host, _, port = service.server.address.rpartition(":")
        out = await _as(
            attacker,
            SYSTEM_PYTHON,
            str(script),
            host,
            port,
            "Debug.logs",
            "Debug.stats",
            "Debug.trace",
            "Debug.logs:v1.0.00.00",
            "Leaky.fail",
            "Debug.logs",
        )
    replies = [json.loads(line) for line in out.splitlines()]
    assert [r["endpoint"] for r in replies] == [
        "Debug.logs",
        "Debug.stats",
        "Debug.trace",
        "Debug.logs",
        "Leaky.fail",
        "Debug.logs",
    ]
    for reply in replies:
        error = reply["header"].get("Micro-Error")
        assert error is not None, f"{reply['endpoint']} answered the other user: {reply['body'][:100]!r}"
        code = json.loads(error)["code"]
        if reply["endpoint"].startswith("Debug."):
            assert code in (401, 403), reply
        else:
            assert code == 500, reply
        assert SECRET not in json.dumps(reply), f"{reply['endpoint']} showed the password to the other user"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_another_user_cannot_post_into_the_users_broker_inbox(attacker: Attacker) -> None:
    """The other user learns the inbox address and node id (here: handed to it) and posts a well-formed
    delivery with curl: refused with 401, and the subscriber never sees it."""
    got: list[Any] = []

    async def take(event: dict[str, Any]) -> None:
        got.append(event)

    service = micro.Service("inbox-victim", handle_signals=False, environ={})
    service.subscribe("victim.events", take)
    async with service:
        (node,) = [
            node
            for entry in await service.registry.get_service("micro.http.broker")
            for node in entry.nodes
            if node.metadata.get("topic") == "victim.events"
        ]
        forged = json.dumps(
            {
                "topic": "victim.events",
                "header": {"Content-Type": "application/json"},
                "body": base64.b64encode(b'{"forged": true}').decode(),
            }
        )
        status = await _as(
            attacker,
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
        )
        await service.client.publish("victim.events", {"genuine": True})
        for _ in range(200):
            if got:
                break
            await asyncio.sleep(0.05)
    assert status == "401"
    assert got == [{"genuine": True}]
