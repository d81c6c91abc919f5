"""The RPC contract (:class:`micro.server.Server` with :class:`micro.client.Client`): cases P01-P14.

Server and client are checked together, over every pair of a transport and a
codec: by default every installed transport with each content type in
:attr:`RPCContract.content_types`. The server is the implementation named by
:attr:`~micro_conformance.base.Contract.name`; the client is ``client_name``.
Both get their own transport instance, and share an in-memory registry and
broker, so a pair fails only for what the transport, codec, server or client do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import pytest
import pytest_asyncio
from micro import context
from micro.broker import Broker
from micro.client import Client
from micro.component import Component
from micro.errors import (
    EndpointNotFound,
    InternalError,
    NotFound,
    RPCError,
    ServiceNotFound,
    Timeout,
    Unavailable,
)
from micro.registry import Registry
from micro.selector import Selector
from micro.server import Server
from micro.transport import Transport

from .base import Contract, create

__all__ = ["Greeter", "HelloRequest", "HelloResponse", "Pair", "RPCContract"]


@dataclass(frozen=True, slots=True)
class Pair:
    """A transport (by name) and a codec (by content type) that one run of the cases uses."""

    transport: str
    content_type: str

    def __str__(self) -> str:
        return f"{self.transport}+{self.content_type.rpartition('/')[2]}"


@dataclass
class HelloRequest:
    name: str
    times: int = 1


@dataclass
class HelloResponse:
    greeting: str


class Greeter:
    """The handler every case calls."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    async def hello(self, req: HelloRequest) -> HelloResponse:
        return HelloResponse(greeting=" ".join([f"Hello {req.name}"] * req.times))

    async def plain(self, req: Any) -> Any:
        return {"echo": req}

    async def metadata(self, req: Any) -> dict[str, str]:
        context.set_header("X-Reply", "from the handler")
        return {k.lower(): v for k, v in context.metadata().items() if k.lower().startswith("x-")}

    async def missing(self, req: Any) -> Any:
        raise NotFound(f"no record for {req!r}")

    async def crash(self, req: Any) -> Any:
        raise RuntimeError("the handler crashed (conformance check)")

    async def slow(self, req: float) -> str:
        await asyncio.sleep(req)
        return "too late"

    async def count(self, req: int) -> AsyncIterator[int]:
        for n in range(req):
            yield n

    async def total(self, reqs: AsyncIterator[int]) -> int:
        return sum([n async for n in reqs])

    async def double(self, reqs: AsyncIterator[Any]) -> AsyncIterator[Any]:
        async for value in reqs:
            yield {"doubled": value["n"] * 2}


