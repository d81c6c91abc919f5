"""The token handshake against a tunnel in another process: a wrong token is refused with a clear error."""

import pytest
from micro.errors import Unauthorized
from micro.transport.base import Message
from micro.tunnel.mucp import MUCPTunnel
from micro.tunnel.options import TunnelOptions
from micro.tunnel.transport import TunnelTransport

from .conftest import until


async def test_a_wrong_token_is_refused_and_the_right_one_links(spawn):
    peer = await spawn({"options": {"token": "right"}, "echo": ["echo"]})
    wrong = MUCPTunnel(TunnelOptions(token="wrong", nodes=(peer.address,)))
    with pytest.raises(Unauthorized, match="does not have our token"):
        await wrong.connect()
    assert wrong.links() == []

    # The same through the transport a service would use: its start fails, naming the cause.
    transport = TunnelTransport(tunnel=MUCPTunnel(TunnelOptions(token="wrong", nodes=(peer.address,))))
    with pytest.raises(Unauthorized, match="token"):
        await transport.start()

    right = MUCPTunnel(TunnelOptions(token="right", nodes=(peer.address,)))
    await right.connect()
    try:
        await until(lambda: any(link.encrypted for link in right.links()), "an encrypted link")
        session = await right.dial("echo", timeout=10)
        await session.send(Message({}, b"in"))
        assert (await session.recv(timeout=10)).body == b"in"
    finally:
        await right.close()
