"""NATS driver exceptions translated to :mod:`micro.errors`, at the boundary of every public method."""

from __future__ import annotations

import re
from typing import Final

import nats.errors as nx
import nats.js.errors as jx
from micro.errors import (
    BackendUnavailable,
    Forbidden,
    InternalError,
    MessageTooLarge,
    MicroError,
    Unauthorized,
)

__all__ = ["translate"]

# A URL with user information, anywhere in a driver's message: the part before its last '@' is masked.
_CREDENTIALS: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)\S*@")


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    if text.startswith("nats: "):
        text = text[len("nats: ") :]
    return _CREDENTIALS.sub(r"\1***@", text) or type(exc).__name__


def translate(exc: BaseException, where: str) -> MicroError | None:
    """The micro error for a driver or socket error ``exc``, its message starting with ``where``; ``None`` otherwise.

    ``where`` names the server and the variable that chose it, as in
    ``"nats at 127.0.0.1:4222 (MICRO_BROKER_ADDRESS)"``:

    * a refused login: :class:`~micro.errors.Unauthorized`;
    * a permissions violation: :class:`~micro.errors.Forbidden`;
    * a message over the server's ``max_payload``: :class:`~micro.errors.MessageTooLarge`;
    * no connection, a time-out, no responder (JetStream not enabled), a JetStream API that is
      unavailable (503): :class:`~micro.errors.BackendUnavailable`;
    * anything else the server or driver reports: :class:`~micro.errors.InternalError`.

    Anything else (cancellation, bugs) is not translated.
    """
    if isinstance(exc, (nx.AuthorizationError, nx.InvalidUserCredentialsError)):
        return Unauthorized(f"{where}: authentication failed: {_why(exc)}")
    if isinstance(exc, nx.Error) and "permissions violation" in str(exc).lower():
        return Forbidden(f"{where}: permission denied: {_why(exc)}")
    if isinstance(exc, nx.MaxPayloadError):
        return MessageTooLarge(f"{where}: the message is larger than the server's max_payload: {_why(exc)}")
    if isinstance(exc, jx.APIError):
        if exc.code == 503:
            return BackendUnavailable(f"{where}: JetStream is unavailable: {exc.description or _why(exc)}")
        return InternalError(f"{where}: JetStream refused the request: {exc.description or _why(exc)}")
    if isinstance(exc, nx.NoRespondersError):
        return BackendUnavailable(f"{where}: no responders (is JetStream enabled on the server?)")
    if isinstance(
        exc,
        (
            nx.NoServersError,
            nx.ConnectionClosedError,
            nx.StaleConnectionError,
            nx.OutboundBufferLimitError,
            nx.ConnectionReconnectingError,
            nx.ConnectionDrainingError,
            nx.TimeoutError,
            jx.NoStreamResponseError,
            OSError,
        ),
    ):
        return BackendUnavailable(f"{where}: {_why(exc)}")
    if isinstance(exc, nx.Error):
        return InternalError(f"{where}: {_why(exc)}")
    return None
