"""Redis driver exceptions translated to :mod:`micro.errors`, at the boundary of every public method."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Final

import redis.exceptions as rx
from micro.errors import BackendUnavailable, Forbidden, InternalError, Unauthorized

__all__ = ["translated"]


# A URL with user information, anywhere in a driver's message: the part before its last '@' is masked.
_CREDENTIALS: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)\S*@")


def _why(exc: BaseException) -> str:
    return _CREDENTIALS.sub(r"\1***@", str(exc)) or type(exc).__name__


@contextlib.contextmanager
def translated(where: str) -> Iterator[None]:
    """Re-raise driver and socket errors from the block as micro errors that start with ``where``.

    ``where`` names the server and the variable that chose it, as in
    ``"redis at 127.0.0.1:6379 (MICRO_STORE_ADDRESS)"``:

    * a refused login: :class:`~micro.errors.Unauthorized` ("authentication failed");
    * a command the user may not run: :class:`~micro.errors.Forbidden`;
    * no connection, a time-out, a server that is loading, read-only or out of memory:
      :class:`~micro.errors.BackendUnavailable`;
    * anything else the server or driver reports: :class:`~micro.errors.InternalError`.

    Cancellation and micro's own errors pass through unchanged.
    """
    try:
        yield
    except rx.AuthenticationError as exc:
        raise Unauthorized(f"{where}: authentication failed: {_why(exc)}") from exc
    except (rx.AuthorizationError, rx.NoPermissionError) as exc:
        raise Forbidden(f"{where}: permission denied: {_why(exc)}") from exc
    except (rx.ConnectionError, rx.TimeoutError, rx.ReadOnlyError, rx.OutOfMemoryError, OSError) as exc:
        raise BackendUnavailable(f"{where}: {_why(exc)}") from exc
    except rx.RedisError as exc:
        raise InternalError(f"{where}: {_why(exc)}") from exc
