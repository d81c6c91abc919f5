"""Logging for events a peer can cause at any rate: one line per interval and kind, with a count."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Final

__all__ = ["INTERVAL", "PeerErrorLogger", "RateLimitedLog"]

#: Seconds between two lines about the same kind of event.
INTERVAL: Final = 10.0


class RateLimitedLog:
    """Logs the first event of each kind at once, then at most one line per ``interval`` seconds.

    A line that stands for several events says how many, so a flood of refused
    connections or timed-out streams costs a line every ``interval`` seconds
    instead of one per event, and none of them carries a traceback.
    """

    def __init__(
        self, logger: logging.Logger, interval: float = INTERVAL, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._missed: dict[str, int] = {}

    def event(self, kind: str, level: int, message: str) -> None:
        """Count one event of ``kind``; log ``message`` unless a line about ``kind`` went out recently."""
        now = self._clock()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            self._missed[kind] = self._missed.get(kind, 0) + 1
            return
        self._last[kind] = now
        missed = self._missed.pop(kind, 0)
        if missed and last is not None:
            message = f"{message} (and {missed} more like it in the last {now - last:.0f}s)"
        self._logger.log(level, "%s", message)


class PeerErrorLogger(logging.Logger):
    """The ``logger`` of an aiohttp server (the http transport's listener, the http broker's endpoint).

    aiohttp answers a request it cannot parse (a line or header over its limits, bytes that are not HTTP)
    with 400 and logs it with ``logger.exception``: an ERROR with a traceback for each one, so a peer sending
    garbage fills the log. Here such a request is one line per interval of ``log`` with the reason, naming
    ``where``, without a traceback; everything else goes to ``aiohttp.server`` as before.
    """

    def __init__(self, log: RateLimitedLog, where: str) -> None:
        super().__init__("aiohttp.server")
        self.parent = logging.getLogger("aiohttp.server")  # its level and handlers, as aiohttp's own logger
        self._events = log
        self._where = where

    def exception(self, msg: object, *args: object, exc_info: object = True, **kwargs: object) -> None:
        from aiohttp.http_exceptions import HttpProcessingError

        if isinstance(exc_info, HttpProcessingError):
            reason = str(exc_info.message).splitlines()[0][:200] if exc_info.message else type(exc_info).__name__
            self._events.event(
                "bad_http_request", logging.WARNING, f"{self._where}: refused a malformed HTTP request: {reason}"
            )
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)  # type: ignore[arg-type]
