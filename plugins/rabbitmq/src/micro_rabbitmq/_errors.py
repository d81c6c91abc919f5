"""Translating aio-pika/aiormq exceptions into :mod:`micro.errors` at the plugin's boundary."""

from __future__ import annotations

from typing import Final

import aiormq.exceptions
from micro.errors import BackendUnavailable, Forbidden, InvalidOption, MicroError, Unauthorized

__all__ = ["TRANSIENT", "VARIABLE", "translate"]

#: The variable the server's address comes from, named in every connection error.
VARIABLE: Final = "MICRO_BROKER_ADDRESS"

#: Failures that a reconnect can cure: the connection or a channel went away underneath.
TRANSIENT: Final = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    # An entity deleted underneath (an exchange removed by hand): the robust channel declares it again.
    aiormq.exceptions.ChannelNotFoundEntity,
    ConnectionError,
    OSError,
)


def translate(exc: BaseException, address: str, doing: str) -> MicroError:
    """The micro error for ``exc``, raised while ``doing`` something with the server at ``address``.

    ``address`` must already have its password masked.
    """
    where = f"rabbitmq at {address} ({VARIABLE})"
    if isinstance(exc, (aiormq.exceptions.ProbableAuthenticationError, aiormq.exceptions.AuthenticationError)):
        return Unauthorized(f"{where}: authentication failed while {doing}: {_reason(exc)}")
    if isinstance(exc, aiormq.exceptions.ChannelAccessRefused):
        return Forbidden(f"{where}: access refused while {doing}: {_reason(exc)}")
    if isinstance(exc, aiormq.exceptions.ChannelPreconditionFailed):
        return InvalidOption(
            f"{where}: RabbitMQ refused to redeclare an existing exchange or queue with other settings "
            f"while {doing} (durable, dead_letter_exchange and queue_expires must match what exists): {_reason(exc)}",
            option="durable",
        )
    if isinstance(exc, TimeoutError):
        return BackendUnavailable(f"{where}: timed out while {doing}")
    return BackendUnavailable(f"{where}: {doing} failed: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    args = [str(a) for a in getattr(exc, "args", ()) if str(a)]
    return "; ".join(args) or type(exc).__name__
