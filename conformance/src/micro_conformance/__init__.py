"""asyncmicro-conformance: the contract every implementation of a micro interface must pass.

Subclass a contract in your own test suite::

    from micro_conformance import StoreContract

    class TestRedisStore(StoreContract):
        name = "redis"

or run it from the command line: ``micro conformance store redis``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .base import Contract, ContractViolation, Names, absent, case_id, create, requires
    from .testing import eventually

__all__ = ["Contract", "ContractViolation", "Names", "absent", "case_id", "create", "eventually", "requires"]


def __getattr__(name: str) -> Any:
    # The micro plugin (micro_conformance.plugin) is imported whenever micro loads its
    # plugins, so this package must not import pytest until a contract is asked for.
    if name == "eventually":
        from . import testing

        return testing.eventually
    if name in __all__:
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module 'micro_conformance' has no attribute {name!r}")
