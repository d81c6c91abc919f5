"""The RPC client: retries and node demotion, backoff, explicit addresses, options, publishing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from micro import create
from micro.client import ClientOptions, exponential_backoff
from micro.client.rpc import RPCClient
from micro.errors import BadRequest, InternalError, InvalidOption, Timeout, Unavailable
from micro.transport import Transport
from rpcstack import Stack, eventually


class Counter:
    def __init__(self, label: str) -> None:
        self.label = label
        self.calls = 0

    async def who(self) -> str:
        self.calls += 1
        return self.label

    async def fail(self) -> None:
        self.calls += 1
        raise RuntimeError("boom")

    async def unavailable(self) -> None:
        self.calls += 1
        raise Unavailable("try elsewhere")


def test_backoff_shape() -> None:
    assert exponential_backoff(0) == 0
    assert [exponential_backoff(n) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.4, 0.8]
    assert exponential_backoff(50) == 2.0  # capped
    assert exponential_backoff(10_000, base=1, cap=7) == 7  # no overflow


@pytest.mark.parametrize(
    ("option", "value"),
    [("request_timeout", 0), ("retries", -1), ("retries", True), ("backoff", -1), ("content_type", " ")],
)
def test_bad_options(option: str, value: Any) -> None:
    with pytest.raises(InvalidOption, match=option):
        ClientOptions(**{option: value})


def test_options_from_environment() -> None:
    client = create("client", environ={"MICRO_CLIENT_REQUEST_TIMEOUT": "250ms", "MICRO_CLIENT_RETRIES": "3"})
    assert isinstance(client, RPCClient)
    assert client.options.request_timeout == 0.25
    assert client.options.retries == 3
    with pytest.raises(InvalidOption, match="MICRO_CLIENT_RETRIES"):
        create("client", environ={"MICRO_CLIENT_RETRIES": "many"})


async def test_bad_arguments(stack: Stack) -> None:
    client = stack.client()
    with pytest.raises(BadRequest, match="service"):
        await client.call("", "Say.hello")
    with pytest.raises(BadRequest, match="endpoint"):
        await client.call("svc", "")
    with pytest.raises(BadRequest, match="timeout"):
        await client.call("svc", "Say.hello", timeout=-1)
    with pytest.raises(BadRequest, match="address"):
        await client.call("svc", "Say.hello", address=" , ")


async def two_nodes(stack: Stack) -> tuple[Counter, Counter, Transport]:
    """Node A on its own transport (so it can be killed without deregistering), node B on the shared one."""
    a, b = Counter("a"), Counter("b")
    doomed = stack.new_transport()
    await stack.server(a, transport=doomed).start()
    await stack.server(b).start()
    return a, b, doomed


async def test_retry_reaches_the_second_node_when_the_first_is_dead(stack: Stack) -> None:
    a, b, doomed = await two_nodes(stack)
    await doomed.close()  # node A dies without deregistering: the registry still lists it
    (entry,) = await stack.registry.get_service(stack.name)
    assert len(entry.nodes) == 2
    client = stack.client(retries=1)
    for _ in range(10):  # whichever node the selector tries first, every call succeeds
        assert await client.call(stack.name, "Counter.who") == "b"
    assert b.calls == 10
    assert a.calls == 0


async def test_application_errors_are_not_retried(stack: Stack) -> None:
    counter = Counter("a")
    await stack.server(counter).start()
    client = stack.client(retries=3)
    # (the handler's "boom" stays in the server's log: the caller gets a reference)
    with pytest.raises(InternalError, match=r"Counter.fail: internal error \(ref "):
        await client.call(stack.name, "Counter.fail")
    assert counter.calls == 1


async def test_retryable_remote_errors_are_retried_with_backoff(stack: Stack) -> None:
    counter = Counter("a")
    await stack.server(counter).start()
    waits: list[int] = []

    def backoff(attempt: int) -> float:
        waits.append(attempt)
        return 0.0

    client = stack.client()
    with pytest.raises(Unavailable, match="try elsewhere"):
        await client.call(stack.name, "Counter.unavailable", retries=3, backoff=backoff)
    assert counter.calls == 4  # retries + 1 attempts
    assert waits == [1, 2, 3]


async def test_backoff_never_outlives_the_deadline(stack: Stack) -> None:
    counter = Counter("a")
    await stack.server(counter).start()
    client = stack.client()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Unavailable):
        await client.call(stack.name, "Counter.unavailable", retries=5, backoff=lambda n: 10.0, timeout=5.0)
    # Gave up at once instead of sleeping towards (or past) the deadline: the first attempt's own
    # time is not what is measured, so the bound is half the deadline, not the deadline itself.
    assert loop.time() - started < 2.5
    assert counter.calls == 1


async def test_explicit_address_skips_the_selector(stack: Stack) -> None:
    a, b, doomed = await two_nodes(stack)
    client = stack.client()
    address_b = stack.servers[1].address
    for _ in range(3):
        assert await client.call(stack.name, "Counter.who", address=address_b) == "b"
    # a list of addresses is tried in turn: the dead first one is skipped by the retry
    await doomed.close()
    dead = stack.servers[0].address
    assert await client.call(stack.name, "Counter.who", address=f"{dead},{address_b}", retries=1) == "b"
    assert (a.calls, b.calls) == (0, 4)


async def test_stream_open_retries_on_another_node(stack: Stack) -> None:
    class Items:
        async def items(self, req: int) -> Any:
            for i in range(req):
                yield i

    doomed = stack.new_transport()
    await stack.server(Items(), transport=doomed).start()
    await stack.server(Items()).start()
    await doomed.close()
    client = stack.client(retries=1)
    for _ in range(5):
        async with await client.stream(stack.name, "Items.items", 3) as stream:
            assert [x async for x in stream] == [0, 1, 2]


async def test_all_nodes_dead_is_503(stack: Stack) -> None:
    doomed = stack.new_transport()
    await stack.server(Counter("a"), transport=doomed).start()
    await doomed.close()
    client = stack.client(retries=2, backoff=0.0)
    with pytest.raises(Unavailable) as caught:
        await client.call(stack.name, "Counter.who")
    assert caught.value.code == 503


async def test_request_timeout_option_is_the_default(stack: Stack) -> None:
    class Slow:
        async def wait(self) -> None:
            await asyncio.sleep(5)

    await stack.server(Slow()).start()
    client = stack.client(request_timeout=0.1, retries=0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(Timeout):
        await client.call(stack.name, "Slow.wait")
    assert loop.time() - started < 1.0


async def test_publish_uses_the_configured_content_type(stack: Stack) -> None:
    received: list[Any] = []

    async def handler(event: Any) -> None:
        received.append(event.message)

    topic = f"{stack.name}.t"
    await stack.broker.subscribe(topic, handler)
    client = stack.client(content_type="application/msgpack")
    await client.publish(topic, {"a": 1}, metadata={"X-K": "v"})

    async def delivered() -> None:
        assert len(received) == 1

    await eventually(delivered)
    (message,) = received
    assert message.header["Content-Type"] == "application/msgpack"
    assert message.header["Micro-Topic"] == topic
    assert message.header["X-K"] == "v"
    import msgpack

    assert msgpack.unpackb(message.body) == {"a": 1}
    with pytest.raises(BadRequest):
        await client.publish("bad topic", {})