class RPCContract(Contract[Server]):
    """Calls, streams, errors, deadlines and publishing between a server and a client."""

    interface = "server"
    #: The client implementation that calls the server.
    client_name: ClassVar[str] = "mucp"
    #: Transports to run over; ``None`` means every installed one.
    transports: ClassVar[Sequence[str] | None] = None
    #: Content types to run with (each must carry plain values and dataclasses).
    content_types: ClassVar[Sequence[str]] = ("application/json", "application/msgpack", "application/json-rpc")
    registry_name: ClassVar[str] = "memory"
    broker_name: ClassVar[str] = "memory"
    selector_name: ClassVar[str] = "random"

    pair: Pair
    _wiring: dict[str, Component] | None = None

    @classmethod
    def pairs(cls) -> list[Pair]:
        from micro.plugins import get_manager

        transports = cls.transports if cls.transports is not None else get_manager().names("transport")
        return [Pair(t, c) for t in transports for c in cls.content_types]

    @classmethod
    def generate_tests(cls, metafunc: pytest.Metafunc) -> None:
        if "rpc_pair" in metafunc.fixturenames:
            pairs = cls.pairs()
            metafunc.parametrize("rpc_pair", pairs, ids=[str(p) for p in pairs])

    # pytest resolves fixtures by name, so the override may ask for one more: the pair it runs with.
    @pytest_asyncio.fixture(autouse=True)
    async def _micro_contract(  # type: ignore[override]
        self, request: pytest.FixtureRequest, micro_run_id: str, rpc_pair: Pair
    ) -> AsyncIterator[None]:
        self.pair = rpc_pair
        async with self._scope(request, micro_run_id):
            yield

    async def wiring(self) -> dict[str, Component]:
        """The registry, broker and the two transports of this test, started."""
        if self._wiring is None:
            wiring: dict[str, Component] = {
                "registry": create("registry", self.registry_name),
                "broker": create("broker", self.broker_name),
                "server_transport": create("transport", self.pair.transport),
                "client_transport": create("transport", self.pair.transport),
            }
            for component in wiring.values():
                await self.start(component)
            self._wiring = wiring
        return self._wiring

    async def make(self, **options: Any) -> Server:
        wiring = await self.wiring()
        values = {"name": self.names("svc"), "address": "127.0.0.1:0", **self.options, **options}
        server = create(
            "server",
            cast(str, self.name),
            strings=self.option_strings,
            values=values,
            transport=wiring["server_transport"],
            registry=wiring["registry"],
            broker=wiring["broker"],
        )
        return cast(Server, server)

    async def client(self, **options: Any) -> Client:
        """A started client for this pair's content type, closed after the test."""
        wiring = await self.wiring()
        registry = cast(Registry, wiring["registry"])
        selector = await self.start(cast(Selector, create("selector", self.selector_name, registry=registry)))
        values = {"content_type": self.pair.content_type, "request_timeout": self.timeout, **options}
        client = create(
            "client",
            self.client_name,
            values=values,
            transport=cast(Transport, wiring["client_transport"]),
            selector=selector,
            broker=cast(Broker, wiring["broker"]),
        )
        return await self.start(cast(Client, client))

    @pytest_asyncio.fixture
    async def served(self, subject: Server) -> tuple[Server, Client, Greeter]:
        """The started server with a :class:`Greeter`, and a client for it."""
        greeter = Greeter()
        subject.handle(greeter)
        await subject.start()
        return subject, await self.client(), greeter

    # -- calls -----------------------------------------------------------------------------

    async def test_p01_unary_call_round_trips_plain_values(self, served: tuple[Server, Client, Greeter]) -> None:
        """A call with a plain value (unicode, nested) returns the handler's result."""
        server, client, _ = served
        request = {"name": "Gophér 🎉", "list": [1, 2.5, None, True], "nested": {"k": "v"}}
        assert await client.call(server.options.name, "Greeter.plain", request) == {"echo": request}

    async def test_p02_typed_request_and_response(self, served: tuple[Server, Client, Greeter]) -> None:
        """Dataclass requests are decoded for the handler and responses decoded into response_type."""
        server, client, _ = served
        reply = await client.call(
            server.options.name, "Greeter.hello", HelloRequest("Ünï", 2), response_type=HelloResponse
        )
        assert reply == HelloResponse("Hello Ünï Hello Ünï")

    async def test_p03_metadata_flows_both_ways(self, served: tuple[Server, Client, Greeter]) -> None:
        """Call metadata reaches the handler's context; headers it sets come back in the response metadata."""
        server, client, _ = served
        with context.with_metadata({"X-From-Context": "ctx"}):
            response = await client.invoke(server.options.name, "Greeter.metadata", {}, metadata={"X-Trace": "t-1"})
        assert response.body.get("x-trace") == "t-1" and response.body.get("x-from-context") == "ctx"
        assert response.metadata.get("x-reply") == "from the handler"

    async def test_p04_handler_errors_arrive_typed(self, served: tuple[Server, Client, Greeter]) -> None:
        """A MicroError keeps its code and detail; any other exception is a 500 that does not carry the
        exception's text (it may hold secrets: it belongs in the server's log); the server keeps serving."""
        server, client, _ = served
        with pytest.raises(NotFound) as missing:
            await client.call(server.options.name, "Greeter.missing", "k1")
        assert isinstance(missing.value, RPCError) and missing.value.code == 404
        assert "no record for 'k1'" in missing.value.detail
        with pytest.raises(InternalError) as crashed:
            await client.call(server.options.name, "Greeter.crash", None, retries=0)
        assert crashed.value.code == 500
        assert "the handler crashed" not in crashed.value.detail
        assert await client.call(server.options.name, "Greeter.plain", 1) == {"echo": 1}

    async def test_p05_unknown_endpoint_and_service(self, served: tuple[Server, Client, Greeter]) -> None:
        """An endpoint the server lacks gives 404 (EndpointNotFound); an unknown service, ServiceNotFound."""
        server, client, _ = served
        with pytest.raises(NotFound) as caught:
            await client.call(server.options.name, "Greeter.nothing", {})
        assert isinstance(caught.value, EndpointNotFound) or caught.value.code == 404
        with pytest.raises(ServiceNotFound):
            await client.call(self.names("nobody"), "Greeter.plain", {})

    async def test_p06_deadline_is_enforced(self, served: tuple[Server, Client, Greeter]) -> None:
        """A call slower than its timeout raises Timeout soon after the timeout, not when the handler ends."""
        server, client, _ = served
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(Timeout):
            await client.call(server.options.name, "Greeter.slow", 5.0, timeout=0.3, retries=0)
        elapsed = loop.time() - started
        assert elapsed < 2.0, f"a 0.3s timeout took {elapsed:.2f}s to fire"

    async def test_p07_concurrent_calls_get_their_own_answers(self, served: tuple[Server, Client, Greeter]) -> None:
        """Fifty calls in flight at once each get the answer to their own request."""
        server, client, _ = served
        replies = await asyncio.gather(*(client.call(server.options.name, "Greeter.plain", i) for i in range(50)))
        assert replies == [{"echo": i} for i in range(50)]

    async def test_p08_large_payload(self, served: tuple[Server, Client, Greeter]) -> None:
        """A request and response of about 1 MiB go through intact."""
        server, client, _ = served
        text = "é🎉xyz" * 150_000
        assert await client.call(server.options.name, "Greeter.plain", text) == {"echo": text}

    # -- streams ---------------------------------------------------------------------------

    async def test_p09_server_stream_delivers_in_order(self, served: tuple[Server, Client, Greeter]) -> None:
        """A server-streaming endpoint's responses arrive in order, and iteration ends with the stream."""
        server, client, _ = served
        async with await client.stream(server.options.name, "Greeter.count", 20) as stream:
            got = [n async for n in stream]
        assert got == list(range(20))

    async def test_p10_client_stream_and_bidirectional(self, served: tuple[Server, Client, Greeter]) -> None:
        """A client stream's requests all reach the handler; a bidirectional stream answers each in turn."""
        server, client, _ = served
        async with await client.stream(server.options.name, "Greeter.total") as stream:
            for n in range(1, 11):
                await stream.send(n)
            await stream.close_send()
            assert await stream.recv() == 55
        async with await client.stream(server.options.name, "Greeter.double") as stream:
            for n in range(5):
                await stream.send({"n": n})
                assert await stream.recv() == {"doubled": n * 2}
            await stream.close_send()

    # -- lifecycle and discovery -----------------------------------------------------------

    async def test_p11_registered_with_its_endpoints(self, served: tuple[Server, Client, Greeter]) -> None:
        """While running the server is in the registry, with a node at its address and its endpoints listed."""
        server, _, _ = served
        registry = cast(Registry, (await self.wiring())["registry"])
        (service,) = await registry.get_service(server.options.name)
        assert [n.address for n in service.nodes] == [server.address]
        names = {e.name for e in service.endpoints}
        assert {"Greeter.hello", "Greeter.count", "Greeter.total"} <= names, f"registered endpoints: {sorted(names)}"

    async def test_p12_stop_deregisters_and_is_idempotent(self, served: tuple[Server, Client, Greeter]) -> None:
        """After stop() the service is gone from the registry, calls fail, and stop() again is fine."""
        server, client, _ = served
        await server.stop()
        await server.stop()
        registry = cast(Registry, (await self.wiring())["registry"])
        with pytest.raises(ServiceNotFound):
            await registry.get_service(server.options.name)

        async def refused() -> None:
            with pytest.raises((ServiceNotFound, Unavailable)):
                await client.call(server.options.name, "Greeter.plain", 1, retries=0, timeout=1)

        await self.eventually(refused, "calls to a stopped server failing")

    async def test_p13_publish_reaches_the_subscriber(self) -> None:
        """Published messages reach a subscriber added before start, once, and soon one added while running.

        client.publish() encodes the message; the subscriber gets the decoded payload.
        """
        early: list[Any] = []
        late: list[Any] = []

        async def subscriber(payload: dict[str, Any]) -> None:
            early.append(payload)

        async def late_subscriber(payload: dict[str, Any]) -> None:
            late.append(payload)

        topic, later_topic = self.names("events"), self.names("later")
        server = await self.make()
        server.subscribe(topic, subscriber)
        await self.start(server)
        client = await self.client()
        await client.publish(topic, {"id": 1, "text": "ünï"})
        await self.eventually(lambda: early == [{"id": 1, "text": "ünï"}], "the message reaching the subscriber")
        server.subscribe(later_topic, late_subscriber)

        async def subscribed() -> bool:
            # subscribe() on a running server attaches in the background: publish until it is there.
            await client.publish(later_topic, {"probe": True})
            await asyncio.sleep(0.02)
            return bool(late)

        await self.eventually(subscribed, "a subscriber added while running receiving messages")
        await self.quiet()
        assert early == [{"id": 1, "text": "ünï"}], "the first subscriber got a message more than once"

    async def test_p14_two_nodes_share_the_calls(self, served: tuple[Server, Client, Greeter]) -> None:
        """With a second node of the service running, calls reach both nodes, and survive one stopping."""
        server, client, _ = served
        second = await self.start(await self.make(name=server.options.name))
        second.handle(Greeter())
        await second.start()
        nodes: set[str] = set()

        async def both() -> None:
            response = await client.invoke(server.options.name, "Greeter.plain", 1)
            if response.node is not None:
                nodes.add(response.node.address)
            assert nodes == {server.address, second.address}

        await self.eventually(both, "calls reaching both nodes")
        await second.stop()
        for _ in range(5):
            assert await client.call(server.options.name, "Greeter.plain", 2) == {"echo": 2}
