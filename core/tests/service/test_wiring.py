"""A Service built with its own ``environ`` is wired from that mapping only: ``os.environ`` never reaches it.

Every block the service creates, and every block those build for themselves (their ``make``), resolves its
name and options from the one mapping. Here the process environment is hostile: every ``MICRO_*`` name is
an implementation that does not exist, and every option an unknown one, so a single lookup of
``os.environ`` anywhere fails the build or the calls below.
"""

from __future__ import annotations

from dataclasses import dataclass

import micro
import pytest
from micro.broker.memory import MemoryBroker
from micro.client.rpc import RPCClient
from micro.debug.log import MemoryLog
from micro.errors import InvalidOption
from micro.hookspecs import INTERFACES
from micro.network.base import Network
from micro.network.mucp import MUCPNetwork
from micro.registry.memory import MemoryRegistry
from micro.selector.cache import RoundRobinSelector
from micro.server.rpc import RPCServer
from micro.service import ServiceOptions, service_options
from micro.transport.memory import MemoryTransport
from micro.tunnel.mucp import MUCPTunnel

#: What the process environment says: nothing of it may be read.
HOSTILE = {
    **{f"MICRO_{name.upper().replace('-', '_')}": "bogus" for name in INTERFACES},
    **{f"MICRO_{name.upper().replace('-', '_')}_BOGUS_OPTION": "1" for name in INTERFACES},
    "MICRO_REGISTER_TTL": "bogus",
    "MICRO_REGISTER_INTERVAL": "bogus",
    "MICRO_UVLOOP": "bogus",
    "MICRO_DEBUG_ACCESS": "bogus",
}

#: The service's own environment.
OWN = {
    "MICRO_CODEC": "msgpack",
    "MICRO_BROKER": "memory",
    "MICRO_REGISTRY": "memory",
    "MICRO_TRANSPORT": "memory",
    "MICRO_SELECTOR": "roundrobin",
    "MICRO_LOG_SIZE": "7",
    "MICRO_REGISTER_TTL": "20s",
    "MICRO_DEBUG_ACCESS": "open",
}


@pytest.fixture
def hostile(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in HOSTILE.items():
        monkeypatch.setenv(key, value)


@dataclass
class Ping:
    text: str = ""


class Echo:
    async def ping(self, request: Ping) -> Ping:
        return Ping(text=request.text + "!")


def test_the_hostile_environment_is_hostile(hostile: None) -> None:
    # Without its own environ, a service reads os.environ: this must fail, or the test below proves nothing.
    with pytest.raises(micro.errors.ConfigError):
        micro.Service("wired")


def test_an_empty_environ_means_the_built_in_defaults(hostile: None) -> None:
    service = micro.Service("wired", environ={})
    assert [type(part).__name__ for part in (service.registry, service.transport, service.broker)] == [
        "LocalRegistry",
        "TCPTransport",
        "HTTPBroker",
    ]
    assert type(service.selector).__name__ == "RandomSelector"
    assert service.client.codecs.default().content_type == "application/json"
    assert service.debug is not None  # MICRO_DEBUG_ACCESS=bogus was not read either


async def test_a_service_with_its_own_environ_reads_nothing_else(hostile: None) -> None:
    service = micro.Service("wired", environ=OWN)
    assert isinstance(service.registry, MemoryRegistry)
    assert isinstance(service.transport, MemoryTransport)
    assert isinstance(service.broker, MemoryBroker)
    assert isinstance(service.selector, RoundRobinSelector)
    assert isinstance(service.server, RPCServer)
    assert isinstance(service.client, RPCClient)
    assert service.selector.registry is service.registry
    assert service.server.options.register_ttl == 20.0
    assert service.server.options.register_interval == 10.0
    assert service.options.uvloop is False
    # One set of codecs, the default from the service's own MICRO_CODEC.
    assert service.client.codecs is service.server.codecs
    assert service.client.codecs.default().content_type == "application/msgpack"
    service.handle(Echo())
    got: list[object] = []

    async def on_message(message: Ping) -> None:
        got.append(message)

    service.subscribe("wired.topic", on_message)
    async with service:
        response = await service.client.invoke("wired", "Echo.ping", Ping("hi"), response_type=Ping)
        assert response.body == Ping("hi!")
        assert response.content_type == "application/msgpack"
        await service.client.publish("wired.topic", Ping("news"))
        # The debug parts were built from OWN too (MICRO_LOG_SIZE=7, and MICRO_DEBUG_ACCESS=open lets us in).
        logs = await service.client.call("wired", "Debug.logs", {})
        assert isinstance(logs, dict)
        assert "records" in logs
        for _ in range(200):
            if got:
                break
            await service.client.call("wired", "Debug.health", {})
        assert got
        assert getattr(got[0], "text", None) == "news"


def test_the_debug_parts_come_from_the_services_environ(hostile: None) -> None:
    service = micro.Service("wired", environ=OWN)
    assert service.debug is not None
    log = service.debug._log
    assert isinstance(log, MemoryLog)
    assert log.options.size == 7


async def test_what_a_block_builds_for_itself_comes_from_the_same_environ(hostile: None) -> None:
    # A network builds its tunnel, and the tunnel its transport, through the `make` it was handed.
    network = micro.create(Network, environ=OWN)  # the interface keyed by its base class
    assert isinstance(network, MUCPNetwork)
    assert isinstance(network.registry, MemoryRegistry)
    tunnel = network.tunnel
    assert isinstance(tunnel, MUCPTunnel)
    assert isinstance(tunnel.transport, MemoryTransport)
    # So does a client made on its own: selector, its registry, broker, transport and codecs.
    client = micro.create("client", environ=OWN, cls=RPCClient)
    assert isinstance(client.selector, RoundRobinSelector)
    assert isinstance(client.selector.registry, MemoryRegistry)
    assert isinstance(client.broker, MemoryBroker)
    assert isinstance(client.transport, MemoryTransport)
    assert client.codecs.default().content_type == "application/msgpack"
    await client.close()


async def test_a_block_alone_uses_the_built_in_defaults_and_never_the_environment(hostile: None) -> None:
    client = RPCClient()
    assert type(client.transport).__name__ == "TCPTransport"
    assert type(client.selector).__name__ == "RandomSelector"
    assert type(client.selector.registry).__name__ == "LocalRegistry"
    assert client.codecs.default().content_type == "application/json"
    await client.close()
    server = RPCServer()
    assert type(server.registry).__name__ == "LocalRegistry"
    assert type(server.broker).__name__ == "HTTPBroker"


def test_service_settings_are_options_read_from_the_services_environ() -> None:
    assert service_options({"MICRO_UVLOOP": "1", "MICRO_REGISTER_TTL": "90s"}) == ServiceOptions(
        uvloop=True, register_ttl=90.0
    )
    assert service_options({"MICRO_REGISTER_TTL": "90s"}, register_ttl=5.0).register_ttl == 5.0
    assert service_options({}) == ServiceOptions()
    # A typo fails when the service is built, naming the variable (MICRO_UVLOOP=maybe used to mean "no").
    with pytest.raises(InvalidOption, match="MICRO_REGISTER_TTL"):
        service_options({"MICRO_REGISTER_TTL": "soon"})
    with pytest.raises(InvalidOption, match="MICRO_UVLOOP"):
        micro.Service("wired", environ={"MICRO_UVLOOP": "maybe"})
