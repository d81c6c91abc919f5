"""The debug log: recent records of a running service, readable from outside it.

:class:`Log` is the interface (Go Micro's ``debug/log``); :class:`MemoryLog`
(``MICRO_LOG=memory``, the default) keeps the last ``size`` records in a ring
buffer fed by a :class:`logging.Handler` on the ``micro`` logger, so anything
logged through :mod:`logging` under ``micro.*`` shows up in ``micro debug logs``.
``MICRO_LOG_LEVEL=debug`` sets the threshold.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import datetime
import logging
import sys
import threading
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, Final, Self

from .._redact import MASK, redact, secret_name
from ..component import Component
from ..errors import BadRequest, InvalidOption
from ..options import Options

__all__ = [
    "LEVELS",
    "Log",
    "LogOptions",
    "LogRecord",
    "LogStream",
    "MemoryLog",
    "level_number",
]

#: Level names accepted by ``MICRO_LOG_LEVEL`` and ``read(level=...)``, with Go Micro's aliases.
LEVELS: Final[Mapping[str, int]] = {
    "trace": 5,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "critical": logging.CRITICAL,
}

_NAMES: Final[Mapping[int, str]] = {
    5: "trace",
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warning",
    logging.ERROR: "error",
    logging.CRITICAL: "critical",
}


def level_number(level: str | int) -> int:
    """The :mod:`logging` number for a level name (case-insensitive) or number.

    Raises :class:`ValueError` for a name that is not in :data:`LEVELS`.
    """
    if isinstance(level, int):
        return level
    try:
        return LEVELS[level.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}") from None


def _level_name(number: int) -> str:
    return _NAMES.get(number, f"level {number}")


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One log entry. Every field is JSON-able, so records cross the wire as they are."""

    #: Seconds since the epoch.
    timestamp: float
    #: Lower-case level name: ``"debug"``, ``"info"``, ``"warning"``, ``"error"``, ``"critical"``.
    level: str
    message: str
    #: The logger's name under ``"logger"``, a traceback under ``"exception"``, and any ``extra=`` fields.
    metadata: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"timestamp": self.timestamp, "level": self.level, "message": self.message, "metadata": self.metadata}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogRecord:
        """The inverse of :meth:`to_dict`; raises :class:`BadRequest` for a malformed mapping."""
        try:
            return cls(
                timestamp=float(data["timestamp"]),
                level=str(data["level"]),
                message=str(data["message"]),
                metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BadRequest(f"not a log record: {exc!r}") from None

    def format(self) -> str:
        """A readable one-line form: ``2024-05-01 12:00:00.123 INFO micro.server: started``."""
        when = datetime.datetime.fromtimestamp(self.timestamp).isoformat(sep=" ", timespec="milliseconds")
        logger = self.metadata.get("logger", "")
        text = f"{when} {self.level.upper():<8} {logger + ': ' if logger else ''}{self.message}"
        if "exception" in self.metadata:
            text += "\n" + self.metadata["exception"]
        return text


@dataclass(frozen=True, kw_only=True, slots=True)
class LogOptions(Options):
    """Options of the debug log (``MICRO_LOG_<OPTION>``)."""

    #: The threshold: ``trace``, ``debug``, ``info``, ``warning``, ``error`` or ``critical`` (``MICRO_LOG_LEVEL``).
    level: str = "info"
    #: How many records the ring buffer keeps.
    size: int = 1024
    #: Also capture records of every other library (a handler on the root logger), not only ``micro.*``.
    root: bool = False
    #: Also print records to stderr in a readable form.
    stderr: bool = True

    def __post_init__(self) -> None:
        try:
            level_number(self.level)
        except ValueError as exc:
            raise InvalidOption(str(exc), option="level") from None
        if self.size < 1:
            raise InvalidOption(f"must be at least 1, got {self.size}", option="size")


class LogStream(AsyncIterator[LogRecord]):
    """Records as they are written, until :meth:`stop`.

    Iteration yields only records written after the stream was opened (use
    ``read`` for history) and ends after :meth:`stop`. A consumer that falls
    more than ``size`` records behind loses the oldest ones; :attr:`dropped`
    counts them. Usable as ``async with`` (stops on exit).
    """

    def __init__(self, size: int = 1024) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: collections.deque[LogRecord] = collections.deque(maxlen=size)
        self._ready = asyncio.Event()
        self._stopped = False
        #: Records lost because the consumer fell behind.
        self.dropped = 0

    @property
    def stopped(self) -> bool:
        return self._stopped

    def put(self, record: LogRecord) -> bool:
        """Queue ``record``, from any thread; ``False`` once the stream cannot take more."""
        if self._stopped:
            return False
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._put(record)
            return True
        try:
            self._loop.call_soon_threadsafe(self._put, record)
        except RuntimeError:  # the consumer's loop is closed: nobody will ever read this stream
            self._stopped = True
            return False
        return True

    def _put(self, record: LogRecord) -> None:
        if self._stopped:
            return
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(record)
        self._ready.set()

    def stop(self) -> None:
        """End the iteration; records already queued are still yielded. Idempotent."""
        if not self._stopped:
            self._stopped = True
            self._ready.set()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> LogRecord:
        while not self._queue:
            if self._stopped:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._queue.popleft()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Log(Component, abc.ABC):
    """A buffer of recent log records that can be read, filtered and followed.

    :meth:`write` is synchronous and cheap because logging handlers call it on
    every record, from any thread.
    """

    options: LogOptions
    options_type: ClassVar[type[LogOptions]] = LogOptions

    @abc.abstractmethod
    async def read(
        self,
        *,
        count: int | None = None,
        since: float | datetime.datetime | None = None,
        level: str | None = None,
    ) -> list[LogRecord]:
        """Buffered records, oldest first.

        :param count: only the last ``count`` records that pass the other filters.
        :param since: only records at or after this time (epoch seconds or an aware datetime).
        :param level: only records at this level or above.
        :raises BadRequest: a negative ``count`` or an unknown ``level``.
        """

    @abc.abstractmethod
    def write(self, record: LogRecord) -> None:
        """Add ``record`` to the buffer and to every open stream. Thread-safe; never blocks."""

    @abc.abstractmethod
    async def stream(self) -> LogStream:
        """A :class:`LogStream` of the records written from now on."""


def _check_filters(count: int | None, since: float | datetime.datetime | None, level: str | None) -> tuple[float, int]:
    if count is not None and count < 0:
        raise BadRequest(f"count must not be negative, got {count}")
    try:
        threshold = level_number(level) if level else 0
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    if isinstance(since, datetime.datetime):
        since = since.timestamp()
    return (float(since) if since is not None else float("-inf")), threshold


# Attributes every logging.LogRecord has; anything else came from ``extra=`` and goes into metadata.
_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class _Handler(logging.Handler):
    """Copies :mod:`logging` records into a :class:`Log`, credentials masked (the log is read over RPC)."""

    def __init__(self, log: Log, level: int) -> None:
        super().__init__(level)
        self._log = log
        self._formatter = logging.Formatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            metadata = {"logger": record.name}
            for key, value in record.__dict__.items():
                if key not in _STANDARD and not key.startswith("_"):
                    text = value if isinstance(value, str) else repr(value)
                    metadata[key] = MASK if secret_name(key) else redact(text)
            if record.exc_info:
                metadata["exception"] = redact(self._formatter.formatException(record.exc_info))
            message = redact(record.getMessage())
            self._log.write(LogRecord(record.created, _level_name(record.levelno), message, metadata))
        except Exception:
            self.handleError(record)


class _MaskingFormatter(logging.Formatter):
    """A formatter whose output (message, traceback) has credentials masked."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


_READABLE: Final = "%(asctime)s %(levelname)-8s %(name)s: %(message)s"


class MemoryLog(Log):
    """The last ``size`` records in memory, captured from :mod:`logging`.

    :meth:`start` attaches a handler to the ``micro`` logger (to the root
    logger too when ``root`` is set) and sets that logger's level from the
    ``level`` option; :meth:`close` detaches it and restores the level. The
    buffer outlives a close, so records stay readable.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({"stream"})

    def __init__(self, options: LogOptions | None = None) -> None:
        super().__init__(options)
        self._records: collections.deque[LogRecord] = collections.deque(maxlen=self.options.size)
        self._lock = threading.Lock()
        self._streams: list[LogStream] = []
        self._handlers: list[tuple[logging.Logger, logging.Handler]] = []
        self._saved_levels: list[tuple[logging.Logger, int]] = []

    @property
    def level(self) -> int:
        """The threshold as a :mod:`logging` number."""
        return level_number(self.options.level)

    async def start(self) -> None:
        if self._handlers:
            return
        # ``micro.*`` records propagate to the root logger, so one handler there sees both.
        target = logging.getLogger() if self.options.root else logging.getLogger("micro")
        self._saved_levels.append((target, target.level))
        target.setLevel(self.level)
        handlers: list[logging.Handler] = [_Handler(self, self.level)]
        if self.options.stderr:
            printer = logging.StreamHandler(sys.stderr)
            printer.setLevel(self.level)
            printer.setFormatter(_MaskingFormatter(_READABLE))
            handlers.append(printer)
        for handler in handlers:
            target.addHandler(handler)
            self._handlers.append((target, handler))

    async def close(self) -> None:
        for target, handler in self._handlers:
            target.removeHandler(handler)
            handler.close()
        self._handlers.clear()
        for target, level in reversed(self._saved_levels):
            target.setLevel(level)
        self._saved_levels.clear()
        with self._lock:
            streams, self._streams = self._streams, []
        for stream in streams:
            stream.stop()

    def write(self, record: LogRecord) -> None:
        with self._lock:
            self._records.append(record)
            streams = list(self._streams)
        dead = [stream for stream in streams if not stream.put(record)]
        if dead:
            with self._lock:
                self._streams = [s for s in self._streams if s not in dead]

    async def read(
        self,
        *,
        count: int | None = None,
        since: float | datetime.datetime | None = None,
        level: str | None = None,
    ) -> list[LogRecord]:
        after, threshold = _check_filters(count, since, level)
        with self._lock:
            records = list(self._records)
        found = [r for r in records if r.timestamp >= after and LEVELS.get(r.level, 0) >= threshold]
        if count is not None:
            found = found[len(found) - count :] if count else []
        return found

    async def stream(self) -> LogStream:
        stream = LogStream(self.options.size)
        with self._lock:
            self._streams = [s for s in self._streams if not s.stopped]
            self._streams.append(stream)
        return stream
