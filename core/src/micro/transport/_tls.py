"""TLS contexts from :class:`~micro.transport.TransportOptions`: one definition for every transport that has TLS."""

from __future__ import annotations

import ssl

from ..errors import InvalidOption
from .options import TransportOptions

__all__ = ["client_context", "server_context"]


def client_context(options: TransportOptions) -> ssl.SSLContext:
    """The context a dialler verifies listeners with (``ca_file``, ``insecure``, a client certificate)."""
    try:
        context = ssl.create_default_context(cafile=options.ca_file)
        if options.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if options.cert_file:
            context.load_cert_chain(options.cert_file, options.key_file)
    except (OSError, ValueError) as exc:
        raise InvalidOption(f"cannot load the TLS files: {exc}", option="ca_file") from exc
    return context


def server_context(options: TransportOptions) -> ssl.SSLContext:
    """The context a listener serves with: TLS 1.2 or later; with ``ca_file``, clients must present a certificate."""
    if not options.cert_file:
        raise InvalidOption("a TLS listener needs cert_file and key_file", option="cert_file")
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(options.cert_file, options.key_file)
        if options.ca_file:
            context.load_verify_locations(options.ca_file)
            context.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ValueError) as exc:
        raise InvalidOption(f"cannot load the TLS files: {exc}", option="cert_file") from exc
    return context
