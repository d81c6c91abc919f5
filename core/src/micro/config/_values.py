"""Pure helpers on nested config data: merge, look up, flatten, diff, and scalars from text."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any, Final

from .._scalars import guess_scalar

__all__ = ["MISSING", "diff", "flatten", "lookup", "merge", "nest", "parse_scalar", "split_path"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


#: What :func:`lookup` returns for a path that does not exist.
MISSING: Final = _Missing()

#: Kept under its old name for the config sources; see :func:`micro._scalars.guess_scalar`.
parse_scalar = guess_scalar


def split_path(path: str | None) -> list[str]:
    """``"a.b.c"`` as ``["a", "b", "c"]``; ``None`` and ``""`` are the root (``[]``)."""
    if not path:
        return []
    return path.split(".")


def lookup(data: Any, path: str | None) -> Any:
    """The value at dotted ``path`` in ``data`` (not copied), or :data:`MISSING`.

    A segment that is a decimal number indexes a list (``"servers.0.host"``).
    """
    node = data
    for part in split_path(path):
        if isinstance(node, Mapping):
            if part not in node:
                return MISSING
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
    return node


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """A new dict: ``override`` deep-merged over ``base``.

    Mappings present in both are merged key by key; anything else in
    ``override`` (scalars, lists, a mapping over a scalar) replaces the value in
    ``base``. Neither argument is modified, and unchanged sub-trees are shared.
    """
    result = dict(base)
    for key, value in override.items():
        old = result.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            result[key] = merge(old, value)
        else:
            result[key] = value
    return result


def nest(keys: list[str], value: Any) -> dict[str, Any]:
    """``nest(["a", "b"], 1) == {"a": {"b": 1}}``."""
    result: Any = value
    for key in reversed(keys):
        result = {key: result}
    assert isinstance(result, dict)
    return result


def flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf of ``data`` as ``(dotted path, value)``; lists are leaves, empty mappings have none."""
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            yield from flatten(value, path)
        else:
            yield path, value


def diff(old: Any, new: Any, path: str | None) -> list[tuple[str, Any, Any]]:
    """What changed between two snapshots, as ``(path, old, new)`` with missing values as ``None``, values copied.

    With a ``path``, one entry for that path if its value differs. Without one,
    one entry per leaf that was added, changed or removed, sorted by path.
    """
    if path:
        before, after = lookup(old, path), lookup(new, path)
        if before is MISSING and after is MISSING:
            return []
        if before is not MISSING and after is not MISSING and before == after:
            return []
        return [(path, _copy(before), _copy(after))]
    flat_old = dict(flatten(old)) if isinstance(old, Mapping) else {}
    flat_new = dict(flatten(new)) if isinstance(new, Mapping) else {}
    changes = []
    for key in sorted(flat_old.keys() | flat_new.keys()):
        before, after = flat_old.get(key, MISSING), flat_new.get(key, MISSING)
        if before is not MISSING and after is not MISSING and before == after:
            continue
        changes.append((key, _copy(before), _copy(after)))
    return changes


def _copy(value: Any) -> Any:
    return None if value is MISSING else copy.deepcopy(value)
