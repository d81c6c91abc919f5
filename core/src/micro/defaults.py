"""The embedded defaults, registered as a plugin of the core through the same hooks as any other.

The core's (asyncmicro-core's) own ``pyproject.toml`` points its ``micro.plugins`` entry point
here, so these names are found exactly like a third-party plugin's. Factories
are import paths: nothing below is imported until it is selected.
"""

from __future__ import annotations

from .hookspecs import Register, hookimpl


@hookimpl
def micro_register_auth(register: Register) -> None:
    register("noop", "micro.auth.noop:NoopAuth", default=True)
    register("jwt", "micro.auth.jwt:JWTAuth")


@hookimpl
def micro_register_broker(register: Register) -> None:
    register("http", "micro.broker.http:HTTPBroker", default=True)
    register("memory", "micro.broker.memory:MemoryBroker")
    register("tunnel", "micro.tunnel.broker:TunnelBroker")


@hookimpl
def micro_register_client(register: Register) -> None:
    register("mucp", "micro.client.rpc:RPCClient", default=True)


@hookimpl
def micro_register_codec(register: Register) -> None:
    register("json", "micro.codec.json:JSONCodec", default=True)
    register("msgpack", "micro.codec.msgpack:MsgpackCodec")
    register("proto", "micro.codec.proto:ProtoCodec")
    register("bytes", "micro.codec.bytes:BytesCodec")
    register("json-rpc", "micro.codec.jsonrpc:JSONRPCCodec")


@hookimpl
def micro_register_config(register: Register) -> None:
    register("env", "micro.config.env:EnvSource", default=True)
    register("file", "micro.config.file:FileSource")
    register("memory", "micro.config.memory:MemorySource")
    register("flags", "micro.config.flags:FlagSource")


@hookimpl
def micro_register_log(register: Register) -> None:
    register("memory", "micro.debug.log:MemoryLog", default=True)


@hookimpl
def micro_register_network(register: Register) -> None:
    register("mucp", "micro.network.mucp:MUCPNetwork", default=True)


@hookimpl
def micro_register_registry(register: Register) -> None:
    register("local", "micro.registry.local:LocalRegistry", default=True)
    register("memory", "micro.registry.memory:MemoryRegistry")
    register("mdns", "micro.registry.mdns:MDNSRegistry")


@hookimpl
def micro_register_runtime(register: Register) -> None:
    register("local", "micro.runtime.local:LocalRuntime", default=True)


@hookimpl
def micro_register_selector(register: Register) -> None:
    register("random", "micro.selector.cache:RandomSelector", default=True)
    register("roundrobin", "micro.selector.cache:RoundRobinSelector")
    register("leastconn", "micro.selector.leastconn:LeastConnSelector")


@hookimpl
def micro_register_server(register: Register) -> None:
    register("mucp", "micro.server.rpc:RPCServer", default=True)


@hookimpl
def micro_register_stats(register: Register) -> None:
    register("memory", "micro.debug.stats:MemoryStats", default=True)


@hookimpl
def micro_register_store(register: Register) -> None:
    register("memory", "micro.store.memory:MemoryStore", default=True)
    register("sqlite", "micro.store.sqlite:SQLiteStore")


@hookimpl
def micro_register_sync(register: Register) -> None:
    register("memory", "micro.sync.memory:MemorySync", default=True)
    register("file", "micro.sync.file:FileSync")


@hookimpl
def micro_register_tracer(register: Register) -> None:
    register("memory", "micro.debug.trace:MemoryTracer", default=True)


@hookimpl
def micro_register_transport(register: Register) -> None:
    register("tcp", "micro.transport.tcp:TCPTransport", default=True)
    register("memory", "micro.transport.memory:MemoryTransport")
    register("http", "micro.transport.http:HTTPTransport")
    register("tunnel", "micro.tunnel.transport:TunnelTransport")


@hookimpl
def micro_register_tunnel(register: Register) -> None:
    register("mucp", "micro.tunnel.mucp:MUCPTunnel", default=True)
