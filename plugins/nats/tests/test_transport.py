"""The NATS transport beyond the shared contract: addresses, limits, a vanished peer, a whole RPC over it.

Every test listens on names of its own (port 0 gives a random one) under a subject prefix of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from typing import Any

import micro
import pytest
from micro.client.options import ClientOptions
from micro.client.rpc import RPCClient
from micro.errors import BadRequest, ConnectionClosed, InvalidOption, MessageTooLarge, Timeout, Unavailable
from micro.transport import Message, Socket
from micro_nats.transport import PONG, NatsTransport, NatsTransportOptions

from .conftest import ADDRESS, unique


@pytest.fixture
def prefix() -> str:
    return f"{unique()}.t"


@pytest.fixture
async def make(prefix: str) -> AsyncIterator[Any]:
    made: list[NatsTransport] = []

    async def build(**options: Any) -> NatsTransport:
        transport = NatsTransport(NatsTransportOptions(servers=(ADDRESS,), subject_prefix=prefix, **options))
        await transport.start()
        made.append(transport)
        return transport

    yield build
    for transport in made:
        await transport.close()


async def echo(socket: Socket) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await socket.send(await socket.recv())


def test_options_are_checked() -> None:
    with pytest.raises(InvalidOption, match="tls"):
        NatsTransportOptions(tls=True)
    with pytest.raises(InvalidOption, match="subject_prefix"):
        NatsTransportOptions(subject_prefix="a.*")
    with pytest.raises(InvalidOption, match=r"servers|address"):
        NatsTransportOptions(servers=("http://x:1",))
    with pytest.raises(InvalidOption, match="keepalive"):
        NatsTransportOptions(keepalive=0)


def test_it_is_the_nats_transport_by_name() -> None:
    transport = micro.create("transport", "nats", servers=(ADDRESS,))
    assert isinstance(transport, NatsTransport)


async def test_addresses_name_subjects_not_ports(make: Any) -> None:
    """Port 0 is a fresh name of the transport; an explicit name is taken as it is; junk is a BadRequest."""
    server = await make()
    fresh = await server.listen(":0", echo)
    assert fresh.address.startswith("nats-")
    assert fresh.address.endswith(":1")
    named = f"{unique()}.orders:7"
    explicit = await server.listen(named, echo)
    assert explicit.address == named
    client = await make()
    for address in (fresh.address, named):
        socket = await client.dial(address, timeout=5)
        await socket.send(Message({"a": "b"}, b"x"))
        assert (await socket.recv(timeout=5)).body == b"x"
        await socket.close()
    for bad in ("white space:1", "a.*:1", "a..b:1", ":5"):
        with pytest.raises(BadRequest):
            await server.listen(bad, echo)
    with pytest.raises(BadRequest):
        await client.dial(":5")
    with pytest.raises(BadRequest):
        await client.dial(f"{unique()}:0")
    await fresh.close()
    await explicit.close()


async def test_a_message_past_max_payload_is_split_and_one_past_max_message_size_refused(make: Any) -> None:
    """The server's max_payload only sizes the parts; max_message_size bounds the message (typed error)."""
    limit = 3 * 1024 * 1024
    server = await make(max_message_size=limit)
    client = await make(max_message_size=limit)
    assert client._nc is not None
    assert client._nc.max_payload < limit
    listener = await server.listen(None, echo)
    socket = await client.dial(listener.address)
    body = os.urandom(limit - 100)
    await socket.send(Message({"k": "v"}, body))
    echoed = await socket.recv(timeout=30)
    assert echoed.body == body
    assert echoed.header == {"k": "v"}
    with pytest.raises(MessageTooLarge):
        await socket.send(Message({}, b"x" * (limit + 1)))
    await socket.send(Message({}, b"still usable"))
    assert (await socket.recv(timeout=10)).body == b"still usable"


async def test_a_receiver_with_a_smaller_limit_resets_an_oversized_message(make: Any) -> None:
    """A sender allowed more than the listener accepts: the listener resets the socket, nothing is delivered."""
    got: list[Message] = []

    async def keep(socket: Socket) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                got.append(await socket.recv())

    server = await make(max_message_size=64 * 1024)
    client = await make(max_message_size=4 * 1024 * 1024)
    listener = await server.listen(None, keep)
    socket = await client.dial(listener.address)
    await socket.send(Message({}, b"y" * (2 * 1024 * 1024)))
    with pytest.raises(ConnectionClosed, match="max_message_size"):
        await socket.recv(timeout=10)
    assert got == []


