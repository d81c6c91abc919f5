"""Finding the codec for a content type among the registered ones.

Codecs are registered by name (``json``, ``msgpack``...) through
``micro_register_codec``; requests and messages name them by content type.
:func:`codec_for` maps one to the other and keeps one shared instance per
content type, so after the first lookup it is a dictionary hit.
"""

from __future__ import annotations

import os
import threading
from typing import Final, cast

from .. import _env
from ..errors import CodecError, ConfigError, PluginConflict
from ..plugins import get_manager
from .base import Codec

__all__ = ["clear_cache", "codec_for", "default_codec", "default_content_type", "normalize"]

_by_type: dict[str, Codec] = {}
_by_name: dict[str, Codec] = {}
_default: dict[str | None, Codec] = {}
_lock: Final = threading.Lock()
_MAX_SPELLINGS: Final = 256


def normalize(content_type: str) -> str:
    """``content_type`` without parameters, lower-cased: ``"Text/Plain; charset=utf-8"`` -> ``"text/plain"``."""
    return content_type.partition(";")[0].strip().lower()


def codec_for(content_type: str | None = None) -> Codec:
    """The shared codec for ``content_type`` (parameters and case ignored); the default codec for ``None`` or ``""``.

    Raises :class:`~micro.errors.CodecError` naming the content type, and the
    installed ones, when no registered codec handles it, and
    :class:`~micro.errors.PluginConflict` when two codecs claim it.
    """
    if not content_type:
        return default_codec()
    codec = _by_type.get(content_type)
    if codec is not None:
        return codec
    return _resolve(content_type)


def _resolve(content_type: str) -> Codec:
    key = normalize(content_type)
    with _lock:
        codec = _by_type.get(key)
        if codec is None:
            name = _find(key, content_type)
            codec = _by_name.get(name)
            if codec is None:
                codec = _by_name[name] = cast(Codec, get_manager().create("codec", name, cls=Codec))
            _by_type[key] = codec
        if len(_by_type) < _MAX_SPELLINGS:  # callers' spellings come from the wire: bound them
            _by_type[content_type] = codec
        return codec


def _find(key: str, asked: str) -> str:
    """The name of the one registered codec for ``key``."""
    manager = get_manager()
    matches: list[tuple[str, str]] = []
    known: list[str] = []
    broken: list[str] = []
    for provider in manager.providers("codec"):
        try:
            cls = manager.factory(provider)
        except ConfigError as exc:
            broken.append(str(exc))
            continue
        if not (isinstance(cls, type) and issubclass(cls, Codec)):
            broken.append(f"codec {provider.name!r} from {provider.origin} is not a Codec")
            continue
        known.append(cls.content_type)
        if key == cls.content_type or key in cls.aliases:
            matches.append((provider.name, provider.origin))
    if not matches:
        skipped = f"; not loaded: {'; '.join(broken)}" if broken else ""
        raise CodecError(
            f"no codec for content type {asked!r}; installed: {', '.join(sorted(set(known))) or 'none'}{skipped}"
        )
    if len(matches) > 1:
        claimants = " and ".join(f"{name!r} from {origin}" for name, origin in matches)
        raise PluginConflict(f"content type {key!r} is claimed by more than one codec: {claimants}")
    return matches[0][0]


def default_codec() -> Codec:
    """The codec named by ``MICRO_CODEC``, else the registered default (``json``), shared like :func:`codec_for`'s."""
    selected = os.environ.get(_env.variable("codec"), "").strip() or None
    codec = _default.get(selected)
    if codec is not None:
        return codec
    with _lock:
        codec = _default.get(selected)
        if codec is None:
            manager = get_manager()
            name = manager.resolve("codec", selected, source=_env.variable("codec") if selected else None).name
            codec = _by_name.get(name)
            if codec is None:
                codec = _by_name[name] = cast(Codec, manager.create("codec", name, cls=Codec))
            _default[selected] = codec
        return codec


def default_content_type() -> str:
    """The content type of :func:`default_codec`: ``"application/json"`` unless ``MICRO_CODEC`` says otherwise."""
    return default_codec().content_type


def clear_cache() -> None:
    """Forget every shared codec, so that plugins registered since are seen (for tests)."""
    with _lock:
        _by_type.clear()
        _by_name.clear()
        _default.clear()
