"""Strategies for :meth:`Selector.select <micro.selector.Selector.select>` (Go Micro ``selector/strategy.go``).

A strategy gets the candidate nodes (never empty) and returns a
:data:`~micro.selector.Next`. These two are stateless between selections; the
``roundrobin`` selector additionally shares one position per service across
selections.
"""

from __future__ import annotations

import itertools
import random as _random
from collections.abc import Sequence

from ..registry.base import Node
from .base import Next

__all__ = ["random", "round_robin"]

_rng = _random.Random()


def random(nodes: Sequence[Node], /) -> Next:
    """Each call returns a node chosen uniformly at random."""
    if len(nodes) == 1:
        only = nodes[0]  # no draw: a service of one node is the common case of every call
        return lambda: only
    choice = _rng.choice
    return lambda: choice(nodes)


def round_robin(nodes: Sequence[Node], /) -> Next:
    """Calls cycle through ``nodes`` in order, starting at a random one (so that clients spread out)."""
    counter = itertools.count(_rng.randrange(len(nodes)))
    size = len(nodes)
    return lambda: nodes[next(counter) % size]
