"""The transport contract (:class:`micro.transport.Transport`): cases T01-T27.

Every case listens on ``listen_address`` (loopback, port 0) with the
implementation under test and dials it from a second instance, so the two ends
share nothing but the address. Capability: ``tls``, checked for
implementations that declare it (the embedded ``tcp`` transport does), with a
throwaway CA and certificate made for the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from micro.errors import BadRequest, ConnectionClosed, MessageTooLarge, Timeout, Unavailable
from micro.transport import Listener, Message, Socket, Transport

from .base import Contract, requires

__all__ = ["TransportContract"]


async def echo(socket: Socket) -> None:
    """A handler that sends every message back until the peer half-closes."""
    with contextlib.suppress(ConnectionClosed):
        while True:
            await socket.send(await socket.recv())


class TransportContract(Contract[Transport]):
    """The behaviour every :class:`~micro.transport.Transport` shares; see :mod:`micro.transport.base`."""

    interface = "transport"
    known_capabilities = frozenset({"tls"})
    #: Where test listeners bind: loopback, any free port.
    listen_address: ClassVar[str] = "127.0.0.1:0"
    #: An address nothing listens on, for the dial-failure case.
    dead_address: ClassVar[str] = "127.0.0.1:9"

    @pytest.fixture
    def transport(self, subject: Transport) -> Transport:
        return subject

    async def serve(self, transport: Transport, handler: Callable[[Socket], Awaitable[None]] = echo) -> Listener:
        listener = await transport.listen(self.listen_address, handler)
        self.later(listener.close)
        return listener

    async def connect(self, listener: Listener, client: Transport | None = None) -> Socket:
        """A socket to ``listener`` from ``client`` (a second instance by default), closed when the test ends."""
        client = client or await self.another()
        socket = await client.dial(listener.address, timeout=self.timeout)
        self.later(socket.close)
        return socket

    async def recv(self, socket: Socket) -> Message:
        return await socket.recv(timeout=self.timeout)

    # -- listening -------------------------------------------------------------------------

    async def test_t01_listening_on_port_zero_gives_a_real_address(self, transport: Transport) -> None:
        """Port 0 binds a free port shown in Listener.address; two listeners get two addresses."""
        first, second = await self.serve(transport), await self.serve(transport)
        for listener in (first, second):
            host, _, port = listener.address.rpartition(":")
            assert host and port.isdigit() and int(port) > 0, f"listener address {listener.address!r}"
        assert first.address != second.address

    async def test_t02_second_listen_on_a_bound_address_fails(self, transport: Transport) -> None:
        """Listening on an address already bound raises Unavailable; once closed it can be bound again."""
        listener = await transport.listen(self.listen_address, echo)
        address = listener.address
        with pytest.raises(Unavailable):
            await (await self.another()).listen(address, echo)
        await listener.close()
        again = await transport.listen(address, echo)
        self.later(again.close)
        assert again.address == address

    # -- messages --------------------------------------------------------------------------

    async def test_t03_round_trip_keeps_header_and_body(self, transport: Transport) -> None:
        """A message and its echo arrive with header (unicode, empty values) and body byte for byte."""
        socket = await self.connect(await self.serve(transport))
        sent = [
            Message({"Micro-Id": "1", "X-Unicode": "grüße 🎉", "empty": ""}, bytes(range(256))),
            Message({}, b""),
            Message({"content-type": "application/json"}, '{"name": "ünï"}'.encode()),
        ]
        for message in sent:
            await socket.send(message)
            echoed = await self.recv(socket)
            assert (echoed.header, echoed.body) == (message.header, message.body)

    async def test_t04_messages_arrive_in_order_both_ways(self, transport: Transport) -> None:
        """Many messages sent without waiting arrive in order; the server may send several while the client reads."""

        async def burst(socket: Socket) -> None:
            first = await socket.recv()
            for i in range(int(first.body)):
                await socket.send(Message({"n": str(i)}, str(i).encode()))

        socket = await self.connect(await self.serve(transport, burst))
        await socket.send(Message({}, b"200"))
        got = [int((await self.recv(socket)).body) for _ in range(200)]
        assert got == list(range(200))
        echo_socket = await self.connect(await self.serve(transport))
        for i in range(200):
            await echo_socket.send(Message({}, str(i).encode()))
        assert [int((await self.recv(echo_socket)).body) for _ in range(200)] == list(range(200))

    async def test_t05_half_close_ends_the_peers_stream_after_the_last_message(self, transport: Transport) -> None:
        """After close_send the peer gets what was sent, then ConnectionClosed every time, and can still reply."""
        received: list[bytes] = []
        ended = asyncio.Event()

        async def handler(socket: Socket) -> None:
            with contextlib.suppress(ConnectionClosed):
                while True:
                    received.append((await socket.recv()).body)
            with contextlib.suppress(ConnectionClosed):
                await socket.recv()
                received.append(b"recv after the end did not raise")
            ended.set()
            await socket.send(Message({}, b"reply after half-close"))

        socket = await self.connect(await self.serve(transport, handler))
        await socket.send(Message({}, b"a"))
        await socket.send(Message({}, b"b"))
        await socket.close_send()
        await socket.close_send()
        with pytest.raises(ConnectionClosed):
            await socket.send(Message({}, b"after close_send"))
        assert (await self.recv(socket)).body == b"reply after half-close"
        await asyncio.wait_for(ended.wait(), self.timeout)
        assert received == [b"a", b"b"]

    async def test_t06_recv_after_the_peer_closes_raises_connection_closed(self, transport: Transport) -> None:
        """When the handler returns (the transport closes its socket), the client's recv raises ConnectionClosed."""

        async def once(socket: Socket) -> None:
            await socket.send(Message({}, b"bye"))

        socket = await self.connect(await self.serve(transport, once))
        assert (await self.recv(socket)).body == b"bye"
        for _ in range(2):
            with pytest.raises(ConnectionClosed):
                await self.recv(socket)

        async def refused() -> None:
            with pytest.raises(ConnectionClosed):
                await socket.send(Message({}, b"to a closed peer"))

        await self.eventually(refused, "send to a closed peer raising ConnectionClosed")

    async def test_t07_dialling_a_dead_address_fails_fast(self, transport: Transport) -> None:
        """dial() of an address nobody listens on raises Unavailable within a couple of seconds."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(Unavailable):
            await transport.dial(self.dead_address, timeout=self.timeout)
        assert loop.time() - started < 2.0, "dialling a dead address took too long to fail"

    async def test_t08_recv_timeout_raises_timeout_and_keeps_the_socket(self, transport: Transport) -> None:
        """recv(timeout=...) with nothing coming raises Timeout; the socket still works afterwards."""
        socket = await self.connect(await self.serve(transport))
        with pytest.raises(Timeout):
            await socket.recv(timeout=0.05)
        await socket.send(Message({}, b"still here"))
        assert (await self.recv(socket)).body == b"still here"

    async def test_t09_concurrent_sockets_stay_separate(self, transport: Transport) -> None:
        """Twenty sockets used at once, from one client transport, each get only their own replies."""
        listener = await self.serve(transport)
        client = await self.another()

        async def conversation(n: int) -> list[bytes]:
            socket = await self.connect(listener, client)
            replies = []
            for i in range(10):
                await socket.send(Message({"socket": str(n)}, f"{n}:{i}".encode()))
                replies.append((await self.recv(socket)).body)
            return replies

        results = await asyncio.gather(*(conversation(n) for n in range(20)))
        for n, replies in enumerate(results):
            assert replies == [f"{n}:{i}".encode() for i in range(10)]

    async def test_t10_large_messages_arrive_whole(self, transport: Transport) -> None:
        """A 1 MiB body and a 64 KiB header value go through intact, both ways."""
        socket = await self.connect(await self.serve(transport))
        body = bytes(range(256)) * 4096
        header = {"big": "é" * 32_768}
        await socket.send(Message(header, body))
        echoed = await self.recv(socket)
        assert len(echoed.body) == len(body), f"a {len(body)}-byte body arrived as {len(echoed.body)} bytes"
        assert echoed.body == body and echoed.header == header

    async def test_t11_oversized_message_is_refused_and_socket_stays_usable(self) -> None:
        """A message over max_message_size raises MessageTooLarge before sending; the socket keeps working."""
        limit = 64 * 1024
        server = await self.another(max_message_size=limit)
        client = await self.another(max_message_size=limit)
        socket = await self.connect(await self.serve(server), client)
        with pytest.raises(MessageTooLarge):
            await socket.send(Message({}, b"x" * (limit + 1)))
        await socket.send(Message({}, b"small"))
        assert (await self.recv(socket)).body == b"small"

    async def test_t12_closing_is_idempotent_and_wakes_a_waiting_recv(self, transport: Transport) -> None:
        """socket.close() wakes a pending recv with ConnectionClosed; closes of sockets and listeners repeat safely."""
        listener = await self.serve(transport)
        socket = await self.connect(listener)
        pending = asyncio.ensure_future(socket.recv(timeout=self.timeout))
        await asyncio.sleep(0.01)
        await socket.close()
        await socket.close()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(pending, self.timeout)
        with pytest.raises(ConnectionClosed):
            await socket.send(Message({}, b"after close"))
        await listener.close()
        await listener.close()

    async def test_t13_handler_failure_ends_only_its_socket(self, transport: Transport) -> None:
        """A handler that raises closes that socket; the listener keeps accepting and serving others."""

        async def fussy(socket: Socket) -> None:
            message = await socket.recv()
            if message.body == b"fail":
                raise RuntimeError("deliberate handler failure (conformance check)")
            await socket.send(message)

        listener = await self.serve(transport, fussy)
        failing = await self.connect(listener)
        await failing.send(Message({}, b"fail"))
        with pytest.raises(ConnectionClosed):
            await self.recv(failing)
        fine = await self.connect(listener)
        await fine.send(Message({}, b"ok"))
        assert (await self.recv(fine)).body == b"ok"

    async def test_t14_closing_the_transport_fails_its_sockets(self) -> None:
        """Transport.close() fails open sockets with ConnectionClosed, on its side and the peer's; it repeats safely."""
        server = await self.another()
        client = await self.another()
        socket = await self.connect(await self.serve(server), client)
        await socket.send(Message({}, b"hi"))
        assert (await self.recv(socket)).body == b"hi"
        await client.close()
        await client.close()
        with pytest.raises(ConnectionClosed):
            await self.recv(socket)
        with pytest.raises(ConnectionClosed):
            await socket.send(Message({}, b"after transport close"))

    async def test_t15_bad_input_raises_bad_request(self, transport: Transport) -> None:
        """An address that is not host:port, or a header that is not str to str, raises BadRequest."""
        for address in ("no-port", "host:notaport", ""):
            with pytest.raises(BadRequest):
                await transport.dial(address, timeout=1)
        with pytest.raises(BadRequest):
            await transport.listen("no-port", echo)
        socket = await self.connect(await self.serve(transport))
        for header in ({"n": 1}, {2: "x"}):
            with pytest.raises(BadRequest):
                await socket.send(Message(header, b"x"))  # type: ignore[arg-type]
        await socket.send(Message({}, b"still fine"))
        assert (await self.recv(socket)).body == b"still fine"

    async def test_t16_concurrent_senders_do_not_interleave(self, transport: Transport) -> None:
        """Two tasks sending on one socket at once: every message arrives whole, each task's in its order."""
        socket = await self.connect(await self.serve(transport))
        body = b"z" * 10_000

        async def sender(name: str) -> None:
            for i in range(50):
                await socket.send(Message({"from": name, "n": str(i)}, name.encode() + body))

        await asyncio.gather(sender("a"), sender("b"))
        got = [await self.recv(socket) for _ in range(100)]
        for name in ("a", "b"):
            mine = [m for m in got if m.header.get("from") == name]
            assert [int(m.header["n"]) for m in mine] == list(range(50))
            assert all(m.body == name.encode() + body for m in mine), "a message arrived mixed with another"

    async def test_t18_cancelling_recv_loses_no_message(self, transport: Transport) -> None:
        """A recv cancelled while it waits loses no message: the next recv gets the next one sent."""
        socket = await self.connect(await self.serve(transport))
        waiting = asyncio.ensure_future(socket.recv(timeout=self.timeout))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        await socket.send(Message({}, b"kept"))
        assert (await self.recv(socket)).body == b"kept", "a message was lost to a cancelled recv"

    async def test_t19_a_reused_send_buffer_does_not_change_what_was_sent(self, transport: Transport) -> None:
        """send() keeps the body it was given: refilling the caller's bytearray afterwards changes nothing sent."""
        socket = await self.connect(await self.serve(transport))
        buffer = bytearray(b"first")
        await socket.send(Message({}, buffer))  # type: ignore[arg-type]
        buffer[:] = b"SECOND"
        await socket.send(Message({}, buffer))  # type: ignore[arg-type]
        assert [(await self.recv(socket)).body for _ in range(2)] == [b"first", b"SECOND"]

    async def test_t20_closing_a_listener_refuses_new_sockets_and_lets_running_ones_finish(
        self, transport: Transport
    ) -> None:
        """After Listener.close() new sockets are refused, while a handler already running still replies."""
        proceed = asyncio.Event()

        async def wait_then_reply(socket: Socket) -> None:
            message = await socket.recv()
            await proceed.wait()
            await socket.send(message)

        listener = await self.serve(transport, wait_then_reply)
        client = await self.another()
        socket = await self.connect(listener, client)
        await socket.send(Message({}, b"in flight"))
        await asyncio.sleep(0.02)  # let the handler start (the checks below hold either way)
        await listener.close()

        async def refused() -> None:
            with pytest.raises(Unavailable):
                late = await client.dial(listener.address, timeout=self.timeout)
                try:
                    await late.send(Message({}, b"late"))
                    await late.recv(timeout=self.timeout)
                finally:
                    await late.close()

        await self.eventually(refused, "a new socket to a closed listener being refused")
        proceed.set()
        assert (await self.recv(socket)).body == b"in flight", "closing the listener cut a running socket short"

    async def test_t21_local_and_remote_name_both_ends(self, transport: Transport) -> None:
        """socket.remote of a dialled socket is the listener's address; the server side sees the reverse pair."""
        seen: list[tuple[str, str]] = []

        async def record(socket: Socket) -> None:
            seen.append((socket.local, socket.remote))
            await echo(socket)

        listener = await self.serve(transport, record)
        socket = await self.connect(listener)
        await socket.send(Message({}, b"x"))
        await self.recv(socket)
        assert socket.remote == listener.address
        assert seen == [(listener.address, socket.local)], f"server side saw {seen}, client {socket.local!r}"

    async def test_t22_listen_without_an_address_uses_the_address_option(self) -> None:
        """listen(None, ...) binds the `address` option: that host and that port."""
        probe = await self.serve(await self.another())
        host, _, port = probe.address.rpartition(":")
        await probe.close()  # frees the port for the configured instance (port 0 would prove nothing)
        configured = await self.another(address=f"{host}:{port}")
        listener = await configured.listen(None, echo)
        self.later(listener.close)
        assert listener.address == f"{host}:{port}", f"listen(None) bound {listener.address!r}, not {host}:{port}"
        socket = await self.connect(listener)
        await socket.send(Message({}, b"x"))
        assert (await self.recv(socket)).body == b"x"

    async def test_t23_concurrent_receivers_each_get_different_messages(self, transport: Transport) -> None:
        """Several tasks in recv() on one socket: each message goes to exactly one of them."""
        socket = await self.connect(await self.serve(transport))
        count = 20
        receivers = [asyncio.ensure_future(self.recv(socket)) for _ in range(count)]
        await asyncio.sleep(0.01)
        for i in range(count):
            await socket.send(Message({}, str(i).encode()))
        got = await asyncio.gather(*receivers)
        assert sorted(int(m.body) for m in got) == list(range(count)), "a message was duplicated or lost"

    async def test_t24_closing_the_transport_cancels_its_handlers(self) -> None:
        """Transport.close() cancels the handlers its listeners run and refuses new sockets."""
        server = await self.another()
        cancelled = asyncio.Event()
        started = asyncio.Event()

        async def forever(socket: Socket) -> None:
            await socket.recv()
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        listener = await server.listen(self.listen_address, forever)
        socket = await self.connect(listener)
        await socket.send(Message({}, b"x"))
        await asyncio.wait_for(started.wait(), self.timeout)
        await server.close()
        await self.eventually(cancelled.is_set, "the running handler being cancelled")
        with pytest.raises(ConnectionClosed):
            await self.recv(socket)

    async def test_t25_a_waiting_recv_is_woken_when_the_peer_closes(self, transport: Transport) -> None:
        """A recv already waiting when the peer's handler returns raises ConnectionClosed: nothing waits forever."""
        release = asyncio.Event()

        async def close_on_signal(socket: Socket) -> None:
            await release.wait()

        socket = await self.connect(await self.serve(transport, close_on_signal))
        pending = asyncio.ensure_future(socket.recv())
        await asyncio.sleep(0.01)
        assert not pending.done(), f"recv returned before anything was sent: {pending}"
        release.set()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(pending, self.timeout)

    async def test_t26_a_closed_transport_refuses_until_started_again(self) -> None:
        """A new transport starts on first use; after close() dial and listen raise ConnectionClosed until start()."""
        fresh = await self.make()
        self.later(fresh.close)
        listener = await fresh.listen(self.listen_address, echo)  # never started: starts itself
        self.later(listener.close)
        server = await self.another()
        address = (await self.serve(server)).address
        closed = await self.another()
        await closed.close()
        with pytest.raises(ConnectionClosed):
            await closed.dial(address, timeout=self.timeout)
        with pytest.raises(ConnectionClosed):
            await closed.listen(self.listen_address, echo)
        await closed.start()  # and usable again once started
        socket = await closed.dial(address, timeout=self.timeout)
        self.later(socket.close)
        await socket.send(Message({"again": "1"}, b"after a restart"))
        assert (await self.recv(socket)).body == b"after a restart"

    async def test_t27_exchange_is_one_request_and_its_reply(self, transport: Transport) -> None:
        """exchange() sends one message and returns the peer's first answer, each caller its own, and no later
        message; a peer that ends without answering raises ConnectionClosed."""

        async def answer(socket: Socket) -> None:
            request = await socket.recv()
            await socket.send(Message({"n": request.header.get("n", "")}, request.body[::-1]))
            with contextlib.suppress(ConnectionClosed):  # the caller may have closed its end by now
                await socket.send(Message({"n": "later"}, b"not the answer"))

        address = (await self.serve(transport, answer)).address
        client = await self.another()
        replies = await asyncio.gather(
            *(client.exchange(address, Message({"n": str(i)}, b"ab%d" % i), timeout=self.timeout) for i in range(20))
        )
        expected = [({"n": str(i)}, (b"ab%d" % i)[::-1]) for i in range(20)]
        assert [(r.header, r.body) for r in replies] == expected, "each exchange() returns its own first answer"

        async def silent(socket: Socket) -> None:
            await socket.recv()

        quiet = (await self.serve(transport, silent)).address
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(client.exchange(quiet, Message({}, b"x"), timeout=self.timeout), self.timeout)
        with pytest.raises(Unavailable):
            await client.exchange(self.dead_address, Message({}, b"x"), timeout=self.timeout)

    @requires("tls")
    async def test_t17_tls_round_trip(self) -> None:
        """With "tls", a listener and a dialer configured with a CA and certificates exchange messages."""
        options = _certificates(self)
        server = await self.another(tls=True, **options)
        client = await self.another(tls=True, **options)
        socket = await self.connect(await self.serve(server), client)
        await socket.send(Message({"secure": "yes"}, b"over tls"))
        echoed = await self.recv(socket)
        assert (echoed.header, echoed.body) == ({"secure": "yes"}, b"over tls")
        plain = await self.another()
        with pytest.raises((Unavailable, ConnectionClosed, Timeout)):
            socket = await plain.dial((await self.serve(server)).address, timeout=1)
            await socket.send(Message({}, b"plain text to a tls listener"))
            await socket.recv(timeout=1)


def _certificates(contract: Contract[Any]) -> dict[str, str]:
    """A CA and a certificate for 127.0.0.1 signed by it, as PEM files in a temporary directory."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory = Path(tempfile.mkdtemp(prefix="micro-conformance-tls-"))
    contract.later(lambda: asyncio.to_thread(shutil.rmtree, directory, True))
    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None, signer: Any, ca: bool) -> Any:
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("micro conformance CA", ca_key, None, ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build("127.0.0.1", key, ca_cert.subject, ca_key, False)
    files = {
        "ca_file": ca_cert.public_bytes(serialization.Encoding.PEM),
        "cert_file": cert.public_bytes(serialization.Encoding.PEM),
        "key_file": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    }
    paths = {}
    for option, data in files.items():
        path = directory / f"{option}.pem"
        path.write_bytes(data)
        paths[option] = str(path)
    return paths
