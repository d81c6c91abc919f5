"""Opening a NATS connection the way every block of this package does."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from micro.errors import BackendUnavailable

if TYPE_CHECKING:
    from nats.aio.client import Client

__all__ = ["connect", "subscribed"]


async def connect(urls: list[str], *, where: str, connect_timeout: float, role: str, logger: logging.Logger) -> Client:
    """A connected client for ``urls``, reconnecting for ever once connected.

    Each server is tried twice (``connect_timeout`` seconds each at most), then
    :class:`~micro.errors.BackendUnavailable` names ``where`` and the last error: the driver's
    own "reconnect for ever" would make the first connection hang against a server that is down.
    Errors after the connection is made (a lost connection, a slow consumer) are logged as
    warnings on ``logger``.
    """
    from nats.aio.client import Client
    from nats.errors import NoServersError

    nc = Client()
    failures: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        if nc.is_connected or nc.is_reconnecting:
            logger.warning("%s: %s", where, exc)
        else:
            failures.append(exc)
            logger.debug("%s: %s", where, exc)

    try:
        await nc.connect(
            urls,
            name=f"micro-{role}-{uuid.uuid4().hex[:12]}",
            connect_timeout=connect_timeout,  # type: ignore[arg-type]  # typed int, takes float seconds
            reconnect_time_wait=0.5,  # type: ignore[arg-type]
            max_reconnect_attempts=1,
            error_cb=on_error,
        )
    except NoServersError as exc:
        # The driver's own message says only "no servers available"; the last attempt's error says why.
        why = failures[-1] if failures else exc
        raise BackendUnavailable(f"{where}: cannot connect: {why}") from exc
    nc.options["max_reconnect_attempts"] = -1
    return nc


async def subscribed(nc: Client, seconds: float) -> None:
    """Return once the server has every subscription made on ``nc`` so far.

    ``flush()`` alone does not promise that: nats-py writes its PING straight to the socket, ahead of
    commands still in its buffer (the SUB just made), so the PONG can come back before the server
    saw the SUB. The second round trip's PING follows the SUB, which the first flush pushed out.
    """
    timeout = max(1, round(seconds))
    await nc.flush(timeout=timeout)
    await nc.flush(timeout=timeout)
