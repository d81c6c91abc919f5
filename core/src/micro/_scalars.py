"""Text to typed scalars: the one place micro decides how a boolean or a number is spelled.

Every string micro turns into a typed value goes through here: ``MICRO_*`` options
(:func:`micro.options.build`), configuration read into typed fields
(:meth:`micro.config.Config.get` with a type), values the env and flag config
sources guess from untyped text, and service-level settings.

* **Booleans** (:func:`parse_bool`): ``1``/``0``, ``true``/``false``, ``t``/``f``,
  ``yes``/``no``, ``y``/``n``, ``on``/``off``, in any case, surrounding space ignored.
* **Integers** (:func:`parse_int`): ASCII decimal digits with an optional sign. No
  ``_`` separators, no other scripts' digits, no ``0x``.
* **Numbers** (:func:`parse_float`): an integer, or a decimal with an optional
  exponent (``1.5``, ``.5``, ``2e3``). Not ``nan`` or ``inf``.
* **Durations** (:func:`parse_duration`): a number of seconds with an optional
  Go-style unit (``250ms``, ``5s``, ``2m``, ``1h``).
* **Guessing** (:func:`guess_scalar`), for text with no type to convert to: an integer,
  else a boolean, else a number, else the text. Only Go's ``strconv.ParseBool`` words
  (``true``/``false``/``t``/``f`` as Go spells them) are guessed to be booleans, a subset
  of :func:`parse_bool`'s, so a value such as ``on``, ``yes`` or ``n`` stays text until
  a field asks for a ``bool``.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = [
    "FALSE_WORDS",
    "TRUE_WORDS",
    "guess_scalar",
    "parse_bool",
    "parse_duration",
    "parse_float",
    "parse_int",
]

#: The spellings of true, lower case (compared after ``strip().lower()``).
TRUE_WORDS: Final = frozenset({"1", "true", "t", "yes", "y", "on"})
#: The spellings of false, lower case.
FALSE_WORDS: Final = frozenset({"0", "false", "f", "no", "n", "off"})
# Go's strconv.ParseBool spellings other than 1/0 (integers are guessed first), case-sensitive as in Go.
_GUESSED: Final = {
    **dict.fromkeys(("t", "T", "true", "TRUE", "True"), True),
    **dict.fromkeys(("f", "F", "false", "FALSE", "False"), False),
}

_NUMBER: Final = r"[+-]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+)(?:[eE][+-]?[0-9]+)?"
_INT: Final = re.compile(r"[+-]?[0-9]+")
_FLOAT: Final = re.compile(_NUMBER)
_DURATION: Final = re.compile(rf"\s*({_NUMBER})\s*(ns|us|µs|ms|s|m|h)?\s*")
_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_bool(text: str) -> bool:
    """``text`` as a boolean; :class:`ValueError` unless it is one of the spellings above."""
    folded = text.strip().lower()
    if folded in TRUE_WORDS:
        return True
    if folded in FALSE_WORDS:
        return False
    raise ValueError(f"expected a boolean (true/false, 1/0, yes/no, on/off), got {text!r}")


def parse_int(text: str) -> int:
    """``text`` as an integer (ASCII decimal, optional sign); :class:`ValueError` otherwise."""
    stripped = text.strip()
    if not _INT.fullmatch(stripped):
        raise ValueError(f"expected an integer, got {text!r}")
    return int(stripped)


def parse_float(text: str) -> float:
    """``text`` as a number (integer or decimal, optional exponent); :class:`ValueError` otherwise."""
    stripped = text.strip()
    if not _FLOAT.fullmatch(stripped):
        raise ValueError(f"expected a number, got {text!r}")
    return float(stripped)


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a plain number of seconds or a Go-style ``"250ms"``, ``"5s"``, ``"2m"``."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"expected a number of seconds or a duration such as 5s or 250ms, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def guess_scalar(text: str) -> int | bool | float | str:
    """``text`` as Go Micro's env source reads it: an int, else a ``strconv.ParseBool`` bool, else a float, else text.

    Only exact spellings count (no surrounding space), so ``" 5"``, ``"1_000"`` and ``"nan"`` stay text.
    """
    if _INT.fullmatch(text):
        return int(text)
    guessed = _GUESSED.get(text)
    if guessed is not None:
        return guessed
    if _FLOAT.fullmatch(text):
        return float(text)
    return text