async def test_max_streams_from_one_transport_is_enforced(make: Any) -> None:
    release = asyncio.Event()

    async def hold(socket: Socket) -> None:
        await socket.recv()
        await release.wait()
        await socket.send(Message({}, b"done"))

    server = await make(max_streams=2)
    client = await make()
    listener = await server.listen(None, hold)
    held = []
    for _ in range(2):
        socket = await client.dial(listener.address)
        await socket.send(Message({}, b"x"))
        held.append(socket)
    await asyncio.sleep(0.2)  # both accepted
    extra = await client.dial(listener.address)
    await extra.send(Message({}, b"x"))
    with pytest.raises((ConnectionClosed, Unavailable), match="max_streams"):
        await extra.recv(timeout=10)
    release.set()
    for socket in held:
        assert (await socket.recv(timeout=10)).body == b"done"
        await socket.close()
    await asyncio.sleep(0.2)
    again = await client.dial(listener.address)  # the slots are free again
    await again.send(Message({}, b"x"))


async def test_an_idle_socket_is_reset_on_both_sides(make: Any) -> None:
    ended = asyncio.Event()

    async def wait(socket: Socket) -> None:
        with contextlib.suppress(ConnectionClosed):
            await socket.recv()
            await socket.recv()
        ended.set()

    server = await make(idle_timeout=0.5)
    client = await make()
    listener = await server.listen(None, wait)
    socket = await client.dial(listener.address)
    await socket.send(Message({}, b"then nothing"))
    started = time.monotonic()
    with pytest.raises(ConnectionClosed, match="idle_timeout"):
        await socket.recv(timeout=20)
    await asyncio.wait_for(ended.wait(), 10)
    assert time.monotonic() - started < 10


async def test_an_accepted_socket_with_no_message_is_reset_after_first_message_timeout(make: Any) -> None:
    server = await make(first_message_timeout=0.3)
    client = await make()
    listener = await server.listen(None, echo)
    socket = await client.dial(listener.address)
    with pytest.raises(ConnectionClosed, match="first_message_timeout"):
        await socket.recv(timeout=20)  # opens the stream with no message


async def test_closing_a_listener_refuses_new_sockets_with_unavailable(make: Any) -> None:
    server = await make()
    client = await make()
    listener = await server.listen(None, echo)
    socket = await client.dial(listener.address)
    await socket.send(Message({}, b"x"))
    assert (await socket.recv(timeout=5)).body == b"x"
    await socket.close()
    await listener.close()
    # The dial may be let through (this transport heard from the listener just now): then the first recv refuses.
    try:
        late = await client.dial(listener.address, timeout=5)
    except Unavailable:
        return
    await late.send(Message({}, b"late"))
    with pytest.raises(Unavailable):
        await late.recv(timeout=5)


async def test_a_socket_opened_as_its_listener_closes_is_refused_not_left_waiting(make: Any) -> None:
    """The listener's subscription ends only once the NATS server has its UNSUB (drained).

    The driver forgets a subscription at once but tells the server later; an OPEN routed to the
    subscription in between used to be dropped unanswered, and the dialler waited out its deadline
    (a two-node RPC conformance case timed out in CI). The dial right after the close skips its
    probe (the listener answered one just now), so its OPEN races the UNSUB in every round.
    """
    server = await make()
    client = await make()
    for _ in range(10):
        listener = await server.listen(None, echo)
        await (await client.dial(listener.address, timeout=5)).close()  # a probe: the listener is fresh
        await listener.close()
        late = await client.dial(listener.address, timeout=5)
        await late.send(Message({}, b"late"))
        with pytest.raises(Unavailable):
            await late.recv(timeout=5)
        await late.close()


@pytest.mark.parametrize("listener_stays", [False, True], ids=["then-gone", "never-answers"])
async def test_a_lost_open_fails_the_socket_within_seconds(
    make: Any, prefix: str, raw: Any, listener_stays: bool
) -> None:
    """NATS delivers at most once: an OPEN that vanishes is found out by a ping a second later, not by the deadline.

    A stand-in listener answers the dial's probe and swallows the rest; then it unsubscribes (the ping gets
    "no responders") or stays silent (three unanswered pings). Either way the waiting recv fails with
    ConnectionClosed long before the keepalive of 5 s, let alone the recv's own timeout.
    """
    subject = f"{prefix}.l.swallow.1"

    async def swallow(msg: Any) -> None:
        if msg.reply.startswith("_INBOX."):  # the dial's probe: a PONG, as a listener answers it
            await raw.publish(msg.reply, bytes([PONG]) + (0).to_bytes(4, "big"))

    sub = await raw.subscribe(subject, cb=swallow)
    await raw.flush()
    client = await make()
    socket = await client.dial("swallow:1", timeout=5)
    await socket.send(Message({}, b"into the void"))
    await raw.flush()
    if not listener_stays:
        await asyncio.sleep(0.1)  # the OPEN is swallowed first
        await sub.unsubscribe()
        await raw.flush()
    started = time.monotonic()
    with pytest.raises(ConnectionClosed):
        await socket.recv(timeout=20)
    assert time.monotonic() - started < (6 if listener_stays else 3)


