"""Interfaces keyed by their base class, and the wiring ``create`` hands to what it builds."""

from __future__ import annotations

import importlib

import pytest
from micro.component import Component
from micro.errors import PluginNotFound
from micro.hookspecs import INTERFACES
from micro.plugins import PluginManager
from micro.registry.base import Registry
from micro.registry.memory import MemoryRegistry
from micro.selector.base import Selector

#: Each interface's base class, where its block defines it.
BASES = {
    "auth": "micro.auth.base:Auth",
    "broker": "micro.broker.base:Broker",
    "client": "micro.client.base:Client",
    "codec": "micro.codec.base:Codec",
    "config": "micro.config.base:Source",
    "log": "micro.debug.log:Log",
    "network": "micro.network.base:Network",
    "registry": "micro.registry.base:Registry",
    "runtime": "micro.runtime.base:Runtime",
    "selector": "micro.selector.base:Selector",
    "server": "micro.server.base:Server",
    "stats": "micro.debug.stats:Stats",
    "store": "micro.store.base:Store",
    "sync": "micro.sync.base:Sync",
    "tracer": "micro.debug.trace:Tracer",
    "transport": "micro.transport.base:Transport",
    "tunnel": "micro.tunnel.base:Tunnel",
}


def _base(path: str) -> type[Component]:
    module, _, name = path.partition(":")
    cls = getattr(importlib.import_module(module), name)
    assert isinstance(cls, type)
    assert issubclass(cls, Component)
    return cls


@pytest.fixture
def manager() -> PluginManager:
    return PluginManager(entry_points=False)


def test_every_interface_is_named_once_on_its_base_class() -> None:
    assert sorted(BASES) == sorted(INTERFACES)
    for interface, path in BASES.items():
        assert _base(path).interface == interface


@pytest.mark.parametrize("interface", sorted(BASES))
def test_the_base_class_is_a_typed_key_for_create(manager: PluginManager, interface: str) -> None:
    base = _base(BASES[interface])
    made = manager.create(base, environ={})
    assert isinstance(made, base)
    assert type(made) is type(manager.create(interface, environ={}))


def test_a_class_that_is_no_interface_is_refused(manager: PluginManager) -> None:
    with pytest.raises(PluginNotFound, match="not an interface's base class"):
        manager.create(Component)
    with pytest.raises(PluginNotFound, match="not an interface's base class"):
        manager.create(dict)


async def test_what_a_created_block_builds_for_itself_follows_the_same_environ(manager: PluginManager) -> None:
    selector = manager.create(Selector, environ={"MICRO_REGISTRY": "memory", "MICRO_REGISTRY_BOGUS": ""})
    with pytest.raises(Exception, match="MICRO_REGISTRY_BOGUS"):
        selector.registry  # noqa: B018 - built on first use, from the selector's environ
    selector = manager.create(Selector, environ={"MICRO_REGISTRY": "memory"})
    registry = selector.registry
    assert isinstance(registry, MemoryRegistry)
    assert registry.name == "memory"
    # The selector built it, so it closes it and builds another on next use.
    await selector.close()
    assert selector.registry is not registry
    await selector.close()


async def test_a_registry_handed_in_is_never_closed_by_the_selector(manager: PluginManager) -> None:
    registry = MemoryRegistry()
    selector = manager.create(Selector, environ={"MICRO_REGISTRY": "bogus"}, wiring={"registry": registry})
    assert selector.registry is registry
    await selector.close()
    assert isinstance(selector.registry, Registry)
    assert selector.registry is registry
