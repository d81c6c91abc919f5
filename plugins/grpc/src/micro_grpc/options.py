"""Options of the gRPC server and client: ``MICRO_SERVER_<FIELD>`` and ``MICRO_CLIENT_<FIELD>`` as for mucp."""

from __future__ import annotations

from dataclasses import dataclass

from micro.client.options import ClientOptions
from micro.errors import InvalidOption
from micro.server.options import ServerOptions

__all__ = ["GRPCClientOptions", "GRPCServerOptions"]

#: gRPC's own default for received messages; also applied to sent ones here.
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024


def _count(value: object, option: str, most: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise InvalidOption(f"must be an integer from 1 to {most}, got {value!r}", option=option)


@dataclass(frozen=True, kw_only=True, slots=True)
class GRPCServerOptions(ServerOptions):
    """Settings of the ``grpc`` server, on top of every server's."""

    #: Largest message, in bytes, received or sent (``MICRO_SERVER_MAX_MESSAGE_SIZE``); bigger ones fail with
    #: ``RESOURCE_EXHAUSTED``.
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    #: Calls open at once on one HTTP/2 connection (``MICRO_SERVER_MAX_CONCURRENT_STREAMS``). Streams a
    #: client just finished still count for a moment, so a busy client with fewer calls than this can meet it
    #: (its next call fails with ``UNAVAILABLE``, which micro's client retries); hence the margin.
    max_concurrent_streams: int = 1000
    #: Calls running at once on the whole server (``MICRO_SERVER_MAX_CONCURRENT_RPCS``); more are refused with
    #: ``RESOURCE_EXHAUSTED`` rather than queued without bound.
    max_concurrent_rpcs: int = 1000
    #: Serve gRPC server reflection (``MICRO_SERVER_REFLECTION``).
    reflection: bool = True
    #: Serve ``grpc.health.v1.Health`` (``MICRO_SERVER_HEALTH``).
    health: bool = True

    def __post_init__(self) -> None:
        ServerOptions.__post_init__(self)
        _count(self.max_message_size, "max_message_size", (1 << 31) - 1)
        _count(self.max_concurrent_streams, "max_concurrent_streams", 1 << 20)
        _count(self.max_concurrent_rpcs, "max_concurrent_rpcs", 1 << 20)
        for option in ("reflection", "health"):
            if not isinstance(getattr(self, option), bool):
                raise InvalidOption(f"must be true or false, got {getattr(self, option)!r}", option=option)
        if self.local_only:
            raise InvalidOption(
                "the grpc server cannot check local proofs; use the mucp server for local_only services",
                option="local_only",
            )


@dataclass(frozen=True, kw_only=True, slots=True)
class GRPCClientOptions(ClientOptions):
    """Settings of the ``grpc`` client, on top of every client's."""

    #: Largest message, in bytes, sent or received (``MICRO_CLIENT_MAX_MESSAGE_SIZE``).
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    #: Open channels kept, one per node address (``MICRO_CLIENT_MAX_CHANNELS``); the least recently used
    #: one is closed beyond it.
    max_channels: int = 64

    def __post_init__(self) -> None:
        ClientOptions.__post_init__(self)
        _count(self.max_message_size, "max_message_size", (1 << 31) - 1)
        _count(self.max_channels, "max_channels", 1 << 16)
