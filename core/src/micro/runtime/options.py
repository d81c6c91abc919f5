"""Options of the runtime building block (``MICRO_RUNTIME_*``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidOption
from ..options import Options

__all__ = ["RuntimeOptions"]


@dataclass(frozen=True, kw_only=True, slots=True)
class RuntimeOptions(Options):
    """Where the runtime keeps its state and how it stops services."""

    #: The state directory (``MICRO_RUNTIME_DIRECTORY``); by default a per-user one,
    #: ``$XDG_STATE_HOME/micro/runtime`` or ``~/.local/state/micro/runtime``.
    directory: str | None = None
    #: Seconds a stopping service gets between SIGTERM and SIGKILL.
    grace: float = 5.0

    def __post_init__(self) -> None:
        if not self.grace >= 0:
            raise InvalidOption(f"must be a non-negative number of seconds, got {self.grace!r}", option="grace")
        if self.directory is not None and not self.directory.strip():
            raise InvalidOption("must not be blank", option="directory")
