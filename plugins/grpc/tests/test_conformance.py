"""The shared RPC contract (asyncmicro-conformance, cases P01-P14) with the grpc server and the grpc client."""

from __future__ import annotations

from micro_conformance.rpc import RPCContract


class TestGRPCServerAndClient(RPCContract):
    name = "grpc"
    client_name = "grpc"
    # gRPC brings its own HTTP/2 listener and its own message encoding: one pair, whatever it is labelled.
    transports = ("tcp",)
    content_types = ("application/json",)
