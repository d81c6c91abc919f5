"""One tunnel per process and settings, shared by the tunnel transport and the tunnel broker.

A service builds its transport and its broker separately, each from the same
``MICRO_TUNNEL_*`` settings. Two tunnels with one ``MICRO_TUNNEL_ADDRESS`` could
not both bind it, and two links to each peer would be waste, so the first user
of a setting connects the tunnel and later users share it; the last to release
it closes it. A tunnel handed in explicitly is used as is and never closed here.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .base import Tunnel
from .options import TunnelOptions

__all__ = ["acquire", "release"]


@dataclass
class _Entry:
    tunnel: Tunnel
    loop: asyncio.AbstractEventLoop
    users: int = 0
    ready: asyncio.Lock = field(default_factory=asyncio.Lock)


#: Shared tunnels by event loop and settings (a tunnel belongs to the loop that connected it).
_TUNNELS: dict[tuple[int, TunnelOptions, str], _Entry] = {}


async def acquire(made: Tunnel) -> Tunnel:
    """The connected tunnel for ``made``'s kind and settings: ``made`` itself if it is the first, else the shared one.

    ``made`` must be new and unstarted; when a shared one is returned instead it is simply dropped.
    """
    loop = asyncio.get_running_loop()
    key = (id(loop), made.options, type(made).__qualname__)
    entry = _TUNNELS.get(key)
    if entry is None or entry.loop is not loop:  # none yet, or one left by a loop that ended (its id reused)
        entry = _TUNNELS[key] = _Entry(made, loop)
    entry.users += 1
    try:
        async with entry.ready:
            await entry.tunnel.connect()
    except BaseException:
        entry.users -= 1
        if entry.users == 0 and _TUNNELS.get(key) is entry:
            del _TUNNELS[key]
        raise
    return entry.tunnel


async def release(tunnel: Tunnel) -> None:
    """Give back a tunnel from :func:`acquire`; the last user closes it."""
    for key, entry in list(_TUNNELS.items()):
        if entry.tunnel is tunnel:
            entry.users -= 1
            if entry.users <= 0:
                del _TUNNELS[key]
                await tunnel.close()
            return
