"""JSON bodies over gRPC: what a gateway, ``micro call`` or a caller without the types sends to a micro server.

The server's endpoints keep their own wire format (protobuf from a ``.proto`` or from ``micro proto``'s
description); a call that says ``micro-body-type: application/json`` is read and answered in JSON instead.
No ``from __future__ import annotations``: handlers here are read for their hints at registration.
"""

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from micro import context
from micro.errors import BadRequest, ConnectionClosed
from micro.registry.local import LocalRegistry
from micro.registry.memory import MemoryRegistry
from micro.selector.cache import RandomSelector
from micro_grpc import GRPCClient, GRPCServer, GRPCServerOptions
from micro_grpc._meta import BODY_TYPE, inbound, outbound


@dataclass
class HelloRequest:
    name: str
    times: int = 1


@dataclass
class HelloReply:
    message: str


class Greeter:
    seen: list[dict[str, str]]

    def __init__(self) -> None:
        self.seen = []

    async def hello(self, req: HelloRequest) -> HelloReply:
        self.seen.append(dict(context.metadata()))
        return HelloReply(message=" ".join([f"hi {req.name}"] * req.times))

    async def count(self, req: HelloRequest) -> AsyncIterator[HelloReply]:
        for i in range(req.times):
            yield HelloReply(message=f"{req.name} {i}")


async def _served(handler: object, name: str, registry: Any = None) -> GRPCServer:
    server = GRPCServer(GRPCServerOptions(name=name), registry=registry or MemoryRegistry())
    server.handle(handler)
    await server.start()
    return server


def _client(server: GRPCServer) -> GRPCClient:
    return GRPCClient(selector=RandomSelector(registry=server.registry))


async def test_a_dict_reaches_a_typed_endpoint_and_the_reply_comes_back_as_json():
    server = await _served(Greeter(), "greeter.json")
    client = _client(server)
    await client.start()
    try:
        # The endpoint's own wire is protobuf (its dataclasses have a proto3 form): a typed call still uses it.
        typed = await client.call("greeter.json", "Greeter.hello", HelloRequest("ann", 2), response_type=HelloReply)
        assert typed == HelloReply("hi ann hi ann")
        # A caller without the types: a dict in, a dict out (was "Wire format was corrupt").
        reply = await client.call("greeter.json", "Greeter.hello", {"name": "bob", "times": 2})
        assert reply == {"message": "hi bob hi bob"}
        # What the gateway does: JSON bytes through, JSON bytes back.
        raw = await client.invoke_raw("greeter.json", "Greeter.hello", b'{"name": "cy"}')
        assert json.loads(raw.body) == {"message": "hi cy"}
    finally:
        await client.close()
        await server.stop()


async def test_a_json_body_that_does_not_fit_the_type_is_a_bad_request():
    server = await _served(Greeter(), "greeter.badjson")
    client = _client(server)
    await client.start()
    try:
        with pytest.raises(BadRequest):
            await client.call("greeter.badjson", "Greeter.hello", {"name": ["not", "a", "string"]})
        with pytest.raises(BadRequest):
            await client.invoke_raw("greeter.badjson", "Greeter.hello", b'{"name": ')
    finally:
        await client.close()
        await server.stop()


async def test_a_server_stream_answers_a_dict_in_json():
    server = await _served(Greeter(), "greeter.stream")
    client = _client(server)
    await client.start()
    try:
        stream = await client.stream("greeter.stream", "Greeter.count", {"name": "dee", "times": 3})
        got = [await stream.recv() for _ in range(3)]
        with pytest.raises(ConnectionClosed):
            await stream.recv()  # and then the end
        assert got == [{"message": "dee 0"}, {"message": "dee 1"}, {"message": "dee 2"}]
    finally:
        await client.close()
        await server.stop()


async def test_an_endpoint_from_a_proto_takes_json_in_its_field_names(echo, echo_handler):
    pb2, _ = echo
    server = await _served(echo_handler(pb2), "echo.json")
    client = _client(server)
    await client.start()
    try:
        reply = await client.call("echo.json", "Echo.Say", {"text": "hi", "n": 1})
        assert reply == {"text": "hi|-", "n": "2"}  # proto3's JSON mapping writes int64 as a string
        # protobuf's own JSON mapping refuses a field the message lacks: a 400, not an INTERNAL.
        with pytest.raises(BadRequest):
            await client.call("echo.json", "Echo.Say", {"nope": 1})
    finally:
        await client.close()
        await server.stop()


async def test_any_grpc_client_can_send_json_by_saying_so():
    # A client micro did not write: grpcio's bytes API, the JSON flag in its metadata.
    server = await _served(Greeter(), "greeter.foreign")
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            method = channel.unary_unary("/greeter.Greeter/hello")
            reply = await method(b'{"name": "eve"}', metadata=((BODY_TYPE, "application/json"),), timeout=10)
            assert json.loads(reply) == {"message": "hi eve"}
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await method(b'{"name": "eve"}', metadata=((BODY_TYPE, "application/msgpack"),), timeout=10)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "application/msgpack" in (caught.value.details() or "")
    finally:
        await server.stop()


async def test_the_flag_is_not_call_metadata_so_it_is_never_passed_on():
    # A handler's own calls copy its call's metadata downstream: were the flag in it, a typed call made
    # from inside a JSON call would go out flagged and be misread.
    greeter = Greeter()
    server = await _served(greeter, "greeter.flag")
    client = _client(server)
    await client.start()
    try:
        await client.call("greeter.flag", "Greeter.hello", {"name": "x"}, metadata={BODY_TYPE: "application/json"})
        assert greeter.seen
        assert all(BODY_TYPE not in seen for seen in greeter.seen)
    finally:
        await client.close()
        await server.stop()
    assert outbound({BODY_TYPE: "application/json", "x-user": "ann"}) == [("x-user", "ann")]
    assert dict(inbound([(BODY_TYPE, "application/json"), ("x-user", "ann")])) == {"x-user": "ann"}


async def test_micro_call_reaches_a_grpc_served_typed_endpoint():
    registry = LocalRegistry()
    server = await _served(Greeter(), "greeter.cli", registry)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "micro",
            "call",
            "greeter.cli",
            "Greeter.hello",
            '{"name": "cli", "times": 2}',
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "MICRO_CLIENT": "grpc"},
        )
        out, err = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode == 0, err.decode()
        assert json.loads(out) == {"message": "hi cli hi cli"}
    finally:
        await server.stop()
        await registry.close()
