"""The distribution as micro sees it: entry point, registrations, lazy imports, options and their errors."""

from __future__ import annotations

import subprocess
import sys

import micro_postgres
import pytest
from micro.errors import InvalidOption
from micro.plugins import get_manager
from micro_postgres.options import PostgresStoreOptions, PostgresSyncOptions, masked

pytestmark = pytest.mark.offline


def test_the_entry_point_registers_store_and_sync() -> None:
    manager = get_manager()
    found = {(p.interface, p.name): p for p in manager.providers() if p.plugin == "asyncmicro-postgres:postgres"}
    assert set(found) == {("store", "postgres"), ("sync", "postgres")}
    for provider in found.values():
        assert provider.distribution is not None
        assert provider.distribution.core_range == "<0.2,>=0.1"
    assert manager.factory(found["store", "postgres"]) is micro_postgres.PostgresStore
    assert manager.factory(found["sync", "postgres"]) is micro_postgres.PostgresSync


def test_loading_the_plugin_does_not_import_the_driver() -> None:
    code = (
        "import sys, micro_postgres, micro_postgres.plugin\n"
        "from micro.plugins import get_manager\n"
        "get_manager().names('store')\n"
        "micro_postgres.PostgresStoreOptions(schema='x')\n"
        "assert 'asyncpg' not in sys.modules\n"
        "micro_postgres.PostgresSync\n"
        "assert 'asyncpg' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_unknown_attributes_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="PostgresCache"):
        micro_postgres.PostgresCache  # noqa: B018
    assert sorted(micro_postgres.__all__) == micro_postgres.__all__


def test_options_from_the_environment() -> None:
    from micro import create

    store = create(
        "store",
        "postgres",
        environ={
            "MICRO_STORE_ADDRESS": "postgresql://127.0.0.1:5432/test",
            "MICRO_STORE_SCHEMA": "orders",
            "MICRO_STORE_CLEANUP_INTERVAL": "5",
            "MICRO_STORE_POOL_SIZE": "3",
        },
    )
    assert isinstance(store, micro_postgres.PostgresStore)
    assert (store.options.schema, store.options.cleanup_interval, store.options.pool_size) == ("orders", 5.0, 3)
    assert store.address == "127.0.0.1:5432/test"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("connect_timeout", 0),
        ("request_timeout", float("nan")),
        ("request_timeout", 10**400),
        ("cleanup_interval", -1),
        ("pool_size", 0),
        ("pool_size", True),
        ("schema", ""),
        ("schema", "x" * 64),
        ("schema", "a\x00b"),
    ],
)
def test_bad_store_options_name_the_option(field: str, value: object) -> None:
    with pytest.raises(InvalidOption, match=field):
        PostgresStoreOptions(**{field: value})


@pytest.mark.parametrize(
    "address",
    [
        "postgresql://user:s3cret@127.0.0.1:99999/db",  # bad port
        "postgresql://user:s3cret@/db",  # no host
        "mysql://user:s3cret@127.0.0.1/db",  # wrong scheme
        "postgresql://:s3cret",  # the @host forgotten: the password sits where the port goes
        "postgresql://127.0.0.1/db?password=s3cret&sslmode=x:",
    ],
)
def test_address_errors_never_echo_the_password(address: str) -> None:
    for options in (PostgresStoreOptions, PostgresSyncOptions):
        if "password=" in address:
            options(address=(address,))  # usable: the secret stays out of messages through masked()
            continue
        with pytest.raises(InvalidOption, match="address") as caught:
            options(address=(address,))
        assert "s3cret" not in str(caught.value), str(caught.value)
    assert "s3cret" not in masked(address)


def test_two_addresses_are_refused_without_passwords() -> None:
    with pytest.raises(InvalidOption, match="one PostgreSQL server") as caught:
        PostgresSyncOptions(address=("postgresql://u:s3cret@a", "postgresql://u:s3cret@b"))
    assert "s3cret" not in str(caught.value)
