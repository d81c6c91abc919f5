"""Sync options: ``MICRO_SYNC_<FIELD>`` (``MICRO_SYNC_PREFIX=orders/``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InvalidOption
from ..options import Options

__all__ = ["FileSyncOptions", "SyncOptions"]


def _positive(value: object, option: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise InvalidOption(f"must be a positive number of seconds, got {value!r}", option=option)


@dataclass(frozen=True, kw_only=True, slots=True)
class SyncOptions(Options):
    """Settings every sync implementation understands (Go Micro ``sync.Options``)."""

    #: Where the lock service lives: server addresses, or a file for a file-backed sync.
    address: tuple[str, ...] = ()
    #: Prepended to every lock id, so that applications sharing a backend do not collide.
    prefix: str = ""
    #: Who this instance is when it holds a lock; ``None`` picks a unique id per instance.
    #: Two instances with the same owner can release each other's locks.
    owner: str | None = None
    #: The longest pause, in seconds, between two attempts of a waiting :meth:`~micro.sync.Sync.lock`
    #: (for implementations that poll; the first retries come sooner).
    poll_interval: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.address, tuple) or not all(isinstance(a, str) for a in self.address):
            raise InvalidOption("must be a tuple of strings", option="address")
        if not isinstance(self.prefix, str):
            raise InvalidOption(f"must be a string, got {self.prefix!r}", option="prefix")
        if self.owner is not None and not (isinstance(self.owner, str) and self.owner):
            raise InvalidOption(f"must be a non-empty string or None, got {self.owner!r}", option="owner")
        _positive(self.poll_interval, "poll_interval")


@dataclass(frozen=True, kw_only=True, slots=True)
class FileSyncOptions(SyncOptions):
    """The ``file`` sync: locks in one SQLite file, shared by every process of the user on this machine.

    The file is ``path`` if set, else ``address[0]`` if given, else
    ``$XDG_RUNTIME_DIR/micro/sync.db`` or ``<tempdir>/micro-<uid>/sync.db``.
    """

    #: The database file (``MICRO_SYNC_PATH``).
    path: str | None = None
    #: How long, in seconds, one operation waits for another process's write to finish
    #: before raising :class:`~micro.errors.BackendUnavailable`.
    busy_timeout: float = 5.0

    def __post_init__(self) -> None:
        SyncOptions.__post_init__(self)
        if self.path is not None and not (isinstance(self.path, str) and self.path.strip()):
            raise InvalidOption("must be a non-empty file path", option="path")
        _positive(self.busy_timeout, "busy_timeout")
