"""Typed handlers without a .proto: the generated one compiles with grpcio-tools, and its stub calls them."""

import asyncio
import dataclasses
import sys
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from micro.registry.local import LocalRegistry
from micro.registry.memory import MemoryRegistry
from micro_grpc import GRPCServer, GRPCServerOptions, proto_of
from micro_grpc.proto import package_of


@dataclasses.dataclass
class Address:
    street: str
    number: int


@dataclasses.dataclass
class Person:
    name: str
    age: int
    score: float = 0.0
    admin: bool = False
    avatar: bytes = b""
    nicknames: list[str] = dataclasses.field(default_factory=list)
    home: Address | None = None
    visits: dict[str, int] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Greeting:
    text: str
    people: list[Person] = dataclasses.field(default_factory=list)


class Greeter:
    async def hello(self, person: Person) -> Greeting:
        street = person.home.street if person.home else "nowhere"
        return Greeting(text=f"hi {person.name} ({person.age}) of {street}, {sorted(person.visits.items())}")

    async def countdown(self, person: Person) -> AsyncIterator[Greeting]:
        for i in range(person.age, 0, -1):
            yield Greeting(text=str(i))

    async def gather(self, people: AsyncIterator[Person]) -> Greeting:
        return Greeting(text="group", people=[p async for p in people])

    async def echo(self, people: AsyncIterator[Person]) -> AsyncIterator[Person]:
        async for p in people:
            yield dataclasses.replace(p, name=p.name.upper())

    async def untyped(self, value: dict) -> dict:  # type: ignore[type-arg]
        return value


def test_generated_proto_text():
    server = GRPCServer(GRPCServerOptions(name="greeter-svc.v1"))
    server.handle(Greeter())
    text = proto_of(
        "greeter-svc.v1",
        [(m.endpoint(), m.kind.client_streams, m.kind.server_streams) for m in server._methods.values()],
    )
    assert "package greeter_svc.v1;" in text
    assert "rpc hello(Person) returns (Greeting);" in text
    assert "rpc countdown(Person) returns (stream Greeting);" in text
    assert "rpc gather(stream Person) returns (Greeting);" in text
    assert "rpc echo(stream Person) returns (stream Person);" in text
    assert "map<string, int64> visits = 8;" in text
    assert "repeated string nicknames = 6;" in text
    assert "Address home = 7;" in text
    assert "// Greeter.untyped: not described" in text


async def test_a_stub_generated_from_the_proto_calls_the_typed_handlers(tmp_path, compile_proto):
    name = "greeter.v1"
    server = GRPCServer(GRPCServerOptions(name=name), registry=MemoryRegistry())
    server.handle(Greeter())
    source = tmp_path / "greeter.proto"
    source.write_text(
        proto_of(name, [(m.endpoint(), m.kind.client_streams, m.kind.server_streams) for m in server._methods.values()])
    )
    pb2, pb2_grpc = compile_proto(source, tmp_path)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = pb2_grpc.GreeterStub(channel)
            reply = await stub.hello(
                pb2.Person(name="ann", age=7, home=pb2.Address(street="Elm", number=3), visits={"x": 2}), timeout=10
            )
            assert reply.text == "hi ann (7) of Elm, [('x', 2)]"
            assert [g.text async for g in stub.countdown(pb2.Person(name="b", age=3), timeout=10)] == ["3", "2", "1"]

            async def people() -> AsyncIterator[object]:
                for who in ("c", "d"):
                    yield pb2.Person(name=who, age=1, nicknames=[who * 2])

            group = await stub.gather(people(), timeout=10)
            assert [(p.name, list(p.nicknames)) for p in group.people] == [("c", ["cc"]), ("d", ["dd"])]
            assert [p.name async for p in stub.echo(people(), timeout=10)] == ["C", "D"]
    finally:
        await server.stop()


async def test_micro_proto_prints_it_from_the_registry(tmp_path, compile_proto):
    name = f"proto-cli-{uuid.uuid4().hex[:8]}"
    server = GRPCServer(GRPCServerOptions(name=name), registry=LocalRegistry())
    server.handle(Greeter())
    await server.start()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "micro", "proto", name, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await asyncio.wait_for(process.communicate(), 60)
    finally:
        await server.stop()
    assert process.returncode == 0, err.decode()
    text = out.decode()
    assert f"package {package_of(name)};" in text
    assert "rpc echo(stream Person) returns (stream Person);" in text
    (tmp_path / "cli.proto").write_text(text)
    pb2, _ = compile_proto(tmp_path / "cli.proto", tmp_path / "cli")
    assert pb2.Person(name="x").name == "x"


@pytest.mark.parametrize("service", ["a-b", "1x.y", "ok.name_2"])
def test_package_names_are_proto_identifiers(service):
    package = package_of(service)
    assert all(part.isidentifier() for part in package.split("."))
