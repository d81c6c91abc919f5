"""Options of the runtime building block (``MICRO_RUNTIME_*``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from ..errors import InvalidOption
from ..options import Options

__all__ = ["RESTART_POLICIES", "RuntimeOptions"]

#: ``on-failure``: restart a service that ends with any code but 0, SIGTERM or SIGINT; ``never``: leave it.
RESTART_POLICIES: Final = ("on-failure", "never")


@dataclass(frozen=True, kw_only=True, slots=True)
class RuntimeOptions(Options):
    """Where the runtime keeps its state, how it stops services and when it restarts them."""

    #: The state directory (``MICRO_RUNTIME_DIRECTORY``); by default a per-user one,
    #: ``$XDG_STATE_HOME/micro/runtime`` or ``~/.local/state/micro/runtime``.
    directory: str | None = None
    #: Seconds a stopping service gets between SIGTERM and SIGKILL (``MICRO_RUNTIME_GRACE``).
    grace: float = 5.0
    #: When the supervisor restarts a service that ended (``MICRO_RUNTIME_RESTART``): ``on-failure`` or ``never``.
    restart: str = "on-failure"
    #: Seconds before the first restart (``MICRO_RUNTIME_RESTART_DELAY``); doubled for each further one.
    restart_delay: float = 1.0
    #: The longest wait between restarts, in seconds (``MICRO_RUNTIME_RESTART_MAX_DELAY``).
    restart_max_delay: float = 30.0
    #: Restarts before the supervisor gives up and leaves the service in ``error`` (``MICRO_RUNTIME_RESTART_LIMIT``).
    #: A run that lasted longer than ``restart_max_delay`` counts as healthy and starts the count afresh.
    restart_limit: int = 5

    def __post_init__(self) -> None:
        for name in ("grace", "restart_delay", "restart_max_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InvalidOption(f"must be a non-negative number of seconds, got {value!r}", option=name)
        if self.directory is not None and not self.directory.strip():
            raise InvalidOption("must not be blank", option="directory")
        if self.restart not in RESTART_POLICIES:
            raise InvalidOption(f"must be one of {', '.join(RESTART_POLICIES)}, got {self.restart!r}", option="restart")
        limit = self.restart_limit
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise InvalidOption(f"must be an integer >= 0, got {limit!r}", option="restart_limit")
