"""From a URL path to a service and one of its endpoints, through the registry's endpoint lists.

Two path forms, as Go Micro's api:

* ``/<service>/<Handler>/<method>`` calls endpoint ``Handler.method`` of ``service``;
* ``/<service>/<method>`` calls ``<Service>.method``, the handler named after the service
  (``/greeter/hello`` calls ``Greeter.hello`` of ``greeter``).

Names match exactly first, then regardless of case (``/greeter/say/hello`` finds ``Say.hello``).
A service the registry does not know is :class:`~micro.errors.ServiceNotFound`, an endpoint it does
not list :class:`~micro.errors.EndpointNotFound` (both 404). A service that registered no endpoint
list (a Go service may not) is called as the path says, and answers for itself.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from micro.errors import BadRequest, EndpointNotFound, ServiceNotFound
from micro.registry.base import Endpoint, Registry

from .errors import GATEWAY

__all__ = ["Catalog", "Route", "split_path"]

#: ``stream_kind`` metadata of an endpoint that is not streaming.
UNARY: Final = "unary"

# A list read this recently is not read again for an unknown endpoint (a new version may list it).
_RECHECK_AFTER: Final = 1.0
# How long "no such service" is remembered, so unknown paths cannot turn into a registry lookup each.
_NEGATIVE_TTL: Final = 1.0


@dataclass(frozen=True, slots=True)
class Route:
    """A resolved call: ``endpoint`` (``"Handler.method"``) of ``service``, and its ``kind``.

    ``kind`` is ``"unary"``, ``"server_stream"``, ``"client_stream"`` or ``"bidi_stream"``.
    """

    service: str
    endpoint: str
    kind: str


def split_path(path: str, namespace: str = "") -> tuple[str, str | None, str]:
    """``(service, handler or None, method)`` from a path.

    :raises ~micro.errors.EndpointNotFound: a path of another shape (404).
    """
    parts = path[1:].split("/") if path.startswith("/") else []
    if len(parts) not in (2, 3) or not all(parts):
        raise EndpointNotFound(
            f"no endpoint at {path!r}: paths are /<service>/<Handler>/<method> or /<service>/<method>", id=GATEWAY
        )
    service = f"{namespace}.{parts[0]}" if namespace else parts[0]
    if len(parts) == 2:
        return service, None, parts[1]
    return service, parts[1], parts[2]


def _kind(endpoint: Endpoint) -> str:
    return endpoint.metadata.get("stream_kind") or (
        "server_stream" if endpoint.metadata.get("stream") == "true" else UNARY
    )


def _simple(name: str) -> str:
    """A handler name as Go Micro derives it from a service name: ``go.micro.api.greeter-svc`` -> ``greetersvc``."""
    return name.rsplit(".", 1)[-1].replace("-", "").replace("_", "").lower()


class Catalog:
    """Endpoint lists by service name, read from ``registry`` and kept ``ttl`` seconds.

    Every version's endpoints count; where two versions describe one endpoint, the one listed
    last wins (as ``micro describe`` reads them).
    """

    def __init__(self, registry: Registry, *, ttl: float) -> None:
        self.registry = registry
        self.ttl = ttl
        self._lists: dict[str, tuple[float, dict[str, Endpoint] | None]] = {}
        # Resolved routes by (path, namespace), each valid while the list it was matched in is the current one
        # and fresh: a call on a known path costs two dict lookups instead of a path split and an endpoint match.
        self._routes: dict[tuple[str, str], tuple[tuple[float, dict[str, Endpoint] | None], Route]] = {}

    async def endpoints(self, service: str, *, fresh: bool = False) -> dict[str, Endpoint]:
        """``service``'s endpoints by name; :class:`~micro.errors.ServiceNotFound` if it is not registered."""
        now = time.monotonic()
        cached = self._lists.get(service)
        if cached is not None and not fresh and now < cached[0]:
            if cached[1] is None:
                raise ServiceNotFound(f"service {service!r} not found", id=GATEWAY)
            return cached[1]
        try:
            entries = await self.registry.get_service(service)
        except ServiceNotFound:
            entries = []
        except BadRequest:  # a name the registry refuses to look up is a name nothing serves
            entries = []
        if len(self._lists) > 10_000:  # bounded: paths are caller input
            self._lists.clear()
        if not entries:
            self._lists[service] = (now + _NEGATIVE_TTL, None)
            raise ServiceNotFound(f"service {service!r} not found", id=GATEWAY)
        found: dict[str, Endpoint] = {}
        for entry in entries:
            for endpoint in entry.endpoints:
                if "subscriber" not in endpoint.metadata:
                    found[endpoint.name] = endpoint
        self._lists[service] = (now + self.ttl, found)
        return found

    def cached(self, path: str, namespace: str = "") -> Route | None:
        """The :class:`Route` :meth:`resolve` found for a URL path while its list is current; else ``None``."""
        known = self._routes.get((path, namespace))
        if known is not None:
            listed, route = known
            if self._lists.get(route.service) is listed and time.monotonic() < listed[0]:
                return route
        return None

    async def resolve(self, path: str, namespace: str = "") -> Route:
        """The :class:`Route` for a URL path (see the module's docstring for the forms and errors)."""
        route = self.cached(path, namespace)
        if route is not None:
            return route
        key = (path, namespace)
        route = await self._resolve(path, namespace)
        current = self._lists.get(route.service)
        if current is not None and current[1]:  # only routes matched in a list, never "as the path says"
            if len(self._routes) > 10_000:  # bounded: paths are caller input
                self._routes.clear()
            self._routes[key] = (current, route)
        return route

    async def _resolve(self, path: str, namespace: str) -> Route:
        service, handler, method = split_path(path, namespace)
        endpoints = await self.endpoints(service)
        route = self._match(service, endpoints, handler, method)
        if route is None and endpoints:
            checked = self._lists.get(service)
            if checked is not None and time.monotonic() - (checked[0] - self.ttl) > _RECHECK_AFTER:
                endpoints = await self.endpoints(service, fresh=True)
                route = self._match(service, endpoints, handler, method)
        if route is not None:
            return route
        if not endpoints:  # nothing described: let the service answer for the path as given
            name = f"{handler}.{method}" if handler else f"{service.rsplit('.', 1)[-1].title()}.{method}"
            return Route(service, name, UNARY)
        wanted = f"{handler}.{method}" if handler else f"<{service}>.{method}"
        raise EndpointNotFound(f"service {service!r} has no endpoint {wanted!r}", id=GATEWAY)

    @staticmethod
    def _match(service: str, endpoints: dict[str, Endpoint], handler: str | None, method: str) -> Route | None:
        if handler is not None:
            name = f"{handler}.{method}"
            endpoint = endpoints.get(name)
            if endpoint is None:
                lowered = name.lower()
                endpoint = next((e for n, e in endpoints.items() if n.lower() == lowered), None)
        else:
            simple, lowered = _simple(service), method.lower()
            endpoint = next(
                (
                    e
                    for n, e in endpoints.items()
                    if _simple(n.partition(".")[0]) == simple and n.partition(".")[2].lower() == lowered
                ),
                None,
            )
        return None if endpoint is None else Route(service, endpoint.name, _kind(endpoint))
