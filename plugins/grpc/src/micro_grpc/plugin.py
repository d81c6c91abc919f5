"""The hooks micro finds through the ``micro.plugins`` entry point: factories by name, nothing imported yet."""

from __future__ import annotations

from micro.hookspecs import Register, hookimpl


@hookimpl
def micro_register_server(register: Register) -> None:
    register("grpc", "micro_grpc.server:GRPCServer")


@hookimpl
def micro_register_client(register: Register) -> None:
    register("grpc", "micro_grpc.client:GRPCClient")


@hookimpl
def micro_register_command(register: Register) -> None:
    register("proto", "micro_grpc.cli:command")


@hookimpl
def micro_register_codec(register: Register) -> None:
    register("proto-rpc", "micro_grpc.protorpc:ProtoRPCCodec")
