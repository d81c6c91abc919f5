"""asyncmicro-prometheus: Prometheus metrics of micro's calls and broker messages.

Select it with ``MICRO_STATS=prometheus``; the metrics are served at
``http://MICRO_STATS_ADDRESS/metrics`` (``127.0.0.1:9464`` by default). Importing this
package (or its plugin hooks) does not import ``prometheus_client``: the classes load when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .stats import PUBLISH_TIME_HEADER, PrometheusStats, PrometheusStatsOptions

__all__ = ["PUBLISH_TIME_HEADER", "PrometheusStats", "PrometheusStatsOptions"]

_LAZY = {"PUBLISH_TIME_HEADER": ".stats", "PrometheusStats": ".stats", "PrometheusStatsOptions": ".stats"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
