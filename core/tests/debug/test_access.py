"""Who may call the Debug endpoints (issue #16): the owner's processes, the auth rules, or as configured."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from micro import _mucp
from micro._private import local_secret
from micro.auth.base import Resource, Rule
from micro.auth.jwt import JWTAuth
from micro.auth.local import LocalProofs, local_proof, make_proof
from micro.auth.options import JWTAuthOptions
from micro.auth.wrappers import client_wrapper, server_wrapper
from micro.broker.memory import MemoryBroker
from micro.cli import main
from micro.debug.access import DebugOptions
from micro.debug.handler import TraceRequest, debug_options
from micro.errors import Forbidden, InvalidOption, NotFound, Unauthorized
from micro.registry.memory import MemoryRegistry
from micro.service import Service
from micro.transport import Message as Frame
from micro.transport.tcp import TCPTransport

GUARDED = ("Debug.stats", "Debug.logs", "Debug.trace")


def make(name: str, environ: dict[str, str], **kwargs: Any) -> Service:
    return Service(
        name,
        registry=MemoryRegistry(),
        transport=TCPTransport(),
        broker=MemoryBroker(),
        handle_signals=False,
        environ=environ,
        **kwargs,
    )


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    # A private runtime dir: the per-user secret of these tests is theirs alone.
    (tmp_path / "run").mkdir(mode=0o700)
    return {"XDG_RUNTIME_DIR": str(tmp_path / "run")}


@pytest.fixture
async def service(environ: dict[str, str]) -> AsyncIterator[Service]:
    svc = make("debugged", environ)
    async with svc:
        yield svc


async def raw(service: Service, header: dict[str, str], body: bytes = b"{}") -> Frame:
    socket = await service.transport.dial(service.server.address)
    try:
        await socket.send(Frame({"Content-Type": "application/json", **header}, body))
        return await socket.recv(timeout=5)
    finally:
        await socket.close()


def code(frame: Frame) -> int:
    text = frame.header.get(_mucp.ERROR)
    return 200 if text is None else int(orjson.loads(text)["code"])


async def test_without_a_proof_only_health_answers(service: Service) -> None:
    address = service.server.address
    assert await service.client.call("debugged", "Debug.health", address=address) == {"status": "ok"}
    for endpoint in GUARDED:
        with pytest.raises(Forbidden, match="answers only the local user running debugged") as caught:
            await service.client.call("debugged", endpoint, {}, address=address)
        assert caught.value.code == 403
        assert "no local proof" in str(caught.value)


async def test_the_owners_proof_opens_them(service: Service, environ: dict[str, str]) -> None:
    service.client.wrap(local_proof(environ=environ))
    address = service.server.address
    assert "stats" in await service.client.call("debugged", "Debug.stats", address=address)
    assert "records" in await service.client.call("debugged", "Debug.logs", {}, address=address)
    assert "spans" in await service.client.call("debugged", "Debug.trace", {}, address=address)


async def test_a_proof_from_another_secret_is_refused(service: Service, environ: dict[str, str]) -> None:
    service.client.wrap(local_proof(lambda: bytes(32)))
    with pytest.raises(Forbidden, match="does not match"):
        await service.client.call("debugged", "Debug.logs", {}, address=service.server.address)


async def test_a_proof_is_good_once_for_one_endpoint_within_its_window(
    service: Service, environ: dict[str, str]
) -> None:
    secret = local_secret(environ)
    proof = make_proof(secret, "debugged", "Debug.logs")
    header = {"Micro-Service": "debugged", "Micro-Endpoint": "Debug.logs", _mucp.LOCAL_PROOF: proof}
    assert code(await raw(service, header)) == 200
    assert code(await raw(service, header)) == 403  # replayed
    for endpoint in ("Debug.trace", "Debug.stats"):  # made for Debug.logs
        assert code(await raw(service, {**header, "Micro-Endpoint": endpoint})) == 403
    stale = make_proof(secret, "debugged", "Debug.logs", now=time.time() - 120)
    assert code(await raw(service, {**header, _mucp.LOCAL_PROOF: stale})) == 403
    other_service = make_proof(secret, "other", "Debug.logs")
    assert code(await raw(service, {**header, _mucp.LOCAL_PROOF: other_service})) == 403
    for garbage in ("", "v1", "v1.1.2.3", "v1." + "9" * 400 + ".a.b", "é" * 100):
        assert code(await raw(service, {**header, _mucp.LOCAL_PROOF: garbage})) == 403


def test_local_proofs_remember_a_bounded_number_of_nonces() -> None:
    proofs = LocalProofs("svc", lambda: b"k" * 32, window=30)
    now = time.time()
    for _ in range(5000):
        proofs.check(make_proof(b"k" * 32, "svc", "Debug.logs", now=now), "Debug.logs", now=now)
    assert len(proofs._seen) <= 4096
    # once the window has passed, old nonces are forgotten and new proofs are accepted again
    later = now + 61
    assert proofs.check(make_proof(b"k" * 32, "svc", "Debug.logs", now=later), "Debug.logs", now=later) is None


async def test_the_proof_header_is_not_handler_metadata(service: Service, environ: dict[str, str]) -> None:
    seen: list[dict[str, str]] = []

    class Peek:
        async def look(self) -> None:
            from micro import context

            seen.append(dict(context.metadata()))

    service.handle(Peek())
    service.client.wrap(local_proof(environ=environ))
    await service.client.call("debugged", "Peek.look", address=service.server.address)
    assert seen
    assert not any(key.lower() == "micro-local-proof" for key in seen[0])


async def test_open_and_off(environ: dict[str, str]) -> None:
    opened = make("opened", {**environ, "MICRO_DEBUG_ACCESS": "open"})
    async with opened:
        assert "records" in await opened.client.call("opened", "Debug.logs", {}, address=opened.server.address)
    closed = make("closed", {**environ, "MICRO_DEBUG_ACCESS": "off", "MICRO_TRACER_SAMPLE": "1"})

    class Echo:
        async def echo(self, value: int) -> int:
            return value

    closed.handle(Echo())
    async with closed:
        with pytest.raises(NotFound):
            await closed.client.call("closed", "Debug.logs", {}, address=closed.server.address)
        # Off means no endpoints, not no observability: served calls are still traced and counted.
        assert await closed.client.call("closed", "Echo.echo", 7, address=closed.server.address) == 7
        assert closed.debug is not None
        spans = (await closed.debug.trace(TraceRequest()))["spans"]
        assert any(span["name"].endswith("Echo.echo") for span in spans), spans
        assert (await closed.debug.stats())["stats"][-1]["requests"] >= 1


def test_options_are_read_from_the_environment_and_checked() -> None:
    assert debug_options({}) == DebugOptions()
    assert debug_options({"MICRO_DEBUG_ACCESS": "off", "MICRO_DEBUG_PROOF_WINDOW": "5s"}) == DebugOptions(
        access="off", proof_window=5.0
    )
    with pytest.raises(InvalidOption, match="MICRO_DEBUG_ACCESS"):
        debug_options({"MICRO_DEBUG_ACCESS": "everyone"})
    with pytest.raises(InvalidOption, match="proof_window"):
        DebugOptions(proof_window=float("inf"))


async def test_with_an_auth_that_has_rules_the_rules_decide(environ: dict[str, str], tmp_path: Path) -> None:
    auth = JWTAuth(JWTAuthOptions(key_dir=str(tmp_path / "keys")))
    await auth.start()
    try:
        await auth.generate("ops", secret="pw", scopes=["ops"])
        await auth.grant(Rule(id="health", scope="", resource=Resource(name="*", type="*", endpoint="Debug.health")))
        await auth.grant(Rule(id="ops", scope="ops", resource=Resource(name="ruled", type="service", endpoint="*")))
        ruled = make("ruled", environ, wrappers=[server_wrapper(auth)])
        async with ruled:
            address = ruled.server.address
            assert await ruled.client.call("ruled", "Debug.health", address=address) == {"status": "ok"}
            # 401 from the rules (an account might be let in), not the proof check's 403
            with pytest.raises(Unauthorized):
                await ruled.client.call("ruled", "Debug.logs", {}, address=address)
            token = await auth.token(id="ops", secret="pw")
            ruled.client.wrap(client_wrapper(token.access_token))
            assert "records" in await ruled.client.call("ruled", "Debug.logs", {}, address=address)
    finally:
        await auth.close()


@pytest.fixture
def serving_in_a_thread(environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A service on TCP in another thread (the CLI runs its own event loop), sharing the user's secret dir."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", environ["XDG_RUNTIME_DIR"])
    ready = threading.Event()
    stop: list[asyncio.Event] = []
    address: list[str] = []
    loop = asyncio.new_event_loop()

    async def run() -> None:
        svc = make("cli-target", environ)
        async with svc:
            address.append(svc.server.address)
            stop.append(asyncio.Event())
            ready.set()
            await stop[0].wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    assert ready.wait(10)
    try:
        yield address[0]
    finally:
        loop.call_soon_threadsafe(stop[0].set)
        thread.join(10)
        loop.close()


def test_micro_debug_commands_keep_working_for_the_owner(serving_in_a_thread: str) -> None:
    runner = CliRunner()
    for command in (["logs"], ["stats"], ["trace"], ["health"]):
        result = runner.invoke(main, ["debug", *command, "cli-target", "--address", serving_in_a_thread])
        assert result.exit_code == 0, result.output
