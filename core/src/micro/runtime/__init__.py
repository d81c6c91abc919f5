"""Running services as processes: ``micro run``, ``micro ps``, ``micro kill``, ``micro logs``."""

from __future__ import annotations

from .base import Runtime, RuntimeLogs, RuntimeService, Status
from .options import RuntimeOptions

__all__ = ["Runtime", "RuntimeLogs", "RuntimeOptions", "RuntimeService", "Status"]