_SERVER = """
import asyncio, sys
from micro_nats.transport import PONG, NatsTransport, NatsTransportOptions

async def main():
    transport = NatsTransport(NatsTransportOptions(servers=(sys.argv[1],), subject_prefix=sys.argv[2], keepalive=0.2))
    await transport.start()

    async def silent(socket):
        await socket.recv()
        await asyncio.Event().wait()

    listener = await transport.listen(None, silent)
    print(listener.address, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def _victim(prefix: str) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", textwrap.dedent(_SERVER), ADDRESS, prefix, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 30)
    assert line, "the listening process exited early"
    return process, line.decode().strip()


async def _reap(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    await asyncio.wait_for(process.wait(), 30)


async def test_a_killed_peer_fails_a_waiting_recv_without_a_timeout(make: Any, prefix: str) -> None:
    """SIGKILL the listening process mid-stream: a recv with no timeout fails with ConnectionClosed, not a hang."""
    process, address = await _victim(prefix)
    try:
        client = await make(keepalive=0.2)
        socket = await client.dial(address, timeout=10)
        await socket.send(Message({}, b"are you there"))
        pending = asyncio.ensure_future(socket.recv())
        await asyncio.sleep(0.5)
        assert not pending.done()
        os.kill(process.pid, signal.SIGKILL)
        killed = time.monotonic()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(pending, 10)
        assert time.monotonic() - killed < 10
        # And a new dial to the dead name is refused at once.
        await asyncio.sleep(1.2)  # past the dial's "heard from it just now" window
        with pytest.raises(Unavailable):
            await client.dial(address, timeout=5)
    finally:
        await _reap(process)


async def test_a_call_to_a_killed_service_fails_within_its_timeout(prefix: str) -> None:
    """RPC over the nats transport: a service that vanishes mid-call fails the call with a typed error in time."""
    import micro.errors

    service_code = textwrap.dedent(
        """
        import asyncio, sys
        import micro
        from micro.registry.local import LocalRegistry

        class Slow:
            async def wait(self, req: dict) -> dict:
                await asyncio.sleep(3600)
                return {}

            async def ping(self, req: dict) -> dict:
                return {"pong": True}

        async def main():
            service = micro.Service(sys.argv[1], address=":0")
            service.handle(Slow())
            async def ready():
                print(service.server.address, flush=True)
            service.hook("after_start", ready)
            await service.run()

        asyncio.run(main())
        """
    )
    name = f"svc-{unique()}"
    registry_path = f"/tmp/{unique()}.db"
    env = {
        **os.environ,
        "MICRO_TRANSPORT": "nats",
        "MICRO_TRANSPORT_SERVERS": ADDRESS,
        "MICRO_TRANSPORT_SUBJECT_PREFIX": prefix,
        "MICRO_REGISTRY": "local",
        "MICRO_REGISTRY_PATH": registry_path,
        "MICRO_BROKER": "memory",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", service_code, name, stdout=asyncio.subprocess.PIPE, env=env
    )
    try:
        assert process.stdout is not None
        address = (await asyncio.wait_for(process.stdout.readline(), 30)).decode().strip()
        assert address.startswith("nats-"), address
        transport = NatsTransport(NatsTransportOptions(servers=(ADDRESS,), subject_prefix=prefix, keepalive=0.3))
        client = RPCClient(ClientOptions(retries=0), transport=transport)
        try:
            reply = await client.call(name, "Slow.ping", {}, address=address, timeout=10)
            assert reply == {"pong": True}
            # A long timeout: the failure must come from noticing the dead peer (keepalive), not from it.
            call = asyncio.ensure_future(client.call(name, "Slow.wait", {}, address=address, timeout=60))
            await asyncio.sleep(0.5)
            os.kill(process.pid, signal.SIGKILL)
            killed = time.monotonic()
            with pytest.raises(micro.errors.MicroError) as failed:
                await asyncio.wait_for(call, 30)
            assert not isinstance(failed.value, Timeout), failed.value
            assert time.monotonic() - killed < 10, "the dead service was not noticed in time"
        finally:
            await client.close()
            await transport.close()
    finally:
        await _reap(process)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(registry_path)


async def test_closing_the_transport_tells_the_peer(make: Any) -> None:
    ended = asyncio.Event()

    async def wait(socket: Socket) -> None:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await socket.recv()
        ended.set()

    server = await make()
    client = await make()
    listener = await server.listen(None, wait)
    socket = await client.dial(listener.address)
    await socket.send(Message({}, b"x"))
    await asyncio.sleep(0.1)
    await client.close()
    await asyncio.wait_for(ended.wait(), 5)
    with pytest.raises(ConnectionClosed):
        await socket.send(Message({}, b"after close"))


async def test_the_transport_is_usable_again_after_close(make: Any) -> None:
    """As the Transport interface says (conformance T26): after close() it refuses, and start() reconnects."""
    server = await make()
    client = await make()
    await client.close()
    await server.close()
    with pytest.raises(ConnectionClosed):
        await server.listen(None, echo)
    await server.start()
    await client.start()
    listener = await server.listen(None, echo)
    socket = await client.dial(listener.address, timeout=5)
    await socket.send(Message({}, b"again"))
    assert (await socket.recv(timeout=5)).body == b"again"


async def test_garbage_on_the_listeners_subject_leaves_it_serving(make: Any, prefix: str, raw: Any) -> None:
    """Junk from anyone on NATS (short payloads, a malformed message, a forged stream, no reply subject)
    ends at most the socket it names; the listener keeps serving others and nothing hangs."""
    server = await make()
    listener = await server.listen(None, echo)
    host, _, port = listener.address.rpartition(":")
    subject = f"{prefix}.l.{host}.{port}"
    inbox = f"{prefix}.i.nats-000000000000"  # looks like a transport's inbox: the listener accepts its OPEN
    answers: list[bytes] = []

    async def collect(msg: Any) -> None:
        answers.append(msg.data)

    await raw.subscribe(f"{inbox}.>", cb=collect)
    await raw.publish(subject, b"")  # no reply subject, nothing
    await raw.publish(subject, b"\x03", reply=f"{inbox}.a")  # too short for a frame
    # OPEN|MSG|END whose message is not msgpack: the socket is reset, nothing delivered to the handler.
    await raw.publish(subject, bytes([0x07]) + (0).to_bytes(4, "big") + b"\xff\xff\xff\xff junk", reply=f"{inbox}.b")
    # A frame for a stream that was never opened: answered with RESET.
    await raw.publish(subject, bytes([0x02]) + (5).to_bytes(4, "big") + b"\x00\x00\x00\x00x", reply=f"{inbox}.c")
    await raw.flush()
    client = await make()
    socket = await client.dial(listener.address, timeout=5)
    await socket.send(Message({}, b"still serving"))
    assert (await socket.recv(timeout=5)).body == b"still serving"
    await asyncio.sleep(0.2)
    assert answers, "the malformed message and the forged frame got no answer"
    assert all(answer and answer[0] & 0x08 for answer in answers), answers  # only RESETs came back
    assert any(b"malformed" in answer for answer in answers), answers


_CLIENT = """
import asyncio, sys
from micro.transport import Message
from micro_nats.transport import PONG, NatsTransport, NatsTransportOptions

