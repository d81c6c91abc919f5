"""The hooks a plugin implements: one ``micro_register_<interface>`` per building block.

A plugin is a module (or object) with functions marked ``@hookimpl`` and is
found through the entry-point group ``micro.plugins``::

    # pyproject.toml of the distribution asyncmicro-redis
    [project]
    dependencies = ["asyncmicro-core>=0.1,<0.2"]     # the core range it supports
    [project.entry-points."micro.plugins"]
    redis = "micro_redis.plugin"

    # micro_redis/plugin.py
    from micro.hookspecs import hookimpl

    @hookimpl
    def micro_register_store(register):
        register("redis", "micro_redis.store:RedisStore")

Hooks are synchronous and cheap: they only name factories. A factory is a
:class:`~micro.component.Component` subclass, or a ``"module:Class"`` string
imported only when that name is selected, so installing a plugin costs nothing
until it is used. The built-in defaults register through these same hooks, from
:mod:`micro.defaults`.
"""

from __future__ import annotations

from typing import Protocol

import pluggy

__all__ = ["INTERFACES", "Register", "hookimpl", "hookspec"]

PROJECT = "micro"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


class Register(Protocol):
    """The callback each hook receives.

    ``register(name, factory, default=False)`` adds ``factory`` under ``name``
    for the hook's interface. ``factory`` is a ``Component`` subclass or a
    ``"module:Class"`` import path. ``default=True`` makes it the choice when
    ``MICRO_<INTERFACE>`` is unset; only one distribution may claim that.
    """

    def __call__(self, name: str, factory: type | str, /, *, default: bool = False) -> None: ...


#: Every interface a plugin can provide, in the order ``micro plugins`` lists them.
INTERFACES: tuple[str, ...] = (
    "auth",
    "broker",
    "client",
    "codec",
    "config",
    "log",
    "network",
    "registry",
    "runtime",
    "selector",
    "server",
    "stats",
    "store",
    "sync",
    "tracer",
    "transport",
    "tunnel",
)


@hookspec
def micro_register_auth(register: Register) -> None:
    """Register auth providers (accounts, tokens, rules): ``register("jwt", "micro.auth.jwt:JWTAuth")``."""


@hookspec
def micro_register_broker(register: Register) -> None:
    """Register message brokers: ``register("rabbitmq", "micro_rabbitmq.broker:RabbitMQBroker")``."""


@hookspec
def micro_register_client(register: Register) -> None:
    """Register RPC clients: ``register("mucp", "micro.client.rpc:RPCClient")``."""


@hookspec
def micro_register_codec(register: Register) -> None:
    """Register codecs, one per content type: ``register("msgpack", "micro.codec.msgpack:MsgpackCodec")``."""


@hookspec
def micro_register_config(register: Register) -> None:
    """Register config sources: ``register("consul", "micro_consul.config:ConsulSource")``."""


@hookspec
def micro_register_log(register: Register) -> None:
    """Register debug log buffers (``micro debug logs``): ``register("memory", "micro.debug.log:MemoryLog")``."""


@hookspec
def micro_register_network(register: Register) -> None:
    """Register service networks: ``register("mucp", "micro.network.mucp:MUCPNetwork")``."""


@hookspec
def micro_register_registry(register: Register) -> None:
    """Register service registries: ``register("consul", "micro_consul.registry:ConsulRegistry")``."""


@hookspec
def micro_register_runtime(register: Register) -> None:
    """Register service runtimes (``micro run``): ``register("local", "micro.runtime.local:LocalRuntime")``."""


@hookspec
def micro_register_selector(register: Register) -> None:
    """Register node selectors: ``register("roundrobin", "micro.selector.cache:RoundRobinSelector")``."""


@hookspec
def micro_register_server(register: Register) -> None:
    """Register RPC servers: ``register("mucp", "micro.server.rpc:RPCServer")``."""


@hookspec
def micro_register_stats(register: Register) -> None:
    """Register debug stats (``micro debug stats``): ``register("memory", "micro.debug.stats:MemoryStats")``."""


@hookspec
def micro_register_store(register: Register) -> None:
    """Register key/value stores: ``register("redis", "micro_redis.store:RedisStore")``."""


@hookspec
def micro_register_sync(register: Register) -> None:
    """Register distributed locks and leader election: ``register("redis", "micro_redis.sync:RedisSync")``."""


@hookspec
def micro_register_tracer(register: Register) -> None:
    """Register tracers (``micro debug trace``): ``register("memory", "micro.debug.trace:MemoryTracer")``."""


@hookspec
def micro_register_transport(register: Register) -> None:
    """Register point-to-point transports: ``register("tcp", "micro.transport.tcp:TCPTransport")``."""


@hookspec
def micro_register_tunnel(register: Register) -> None:
    """Register tunnels (sessions over transport links): ``register("mucp", "micro.tunnel.mucp:MUCPTunnel")``."""


@hookspec
def micro_register_command(register: Register) -> None:
    """Register ``micro`` CLI sub-commands: ``register("conformance", "micro_conformance.cli:main")``.

    The factory is a ``click.Command`` (or its import path); it is imported only
    when the sub-command runs.
    """
