"""Registry options: ``MICRO_REGISTRY_<FIELD>`` (``MICRO_REGISTRY_TTL=60s``)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import InvalidOption
from ..options import Options

__all__ = ["LocalRegistryOptions", "MDNSRegistryOptions", "RegistryOptions"]

_SERVICE_NAME = re.compile(r"^(?!-)[a-z0-9-]{1,15}(?<!-)$")


def _positive(value: float, option: str) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise InvalidOption(f"must be a positive number of seconds, got {value!r}", option=option)


@dataclass(frozen=True, kw_only=True, slots=True)
class RegistryOptions(Options):
    """Settings every registry understands."""

    #: Where the registry lives (backend-specific: server addresses, a file path...).
    address: tuple[str, ...] = ()
    #: Upper bound, in seconds, for one registry operation.
    timeout: float = 5.0
    #: Default lifetime of registered nodes in seconds; ``None`` means they never expire.
    ttl: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.address, tuple) or not all(isinstance(a, str) for a in self.address):
            raise InvalidOption("must be a tuple of strings", option="address")
        _positive(self.timeout, "timeout")
        if self.ttl is not None:
            _positive(self.ttl, "ttl")


@dataclass(frozen=True, kw_only=True, slots=True)
class LocalRegistryOptions(RegistryOptions):
    """The ``local`` registry: a SQLite file shared by every process of the user.

    The file is ``path`` if set, else ``address[0]`` if given, else
    ``$XDG_RUNTIME_DIR/micro/registry.db`` or ``<tempdir>/micro-<uid>/registry.db``.
    """

    #: The database file (``MICRO_REGISTRY_PATH``).
    path: str | None = None
    #: How often, in seconds, watchers look for changes made by other processes (one tiny query
    #: on a thread when nothing changed).
    poll_interval: float = 0.05
    #: Entries the change log keeps (``MICRO_REGISTRY_LOG_SIZE``); a watcher further behind reads
    #: the whole registry once instead.
    log_size: int = 10_000
    #: Seconds the change log keeps an entry (``MICRO_REGISTRY_LOG_AGE``); same fallback.
    log_age: float = 600.0

    def __post_init__(self) -> None:
        RegistryOptions.__post_init__(self)
        _positive(self.poll_interval, "poll_interval")
        _positive(self.log_age, "log_age")
        if not isinstance(self.log_size, int) or isinstance(self.log_size, bool) or self.log_size < 1:
            raise InvalidOption(f"must be a positive whole number of entries, got {self.log_size!r}", option="log_size")
        if self.path is not None and not (isinstance(self.path, str) and self.path.strip()):
            raise InvalidOption("must be a non-empty file path", option="path")


@dataclass(frozen=True, kw_only=True, slots=True)
class MDNSRegistryOptions(RegistryOptions):
    """The ``mdns`` registry: multicast DNS on the local network, Go Micro's encoding."""

    #: How long, in seconds, the first lookup after start listens for answers (Go Micro: 100ms).
    timeout: float = 0.3
    #: Nodes are announced as instances of the DNS-SD type ``_<domain>._tcp.local.``: registries
    #: with different domains do not see each other. 1-15 characters: a-z, 0-9 and ``-``.
    domain: str = "micro"
    #: IP addresses of the interfaces to bind (``MICRO_REGISTRY_INTERFACES=127.0.0.1``); empty means all.
    interfaces: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        RegistryOptions.__post_init__(self)
        if not isinstance(self.domain, str) or not _SERVICE_NAME.match(self.domain):
            raise InvalidOption(
                f"must be 1-15 characters of a-z, 0-9 and '-' (a DNS-SD service name), got {self.domain!r}",
                option="domain",
            )
        if not isinstance(self.interfaces, tuple) or not all(isinstance(i, str) and i for i in self.interfaces):
            raise InvalidOption("must be a tuple of IP addresses", option="interfaces")
