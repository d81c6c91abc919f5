"""Filters for :meth:`Selector.select <micro.selector.Selector.select>` (Go Micro ``selector/filter.go``).

Each returns a :data:`~micro.selector.Filter`: it takes the versions of a
service and returns those (and the nodes) that pass, as new lists; the input is
never mutated, so a cached entry stays intact.
"""

from __future__ import annotations

from ..registry.base import Service
from .base import Filter

__all__ = ["filter_endpoint", "filter_label", "filter_version"]


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
