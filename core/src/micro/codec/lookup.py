"""Finding the codec for a content type.

Requests and messages name their codec by content type; codecs are registered
by name (``json``, ``msgpack``...). A :class:`Codecs` maps one to the other
over a catalogue of :class:`CodecEntry` rows and keeps one shared instance per
content type, so after the first lookup it is a dictionary hit. The client and
the server each take one as a collaborator (``codecs=``): the wiring
(:meth:`micro.plugins.PluginManager.codecs`) builds it over every installed
codec, with the default named by ``MICRO_CODEC`` in the service's environment.
Without one, they use :data:`BUILTIN` with ``json`` as the default.

:func:`codec_for`, :func:`default_codec` and :func:`default_content_type` are
conveniences over one process-wide :class:`Codecs` of the built-in codecs
(the default named by ``MICRO_CODEC`` in ``os.environ``).
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from .. import _env
from ..errors import CodecError, ConfigError, PluginConflict
from .base import Codec

__all__ = [
    "BUILTIN",
    "CodecEntry",
    "Codecs",
    "clear_cache",
    "codec_for",
    "default_codec",
    "default_content_type",
    "normalize",
]

_MAX_SPELLINGS: Final = 256

#: The embedded codecs, by name: import paths, imported only when used. :mod:`micro.defaults` registers the same.
BUILTIN: Final[Mapping[str, str]] = {
    "json": "micro.codec.json:JSONCodec",
    "msgpack": "micro.codec.msgpack:MsgpackCodec",
    "proto": "micro.codec.proto:ProtoCodec",
    "bytes": "micro.codec.bytes:BytesCodec",
    "json-rpc": "micro.codec.jsonrpc:JSONRPCCodec",
}


def normalize(content_type: str) -> str:
    """``content_type`` without parameters, lower-cased: ``"Text/Plain; charset=utf-8"`` -> ``"text/plain"``."""
    return content_type.partition(";")[0].strip().lower()


def _build(cls: type[Codec]) -> Codec:
    return cls()


@dataclass(frozen=True, slots=True)
class CodecEntry:
    """One codec a :class:`Codecs` can use: its name, where it comes from, and how to get it."""

    name: str
    #: Where it comes from, for errors (``"asyncmicro-core 0.1.0"``).
    origin: str
    #: Imports the class; raises :class:`~micro.errors.ConfigError` when it cannot.
    load: Callable[[], type[Codec]]
    #: Builds the one shared instance from the class (plain ``cls()`` unless the wiring reads options).
    build: Callable[[type[Codec]], Codec] = _build


def _import(path: str) -> Callable[[], type[Codec]]:
    def load() -> type[Codec]:
        module, _, attr = path.partition(":")
        try:
            cls: object = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"codec {path!r} cannot be imported: {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Codec)):
            raise ConfigError(f"{path} is not a Codec")
        return cls

    return load


def builtin() -> list[CodecEntry]:
    """The :data:`BUILTIN` codecs as a catalogue."""
    return [CodecEntry(name, "asyncmicro-core (built in)", _import(path)) for name, path in BUILTIN.items()]


class Codecs:
    """The codecs one client or server speaks, by content type; one shared instance per codec.

    :param catalogue: returns the codecs to choose from; called once, on the first lookup
        (:func:`builtin` when omitted).
    :param default: the name of the codec for an empty content type.
    :param source: where ``default`` came from (``"MICRO_CODEC"``), named in errors.

    Safe to share between threads and event loops.
    """

    def __init__(
        self,
        catalogue: Callable[[], Iterable[CodecEntry]] = builtin,
        *,
        default: str = "json",
        source: str | None = None,
    ) -> None:
        self._catalogue = catalogue
        self._entries: list[CodecEntry] | None = None
        self._default_name = default
        self._source = source
        self._default: Codec | None = None
        self._by_type: dict[str, Codec] = {}
        self._by_name: dict[str, Codec] = {}
        self._lock = threading.Lock()

    def get(self, content_type: str | None = None) -> Codec:
        """The codec for ``content_type`` (parameters and case ignored); the default one for ``None`` or ``""``.

        :raises ~micro.errors.CodecError: no codec handles it (the message names it and the installed ones).
        :raises ~micro.errors.PluginConflict: two codecs claim it.
        """
        if not content_type:
            return self._default or self.default()
        codec = self._by_type.get(content_type)
        if codec is not None:
            return codec
        return self._resolve(content_type)

    def default(self) -> Codec:
        """The codec named ``default``.

        :raises ~micro.errors.ConfigError: no codec has that name (the message lists the installed ones).
        """
        codec = self._default
        if codec is not None:
            return codec
        with self._lock:
            if self._default is None:
                entries = self._list()
                for entry in entries:
                    if entry.name == self._default_name:
                        self._default = self._instance(entry, entry.load())
                        break
                else:
                    where = f" (from {self._source})" if self._source else ""
                    installed = ", ".join(f"{e.name} ({e.origin})" for e in entries) or "none"
                    raise ConfigError(f"no codec named {self._default_name!r}{where}. Installed: {installed}")
            return self._default

    @property
    def default_content_type(self) -> str:
        """The content type of :meth:`default`."""
        return self.default().content_type

    def clear(self) -> None:
        """Forget every instance and read the catalogue again on next use (for tests)."""
        with self._lock:
            self._entries = None
            self._default = None
            self._by_type.clear()
            self._by_name.clear()

    def _list(self) -> list[CodecEntry]:
        if self._entries is None:
            self._entries = list(self._catalogue())
        return self._entries

    def _instance(self, entry: CodecEntry, cls: type[Codec]) -> Codec:
        codec = self._by_name.get(entry.name)
        if codec is None:
            codec = self._by_name[entry.name] = entry.build(cls)
            if not codec.name:
                codec.name = entry.name
        return codec

    def _resolve(self, content_type: str) -> Codec:
        key = normalize(content_type)
        with self._lock:
            codec = self._by_type.get(key)
            if codec is None:
                codec = self._find(key, content_type)
                self._by_type[key] = codec
            if len(self._by_type) < _MAX_SPELLINGS:  # callers' spellings come from the wire: bound them
                self._by_type[content_type] = codec
            return codec

    def _find(self, key: str, asked: str) -> Codec:
        matches: list[tuple[CodecEntry, type[Codec]]] = []
        known: list[str] = []
        broken: list[str] = []
        for entry in self._list():
            try:
                cls = entry.load()
            except ConfigError as exc:
                broken.append(f"{entry.name} ({entry.origin}): {exc}")
                continue
            known.append(cls.content_type)
            if key == cls.content_type or key in cls.aliases:
                matches.append((entry, cls))
        if not matches:
            skipped = f"; not loaded: {'; '.join(broken)}" if broken else ""
            raise CodecError(
                f"no codec for content type {asked!r}; installed: {', '.join(sorted(set(known))) or 'none'}{skipped}"
            )
        if len(matches) > 1:
            claimants = " and ".join(f"{entry.name!r} from {entry.origin}" for entry, _ in matches)
            raise PluginConflict(f"content type {key!r} is claimed by more than one codec: {claimants}")
        entry, cls = matches[0]
        return self._instance(entry, cls)


_shared: dict[str, Codecs] = {}
_shared_lock: Final = threading.Lock()


def _process_codecs() -> Codecs:
    selected = os.environ.get(_env.variable("codec"), "").strip() or "json"
    codecs = _shared.get(selected)
    if codecs is None:
        with _shared_lock:
            codecs = _shared.setdefault(selected, Codecs(default=selected, source=_env.variable("codec")))
    return codecs


def codec_for(content_type: str | None = None) -> Codec:
    """The shared built-in codec for ``content_type``: :meth:`Codecs.get` over :data:`BUILTIN`.

    A plugin's codecs are found through the wiring instead: a service's client and server
    get every registered one (:meth:`micro.plugins.PluginManager.codecs`).
    """
    return _process_codecs().get(content_type)


def default_codec() -> Codec:
    """The built-in codec named by ``MICRO_CODEC`` in ``os.environ`` (``json`` when unset)."""
    return _process_codecs().default()


def default_content_type() -> str:
    """The content type of :func:`default_codec`: ``"application/json"`` unless ``MICRO_CODEC`` says otherwise."""
    return default_codec().content_type


def clear_cache() -> None:
    """Forget the process-wide codecs (for tests)."""
    with _shared_lock:
        _shared.clear()
