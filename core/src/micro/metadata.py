"""Case-insensitive string metadata, carried with calls, messages and services."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping

__all__ = ["Metadata"]


class Metadata(MutableMapping[str, str]):
    """A ``str -> str`` mapping whose keys compare case-insensitively.

    Go Micro's headers pass through HTTP canonicalisation, so ``Micro-Id`` and
    ``micro-id`` are the same key; here they are too. A key keeps the spelling it
    was first set with, and iteration follows insertion order.
    """

    __slots__ = ("_items",)

    def __init__(self, data: Mapping[str, str] | Iterable[tuple[str, str]] | None = None, /, **kwargs: str) -> None:
        self._items: dict[str, tuple[str, str]] = {}
        if data is not None:
            self.update(data)
        if kwargs:
            self.update(kwargs)

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()][1]

    def __setitem__(self, key: str, value: str) -> None:
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"metadata keys and values must be str, not {type(key).__name__}={type(value).__name__}")
        folded = key.lower()
        old = self._items.get(folded)
        self._items[folded] = (old[0] if old else key, value)

    def __delitem__(self, key: str) -> None:
        del self._items[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Metadata):
            return {k: v[1] for k, v in self._items.items()} == {k: v[1] for k, v in other._items.items()}
        if isinstance(other, Mapping):
            return self == Metadata(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Metadata({dict(self)!r})"

    def copy(self) -> Metadata:
        # Straight from the entries: the client copies the current metadata on every call.
        copied = Metadata.__new__(Metadata)
        copied._items = self._items.copy()
        return copied

    def _merge(self, other: Mapping[str, str]) -> None:
        """``update(other)`` without a method call per key: the client merges a call's metadata on every call."""
        items = self._items
        for key, value in other.items():
            if type(key) is not str or type(value) is not str:
                self[key] = value  # __setitem__'s checks (a str subclass passes, anything else is a TypeError)
                continue
            folded = key.lower()
            old = items.get(folded)
            items[folded] = (old[0] if old else key, value)

    def _plain(self) -> dict[str, str]:
        """A plain ``dict`` of the entries, keys in their own spelling (the client builds a call's header from it)."""
        return dict(self._items.values())

    def merged(self, other: Mapping[str, str]) -> Metadata:
        """A new Metadata with ``other``'s entries over this one's."""
        result = self.copy()
        result.update(other)
        return result
