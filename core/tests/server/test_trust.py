"""What a caller's headers may and may not decide on the server (issues #10 and #16).

Every test sends hand-built requests: through the transport (on both the memory
and the real TCP transport, see ``rpcstack``) or with a micro client carrying raw
metadata, so nothing the client would normally check stands in the way.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from micro import _mucp
from micro._redact import redact, redact_headers
from micro.auth.base import Access, Resource, Rule
from micro.auth.jwt import JWTAuth
from micro.auth.options import JWTAuthOptions
from micro.auth.wrappers import server_wrapper
from micro.debug.trace import SPAN_ID_HEADER, TRACE_ID_HEADER, MemoryTracer, TracerOptions
from micro.debug.wrappers import trace_handler
from micro.errors import BadRequest, Forbidden, InternalError, NotFound
from micro.transport import Message as Frame
from rpcstack import Stack

PASSWORD = "hunter2-s3cret"
DATABASE = f"postgresql://app:{PASSWORD}@db.internal:5432/orders"


class Admin:
    def __init__(self) -> None:
        self.resets = 0

    async def reset(self, req: dict[str, Any]) -> dict[str, int]:
        self.resets += 1
        return {"resets": self.resets}

    async def status(self) -> str:
        return "fine"


class Orders:
    async def broken(self, req: dict[str, Any]) -> None:
        # What a database driver does: its error quotes the URL it could not reach, password included.
        raise ConnectionError(f"could not connect to {DATABASE}")

    async def quoting(self, req: dict[str, Any]) -> None:
        # A handler that (wrongly) puts a caller's header into its exception text.
        from micro import context

        raise RuntimeError(f"cannot serve {context.get('X-Note')}")

    async def refused(self, req: dict[str, Any]) -> None:
        raise BadRequest(f"the field 'name' is required (config {DATABASE})")


async def raw_call(stack: Stack, header: dict[str, str], body: bytes = b"{}") -> Frame:
    socket = await stack.transport.dial(stack.servers[0].address)
    try:
        await socket.send(Frame(header, body))
        return await socket.recv(timeout=5)
    finally:
        await socket.close()


def wire_error(frame: Frame) -> dict[str, Any]:
    text = frame.header.get(_mucp.ERROR)
    assert text is not None, frame
    error: dict[str, Any] = orjson.loads(text)
    return error


# -- the service name is the server's, not the caller's ---------------------------------------------


async def jwt_guarded(stack: Stack, tmp_path: Path) -> Admin:
    """A server whose auth rules deny ``<name>:Admin.reset`` to everyone and allow everything else."""
    auth = JWTAuth(JWTAuthOptions(key_dir=str(tmp_path / "keys")))
    await auth.start()
    await auth.grant(Rule(id="all", scope="", resource=Resource(name="*", type="*", endpoint="*")))
    await auth.grant(
        Rule(
            id="no-reset",
            scope="",
            resource=Resource(name=stack.name, type="service", endpoint="Admin.reset"),
            access=Access.DENIED,
            priority=10,
        )
    )
    admin = Admin()
    server = stack.server(admin)
    server.wrap(server_wrapper(auth))
    await server.start()
    return admin


async def test_a_deny_rule_cannot_be_bypassed_by_naming_another_service(stack: Stack, tmp_path: Path) -> None:
    admin = await jwt_guarded(stack, tmp_path)
    client = stack.client()
    with pytest.raises(Forbidden):
        await client.call(stack.name, "Admin.reset", {})
    address = stack.servers[0].address
    # The same node, asked under another name (a micro client with an explicit address, then a raw frame).
    with pytest.raises(NotFound, match="this node serves") as caught:
        await client.call("anything.else", "Admin.reset", {}, address=address)
    assert caught.value.code == 404
    for name in ("anything.else", stack.name.upper(), "*"):
        header = {"Micro-Service": name, "Micro-Endpoint": "Admin.reset", "Content-Type": "application/json"}
        assert wire_error(await raw_call(stack, header))["code"] == 404
    assert admin.resets == 0
    # Other endpoints still answer, with or without a Micro-Service header.
    assert await client.call(stack.name, "Admin.status") == "fine"
    frame = await raw_call(stack, {"Micro-Endpoint": "Admin.status", "Content-Type": "application/json"}, b"")
    assert orjson.loads(frame.body) == "fine"


async def test_the_handler_sees_the_servers_own_name(stack: Stack) -> None:
    seen: list[str] = []
    server = stack.server(Admin())

    def wrapper(next: Any) -> Any:
        async def handler(request: Any) -> Any:
            seen.append(request.service)
            return await next(request)

        return handler

    server.wrap(wrapper)
    await server.start()
    await raw_call(stack, {"Micro-Endpoint": "Admin.status", "Content-Type": "application/json"}, b"")
    await raw_call(stack, {"X-Micro-Service": stack.name, "Micro-Method": "Admin.status"}, b"")
    assert seen == [stack.name, stack.name]


async def test_a_hostile_service_name_is_not_echoed_unbounded(stack: Stack) -> None:
    await stack.server(Admin()).start()
    header = {"Micro-Service": "x" * 5000, "Micro-Endpoint": "Admin.status"}
    error = wire_error(await raw_call(stack, header))
    assert error["code"] == 404
    assert len(error["detail"]) < 300


# -- the Timeout header -----------------------------------------------------------------------------

BAD_TIMEOUTS = [
    "9" * 300,  # hundreds of digits: int / 1e9 overflows a float
    "1" + "0" * 400 + "s",  # a duration whose float is infinite
    "1e999",
    "nan",
    "NaN",
    "inf",
    "-1",
    "-5s",
    "",
    " ",
    "soon",
    "٣٠",  # Arabic-Indic digits: str.isdigit() says yes
    "5sé",
    "10000000000000000000000000",  # 1e25 ns: about 317 million years
]


@pytest.mark.parametrize("value", BAD_TIMEOUTS, ids=lambda v: repr(v[:12]))
async def test_a_bad_timeout_header_is_a_typed_400_without_traceback(
    stack: Stack, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    await stack.server(Admin()).start()
    header = {"Micro-Endpoint": "Admin.reset", "Content-Type": "application/json", "Timeout": value}
    with caplog.at_level(logging.WARNING):
        frame = await raw_call(stack, header)
    error = wire_error(frame)
    assert error["code"] == 400, error
    assert "Timeout header" in error["detail"]
    assert len(error["detail"]) < 300
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert stack.servers[0]._inflight == set()


def test_decode_timeout_accepts_what_go_sends_and_nothing_else() -> None:
    assert _mucp.decode_timeout("5000000000") == 5.0
    assert _mucp.decode_timeout("250ms") == 0.25
    assert _mucp.decode_timeout(str(int(_mucp.MAX_TIMEOUT * 1e9))) == _mucp.MAX_TIMEOUT
    for value in BAD_TIMEOUTS:
        with pytest.raises(BadRequest, match="Timeout"):
            _mucp.decode_timeout(value)


# -- internal errors and secrets --------------------------------------------------------------------


async def test_an_internal_error_sends_a_reference_and_logs_the_detail_masked(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    await stack.server(Orders()).start()
    client = stack.client()
    with caplog.at_level(logging.ERROR, logger="micro.server"), pytest.raises(InternalError) as caught:
        await client.call(stack.name, "Orders.broken", {})
    text = str(caught.value) + repr(caught.value.to_dict())
    assert PASSWORD not in text
    assert "could not connect" not in text
    assert "ConnectionError" not in text
    assert "Orders.broken: internal error (ref " in str(caught.value)
    reference = str(caught.value).split("ref ")[1][:12]
    (record,) = [r for r in caplog.records if reference in r.getMessage()]
    logged = record.getMessage()
    assert "postgresql://app:***@db.internal:5432/orders" in logged
    assert "Traceback" in logged
    assert PASSWORD not in logged
    assert record.exc_info is None  # formatted, masked, by the server: no handler formats the raw traceback


async def test_a_deliberate_error_keeps_its_message_with_credentials_masked(stack: Stack) -> None:
    await stack.server(Orders()).start()
    with pytest.raises(BadRequest) as caught:
        await stack.client().call(stack.name, "Orders.refused", {})
    assert "the field 'name' is required" in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert "app:***@db.internal" in str(caught.value)


async def test_a_hostile_value_never_reaches_the_reply_nor_another_callers_trace(stack: Stack) -> None:
    tracer = MemoryTracer(TracerOptions(sample=1.0))  # every call recorded: all three spans are read back
    server = stack.server(Orders(), Admin())
    server.wrap(trace_handler(tracer))
    await server.start()
    client = stack.client()
    hostile = "HOSTILE-9f3c token=abc123"

    # Caller B makes a trace of its own.
    trace_b = "4bf92f3577b34da6a3ce929d0e0e4736"
    await client.call(
        stack.name, "Admin.status", metadata={TRACE_ID_HEADER: trace_b, SPAN_ID_HEADER: "00f067aa0ba902b7"}
    )

    # Caller A joins B's trace id and sends a value the handler quotes in its exception.
    with pytest.raises(InternalError) as caught:
        await client.call(stack.name, "Orders.quoting", {}, metadata={TRACE_ID_HEADER: trace_b, "X-Note": hostile})
    assert "HOSTILE" not in str(caught.value)
    # A hostile trace id is not carried: the span starts a trace of its own.
    evil_trace = "<script>" + "A" * 200
    await client.call(stack.name, "Admin.status", metadata={TRACE_ID_HEADER: evil_trace, SPAN_ID_HEADER: "\x00"})

    spans = [span.to_dict() for span in await tracer.read()]
    assert len(spans) == 3
    dumped = orjson.dumps(spans).decode()
    assert "HOSTILE" not in dumped
    assert "abc123" not in dumped
    assert "<script>" not in dumped
    assert "\\u0000" not in dumped
    (failed,) = [s for s in spans if s["name"] == "Orders.quoting"]
    assert failed["trace_id"] == trace_b
    assert failed["metadata"]["error"].startswith("InternalError: Orders.quoting: internal error (ref ")
    assert failed["metadata"]["service"] == stack.name


def test_redact_masks_credentials_and_leaves_the_rest() -> None:
    assert redact(f"failed: {DATABASE}") == "failed: postgresql://app:***@db.internal:5432/orders"
    assert redact("redis://:pw@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert redact("Authorization: Bearer abc.def-ghi") == "Authorization: Bearer ***"
    assert redact("header authorization=Basic dXNlcjpwYXNz") == "header authorization=Basic ***"
    assert redact('{"password": "x y", "token": "t0k"}') == '{"password": "***", "token": "***"}'
    assert redact("api_key=K1&page=2") == "api_key=***&page=2"
    assert redact("jwt eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln end") == "jwt *** end"
    plain = "GET http://host:8080/path?page=2 took 5 tokens=3"
    assert redact(plain) == plain
    assert redact_headers({"Authorization": "Bearer x", "X-Api-Key": "k", "X-Note": DATABASE}) == {
        "Authorization": "***",
        "X-Api-Key": "***",
        "X-Note": "postgresql://app:***@db.internal:5432/orders",
    }


async def test_a_huge_content_type_is_a_short_400(stack: Stack) -> None:
    await stack.server(Admin()).start()
    error = wire_error(await raw_call(stack, {"Micro-Endpoint": "Admin.status", "Content-Type": "a/" + "b" * 5000}))
    assert error["code"] == 400
    assert "Content-Type header of 5002 characters" in error["detail"]
    assert len(error["detail"]) < 300


async def test_bad_timeouts_in_hand_built_tcp_frames() -> None:
    """The same over a raw socket speaking the tcp transport's framing, no micro client or transport involved."""
    import asyncio
    import struct

    import msgpack
    from micro.transport.tcp import END, MSG, OPEN, PREFACE, TCPTransport

    stack = Stack(name="test.rawtimeouts", transport_type=TCPTransport)
    server = stack.server(Admin(), address="127.0.0.1:0")
    await server.start()
    head = struct.Struct("!IIBI")
    host, _, port = server.address.rpartition(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(PREFACE)
        for stream, value in enumerate(("9" * 300, "1e999", "nan", "-1", "", "٣٠"), start=1):
            header = msgpack.packb({"Micro-Endpoint": "Admin.reset", "Micro-Id": str(stream), "Timeout": value})
            body = b"{}"
            writer.write(head.pack(9 + len(header) + len(body), stream, OPEN | MSG | END, len(header)) + header + body)
            size, got, _flags, hsize = head.unpack(await asyncio.wait_for(reader.readexactly(13), 5))
            rest = await reader.readexactly(size - 9)
            assert got == stream
            reply = msgpack.unpackb(rest[:hsize])
            error = orjson.loads(reply["Micro-Error"])
            assert error["code"] == 400, (value, error)
            assert "Timeout header" in error["detail"]
    finally:
        writer.close()
        await writer.wait_closed()
        await server.stop()
        await stack.transport.close()
