"""Node selection: the :class:`Selector` interface, filters and strategies.

The built-in selectors (``random``, ``roundrobin``) live in
:mod:`micro.selector.cache`, ``leastconn`` in :mod:`micro.selector.leastconn`; all are
built with ``micro.create("selector", name)``.
"""

from __future__ import annotations

from .base import Filter, Next, Selector, Strategy
from .filter import filter_endpoint, filter_label, filter_protocol, filter_version
from .options import SelectorOptions
from .strategy import random, round_robin

__all__ = [
    "Filter",
    "Next",
    "Selector",
    "SelectorOptions",
    "Strategy",
    "filter_endpoint",
    "filter_label",
    "filter_protocol",
    "filter_version",
    "random",
    "round_robin",
]
