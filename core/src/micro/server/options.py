"""Server options: ``MICRO_SERVER_<FIELD>`` (``MICRO_SERVER_ADDRESS=127.0.0.1:9090``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..errors import InvalidOption
from ..options import Options

__all__ = ["ServerOptions"]


def _seconds(value: object, option: str, *, zero: bool = False) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not zero)
    ):
        kind = "non-negative" if zero else "positive"
        raise InvalidOption(f"must be a {kind} number of seconds, got {value!r}", option=option)


@dataclass(frozen=True, kw_only=True, slots=True)
class ServerOptions(Options):
    """Settings of an RPC server (Go Micro ``server.Options``)."""

    #: The service name it registers (``micro.Service`` sets it).
    name: str = "micro.server"
    #: The service version it registers.
    version: str = "latest"
    #: The node id; empty means ``<name>-<uuid4>``.
    id: str = ""
    #: Where to listen, ``host:port``; port 0 picks a free one.
    address: str = "127.0.0.1:0"
    #: The address registered for clients to dial, when it differs from the bound one (NAT, containers).
    advertise: str | None = None
    #: Node metadata published in the registry (``MICRO_SERVER_METADATA=zone=a,tier=1``).
    metadata: dict[str, str] = field(default_factory=dict)
    #: Seconds a registration lives in the registry unless renewed (Go's ``MICRO_REGISTER_TTL``).
    register_ttl: float = 60.0
    #: Seconds between renewals; must be shorter than ``register_ttl`` (Go's ``MICRO_REGISTER_INTERVAL``).
    register_interval: float = 30.0
    #: Seconds ``stop()`` waits for in-flight calls before cancelling them.
    drain_timeout: float = 10.0
    #: Answer only callers that prove they run as this service's own local user (``MICRO_SERVER_LOCAL_ONLY``):
    #: every call must carry a local proof (:mod:`micro.auth.local`), else it is refused with 403 before any
    #: wrapper or handler runs. For a user's own services on a shared machine.
    local_only: bool = False
    #: Seconds a local proof is accepted either side of the server's clock (``MICRO_SERVER_LOCAL_PROOF_WINDOW``).
    local_proof_window: float = 30.0
    #: The garbage collector's young-generation threshold (``gc.set_threshold``'s first value) set when the
    #: server starts, if the process's is lower (``MICRO_SERVER_GC_THRESHOLD``); 0 leaves the collector alone.
    #: Python's 700 makes a server with hundreds of calls in flight collect ~20 times per 1,000 calls.
    gc_threshold: int = 10_000

    def __post_init__(self) -> None:
        for option in ("name", "version", "address"):
            value = getattr(self, option)
            if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value):
                raise InvalidOption(f"must be a non-empty string without whitespace, got {value!r}", option=option)
        if not isinstance(self.id, str):
            raise InvalidOption(f"must be a string, got {self.id!r}", option="id")
        if self.advertise is not None and (not isinstance(self.advertise, str) or not self.advertise.strip()):
            raise InvalidOption(f"must be a non-empty host:port, got {self.advertise!r}", option="advertise")
        if not isinstance(self.metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.metadata.items()
        ):
            raise InvalidOption("must map strings to strings", option="metadata")
        _seconds(self.register_ttl, "register_ttl")
        _seconds(self.register_interval, "register_interval")
        _seconds(self.drain_timeout, "drain_timeout", zero=True)
        if not isinstance(self.local_only, bool):
            raise InvalidOption(f"must be true or false, got {self.local_only!r}", option="local_only")
        _seconds(self.local_proof_window, "local_proof_window")
        if type(self.gc_threshold) is not int or self.gc_threshold < 0:
            raise InvalidOption(f"must be a whole number, at least 0, got {self.gc_threshold!r}", option="gc_threshold")
        if self.local_proof_window > 300:
            raise InvalidOption(
                f"must be at most 300 seconds, got {self.local_proof_window!r}", option="local_proof_window"
            )
        if self.register_interval >= self.register_ttl:
            raise InvalidOption(
                f"must be shorter than register_ttl ({self.register_ttl}s), or registrations lapse between "
                f"renewals; got {self.register_interval}s",
                option="register_interval",
            )