async def main():
    transport = NatsTransport(NatsTransportOptions(servers=(sys.argv[1],), subject_prefix=sys.argv[2]))
    socket = await transport.dial(sys.argv[3], timeout=10)
    await socket.send(Message({}, b"hello, then silence"))
    print("sent", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_a_killed_dialler_ends_the_handlers_waiting_recv(make: Any, prefix: str) -> None:
    """SIGKILL the dialling process: the handler waiting in recv() gets ConnectionClosed (keepalive), not a hang."""
    got = asyncio.Event()
    ended: list[float] = []

    async def wait(socket: Socket) -> None:
        await socket.recv()
        got.set()
        with contextlib.suppress(ConnectionClosed):
            await socket.recv()
            ended.append(-1.0)  # a message that nobody sent: fails the assertion below
            return
        ended.append(time.monotonic())

    server = await make(keepalive=0.2)
    listener = await server.listen(None, wait)
    code = textwrap.dedent(_CLIENT)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, ADDRESS, prefix, listener.address, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        assert (await asyncio.wait_for(process.stdout.readline(), 30)).strip() == b"sent"
        await asyncio.wait_for(got.wait(), 10)
        os.kill(process.pid, signal.SIGKILL)
        killed = time.monotonic()
        for _ in range(200):
            if ended:
                break
            await asyncio.sleep(0.05)
        assert ended, "the handler was still waiting 10 s after its peer was killed"
        assert ended[0] > 0, "the handler received a message nobody sent"
        assert ended[0] - killed < 10
    finally:
        await _reap(process)
