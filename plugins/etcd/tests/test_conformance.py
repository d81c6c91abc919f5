"""The conformance contracts against etcd (``micro conformance registry etcd`` etc. run the same)."""

from __future__ import annotations

from typing import ClassVar

from micro_conformance.registry import RegistryContract
from micro_conformance.sync import SyncContract


class TestEtcdRegistry(RegistryContract):
    name = "etcd"
    # Each test's names are unique already; a folder of its own keeps this suite's keys apart from real ones.
    options: ClassVar = {"prefix": "micro-test/registry/"}


class TestEtcdSync(SyncContract):
    name = "etcd"
    options: ClassVar = {"root": "micro-test/sync/"}
