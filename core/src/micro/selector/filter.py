"""Filters for :meth:`Selector.select <micro.selector.Selector.select>` (Go Micro ``selector/filter.go``).

Each returns a :data:`~micro.selector.Filter`: it takes the versions of a
service and returns those (and the nodes) that pass, as new lists; the input is
never mutated, so a cached entry stays intact.
"""

from __future__ import annotations

from ..errors import ServiceNotFound
from ..registry.base import Node, Service
from .base import Filter

__all__ = ["filter_endpoint", "filter_label", "filter_protocol", "filter_version"]


def filter_version(version: str) -> Filter:
    """Keep only ``version`` of the service."""

    def _filter(services: list[Service]) -> list[Service]:
        return [s for s in services if s.version == version]

    _filter.__qualname__ = f"filter_version({version!r})"
    return _filter


def filter_label(key: str, value: str) -> Filter:
    """Keep only nodes whose metadata has ``key`` equal to ``value``; versions left without nodes go too."""

    def _filter(services: list[Service]) -> list[Service]:
        result = []
        for service in services:
            nodes = [n for n in service.nodes if n.metadata.get(key) == value]
            if nodes:
                result.append(service.replace(nodes=nodes))
        return result

    _filter.__qualname__ = f"filter_label({key!r}, {value!r})"
    return _filter


def filter_endpoint(name: str) -> Filter:
    """Keep only versions that expose the endpoint ``name`` (``"Greeter.Hello"``)."""

    def _filter(services: list[Service]) -> list[Service]:
        return [s for s in services if any(e.name == name for e in s.endpoints)]

    _filter.__qualname__ = f"filter_endpoint({name!r})"
    return _filter


def _speaks(node: Node) -> str:
    protocol = node.metadata.get("protocol") or "mucp"
    transport = node.metadata.get("transport")
    return f"{protocol} over {transport}" if transport else protocol


def filter_protocol(protocol: str, transport: str | None = None) -> Filter:
    """Keep only nodes a client of ``protocol`` (over ``transport``) can call, as their metadata says.

    A node registers ``protocol`` (``mucp``, ``grpc``...; a node without it is taken for
    ``mucp``, Go Micro's default) and, for a protocol that runs over a micro transport,
    ``transport`` (``tcp``, ``http``...). A node passes when its protocol is ``protocol`` and,
    when both it and ``transport`` name a transport, the two are the same.

    When the service has nodes but none passes, this raises
    :class:`~micro.errors.ServiceNotFound` naming what its nodes speak, rather than leaving the
    selector to say only that no node passed: "no node of 'greeter' speaks mucp over tcp; its
    nodes speak: grpc, mucp over http". Results are kept for the last list seen, so a cached
    selector entry costs one identity check per call.
    """
    last: list[tuple[list[Service], list[Service]]] = []

    def compatible(node: Node) -> bool:
        metadata = node.metadata
        if (metadata.get("protocol") or "mucp") != protocol:
            return False
        theirs = metadata.get("transport")
        return not (transport and theirs) or theirs == transport

    def _filter(services: list[Service]) -> list[Service]:
        if last and last[0][0] is services:
            return last[0][1]
        result = []
        for service in services:
            nodes = [n for n in service.nodes if compatible(n)]
            if len(nodes) == len(service.nodes):
                result.append(service)
            elif nodes:
                result.append(service.replace(nodes=nodes))
        if not result and any(s.nodes for s in services):
            found = sorted({_speaks(n) for s in services for n in s.nodes})
            wanted = f"{protocol} over {transport}" if transport else protocol
            raise ServiceNotFound(
                f"no node of {services[0].name!r} speaks {wanted}; its nodes speak: {', '.join(found)}",
                id="selector",
            )
        last[:] = [(services, result)]
        return result

    _filter.__qualname__ = f"filter_protocol({protocol!r}, {transport!r})"
    return _filter
