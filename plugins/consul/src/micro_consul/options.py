"""Settings of the Consul registry, config source and sync (``MICRO_REGISTRY_*``, ``MICRO_CONFIG_*``, ``MICRO_SYNC_*``).

Each has ``address``, ``token`` and ``datacenter``. ``address`` lists Consul
agents' HTTP addresses (``127.0.0.1:8500``, ``http://host:8500``,
``https://host:8501``); they are tried in order at start-up and the first that
answers is used from then on. Empty means ``$CONSUL_HTTP_ADDR``, else
``127.0.0.1:8500``. ``token`` empty means ``$CONSUL_HTTP_TOKEN``, if set.
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

__all__ = ["ConsulRegistryOptions", "ConsulSourceOptions", "ConsulSyncOptions", "check_address", "masked"]


def check_address(address: str, *, variable: str | None = None) -> None:
    """Raise :class:`~micro.errors.InvalidOption` unless ``address`` is ``host:port`` or an http(s) URL.

    The message shows the address through :func:`masked` (never a password or
    token, even from a malformed one) and names ``variable`` if it came from one.
    """
    text = address if "//" in address else f"//{address}"
    usage = f"{masked(address)!r} is not host:port or http(s)://host:port"
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        # urlsplit's message quotes the bad port, which may be a password: say what is wrong instead.
        why = "the port is not a number from 0 to 65535" if "port" in str(exc).lower() else "it cannot be parsed"
        raise InvalidOption(f"{usage} ({why})", option="address", variable=variable) from None
    if parts.scheme not in ("", "http", "https") or not parts.hostname or port is None:
        raise InvalidOption(usage, option="address", variable=variable)


def _seconds(value: object, option: str, *, low: float = 0.0) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= low:
        raise InvalidOption(f"must be a number of seconds above {low:g}, got {value!r}", option=option)


def _common(address: tuple[str, ...], token: str | None, datacenter: str | None) -> None:
    if not isinstance(address, tuple):
        raise InvalidOption("must be a tuple of addresses", option="address")
    for item in address:
        if not isinstance(item, str):
            raise InvalidOption(f"must be a tuple of strings, got a {type(item).__name__}", option="address")
        check_address(item)
    if token is not None and not isinstance(token, str):
        raise InvalidOption("must be a string", option="token")
    if datacenter is not None and not (isinstance(datacenter, str) and datacenter.strip()):
        raise InvalidOption("must be a non-empty name", option="datacenter")


@dataclass(frozen=True, kw_only=True, slots=True)
class ConsulRegistryOptions(RegistryOptions):
    """Settings of :class:`~micro_consul.registry.ConsulRegistry` (``MICRO_REGISTRY_<FIELD>``).

    ``timeout`` bounds every request (a blocking query gets ``watch_wait`` on top);
    ``ttl`` is the default node lifetime, as for every registry.
    """

    #: An ACL token (``X-Consul-Token``); ``None`` uses ``$CONSUL_HTTP_TOKEN`` if set.
    token: str | None = None
    #: The datacenter to register in and read from; ``None`` is the agent's own.
    datacenter: str | None = None
    #: Seconds one blocking query of a watcher waits for a change before it is issued again.
    watch_wait: float = 30.0
    #: HTTP connections to the agent open at once, at least 4. Every watcher of the registry shares two
    #: blocking queries, the rest serve lookups, registrations and the watchers' reads; requests beyond
    #: it wait for a free connection (within ``timeout``).
    max_connections: int = 8

    def __post_init__(self) -> None:
        RegistryOptions.__post_init__(self)
        _common(self.address, self.token, self.datacenter)
        _seconds(self.watch_wait, "watch_wait", low=0.0)
        connections = self.max_connections
        if isinstance(connections, bool) or not isinstance(connections, int) or not 4 <= connections <= 1000:
            raise InvalidOption(f"must be a whole number from 4 to 1000, got {connections!r}", option="max_connections")


@dataclass(frozen=True, kw_only=True, slots=True)
class ConsulSourceOptions(ConfigOptions):
    """Settings of :class:`~micro_consul.config.ConsulSource` (``MICRO_CONFIG_<FIELD>``)."""

    #: Consul agents' HTTP addresses; see the module docstring.
    address: tuple[str, ...] = ()
    #: The KV folder read into the configuration; a ``/`` is added if missing, and ``""`` reads the whole store.
    prefix: str = "micro/config/"
    #: An ACL token (``X-Consul-Token``); ``None`` uses ``$CONSUL_HTTP_TOKEN`` if set.
    token: str | None = None
    #: The datacenter to read from; ``None`` is the agent's own.
    datacenter: str | None = None
    #: Seconds one request may take before :class:`~micro.errors.BackendUnavailable`.
    timeout: float = 5.0
    #: Seconds one blocking query of a watcher waits for a change before it is issued again.
    watch_wait: float = 30.0

    def __post_init__(self) -> None:
        _common(self.address, self.token, self.datacenter)
        if not isinstance(self.prefix, str):
            raise InvalidOption(f"must be a string, got {self.prefix!r}", option="prefix")
        prefix = self.prefix.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        object.__setattr__(self, "prefix", prefix)
        _seconds(self.timeout, "timeout")
        _seconds(self.watch_wait, "watch_wait")


@dataclass(frozen=True, kw_only=True, slots=True)
class ConsulSyncOptions(SyncOptions):
    """Settings of :class:`~micro_consul.sync.ConsulSync` (``MICRO_SYNC_<FIELD>``).

    ``prefix`` (every sync has it) is prepended to lock ids; ``root`` is the KV
    folder the locks live in.
    """

    #: An ACL token (``X-Consul-Token``); ``None`` uses ``$CONSUL_HTTP_TOKEN`` if set.
    token: str | None = None
    #: The datacenter whose KV store holds the locks; ``None`` is the agent's own.
    datacenter: str | None = None
    #: The KV folder that holds the locks.
    root: str = "micro/sync/"
    #: Seconds one request may take before :class:`~micro.errors.BackendUnavailable`.
    timeout: float = 5.0
    #: TTL of this instance's Consul session (10s to 86400s). It is renewed every third of that while the
    #: instance runs; if the process dies, Consul deletes its locks at most twice this long afterwards.
    session_ttl: float = 15.0

    def __post_init__(self) -> None:
        SyncOptions.__post_init__(self)
        _common(self.address, self.token, self.datacenter)
        if not isinstance(self.root, str):
            raise InvalidOption(f"must be a string, got {self.root!r}", option="root")
        root = self.root.strip("/")
        object.__setattr__(self, "root", f"{root}/" if root else "")
        _seconds(self.timeout, "timeout")
        if not (isinstance(self.session_ttl, (int, float)) and 10 <= self.session_ttl <= 86400):
            raise InvalidOption(
                f"must be between 10s and 86400s (Consul's limits), got {self.session_ttl!r}", option="session_ttl"
            )
