"""grpcio's own reflection client and health stub against the grpc server."""

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from micro.registry.memory import MemoryRegistry
from micro_grpc import GRPCServer, GRPCServerOptions


@dataclasses.dataclass
class Ping:
    text: str
    times: int = 1


class Pinger:
    async def ping(self, p: Ping) -> Ping:
        return p


@pytest.fixture
async def server(echo: tuple[ModuleType, ModuleType], echo_handler: Any) -> AsyncIterator[GRPCServer]:
    pb2, _ = echo
    server = GRPCServer(GRPCServerOptions(name="refl.svc"), registry=MemoryRegistry())
    server.handle(echo_handler(pb2))
    server.handle(Pinger())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def reflect(address: str) -> tuple[list[str], list[str], list[str]]:
    """With grpcio-reflection's client (a blocking channel): services, Echo's methods, Ping's fields."""
    with grpc.insecure_channel(address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = list(database.get_services())
        pool = descriptor_pool.DescriptorPool(database)
        echo = pool.FindServiceByName("echo.v1.Echo")
        ping = pool.FindMessageTypeByName("refl.svc.Ping")
        return services, [m.name for m in echo.methods], [f.name for f in ping.fields]


async def test_reflection_lists_and_describes_the_services(server):
    services, methods, fields = await asyncio.to_thread(reflect, server.address)
    assert {"echo.v1.Echo", "refl.svc.Pinger", "grpc.health.v1.Health"} <= set(services)
    assert methods == ["Say", "Count", "Join", "Chat", "Slow", "Fail", "Boom"]
    assert fields == ["text", "times"]


async def test_health_answers_grpcios_stub(server):
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for service in ("", "echo.v1.Echo", "refl.svc.Pinger"):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING, service
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_health_goes_not_serving_when_stopping(echo):
    server = GRPCServer(GRPCServerOptions(name="health.stop", drain_timeout=1), registry=MemoryRegistry())
    server.handle(Pinger())
    await server.start()
    async with grpc.aio.insecure_channel(server.address) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
        stopping = asyncio.ensure_future(server.stop())
        assert (await watch.read()).status == health_pb2.HealthCheckResponse.NOT_SERVING
        await stopping


async def test_both_can_be_turned_off(echo):
    server = GRPCServer(GRPCServerOptions(name="bare", health=False, reflection=False), registry=MemoryRegistry())
    server.handle(Pinger())
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop()


async def test_health_and_reflection_calls_count_against_max_concurrent_rpcs(echo, echo_handler):
    # The limit is micro's own count (not grpcio's limiter): a long health Watch takes the only slot too,
    # and once it ends the slot is free again.
    pb2, pb2_grpc = echo
    server = GRPCServer(GRPCServerOptions(name="refl.busy", max_concurrent_rpcs=1), registry=MemoryRegistry())
    server.handle(echo_handler(pb2))
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
            first = await watch.read()
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await pb2_grpc.EchoStub(channel).Say(pb2.Msg(text="x"), timeout=10)
            assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_concurrent_rpcs" in (caught.value.details() or "")
            watch.cancel()
            for _ in range(500):  # bounded wait (10 s) for the cancelled Watch to give its slot back
                if not server._grpc_calls:
                    break
                await asyncio.sleep(0.02)
            reply = await pb2_grpc.EchoStub(channel).Say(pb2.Msg(text="y"), timeout=10)
            assert reply.text.startswith("y")
    finally:
        await server.stop()


async def test_unknown_paths_do_not_grow_the_servers_path_cache(server):
    # Any package prefix reaches an endpoint, so the paths remembered are bounded, not one per prefix sent.
    async with grpc.aio.insecure_channel(server.address) as channel:
        for i in range(300):
            await channel.unary_unary(f"/p{i}.Pinger/ping")(b"", timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await channel.unary_unary(f"/p{i}.Pinger/nothing")(b"", timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert len(server._paths) <= 256
