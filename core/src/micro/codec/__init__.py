"""Codecs: values and RPC messages to bytes and back, one per content type.

``codec_for("application/msgpack").marshal(value)``; see :mod:`micro.codec.base`
for the contract and :mod:`micro.codec.types` for typed decoding.
"""

from __future__ import annotations

from .base import Codec, Message, MessageType
from .lookup import BUILTIN, CodecEntry, Codecs, clear_cache, codec_for, default_codec, default_content_type, normalize
from .options import CodecOptions

__all__ = [
    "BUILTIN",
    "Codec",
    "CodecEntry",
    "CodecOptions",
    "Codecs",
    "Message",
    "MessageType",
    "clear_cache",
    "codec_for",
    "default_codec",
    "default_content_type",
    "normalize",
]
