"""Selector options: ``MICRO_SELECTOR_<FIELD>`` (``MICRO_SELECTOR_TTL=30s``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import InvalidOption
from ..options import Options

__all__ = ["SelectorOptions"]


def _positive(value: float, option: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise InvalidOption(f"must be a positive number of seconds, got {value!r}", option=option)


@dataclass(frozen=True, kw_only=True, slots=True)
class SelectorOptions(Options):
    """Settings of the built-in caching selectors."""

    #: Seconds a cached service is used before the registry is asked again (Go Micro: 1m).
    #: A registry watch keeps the entry current in between.
    ttl: float = 60.0
    #: Seconds a node is skipped after a failed call (see ``Selector.mark``).
    cooldown: float = 30.0
    #: When every candidate node is demoted, use them anyway (``True``) or raise ``NoneAvailable``.
    fail_open: bool = True

    def __post_init__(self) -> None:
        _positive(self.ttl, "ttl")
        _positive(self.cooldown, "cooldown")
        if not isinstance(self.fail_open, bool):
            raise InvalidOption(f"must be a boolean, got {self.fail_open!r}", option="fail_open")
