"""Store options: ``MICRO_STORE_<FIELD>`` (``MICRO_STORE_TABLE=orders``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..errors import InvalidOption
from ..options import Options

__all__ = ["SQLiteStoreOptions", "StoreOptions"]


def _name(value: object, option: str) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidOption(f"must be a non-empty string, got {value!r}", option=option)


#: The longest wait, in seconds, a store option may ask for: longer is a hang by another name.
MAX_WAIT: Final = 86_400.0


def _positive(value: object, option: str) -> None:
    # The chained comparison is false for NaN and the infinities, and exact for ints of any size.
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= MAX_WAIT:
        raise InvalidOption(
            f"must be a positive number of seconds up to {MAX_WAIT:g} (a day), got {value!r}", option=option
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class StoreOptions(Options):
    """Settings every store understands (Go Micro ``store.Options``)."""

    #: Where the store lives: server addresses, or a file for a file-backed store.
    address: tuple[str, ...] = ()
    #: The database used when a call passes ``database=None``.
    database: str = "micro"
    #: The table used when a call passes ``table=None``.
    table: str = "micro"

    def __post_init__(self) -> None:
        if not isinstance(self.address, tuple) or not all(isinstance(a, str) for a in self.address):
            raise InvalidOption("must be a tuple of strings", option="address")
        _name(self.database, "database")
        _name(self.table, "table")


@dataclass(frozen=True, kw_only=True, slots=True)
class SQLiteStoreOptions(StoreOptions):
    """The ``sqlite`` store: one SQLite file, shared safely by every process that opens it.

    The file is ``path`` if set, else ``address[0]`` if given, else
    ``$XDG_DATA_HOME/micro/store.db`` (``~/.local/share/micro/store.db`` when
    ``XDG_DATA_HOME`` is unset). ``":memory:"`` gives a private, non-persistent database.
    """

    #: The database file (``MICRO_STORE_PATH``).
    path: str | None = None
    #: How long, in seconds, one operation waits for another process's write to finish
    #: before raising :class:`~micro.errors.BackendUnavailable`.
    busy_timeout: float = 5.0

    def __post_init__(self) -> None:
        StoreOptions.__post_init__(self)
        if self.path is not None and not (isinstance(self.path, str) and self.path.strip()):
            raise InvalidOption("must be a non-empty file path", option="path")
        _positive(self.busy_timeout, "busy_timeout")
