"""Options of the codec building block."""

from __future__ import annotations

from dataclasses import dataclass

from ..options import Options

__all__ = ["CodecOptions"]


@dataclass(frozen=True, kw_only=True, slots=True)
class CodecOptions(Options):
    """Settings shared by every codec; the embedded codecs need none.

    A codec plugin with settings subclasses this, and they are read from
    ``MICRO_CODEC_<OPTION>`` like any other block's.
    """
