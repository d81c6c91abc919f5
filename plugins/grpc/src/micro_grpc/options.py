"""Options of the gRPC server and client: ``MICRO_SERVER_<FIELD>`` and ``MICRO_CLIENT_<FIELD>`` as for mucp."""

from __future__ import annotations

from dataclasses import dataclass

from micro.client.options import ClientOptions
from micro.errors import InvalidOption
from micro.server.options import ServerOptions

__all__ = ["GRPCClientOptions", "GRPCServerOptions", "read_pem"]

#: gRPC's own default for received messages; also applied to sent ones here.
DEFAULT_MAX_MESSAGE_SIZE = 4 * 1024 * 1024


def _tls(options: GRPCServerOptions | GRPCClientOptions, *, listens: bool) -> None:
    """The TLS fields, checked as the tcp transport and the http broker check theirs."""
    if not isinstance(options.tls, bool):
        raise InvalidOption(f"must be true or false, got {options.tls!r}", option="tls")
    for option in ("cert_file", "key_file", "ca_file"):
        value = getattr(options, option)
        if value is not None and (not isinstance(value, str) or not value):
            raise InvalidOption(f"must be a file name, got {value!r}", option=option)
    if options.key_file and not options.cert_file:
        raise InvalidOption("key_file is set but cert_file is not", option="cert_file")
    if options.cert_file and not options.key_file:
        raise InvalidOption("cert_file is set but key_file is not: grpc needs the key on its own", option="key_file")
    if listens and options.tls and not options.cert_file:
        raise InvalidOption("tls is set but cert_file is not: a TLS server needs its certificate", option="cert_file")


def read_pem(path: str | None, option: str) -> bytes | None:
    """The bytes of the PEM file ``path`` (``None`` for ``None``); :class:`InvalidOption` naming ``option``
    if it cannot be read or holds no PEM block."""
    if path is None:
        return None
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise InvalidOption(f"cannot read {path!r}: {exc.strerror or exc}", option=option) from exc
    if b"-----BEGIN" not in data:
        raise InvalidOption(f"{path!r} is not a PEM file", option=option)
    return data


def _count(value: object, option: str, most: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise InvalidOption(f"must be an integer from 1 to {most}, got {value!r}", option=option)


def _seconds(value: object, option: str) -> None:
    # grpcio takes whole milliseconds in a C int: at least 1 ms, at most about 24 days.
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.001 <= value <= 2_000_000:
        raise InvalidOption(f"must be a number of seconds from 0.001 to 2000000, got {value!r}", option=option)


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
    #: ``RESOURCE_EXHAUSTED`` rather than queued without bound. Calls counted from their arrival, those whose
    #: request message has not come yet included, are held to twice this.
    max_concurrent_rpcs: int = 1000
    #: Connections open at once (``MICRO_SERVER_MAX_CONNECTIONS``); grpcio closes one more as it is accepted,
    #: before any handshake, so idle or half-open sockets cannot take the process's file descriptors.
    max_connections: int = 1024
    #: Seconds a connection may stay without a call (``MICRO_SERVER_IDLE_TIMEOUT``) before the server ends it
    #: with a GOAWAY; a client reconnects on its next call.
    idle_timeout: float = 300.0
    #: Seconds from accepting a connection to the end of its HTTP/2 (and TLS) handshake
    #: (``MICRO_SERVER_HANDSHAKE_TIMEOUT``); a peer that connects and sends nothing is closed after it.
    handshake_timeout: float = 30.0
    #: Largest header block of a call, in bytes (``MICRO_SERVER_MAX_METADATA_SIZE``); a call with more metadata
    #: is refused before its handler runs.
    max_metadata_size: int = 16384
    #: Serve gRPC server reflection (``MICRO_SERVER_REFLECTION``).
    reflection: bool = True
    #: Serve ``grpc.health.v1.Health`` (``MICRO_SERVER_HEALTH``).
    health: bool = True
    #: Serve over TLS only (``MICRO_SERVER_TLS``); needs ``cert_file`` and ``key_file``.
    tls: bool = False
    #: PEM certificate chain of the server (``MICRO_SERVER_CERT_FILE``).
    cert_file: str | None = None
    #: PEM private key for ``cert_file`` (``MICRO_SERVER_KEY_FILE``).
    key_file: str | None = None
    #: PEM CA bundle (``MICRO_SERVER_CA_FILE``): when set, clients must present a certificate it signed (mutual TLS).
    ca_file: str | None = None

    def __post_init__(self) -> None:
        ServerOptions.__post_init__(self)
        _count(self.max_message_size, "max_message_size", (1 << 31) - 1)
        _count(self.max_concurrent_streams, "max_concurrent_streams", 1 << 20)
        _count(self.max_concurrent_rpcs, "max_concurrent_rpcs", 1 << 20)
        _count(self.max_connections, "max_connections", 1 << 20)
        _count(self.max_metadata_size, "max_metadata_size", 1 << 24)
        for option in ("idle_timeout", "handshake_timeout"):
            _seconds(getattr(self, option), option)
        for option in ("reflection", "health"):
            if not isinstance(getattr(self, option), bool):
                raise InvalidOption(f"must be true or false, got {getattr(self, option)!r}", option=option)
        _tls(self, listens=True)
        if not self.tls and (self.cert_file or self.ca_file):
            raise InvalidOption("cert_file or ca_file is set but tls is not", option="tls")
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
    #: Call over TLS only (``MICRO_CLIENT_TLS``), verifying the server against ``ca_file``.
    tls: bool = False
    #: PEM CA bundle that verifies servers (``MICRO_CLIENT_CA_FILE``); grpc's bundled roots when unset.
    ca_file: str | None = None
    #: PEM client certificate chain, for servers that demand one (``MICRO_CLIENT_CERT_FILE``).
    cert_file: str | None = None
    #: PEM private key for ``cert_file`` (``MICRO_CLIENT_KEY_FILE``).
    key_file: str | None = None
    #: The name the server's certificate must carry, when not the host of the node's address
    #: (``MICRO_CLIENT_SERVER_NAME``: nodes register IP addresses, certificates often name hosts).
    server_name: str | None = None

    def __post_init__(self) -> None:
        ClientOptions.__post_init__(self)
        _count(self.max_message_size, "max_message_size", (1 << 31) - 1)
        _count(self.max_channels, "max_channels", 1 << 16)
        _tls(self, listens=False)
        if not self.tls and (self.cert_file or self.ca_file or self.server_name):
            raise InvalidOption("cert_file, ca_file or server_name is set but tls is not", option="tls")
