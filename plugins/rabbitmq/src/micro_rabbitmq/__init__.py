"""asyncmicro-rabbitmq: the ``rabbitmq`` broker for micro (``MICRO_BROKER=rabbitmq``).

The broker itself lives in :mod:`micro_rabbitmq.broker`, imported only when it
is selected; its settings are :class:`RabbitMQBrokerOptions`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .options import DEFAULT_URL, RabbitMQBrokerOptions

__all__ = ["DEFAULT_URL", "RabbitMQBrokerOptions"]


def __getattr__(name: str) -> Any:
    # micro imports this package to load the plugin hooks; keep that free of micro's block modules.
    if name in __all__:
        from . import options

        return getattr(options, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
