"""micro-consul: Consul for micro, as the registry, config source and sync named ``consul``.

The implementations live in :mod:`micro_consul.registry`, :mod:`micro_consul.config`
and :mod:`micro_consul.sync`, imported only when selected; their settings are
the options classes exported here.
"""

from __future__ import annotations

from .options import ConsulRegistryOptions, ConsulSourceOptions, ConsulSyncOptions

__all__ = ["ConsulRegistryOptions", "ConsulSourceOptions", "ConsulSyncOptions"]
