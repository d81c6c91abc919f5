"""The tracer's and the stats' middleware hook: what ``mount`` puts around calls, subscribers and publishes."""

import asyncio
import json
from typing import Any

import pytest
from micro.broker.memory import MemoryBroker
from micro.client.base import CallFunc, Publication, PublishFunc, Request, Response
from micro.debug.access import DebugOptions
from micro.debug.handler import mount
from micro.debug.middleware import Middleware
from micro.debug.stats import MemoryStats
from micro.debug.trace import TRACE_ID_HEADER, MemoryTracer
from micro.errors import NotSupported
from micro.registry.memory import MemoryRegistry
from micro.server.base import HandlerFunc, Message, SubscriberFunc
from micro.server.base import Request as ServerRequest
from micro.service import Service
from micro.transport.memory import MemoryTransport

Events = list[str]


class Greeter:
    async def hello(self, request: dict[str, str]) -> dict[str, str]:
        return {"msg": "hello " + request["name"]}


def _middleware(events: Events, tag: str) -> Middleware:
    def handler(next: HandlerFunc) -> HandlerFunc:
        async def run(request: ServerRequest) -> Any:
            events.append(f"{tag} handler {request.endpoint}")
            return await next(request)

        return run

    def call(next: CallFunc) -> CallFunc:
        async def run(request: Request) -> Response:
            events.append(f"{tag} call {request.endpoint}")
            return await next(request)

        return run

    def subscriber(next: SubscriberFunc) -> SubscriberFunc:
        async def run(message: Message) -> None:
            events.append(f"{tag} subscriber {message.topic} {message.header.get('X-' + tag, '')}")
            await next(message)

        return run

    def publish(next: PublishFunc) -> PublishFunc:
        async def run(publication: Publication) -> None:
            events.append(f"{tag} publish {publication.topic}")
            publication.header["X-" + tag] = "seen"  # a header a publish wrapper adds reaches the subscriber
            await next(publication)

        return run

    return Middleware(handler=(handler,), call=(call,), subscriber=(subscriber,), publish=(publish,))


class HookedTracer(MemoryTracer):
    events: Events

    def middleware(self, service: str) -> Middleware | None:
        self.events.append(f"tracer for {service}")
        return _middleware(self.events, "tracer")


class HookedStats(MemoryStats):
    events: Events

    def middleware(self, service: str) -> Middleware | None:
        self.events.append(f"stats for {service}")
        return _middleware(self.events, "stats")


def _service(name: str, registry: MemoryRegistry, broker: MemoryBroker) -> Service:
    return Service(
        name,
        address="127.0.0.1:0",
        registry=registry,
        transport=MemoryTransport(),
        broker=broker,
        handle_signals=False,
        debug=False,
        environ={},
    )


async def test_mount_adds_the_tracer_and_stats_middleware_on_every_side() -> None:
    events: Events = []
    tracer, stats = HookedTracer(), HookedStats()
    tracer.events = stats.events = events
    service = _service("greeter", MemoryRegistry(), MemoryBroker())
    service.handle(Greeter())
    got: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def on_note(note: dict[str, str]) -> None:
        await got.put(note)

    service.subscribe("notes", on_note)
    mount(service, tracer=tracer, stats=stats, options=DebugOptions(access="open"))
    assert events == ["tracer for greeter", "stats for greeter"]
    async with service:
        assert await service.client.call("greeter", "Greeter.hello", {"name": "a"}) == {"msg": "hello a"}
        await service.client.publish("notes", {"n": "1"})
        assert await asyncio.wait_for(got.get(), 10) == {"n": "1"}
    assert events[2:] == [
        "tracer call Greeter.hello",  # tracer first, then stats: on each side
        "stats call Greeter.hello",
        "tracer handler Greeter.hello",
        "stats handler Greeter.hello",
        "tracer publish notes",
        "stats publish notes",
        "tracer subscriber notes seen",
        "stats subscriber notes seen",
    ]
    # The hooks replaced the built-in wrappers: no Micro-Trace-Id span was recorded.
    assert await tracer.read() == []


async def test_without_a_hook_the_built_in_wrappers_run() -> None:
    tracer = MemoryTracer(MemoryTracer.options_type(sample=1.0))
    stats = MemoryStats()
    service = _service("greeter", MemoryRegistry(), MemoryBroker())
    service.handle(Greeter())
    mount(service, tracer=tracer, stats=stats, options=DebugOptions(access="open"))
    async with service:
        await service.client.call("greeter", "Greeter.hello", {"name": "a"})
    spans = await tracer.read()
    assert {span.name for span in spans} == {"Greeter.hello", "greeter Greeter.hello"}
    assert (await stats.read())[-1].requests == 1


async def test_publish_wrappers_see_the_encoded_message_and_its_headers() -> None:
    broker = MemoryBroker()
    service = _service("greeter", MemoryRegistry(), broker)
    seen: list[Publication] = []

    def publish(next: PublishFunc) -> PublishFunc:
        async def run(publication: Publication) -> None:
            seen.append(publication)
            await next(publication)

        return run

    service.wrap_publish(publish)
    async with service:
        await service.client.publish("notes", {"n": "1"}, metadata={TRACE_ID_HEADER: "abc"})
    (publication,) = seen
    assert publication.topic == "notes"
    assert publication.payload == {"n": "1"}
    assert json.loads(publication.body) == {"n": "1"}
    assert publication.header["Micro-Topic"] == "notes"
    assert publication.header[TRACE_ID_HEADER] == "abc"


async def test_a_client_without_publish_wrappers_says_so() -> None:
    from micro.client.base import Client

    class Bare(Client):  # only the abstract methods: wrap_publish is the base's
        async def _invoke(self, *args: Any, **kwargs: Any) -> Any: ...
        async def _stream(self, *args: Any, **kwargs: Any) -> Any: ...
        async def publish(self, *args: Any, **kwargs: Any) -> None: ...
        def wrap(self, *wrappers: Any) -> None: ...

    with pytest.raises(NotSupported):
        Bare().wrap_publish()


class _NoPublishWrappers:
    """A Mountable whose client runs no publish middleware (the Client base's wrap_publish)."""

    name = "bare"
    environ: dict[str, str] = {}

    def __init__(self) -> None:
        self.added: list[str] = []

    def handle(self, handler: object, *, name: str | None = None) -> object:
        return []

    def wrap(self, *wrappers: Any) -> None:
        self.added += ["handler"] * len(wrappers)

    def wrap_call(self, *wrappers: Any) -> None:
        self.added += ["call"] * len(wrappers)

    def wrap_subscriber(self, *wrappers: Any) -> None:
        self.added += ["subscriber"] * len(wrappers)

    def wrap_publish(self, *wrappers: Any) -> None:
        raise NotSupported("Bare does not support publish wrappers")

    def hook(self, when: Any, function: Any) -> object:
        return function


def test_mount_on_a_client_without_publish_wrappers_warns_and_serves(caplog: pytest.LogCaptureFixture) -> None:
    events: Events = []
    tracer = HookedTracer()
    tracer.events = events
    service = _NoPublishWrappers()
    with caplog.at_level("WARNING", logger="micro.debug"):
        mount(service, tracer=tracer, stats=MemoryStats(), options=DebugOptions(access="open"))
    assert service.added == ["handler", "handler", "call", "subscriber"]  # tracer's + stats_handler, ...
    assert "bare: publishes are not traced or counted" in caplog.text
