"""``local_only`` servers: every call must prove it comes from the service's own local user (micro.auth.local)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from micro.auth.local import local_proof
from micro.broker.memory import MemoryBroker
from micro.errors import Forbidden, InvalidOption
from micro.registry.memory import MemoryRegistry
from micro.server.options import ServerOptions
from micro.server.rpc import RPCServer
from micro.service import Service
from micro.transport.tcp import TCPTransport
from rpcstack import Stack

SECRET = b"s" * 32


class Echo:
    def __init__(self) -> None:
        self.calls = 0

    async def echo(self, req: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        return req


async def test_a_local_only_server_refuses_callers_without_a_proof(stack: Stack) -> None:
    echo = Echo()
    server = RPCServer(
        ServerOptions(name=stack.name, local_only=True),
        transport=stack.transport,
        registry=stack.registry,
        broker=stack.broker,
        local_secret=lambda: SECRET,  # this test's own "per-user" secret
    )
    server.handle(echo)
    stack.servers.append(server)
    await server.start()
    stranger = stack.client()
    with pytest.raises(Forbidden, match="answers only its own local user") as caught:
        await stranger.call(stack.name, "Echo.echo", {"a": 1})
    assert "no local proof" in str(caught.value)
    # Not even whether an endpoint exists is told.
    with pytest.raises(Forbidden):
        await stranger.call(stack.name, "Echo.nothing_here", {})
    impostor = stack.client()
    impostor.wrap(local_proof(lambda: bytes(32)))
    with pytest.raises(Forbidden, match="does not match"):
        await impostor.call(stack.name, "Echo.echo", {"a": 1})
    assert echo.calls == 0
    owner = stack.client()
    owner.wrap(local_proof(lambda: SECRET))
    assert await owner.call(stack.name, "Echo.echo", {"a": 1}) == {"a": 1}
    assert await owner.call(stack.name, "Echo.echo", {"a": 2}) == {"a": 2}  # a fresh proof per call


async def test_local_only_services_call_each_other_and_their_debug_endpoints(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir(mode=0o700)
    environ = {"XDG_RUNTIME_DIR": str(tmp_path / "run"), "MICRO_SERVER_LOCAL_ONLY": "true"}
    registry = MemoryRegistry()

    def make(name: str) -> Service:
        return Service(
            name,
            registry=registry,
            transport=TCPTransport(),
            broker=MemoryBroker(),
            handle_signals=False,
            environ=environ,
        )

    echo, caller = make("echo"), make("caller")
    echo.handle(Echo())
    async with echo, caller:
        assert await caller.client.call("echo", "Echo.echo", {"x": 1}) == {"x": 1}
        # The server used the proof up; the Debug guard trusts its check instead of failing a second use.
        assert "records" in await caller.client.call("echo", "Debug.logs", {})


def test_the_options_are_checked() -> None:
    assert ServerOptions(local_only=True).local_only
    with pytest.raises(InvalidOption, match="local_proof_window"):
        ServerOptions(local_proof_window=0)
    with pytest.raises(InvalidOption, match="local_proof_window"):
        ServerOptions(local_proof_window=3600)
