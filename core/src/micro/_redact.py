"""Masking secrets in text that leaves a component: error replies, debug log records, trace span attributes.

:func:`redact` is applied at those boundaries, not where text is made, so a
message built anywhere (a handler's exception, a driver's error quoting its
connection URL) is masked before anyone else can read it. It masks:

* the password of an address with credentials: ``postgres://app:s3cret@db/x``
  becomes ``postgres://app:***@db/x``;
* the credential after ``Bearer``, ``Basic`` or ``Token`` (an ``Authorization`` value);
* the value of a ``key=value`` or ``key: value`` pair whose key names a secret
  (``password``, ``secret``, ``token``, ``api_key``, ``authorization``...);
* anything shaped like a JWT (``eyJ...``).

:func:`redact_headers` masks whole header values by name. Masking is best
effort on free text; what is never sent at all (an internal error's detail,
see :mod:`micro.server.rpc`) does not depend on it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

__all__ = ["MASK", "redact", "redact_headers", "secret_name"]

MASK: Final = "***"

# scheme://user:password@host -> keep the scheme and user, mask the password (it may contain ':' but not '@').
_URL_PASSWORD: Final = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)(?P<secret>[^\s@/]+)(?=@)")
# "Bearer <credential>"; the credential alphabet is RFC 6750's token68.
_SCHEME: Final = re.compile(r"(?P<head>\b(?:Bearer|Basic|Token|Digest)\s+)(?P<secret>[A-Za-z0-9._~+/=\-]+)", re.I)
_KEY_WORDS: Final = (
    r"authorization|proxy-authorization|cookie|set-cookie|password|passwd|pwd|secret|client_secret|"
    r"token|access_token|refresh_token|id_token|api[_\-]?key|private[_\-]?key|micro-local-proof"
)
# key=value, key: value, "key": "value" (JSON), with the key naming a secret; an auth scheme word is kept.
# A quoted value is masked up to its closing quote (it may hold spaces), a bare one up to a separator.
_KEY_VALUE: Final = re.compile(
    r"(?P<head>(?<![A-Za-z0-9_])(?:" + _KEY_WORDS + r")['\"]?\s*[=:]\s*(?P<quote>['\"])?"
    r"(?:(?:Bearer|Basic|Token|Digest)\s+)?)"
    r"(?P<secret>(?(quote)[^'\"]+|[^\s'\",;&}]+))",
    re.I,
)
_JWT: Final = re.compile(r"\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*")
_SECRET_HEADER: Final = re.compile(r"(?:" + _KEY_WORDS + r")", re.I)


def _mask(match: re.Match[str]) -> str:
    return match.group("head") + MASK


def redact(text: str) -> str:
    """``text`` with credentials replaced by ``***``; the same string when there are none."""
    if not text:
        return text
    text = _URL_PASSWORD.sub(_mask, text)
    text = _SCHEME.sub(_mask, text)
    text = _KEY_VALUE.sub(lambda m: m.group(0) if m.group("secret") == MASK else _mask(m), text)
    return _JWT.sub(MASK, text)


def secret_name(name: str) -> bool:
    """Whether a header or field called ``name`` holds a secret (``Authorization``, ``X-Api-Key``, ``db_password``)."""
    return _SECRET_HEADER.search(name) is not None


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``headers`` with secret-named values masked whole and the others passed through :func:`redact`."""
    return {key: MASK if secret_name(key) else redact(value) for key, value in headers.items()}
