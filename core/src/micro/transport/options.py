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
        if self.key_file and not self.cert_file:
            raise InvalidOption("key_file is set but cert_file is not", option="cert_file")
