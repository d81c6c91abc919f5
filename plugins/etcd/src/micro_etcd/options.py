"""Settings of the etcd registry, config source and sync (``MICRO_REGISTRY_*``, ``MICRO_CONFIG_*``, ``MICRO_SYNC_*``).

Each has ``address`` and ``timeout``. ``address`` lists etcd client URLs
(``127.0.0.1:2379``, ``http://host:2379``, ``https://host:2379``); they are
tried in order at start-up and the first that answers is used from then on.
Empty means ``$ETCD_ENDPOINTS`` (comma-separated, as etcdctl reads it), else
``127.0.0.1:2379``. Authentication is not supported yet: an address carrying
user information is refused, and the message shows it as ``***``.
"""

from __future__ import annotations

import math
import urllib.parse
from dataclasses import dataclass

from micro.address import masked
from micro.config import ConfigOptions
from micro.errors import InvalidOption
from micro.registry import RegistryOptions
from micro.sync import SyncOptions

__all__ = ["EtcdRegistryOptions", "EtcdSourceOptions", "EtcdSyncOptions", "check_address", "masked"]


def check_address(address: object, *, variable: str | None = None) -> None:
    """Raise :class:`~micro.errors.InvalidOption` unless ``address`` is ``host:port`` or an http(s) URL.

    The message shows the address through :func:`masked` and names ``variable`` if it came from one.
    """
    if not isinstance(address, str):
        raise InvalidOption(f"must be a string, got a {type(address).__name__}", option="address", variable=variable)
    usage = f"{masked(address)!r} is not host:port or http(s)://host:port"
    text = address if "//" in address else f"//{address}"
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError:
        raise InvalidOption(f"{usage} (it cannot be parsed)", option="address", variable=variable) from None
    if parts.username is not None or parts.password is not None:
        raise InvalidOption(
            f"{masked(address)!r}: user information is not supported (etcd authentication is not implemented)",
            option="address",
            variable=variable,
        )
    if parts.scheme not in ("", "http", "https") or not parts.hostname or port is None:
        raise InvalidOption(usage, option="address", variable=variable)
    if parts.path.strip("/") or parts.query or parts.fragment:
        raise InvalidOption(f"{usage} (no path or query)", option="address", variable=variable)


def _seconds(value: object, option: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise InvalidOption(f"must be a positive number of seconds, got {value!r}", option=option)


def _addresses(address: object) -> None:
    if not isinstance(address, tuple):
        raise InvalidOption("must be a tuple of addresses", option="address")
    for item in address:
        check_address(item)


def _folder(value: object, option: str, *, empty: bool = False) -> str:
    """``value`` as a key folder: no leading ``/``, one trailing ``/``; empty only if ``empty``."""
    if not isinstance(value, str):
        raise InvalidOption(f"must be a string, got {value!r}", option=option)
    folder = value.strip("/")
    if not folder and not empty:
        raise InvalidOption("must name a key folder, not the whole keyspace", option=option)
    return f"{folder}/" if folder else ""


def _connections(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 2 <= value <= 1000:
        raise InvalidOption(f"must be a whole number from 2 to 1000, got {value!r}", option="max_connections")


@dataclass(frozen=True, kw_only=True, slots=True)
class EtcdRegistryOptions(RegistryOptions):
    """Settings of :class:`~micro_etcd.registry.EtcdRegistry` (``MICRO_REGISTRY_<FIELD>``).

    ``timeout`` bounds every request (a watch stream is open-ended); ``ttl`` is the
    default node lifetime, as for every registry.
    """

    #: The key folder every node lives under (``<prefix><name>/<version>/<node id>``).
    prefix: str = "micro/registry/"
    #: HTTP connections to etcd open at once (2 to 1000). Every watcher holds one for its stream; requests
    #: beyond the limit wait for a free connection (within ``timeout``).
    max_connections: int = 100

    def __post_init__(self) -> None:
        RegistryOptions.__post_init__(self)
        _addresses(self.address)
        object.__setattr__(self, "prefix", _folder(self.prefix, "prefix"))
        _connections(self.max_connections)


@dataclass(frozen=True, kw_only=True, slots=True)
class EtcdSourceOptions(ConfigOptions):
    """Settings of :class:`~micro_etcd.config.EtcdSource` (``MICRO_CONFIG_<FIELD>``)."""

    #: etcd client URLs; see the module docstring.
    address: tuple[str, ...] = ()
    #: The key folder read into the configuration (``<prefix>database/host`` is ``database.host``).
    prefix: str = "micro/config/"
    #: Seconds one request may take before :class:`~micro.errors.BackendUnavailable`.
    timeout: float = 5.0

    def __post_init__(self) -> None:
        _addresses(self.address)
        object.__setattr__(self, "prefix", _folder(self.prefix, "prefix"))
        _seconds(self.timeout, "timeout")


@dataclass(frozen=True, kw_only=True, slots=True)
class EtcdSyncOptions(SyncOptions):
    """Settings of :class:`~micro_etcd.sync.EtcdSync` (``MICRO_SYNC_<FIELD>``).

    ``prefix`` (every sync has it) is prepended to lock ids; ``root`` is the key
    folder the locks live in.
    """

    #: The key folder that holds the locks.
    root: str = "micro/sync/"
    #: Seconds one request may take before :class:`~micro.errors.BackendUnavailable`.
    timeout: float = 5.0

    def __post_init__(self) -> None:
        SyncOptions.__post_init__(self)
        _addresses(self.address)
        object.__setattr__(self, "root", _folder(self.root, "root"))
        _seconds(self.timeout, "timeout")
