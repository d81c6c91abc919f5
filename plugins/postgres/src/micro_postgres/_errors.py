"""asyncpg exceptions translated to :mod:`micro.errors`, at the boundary of every public method."""

from __future__ import annotations

import re
from typing import Final

import asyncpg.exceptions as px
from micro.errors import BackendUnavailable, Forbidden, InternalError, MicroError, Unauthorized

__all__ = ["redact", "translate"]

# A URL with user information, anywhere in a driver's message: the part before its last '@' is masked.
_CREDENTIALS: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)\S*@")
# password=... in a key/value connection string a driver may quote.
_PASSWORD: Final = re.compile(r"(?i)(password\s*=\s*)('[^']*'|\S+)")


def redact(text: str) -> str:
    """``text`` with anything that looks like a credential (URL user information, ``password=``) masked."""
    return _PASSWORD.sub(r"\1***", _CREDENTIALS.sub(r"\1***@", text))


def _why(exc: BaseException) -> str:
    return redact(str(exc)) or type(exc).__name__


def translate(exc: BaseException, where: str) -> MicroError | None:
    """The micro error for a driver or socket error ``exc``, its message starting with ``where``; ``None`` otherwise.

    ``where`` names the server and the variable that chose it, as in
    ``"postgres at 127.0.0.1:5432/test (MICRO_STORE_ADDRESS)"``:

    * a refused login: :class:`~micro.errors.Unauthorized` ("authentication failed");
    * a statement the role may not run: :class:`~micro.errors.Forbidden`;
    * no connection, a lost one, a time-out, a server shutting down, starting up or out of
      connections: :class:`~micro.errors.BackendUnavailable`;
    * anything else the server or driver reports: :class:`~micro.errors.InternalError`.

    Anything else (cancellation, bugs) is not translated. Messages never carry a password.
    """
    if isinstance(exc, (px.InvalidPasswordError, px.InvalidAuthorizationSpecificationError)):
        return Unauthorized(f"{where}: authentication failed: {_why(exc)}")
    if isinstance(exc, px.InsufficientPrivilegeError):
        return Forbidden(f"{where}: permission denied: {_why(exc)}")
    if isinstance(
        exc,
        (
            px.PostgresConnectionError,
            px.ConnectionDoesNotExistError,
            px.OperatorInterventionError,  # shutdown, crash, starting up, statement cancelled
            px.InsufficientResourcesError,  # too many connections, disk full, out of memory
            TimeoutError,
            OSError,
        ),
    ):
        return BackendUnavailable(f"{where}: {_why(exc)}")
    if isinstance(exc, (px.PostgresError, px.InterfaceError)):
        return InternalError(f"{where}: {_why(exc)}")
    return None
