"""An OpenAPI 3.1 document of the gateway, from the endpoint descriptions in the registry.

It is built from what ``micro describe`` shows (:func:`micro.server.handler.describe`'s
:class:`~micro.registry.Value` trees), so it needs no annotation beyond the handlers' type hints:

=====================================  ===================================================
Python (as the registry spells it)     JSON Schema
=====================================  ===================================================
``str``, ``bytes``                     ``{"type": "string"}``
``int``                                ``{"type": "integer"}``
``float``                              ``{"type": "number"}``
``bool``                               ``{"type": "boolean"}``
``X | None``                           ``{"anyOf": [X, {"type": "null"}]}``
``list[X]``, ``tuple``, ``set[X]``     ``{"type": "array", "items": X}``
``dict[K, V]``, ``Mapping[K, V]``      ``{"type": "object", "additionalProperties": V}``
a dataclass or pydantic model          ``{"$ref": "#/components/schemas/<service>.<Name>"}``
anything else (``Any``, ``datetime``)  ``{}`` (any value), its type name as the description
=====================================  ===================================================

Each unary endpoint is a ``POST /<service>/<Handler>/<method>``; a server stream answers that
POST with ``text/event-stream``; a client stream takes a JSON array. Every stream is also served
over a WebSocket at the same path, which OpenAPI cannot describe: the path item's
``x-micro-stream`` extension says which kind it is. Framework endpoints (``Debug.*``) and
subscribers are left out. The registry does not say which fields have defaults, so no field is
``required``: the service's own decoding answers a missing one with a 400.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

from micro.registry.base import Service, Value

__all__ = ["ERROR_SCHEMA", "document", "schema_of"]

_SCALARS: Final[dict[str, dict[str, Any]]] = {
    "str": {"type": "string"},
    "bytes": {"type": "string"},
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "bool": {"type": "boolean"},
    "None": {"type": "null"},
    "NoneType": {"type": "null"},
}
_SEQUENCES: Final = ("list", "tuple", "set", "frozenset", "Sequence", "Iterable", "MutableSequence", "AbstractSet")
_MAPS: Final = ("dict", "Mapping", "MutableMapping")
_IDENT: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_COMPONENT_UNSAFE: Final = re.compile(r"[^A-Za-z0-9._-]")
_PATH_SAFE: Final = re.compile(r"^[A-Za-z0-9._~!$&'()*+,;=:@-]+$")

#: Go Micro's error JSON, the body of every error response.
ERROR_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "who raised it: a service name, or micro.api for the gateway"},
        "code": {"type": "integer", "description": "the HTTP status"},
        "detail": {"type": "string"},
        "status": {"type": "string", "description": "the reason phrase of code"},
    },
    "required": ["id", "code", "detail", "status"],
}


def _split_union(spelled: str) -> list[str]:
    """``"dict[str, int | None] | None"`` -> ``["dict[str, int | None]", "None"]``: ``|`` outside brackets only."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(spelled):
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(spelled[start:i].strip())
            start = i + 1
    parts.append(spelled[start:].strip())
    return [p for p in parts if p]


def schema_of(value: Value | None, components: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The JSON Schema of one registry :class:`~micro.registry.Value`; named types go into ``components``."""
    if value is None:
        return {}
    alternatives = _split_union(value.type)
    if len(alternatives) > 1:
        present = [a for a in alternatives if a not in ("None", "NoneType")]
        if len(present) == 1:  # X | None: describe() put X's fields under this value
            inner = schema_of(Value(value.name, present[0], value.values), components, prefix)
            return {"anyOf": [inner, {"type": "null"}]} if len(present) < len(alternatives) else inner
        return {"description": value.type}  # a union of several types: any value, named
    spelled = alternatives[0] if alternatives else "any"
    scalar = _SCALARS.get(spelled)
    if scalar is not None:
        return dict(scalar)
    head = spelled.partition("[")[0]
    if head in _SEQUENCES:
        items = schema_of(value.values[0], components, prefix) if value.values else {}
        return {"type": "array", "items": items}
    if head in _MAPS:
        values = schema_of(value.values[1], components, prefix) if len(value.values) == 2 else {}
        return {"type": "object", "additionalProperties": values}
    if _IDENT.match(spelled):
        name = _COMPONENT_UNSAFE.sub("_", f"{prefix}.{spelled}")
        if name in components:
            return {"$ref": f"#/components/schemas/{name}"}
        if value.values:
            components[name] = {}  # before the fields: a recursive type refers to itself
            components[name] = {
                "type": "object",
                "title": spelled,
                "properties": {sub.name: schema_of(sub, components, prefix) for sub in value.values},
            }
            return {"$ref": f"#/components/schemas/{name}"}
    return {"description": value.type} if spelled not in ("any", "Any", "object") else {}


def _error_responses() -> dict[str, Any]:
    return {
        "default": {
            "description": "an error",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    }


def document(services: Iterable[Service], *, title: str = "micro API", version: str = "1.0.0") -> dict[str, Any]:
    """The OpenAPI 3.1 document for ``services`` (registry entries; several versions of one name merge)."""
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, Any] = {
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "whether the gateway is serving",
                "responses": {
                    "200": {
                        "description": "serving",
                        "content": {
                            "application/json": {
                                "schema": {"type": "object", "properties": {"status": {"type": "string"}}}
                            }
                        },
                    }
                },
            }
        }
    }
    merged: dict[str, dict[str, Any]] = {}
    for service in services:
        for endpoint in service.endpoints:
            merged.setdefault(service.name, {})[endpoint.name] = endpoint
    for service_name in sorted(merged):
        if not _PATH_SAFE.match(service_name):
            continue
        for name in sorted(merged[service_name]):
            endpoint = merged[service_name][name]
            handler, _, method = name.partition(".")
            if handler == "Debug" or "subscriber" in endpoint.metadata or not (handler and method):
                continue
            if not (_PATH_SAFE.match(handler) and _PATH_SAFE.match(method)):
                continue
            kind = endpoint.metadata.get("stream_kind") or (
                "server_stream" if endpoint.metadata.get("stream") == "true" else "unary"
            )
            request = schema_of(endpoint.request, components, service_name)
            response = schema_of(endpoint.response, components, service_name)
            item: dict[str, Any] = {}
            if kind != "unary":
                item["x-micro-stream"] = {"kind": kind, "websocket": True, "request": request, "response": response}
            operation: dict[str, Any] = {
                "operationId": f"{service_name}.{name}",
                "tags": [service_name],
                "summary": f"{name} of {service_name}",
                "description": "Request headers are the call's metadata (Authorization reaches the service); "
                "a Timeout header ('5s', '250ms') may lower the call's deadline.",
                "responses": _error_responses(),
            }
            if kind == "bidi_stream":
                item["description"] = "bidirectional stream: WebSocket only"
                paths[f"/{service_name}/{handler}/{method}"] = item
                continue
            if endpoint.request is not None:
                body = {"type": "array", "items": request} if kind == "client_stream" else request
                operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
            if kind == "server_stream":
                operation["responses"]["200"] = {
                    "description": "Server-Sent Events: one `data:` line of JSON per response; "
                    "an `event: error` carries the error JSON",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                }
            else:
                operation["responses"]["200"] = {
                    "description": "the response",
                    "content": {"application/json": {"schema": response}},
                }
            item["post"] = operation
            paths[f"/{service_name}/{handler}/{method}"] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"schemas": components},
    }
