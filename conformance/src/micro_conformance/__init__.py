"""micro-conformance: the contract every implementation of a micro interface must pass.

Subclass a contract in your own test suite::

    from micro_conformance import StoreContract

    class TestRedisStore(StoreContract):
        name = "redis"

or run it from the command line: ``micro conformance store redis``.
"""

from __future__ import annotations

from .base import Contract, Names, absent, case_id, create, eventually, requires

__all__ = ["Contract", "Names", "absent", "case_id", "create", "eventually", "requires"]
