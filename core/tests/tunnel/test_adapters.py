"""The tunnel transport and broker by name, and what they share."""

import micro
from micro.broker.base import Event, Message
from micro.transport.base import Transport
from micro.tunnel.broker import TunnelBroker
from micro.tunnel.mucp import MUCPTunnel
from micro.tunnel.transport import TunnelTransport

from .conftest import until


async def test_selected_by_name_and_share_one_tunnel_whose_links_use_tcp():
    environ = {"MICRO_TRANSPORT": "tunnel", "MICRO_BROKER": "tunnel", "MICRO_TUNNEL_TOKEN": "adapters"}
    transport = micro.create("transport", environ=environ)
    broker = micro.create("broker", environ=environ)
    assert isinstance(transport, TunnelTransport)
    assert isinstance(broker, TunnelBroker)
    await transport.start()
    await broker.start()
    try:
        tunnel = transport.tunnel
        assert isinstance(tunnel, MUCPTunnel)
        assert broker.address == tunnel.address  # one tunnel for both
        # With MICRO_TRANSPORT=tunnel the tunnel's own links still need a real transport, not itself.
        assert not isinstance(tunnel.transport, TunnelTransport)
        assert isinstance(tunnel.transport, Transport)
        got: list[bytes] = []

        async def handler(event: Event) -> None:
            got.append(event.message.body)

        await broker.subscribe("adapters.topic", handler)
        await broker.publish("adapters.topic", Message(b"hi"))
        await until(lambda: got == [b"hi"], "local delivery")
    finally:
        await broker.close()
        await transport.close()
    assert tunnel.links() == []


async def test_the_last_user_closes_the_shared_tunnel():
    one, two = TunnelTransport(), TunnelTransport()
    await one.start()
    await two.start()
    tunnel = one.tunnel
    assert tunnel is two.tunnel
    assert isinstance(tunnel, MUCPTunnel)
    await one.close()
    assert tunnel._server is not None  # still used by `two`
    await two.close()
    assert tunnel._server is None
