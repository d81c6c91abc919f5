"""What a tracer or stats backend puts around a service's calls and messages.

:func:`micro.debug.handler.mount` asks the service's tracer and stats for their
:class:`Middleware` (:meth:`Tracer.middleware <micro.debug.trace.Tracer.middleware>`,
:meth:`Stats.middleware <micro.debug.stats.Stats.middleware>`) and adds it to the
server (handlers, subscribers) and the client (calls, publishes). ``None`` means
the built-in wrappers of :mod:`micro.debug.wrappers`. A backend that needs other
propagation or labels (OpenTelemetry's ``traceparent``, Prometheus histograms)
returns its own, so selecting it by name (``MICRO_TRACER=...``) is all a service changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..client.base import CallWrapper, PublishWrapper
    from ..server.base import HandlerWrapper, SubscriberWrapper

__all__ = ["Middleware"]


@dataclass(frozen=True, kw_only=True, slots=True)
class Middleware:
    """Wrappers for each side of a service, each sequence outermost first."""

    #: Around every call the server serves (after routing: only registered endpoints reach them).
    handler: Sequence[HandlerWrapper] = ()
    #: Around every attempt of a call the client makes.
    call: Sequence[CallWrapper] = ()
    #: Around every broker message delivered to a subscriber.
    subscriber: Sequence[SubscriberWrapper] = ()
    #: Around every message the client publishes (see :meth:`micro.client.Client.wrap_publish`).
    publish: Sequence[PublishWrapper] = ()
