"""Go Micro's encoding of a service into Consul tags, plus the two tags it lacks.

Go Micro's consul registry (``go-micro/plugins registry/consul/encoding.go``)
stores what Consul has no field for in tags of hex-encoded zlib data:

* ``v-<hex zlib(version)>``: the version;
* ``e-<hex zlib(json endpoint)>``: one per endpoint;
* ``t-<hex zlib(json {key: value})>``: one per node metadata entry.

micro adds, in the same encoding, ``s-<...>`` per *service* metadata entry
(Go Micro drops service metadata) and ``n-<hex zlib(node id)>`` (the Consul
service ID is not the node id, see :func:`service_id`). Go Micro ignores tags
it does not know, and reading a service Go Micro registered works: without an
``n-`` tag the node id is the Consul service ID.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import json
import re
import zlib
from collections.abc import Iterable, Mapping
from typing import Any, Final

from micro.errors import MicroError
from micro.registry import Endpoint, Node, Service

__all__ = ["decode", "encode", "join_address", "service_id", "split_address", "valid_meta"]

_ID_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.:@-]")
_META_KEY: Final = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


def _pack(data: bytes) -> str:
    return binascii.hexlify(zlib.compress(data)).decode("ascii")


@functools.lru_cache(maxsize=8192)
def _unpack(text: str) -> bytes | None:
    # Cached: the nodes of a version share their version, endpoint and metadata tags.
    try:
        return zlib.decompress(binascii.unhexlify(text))
    except (binascii.Error, zlib.error, ValueError):
        return None


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode("utf-8")


def encode(service: Service, node: Node) -> list[str]:
    """The tags of ``node`` of ``service``: version, endpoints, service metadata, node id and node metadata."""
    tags = [f"v-{_pack(service.version.encode('utf-8'))}"]
    tags += [f"e-{_pack(_json(e.to_dict()))}" for e in service.endpoints]
    tags += [f"s-{_pack(_json({k: v}))}" for k, v in sorted(service.metadata.items())]
    tags.append(f"n-{_pack(node.id.encode('utf-8'))}")
    tags += [f"t-{_pack(_json({k: v}))}" for k, v in sorted(node.metadata.items())]
    return tags


def _pairs(blobs: Iterable[bytes]) -> dict[str, str]:
    result: dict[str, str] = {}
    for blob in blobs:
        try:
            data = json.loads(blob)
        except ValueError:
            continue
        if isinstance(data, dict):
            result.update({str(k): str(v) for k, v in data.items()})
    return result


def decode(tags: Iterable[str], *, service: bool = True) -> dict[str, Any]:
    """What :func:`encode` stored: ``version``, ``endpoints``, ``metadata``, ``node_id``, ``node_metadata``.

    Keys whose tags are absent are missing from the result; undecodable tags are skipped.
    ``service=False`` leaves out ``endpoints`` and ``metadata`` (the node's part only, cheaper).
    """
    kinds = ("v", "e", "s", "n", "t") if service else ("v", "n", "t")
    found: dict[str, list[bytes]] = {}
    for tag in tags:
        kind, sep, payload = tag.partition("-")
        if sep and kind in kinds and (blob := _unpack(payload)) is not None:
            found.setdefault(kind, []).append(blob)
    result: dict[str, Any] = {}
    if "v" in found:
        result["version"] = found["v"][0].decode("utf-8", "replace")
    if "n" in found:
        result["node_id"] = found["n"][0].decode("utf-8", "replace")
    if not service:
        if "t" in found:
            result["node_metadata"] = _pairs(found["t"])
        return result
    endpoints = []
    for blob in found.get("e", []):
        try:
            endpoints.append(Endpoint.from_dict(json.loads(blob)))
        except (ValueError, TypeError, MicroError):
            continue
    result["endpoints"] = endpoints
    if "s" in found:
        result["metadata"] = _pairs(found["s"])
    if "t" in found:
        result["node_metadata"] = _pairs(found["t"])
    return result


def service_id(name: str, version: str, node_id: str) -> str:
    """The Consul service ID of a node: unique per (name, version, node id), readable, safe in a URL path.

    Consul keys services by ID alone on an agent, while micro keys nodes by id
    within a service version, so the ID carries a digest of all three.
    """
    digest = hashlib.sha256(f"{name}\0{version}\0{node_id}".encode()).hexdigest()[:12]
    readable = node_id if node_id.startswith(name) else f"{name}-{node_id}"
    return f"{_ID_UNSAFE.sub('_', readable)[:120]}-{digest}"


def valid_meta(metadata: Mapping[str, str]) -> dict[str, str]:
    """The entries of ``metadata`` Consul accepts in a service's ``Meta`` (the tags keep all of them)."""
    result: dict[str, str] = {}
    for key, value in sorted(metadata.items()):
        if len(result) == 64:
            break
        if _META_KEY.match(key) and not key.startswith("consul-") and len(value) <= 512:
            result[key] = value
    return result


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) as ``(host, port)``; anything else as ``(address, 0)``."""
    host, sep, port = address.rpartition(":")
    if sep and host and port.isdigit() and 0 < int(port) < 65536:
        if host.startswith("[") and host.endswith("]"):
            return host[1:-1], int(port)
        if ":" not in host:
            return host, int(port)
    return address, 0


def join_address(host: str, port: int) -> str:
    """The inverse of :func:`split_address`."""
    if not port:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
