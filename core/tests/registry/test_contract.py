"""What the built-in registries refuse beyond the contract: blank names and an empty watch filter.

The contract itself (cases R01-R21) is micro-conformance's ``RegistryContract``,
run for memory, local and mdns by ``core/tests/test_conformance.py``.
"""

from __future__ import annotations

import pytest
from micro.errors import BadRequest
from micro.registry import Registry, Service


async def test_a_blank_service_name_is_refused(registry: Registry) -> None:
    with pytest.raises(BadRequest):
        await registry.register(Service("   "))


async def test_an_empty_watch_filter_is_refused(registry: Registry) -> None:
    with pytest.raises(BadRequest):
        registry.watch("")
