"""Reading ``MICRO_*`` variables: the one place the environment is interpreted."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["Selection", "proxy", "selection", "variable"]

PREFIX = "MICRO_"


@dataclass(frozen=True, slots=True)
class Selection:
    """What the environment asks of one interface."""

    #: ``MICRO_<INTERFACE>``, or ``None`` when unset or empty.
    name: str | None
    #: ``MICRO_<INTERFACE>_<OPTION>`` values keyed by lower-case option name.
    options: dict[str, str] = field(default_factory=dict)


def variable(interface: str, option: str | None = None) -> str:
    """The variable for ``interface`` (and ``option``): ``variable("store", "table") == "MICRO_STORE_TABLE"``."""
    base = PREFIX + interface.upper().replace("-", "_")
    return f"{base}_{option.upper()}" if option else base


def selection(interface: str, environ: Mapping[str, str]) -> Selection:
    """The name and options ``environ`` gives for ``interface``."""
    base = variable(interface)
    name = environ.get(base, "").strip() or None
    prefix = base + "_"
    options = {key[len(prefix) :].lower(): value for key, value in environ.items() if key.startswith(prefix)}
    if interface == "client" and "proxy" not in options and (via := proxy(environ)) is not None:
        options["proxy"] = via  # Go Micro's MICRO_PROXY: every client built from this environment uses it
    return Selection(name=name, options=options)


def proxy(environ: Mapping[str, str]) -> str | None:
    """``MICRO_PROXY`` (Go Micro's name): the network proxy every call of a client goes through.

    It is the client option ``proxy`` (``MICRO_CLIENT_PROXY`` wins when both are set)."""
    return environ.get(PREFIX + "PROXY", "").strip() or None
