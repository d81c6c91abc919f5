"""Options of the transport building block (``MICRO_TRANSPORT_*``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidOption
from ..options import Options

__all__ = ["TransportOptions"]


@dataclass(frozen=True, kw_only=True, slots=True)
class TransportOptions(Options):
    """How a transport listens and dials.

    TLS: with ``tls`` set, a listener needs ``cert_file`` and ``key_file`` and
    also demands client certificates signed by ``ca_file`` when that is set; a
    dialer verifies the server against ``ca_file`` (the system store when
    unset) unless ``insecure``, and presents ``cert_file``/``key_file`` when set.

    Limits (the tcp transport; ``docs/transport.md`` says what happens when
    each is hit): ``max_connections``, ``max_streams``, ``idle_timeout``,
    ``first_message_timeout``, ``read_timeout`` and ``max_partial_bytes``
    bound what one peer can make a listener hold, whatever it sends.
    """

    #: Default listen address (``Transport.listen(None, ...)``); ``":0"`` is every IPv4 interface, any free port.
    address: str = ":0"
    #: Seconds to wait for a connection (and its TLS handshake) when dialling.
    dial_timeout: float = 5.0
    #: The largest message (header and body, encoded) sent or accepted, in bytes.
    max_message_size: int = 4 * 1024 * 1024
    #: Use TLS on every connection.
    tls: bool = False
    #: PEM certificate chain: the listener's, or the dialer's client certificate.
    cert_file: str | None = None
    #: PEM private key for ``cert_file``.
    key_file: str | None = None
    #: PEM CA bundle that verifies the peer.
    ca_file: str | None = None
    #: Dial without verifying the server's certificate or host name (tests only).
    insecure: bool = False
    #: Connections one listener keeps open at once; one more is answered with an ERROR frame and closed.
    max_connections: int = 1024
    #: Streams open at once on one connection; a listener resets one more, a dialer waits for a free one.
    max_streams: int = 256
    #: Seconds a connection with no open stream and no traffic stays open (a dialer closes its own at half this).
    idle_timeout: float = 300.0
    #: Seconds an accepted stream may wait for its first frame after the OPEN before the listener resets it.
    first_message_timeout: float = 10.0
    #: Seconds a frame (or the preface, or a TLS handshake) may take to arrive once its first byte has.
    read_timeout: float = 30.0
    #: Bytes of incomplete frames one listener buffers across its connections; the rest wait, not reading.
    max_partial_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if not self.dial_timeout > 0:
            raise InvalidOption(
                f"must be a positive number of seconds, got {self.dial_timeout!r}", option="dial_timeout"
            )
        if not (isinstance(self.max_message_size, int) and self.max_message_size > 0):
            raise InvalidOption(
                f"must be a positive number of bytes, got {self.max_message_size!r}", option="max_message_size"
            )
        if self.max_message_size > 0xFFFF_FFF0:
            raise InvalidOption(f"must be below 4 GiB, got {self.max_message_size}", option="max_message_size")
        for name in ("idle_timeout", "first_message_timeout", "read_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise InvalidOption(f"must be a positive number of seconds, got {value!r}", option=name)
        for name in ("max_connections", "max_streams", "max_partial_bytes"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
                raise InvalidOption(f"must be a positive integer, got {value!r}", option=name)
        if self.key_file and not self.cert_file:
            raise InvalidOption("key_file is set but cert_file is not", option="cert_file")
