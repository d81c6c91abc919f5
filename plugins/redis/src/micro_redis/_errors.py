"""Redis driver exceptions translated to :mod:`micro.errors`, at the boundary of every public method."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Final

import redis.exceptions as rx
from micro.errors import BackendUnavailable, Forbidden, InternalError, MicroError, Unauthorized

__all__ = ["translate", "translated"]


# A URL with user information, anywhere in a driver's message: the part before its last '@' is masked.
_CREDENTIALS: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)\S*@")


def _why(exc: BaseException) -> str:
    return _CREDENTIALS.sub(r"\1***@", str(exc)) or type(exc).__name__


def translate(exc: BaseException, where: str) -> MicroError | None:
    """The micro error for a driver or socket error ``exc``, its message starting with ``where``; ``None`` otherwise.

    ``where`` names the server and the variable that chose it, as in
    ``"redis at 127.0.0.1:6379 (MICRO_STORE_ADDRESS)"``:

    * a refused login: :class:`~micro.errors.Unauthorized` ("authentication failed");
    * a command the user may not run: :class:`~micro.errors.Forbidden`;
    * no connection, a time-out, a server that is loading, read-only or out of memory:
      :class:`~micro.errors.BackendUnavailable`;
    * anything else the server or driver reports: :class:`~micro.errors.InternalError`.

    Anything else (cancellation, bugs) is not translated.
    """
    if isinstance(exc, rx.AuthenticationError):
        return Unauthorized(f"{where}: authentication failed: {_why(exc)}")
    if isinstance(exc, (rx.AuthorizationError, rx.NoPermissionError)):
        return Forbidden(f"{where}: permission denied: {_why(exc)}")
    if isinstance(exc, (rx.ConnectionError, rx.TimeoutError, rx.ReadOnlyError, rx.OutOfMemoryError, OSError)):
        return BackendUnavailable(f"{where}: {_why(exc)}")
    if isinstance(exc, rx.RedisError):
        return InternalError(f"{where}: {_why(exc)}")
    return None


@contextlib.contextmanager
def translated(where: str) -> Iterator[None]:
    """Re-raise driver and socket errors from the block as micro errors, as :func:`translate` maps them."""
    try:
        yield
    except Exception as exc:
        # Not only driver errors: a micro error that is also an OSError (Unavailable, Timeout) raised
        # inside the block is reported as the server's unavailability too, naming ``where``.
        micro = translate(exc, where)
        if micro is None:
            raise
        raise micro from exc
