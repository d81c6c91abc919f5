"""What the registry reads from Consul, turned into micro's values: one service's view, the whole catalog."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from micro.registry import Node, Service

from . import _tags

__all__ = ["Catalog", "View", "view"]

#: One service's live state: version -> service, passing nodes only.
View = dict[str, Service]


def view(name: str, entries: list[dict[str, Any]] | None) -> View:
    """The live versions of ``name`` in a ``/v1/health/service`` answer (already filtered to passing)."""
    versions: dict[str, list[tuple[int, list[str], Node]]] = {}
    for entry in entries or []:
        instance = entry.get("Service") or {}
        if instance.get("Service") != name:
            continue
        tags = instance.get("Tags") or []
        decoded = _tags.decode(tags, service=False)
        host = instance.get("Address") or (entry.get("Node") or {}).get("Address") or ""
        metadata = decoded.get("node_metadata")
        if metadata is None:
            metadata = {str(k): str(v) for k, v in (instance.get("Meta") or {}).items()}
        node = Node(
            id=decoded.get("node_id") or str(instance.get("ID") or ""),
            address=_tags.join_address(host, int(instance.get("Port") or 0)),
            metadata=metadata,
        )
        modified = int(instance.get("ModifyIndex") or 0)
        versions.setdefault(decoded.get("version", ""), []).append((modified, tags, node))
    view: View = {}
    for version, members in versions.items():
        # Endpoints and service metadata are decoded once per version, from its latest registration.
        _, tags, _ = max(members, key=lambda m: m[0])
        latest = _tags.decode(tags)
        nodes = sorted((m[2] for m in members), key=lambda n: n.id)
        view[version] = Service(
            name=name,
            version=version,
            metadata=dict(latest.get("metadata", {})),
            endpoints=list(latest.get("endpoints", [])),
            nodes=nodes,
        )
    return view


@dataclass(slots=True)
class Catalog:
    """Every service instance of the datacenter, read in a few requests (see :meth:`ConsulRegistry.catalog`)."""

    #: Service name -> its passing instances, shaped like ``/v1/health/service`` entries.
    entries: dict[str, list[dict[str, Any]]]
    #: Service name -> what identifies the state of all its instances: equal signatures, equal views.
    signatures: dict[str, frozenset[tuple[str, str, str, int, bool]]]
    #: Consul's services index and checks index this state includes (at least).
    services_index: int = 0
    checks_index: int = 0
    #: The ``(node, service ID)`` of the checks that are not passing (service ID ``""``: a check of the node).
    failing: set[tuple[str, str]] = field(default_factory=set)
    #: ``(node, service ID)`` -> service name, for every instance.
    owners: dict[tuple[str, str], str] = field(default_factory=dict)
    #: Node -> the names of the services it runs.
    on_node: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        nodes: list[dict[str, Any] | None],
        failing: set[tuple[str, str]],
        services_index: int = 0,
        checks_index: int = 0,
    ) -> Catalog:
        """From ``/v1/catalog/node/<node>`` answers and the ``(node, service ID)`` of failing checks.

        An instance passes when no check of its own and no check of its node
        (service ID ``""``) fails: what ``/v1/health/service?passing`` returns.
        """
        entries: dict[str, list[dict[str, Any]]] = {}
        members: dict[str, list[tuple[str, str, str, int, bool]]] = {}
        owners: dict[tuple[str, str], str] = {}
        on_node: dict[str, set[str]] = {}
        for found in nodes:
            if not found:
                continue  # the node left between the listing and its read
            node = found.get("Node") or {}
            node_name = str(node.get("Node") or "")
            # The node's address is an instance's when it has none of its own; nothing else of the node shows.
            node_address = str(node.get("Address") or "")
            node_fails = (node_name, "") in failing
            for instance in (found.get("Services") or {}).values():
                name = str(instance.get("Service") or "")
                if not name or "/" in name:
                    continue
                sid = str(instance.get("ID") or "")
                passing = not node_fails and (node_name, sid) not in failing
                modified = int(instance.get("ModifyIndex") or 0)
                members.setdefault(name, []).append((node_name, node_address, sid, modified, passing))
                owners[(node_name, sid)] = name
                on_node.setdefault(node_name, set()).add(name)
                if passing:
                    entries.setdefault(name, []).append({"Node": node, "Service": instance})
        signatures = {name: frozenset(m) for name, m in members.items()}
        return cls(entries, signatures, services_index, checks_index, set(failing), owners, on_node)
