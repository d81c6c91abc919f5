"""``micro.create``, typed by interface name: ``micro.create("store")`` is a :class:`~micro.store.Store`.

The plugin manager is generic (:func:`micro.plugins.create` takes a name, or an interface's base
class as a typed key); this facade only adds the static types users expect from a name. It imports
the base classes for the type checker only, so ``import micro`` stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from .component import Component
from .plugins import create as _create

if TYPE_CHECKING:
    from .auth import Auth
    from .broker import Broker
    from .client import Client
    from .codec import Codec
    from .config import Source
    from .debug.log import Log
    from .debug.stats import Stats
    from .debug.trace import Tracer
    from .network import Network
    from .registry import Registry
    from .runtime import Runtime
    from .selector import Selector
    from .server import Server
    from .store import Store
    from .sync import Sync
    from .transport import Transport
    from .tunnel import Tunnel

__all__ = ["create"]

C = TypeVar("C", bound=Component)


@overload
def create(interface: str, name: str | None = None, /, *, cls: Callable[..., C], **kwargs: Any) -> C: ...


@overload
def create(interface: Literal["auth"], name: str | None = None, /, **kwargs: Any) -> Auth: ...


@overload
def create(interface: Literal["broker"], name: str | None = None, /, **kwargs: Any) -> Broker: ...


@overload
def create(interface: Literal["client"], name: str | None = None, /, **kwargs: Any) -> Client: ...


@overload
def create(interface: Literal["codec"], name: str | None = None, /, **kwargs: Any) -> Codec: ...


@overload
def create(interface: Literal["config"], name: str | None = None, /, **kwargs: Any) -> Source: ...


@overload
def create(interface: Literal["log"], name: str | None = None, /, **kwargs: Any) -> Log: ...


@overload
def create(interface: Literal["network"], name: str | None = None, /, **kwargs: Any) -> Network: ...


@overload
def create(interface: Literal["registry"], name: str | None = None, /, **kwargs: Any) -> Registry: ...


@overload
def create(interface: Literal["runtime"], name: str | None = None, /, **kwargs: Any) -> Runtime: ...


@overload
def create(interface: Literal["selector"], name: str | None = None, /, **kwargs: Any) -> Selector: ...


@overload
def create(interface: Literal["server"], name: str | None = None, /, **kwargs: Any) -> Server: ...


@overload
def create(interface: Literal["stats"], name: str | None = None, /, **kwargs: Any) -> Stats: ...


@overload
def create(interface: Literal["store"], name: str | None = None, /, **kwargs: Any) -> Store: ...


@overload
def create(interface: Literal["sync"], name: str | None = None, /, **kwargs: Any) -> Sync: ...


@overload
def create(interface: Literal["tracer"], name: str | None = None, /, **kwargs: Any) -> Tracer: ...


@overload
def create(interface: Literal["transport"], name: str | None = None, /, **kwargs: Any) -> Transport: ...


@overload
def create(interface: Literal["tunnel"], name: str | None = None, /, **kwargs: Any) -> Tunnel: ...


@overload
def create(interface: str, name: str | None = None, /, **kwargs: Any) -> Component: ...


@overload
def create(interface: Callable[..., C], name: str | None = None, /, **kwargs: Any) -> C: ...


def create(interface: str | Callable[..., Component], name: str | None = None, /, **kwargs: Any) -> Component:
    """:func:`micro.plugins.create`: see :meth:`micro.plugins.PluginManager.create`."""
    return _create(interface, name, **kwargs)
