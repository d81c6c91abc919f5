"""asyncmicro-etcd: etcd for micro, as the registry, config source and sync named ``etcd``.

The implementations live in :mod:`micro_etcd.registry`, :mod:`micro_etcd.config`
and :mod:`micro_etcd.sync`, imported only when selected; their settings are the
options classes exported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .options import EtcdRegistryOptions, EtcdSourceOptions, EtcdSyncOptions

__all__ = ["EtcdRegistryOptions", "EtcdSourceOptions", "EtcdSyncOptions"]


def __getattr__(name: str) -> Any:
    # micro imports this package to load the plugin hooks; keep that free of micro's block modules.
    if name in __all__:
        from . import options

        return getattr(options, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
