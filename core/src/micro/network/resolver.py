"""Where a node's peers are (Go Micro ``network/resolver``): ``static``, ``dns`` or ``registry``.

A resolver turns the configured ``nodes`` (and, for ``registry``, the registry)
into tunnel addresses to link to:

``static``
    ``nodes`` as given.
``dns``
    each of ``nodes`` is ``name:port``; every A/AAAA record of ``name`` is a peer at ``port``
    (a service name with several addresses behind it, as in Kubernetes' headless services).
``registry``
    ``nodes`` plus the tunnel address of every other node of the same network registered as
    ``micro.network`` (each node registers itself, see :class:`~micro.network.mucp.MUCPNetwork`).

A name that does not resolve, or a registry that does not answer, gives no peers this time
(and a warning); the node asks again every ``resolve_interval`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterable

from ..errors import BadRequest, MicroError, NotFound
from ..registry.base import Registry

__all__ = ["resolve", "resolve_dns", "resolve_registry"]

logger = logging.getLogger("micro.network")


def _split(address: str) -> tuple[str, int]:
    host, sep, port = address.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadRequest(f"a peer must be host:port, got {address!r}")
    return host.strip("[]"), int(port)


def _join(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def resolve_dns(nodes: Iterable[str]) -> list[str]:
    """Every address each ``name:port`` of ``nodes`` resolves to, as ``ip:port``, in order, without repeats."""
    loop = asyncio.get_running_loop()
    found: list[str] = []
    for entry in nodes:
        host, port = _split(entry)
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            logger.warning("network: cannot resolve %s: %s", entry, exc)
            continue
        for _family, _type, _proto, _name, sockaddr in infos:
            address = _join(str(sockaddr[0]), port)
            if address not in found:
                found.append(address)
    return found


async def resolve_registry(registry: Registry, service: str, network: str, own_id: str) -> list[str]:
    """The tunnel addresses of the other nodes of ``network`` registered as ``service``."""
    try:
        registered = await registry.get_service(service)
    except NotFound:
        return []
    except MicroError as exc:
        logger.warning("network: cannot read %s from the registry: %s", service, exc)
        return []
    found: list[str] = []
    for version in registered:
        for node in version.nodes:
            tunnel = node.metadata.get("tunnel", "") if node.metadata else ""
            if node.id == own_id or not tunnel or (node.metadata or {}).get("network") != network:
                continue
            if tunnel not in found:
                found.append(tunnel)
    return found


async def resolve(
    kind: str, nodes: Iterable[str], *, registry: Registry | None, service: str, network: str, own_id: str
) -> list[str]:
    """The peers ``kind`` (``static``, ``dns`` or ``registry``) finds from ``nodes`` (and ``registry``)."""
    nodes = list(nodes)
    if kind == "dns":
        return await resolve_dns(nodes)
    if kind == "registry":
        found = list(nodes)
        if registry is not None:
            found += [a for a in await resolve_registry(registry, service, network, own_id) if a not in found]
        return found
    if kind != "static":
        raise BadRequest(f"unknown resolver {kind!r}")
    return nodes
