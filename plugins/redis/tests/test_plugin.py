"""The distribution as micro sees it: entry point, registrations, lazy imports."""

from __future__ import annotations

import subprocess
import sys

import micro_redis
import pytest
from micro.plugins import get_manager


def test_the_entry_point_registers_store_broker_and_sync():
    manager = get_manager()
    found = {(p.interface, p.name): p for p in manager.providers() if p.plugin == "asyncmicro-redis:redis"}
    assert set(found) == {("store", "redis"), ("broker", "redis"), ("sync", "redis")}
    for provider in found.values():
        assert provider.distribution is not None
        assert provider.distribution.core_range == "<0.2,>=0.1"
    assert manager.factory(found["store", "redis"]) is micro_redis.RedisStore
    assert manager.factory(found["broker", "redis"]) is micro_redis.RedisBroker
    assert manager.factory(found["sync", "redis"]) is micro_redis.RedisSync


def test_loading_the_plugin_does_not_import_the_driver():
    code = (
        "import sys, micro_redis, micro_redis.plugin\n"
        "from micro.plugins import get_manager\n"
        "get_manager().names('store')\n"
        "micro_redis.RedisStoreOptions(key_prefix='x:')\n"
        "assert 'redis' not in sys.modules, sorted(m for m in sys.modules if m.startswith('redis'))\n"
        "micro_redis.RedisSync\n"
        "assert 'redis' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_unknown_attributes_are_attribute_errors():
    with pytest.raises(AttributeError, match="RedisCache"):
        micro_redis.RedisCache  # noqa: B018
    assert sorted(micro_redis.__all__) == micro_redis.__all__
