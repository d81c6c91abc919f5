"""Server addresses as options give them: parsed once, checked, and shown without their credentials.

The one place plugins (and the core) turn an ``address`` option into a URL for their
driver, so that every backend accepts the same spellings and refuses a bad one with
the same :class:`~micro.errors.InvalidOption`, never echoing a password:

* :func:`masked` shows an address as given, perhaps malformed, with whatever may be a
  credential replaced by ``***``: the user information (everything before the last
  ``@`` after the scheme, since a password may hold ``@``, ``/`` or ``:``), the value
  of a query parameter named like a secret (``?password=``, ``?token=``), and a port
  that is not a number (``redis://:secret`` with the ``@host`` forgotten).
* :func:`server_url` turns ``host:port`` or ``scheme://...`` into a URL of one of the
  backend's schemes, checked: a known scheme, a host (or a path for ``unix``), a port
  from 1 to 65535, and optionally no user information or no path and query.
* :func:`display_address` is what messages say about a URL once it is in use:
  ``host:port`` and the database path, without credentials.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Collection
from typing import Final

from .errors import InvalidOption

__all__ = ["display_address", "masked", "server_url"]

# A query parameter whose name says it holds a secret (drivers read ``?password=`` from the URL).
_SECRET_PARAMETER: Final = re.compile(r"(?i)([?&;][^=&;#]*(?:pass|pwd|token|secret|auth|cred|key)[^=&;#]*=)[^&;#]*")


def masked(text: str) -> str:
    """``text``, an address as given and perhaps malformed, with whatever may be a credential replaced by ``***``.

    For messages about an address that could not be used, which must not echo a secret
    (see the module docstring for what is masked). ``host:port`` without a scheme works too.
    """
    scheme, separator, rest = text.partition("//")
    if not separator:
        scheme, rest = "", text
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    cut = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    netloc, tail = rest[:cut], rest[cut:]
    host, colon, port = netloc.rpartition(":")
    if colon and port and not port.isdigit() and not netloc.endswith("]"):
        netloc = f"{host}:***"
    return scheme + separator + netloc + _SECRET_PARAMETER.sub(r"\1***", tail)


def server_url(
    text: str,
    *,
    schemes: Collection[str],
    what: str,
    user_info: bool = True,
    path: bool = True,
    variable: str | None = None,
) -> str:
    """``text`` (``host:port`` or a URL) as a checked URL, stripped; the first of ``schemes`` when it names none.

    :param schemes: the schemes the backend accepts (``("redis", "rediss", "unix")``); ``unix``
        takes a socket path instead of a host.
    :param what: names the backend in messages (``"Redis"``).
    :param user_info: whether ``user:password@`` is allowed.
    :param path: whether a path, query or fragment is allowed (a database, driver parameters).
    :param variable: the variable the address came from, named in the error.
    :raises InvalidOption: (``option="address"``) the address cannot be used; the message shows it
        through :func:`masked`.
    """
    stripped = text.strip()
    shown = repr(masked(stripped))
    default = next(iter(schemes))
    url = stripped if "://" in stripped else f"{default}://{stripped}"

    def invalid(why: str) -> InvalidOption:
        return InvalidOption(f"{shown} is not a {what} address: {why}", option="address", variable=variable)

    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        # urlsplit's message quotes the bad port, which may be a password: say what is wrong instead.
        raise invalid(
            "its port is not a number from 0 to 65535" if "port" in str(exc).lower() else "it cannot be parsed"
        ) from None
    if parts.scheme not in schemes:
        spelled = ", ".join(f"{s}://" for s in schemes)
        raise invalid(f"unknown scheme {parts.scheme!r}; use {spelled}")
    if not user_info and (parts.username is not None or parts.password is not None):
        raise invalid("user information is not supported")
    if parts.scheme == "unix":
        if not parts.path:
            raise invalid("it names no socket path (unix:///path/to/socket)")
        return url
    if not parts.hostname:
        raise invalid(f"it names no host (host:port or {default}://host:port)")
    if port == 0:
        raise invalid("port 0 cannot be connected to")
    if not path and (parts.path.strip("/") or parts.query or parts.fragment):
        raise invalid("no path or query is allowed")
    return url


def display_address(url: str | urllib.parse.SplitResult, default_port: int) -> str:
    """``url`` without its credentials, for messages: ``127.0.0.1:6379``, ``127.0.0.1:5432/test``, a socket path."""
    parts = urllib.parse.urlsplit(url) if isinstance(url, str) else url
    if parts.scheme == "unix":
        return parts.path
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    database = parts.path.strip("/")
    where = f"{host}:{parts.port or default_port}"
    return f"{where}/{database}" if database else where
