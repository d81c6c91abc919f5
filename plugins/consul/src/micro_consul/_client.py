"""One Consul connection shared by a component: py-consul's API over an aiohttp session, and error translation.

py-consul's own asyncio client builds its aiohttp connector with arguments
aiohttp deprecates; :class:`_HTTPClient` reuses its request code with a
connector built the current way. Every call goes through :meth:`Consul.call`,
which bounds it in time and turns driver exceptions into :mod:`micro.errors`.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import aiohttp
import consul
import consul.aio
import consul.base
import consul.exceptions
from micro.errors import BackendUnavailable, BadRequest, Forbidden, MicroError, Unauthorized

from .options import check_address

__all__ = ["DEFAULT_ADDRESS", "Consul", "Endpoint", "Txn", "dumps", "wait_param"]

T = TypeVar("T")

#: The agent used when neither the options nor ``$CONSUL_HTTP_ADDR`` name one.
DEFAULT_ADDRESS: Final = "127.0.0.1:8500"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One agent's HTTP address, parsed."""

    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, address: str) -> Endpoint:
        parts = urllib.parse.urlsplit(address if "//" in address else f"//{address}")
        return cls(parts.scheme or "http", parts.hostname or "127.0.0.1", parts.port or 8500)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.scheme == "http" else f"{self.scheme}://{host}:{self.port}"


def wait_param(seconds: float) -> str:
    """A blocking query's ``wait`` as Consul reads it (``"1500ms"``)."""
    return f"{max(1, round(seconds * 1000))}ms"


class _HTTPClient(consul.aio.HTTPClient):  # type: ignore[misc]
    """py-consul's aiohttp client, with an SSL context passed as aiohttp wants it today."""

    def __init__(
        self, host: str, port: int, scheme: str, verify: bool | str = True, cert: Any = None, *, limit: int = 100
    ) -> None:
        consul.base.HTTPClient.__init__(self, host, port, scheme, verify, cert)
        tls: ssl.SSLContext | bool = False
        if scheme == "https":
            tls = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
            if not verify:
                tls.check_hostname = False
                tls.verify_mode = ssl.CERT_NONE
        # No total timeout here: blocking queries last as long as their wait; Consul.call bounds every request.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls, limit=limit))


class _API(consul.aio.Consul):  # type: ignore[misc]
    def __init__(self, *args: Any, connections: int = 100, **kwargs: Any) -> None:
        self.connections = connections
        super().__init__(*args, **kwargs)

    def http_connect(self, host: str, port: int, scheme: str, verify: bool | str = True, cert: Any = None) -> Any:
        return _HTTPClient(host, port, scheme, verify, cert, limit=self.connections)


class Consul:
    """A component's connection to Consul: which agent, which credentials, and how to call it.

    Nothing happens until :meth:`open`. ``variable`` is the ``MICRO_*`` variable
    named in errors (``MICRO_REGISTRY_ADDRESS``). ``connections`` caps the HTTP
    connections open to the agent at once: requests beyond it wait for a free one.
    """

    def __init__(
        self,
        addresses: tuple[str, ...],
        *,
        variable: str,
        token: str | None,
        datacenter: str | None,
        timeout: float,
        connections: int = 100,
    ) -> None:
        if addresses:
            self.source = variable
        elif os.environ.get("CONSUL_HTTP_ADDR"):
            addresses, self.source = (os.environ["CONSUL_HTTP_ADDR"],), "CONSUL_HTTP_ADDR"
            # Not checked with the options: a bad one must fail as clearly, and without echoing a secret.
            check_address(addresses[0], variable="CONSUL_HTTP_ADDR")
        else:
            addresses, self.source = (DEFAULT_ADDRESS,), f"the default; set {variable}"
        self.endpoints = tuple(Endpoint.parse(a) for a in addresses)
        self.endpoint = self.endpoints[0]
        self.token = token
        self.datacenter = datacenter
        self.timeout = timeout
        self.connections = connections
        self._api: Any = None

    @property
    def address(self) -> str:
        """The agent in use (the first one until :meth:`open` found one that answers)."""
        return str(self.endpoint)

    @property
    def is_open(self) -> bool:
        return self._api is not None

    def where(self) -> str:
        return f"consul at {self.address} ({self.source})"

    async def open(self) -> None:
        """Find the first agent that answers; :class:`~micro.errors.BackendUnavailable` if none does. Idempotent."""
        if self._api is not None:
            return
        failures: list[str] = []
        for endpoint in self.endpoints:
            api = _API(
                host=endpoint.host,
                port=endpoint.port,
                scheme=endpoint.scheme,
                dc=self.datacenter,
                connections=self.connections,
            )
            if self.token:
                api.token = self.token
            self._api, self.endpoint = api, endpoint
            try:
                await self.call("reaching the agent", lambda api: api.status.leader())
            except (Unauthorized, Forbidden):
                await self.close()
                raise
            except MicroError as exc:
                failures.append(str(exc))
                await self.close()
                continue
            return
        raise BackendUnavailable("; ".join(failures))

    async def close(self) -> None:
        """Release the HTTP session. Idempotent."""
        api, self._api = self._api, None
        if api is not None:
            await api.close()

    async def call(self, doing: str, request: Callable[[Any], Awaitable[T]], *, wait: float = 0.0) -> T:
        """``await request(api)`` within ``timeout`` (plus ``wait`` for a blocking query), errors translated.

        Raises :class:`~micro.errors.BackendUnavailable` when the agent cannot be
        reached, times out or fails (5xx), :class:`~micro.errors.Forbidden` or
        :class:`~micro.errors.Unauthorized` for ACL refusals, :class:`~micro.errors.BadRequest`
        when Consul rejects the request (400). A 404 of an endpoint that reports
        one (py-consul's ``NotFound``) and other 4xx (``ClientError``) pass through
        for the caller to interpret.
        """
        api = self._api
        if api is None:
            raise BackendUnavailable(f"{self.where()}: not connected")
        try:
            # Consul adds up to wait/16 of jitter to a blocking query.
            async with asyncio.timeout(self.timeout + wait * 1.1):
                return await request(api)
        except (consul.exceptions.NotFound, consul.exceptions.ClientError):
            raise
        except consul.exceptions.ACLPermissionDenied as exc:
            raise Forbidden(f"{self.where()}: permission denied while {doing}: {exc}") from exc
        except consul.exceptions.ACLDisabled as exc:
            raise Unauthorized(f"{self.where()}: unauthorized while {doing}: {exc}") from exc
        except consul.exceptions.BadRequest as exc:
            raise BadRequest(f"{self.where()}: rejected while {doing}: {exc}") from exc
        except TimeoutError as exc:
            raise BackendUnavailable(f"{self.where()}: no answer within {self.timeout:g}s while {doing}") from exc
        except (consul.exceptions.ConsulException, aiohttp.ClientError, OSError, ValueError) as exc:
            raise BackendUnavailable(f"{self.where()}: {doing} failed: {exc}") from exc

    async def txn(self, doing: str, operations: list[dict[str, Any]]) -> Txn:
        """Run a KV transaction; a rolled-back one (a check failed: Consul's 409) is returned with ``ok`` false."""
        try:
            response = await self.call(doing, lambda api: api.txn.put(operations))
        except consul.exceptions.ClientError as exc:
            code, _, body = str(exc).partition(" ")
            if code != "409":
                raise BackendUnavailable(f"{self.where()}: {doing} failed: {exc}") from exc
            try:
                errors = [str(e.get("What", "")) for e in json.loads(body).get("Errors") or []]
            except (ValueError, AttributeError):
                errors = [body]
            return Txn(False, [], errors)
        results = (response or {}).get("Results") or []
        return Txn(True, [r.get("KV", {}) for r in results if isinstance(r, dict)], [])


@dataclass(frozen=True, slots=True)
class Txn:
    """The outcome of :meth:`Consul.txn`."""

    ok: bool
    #: The KV results of a committed transaction.
    results: list[dict[str, Any]]
    #: Why a rolled-back transaction failed, one message per failed operation.
    errors: list[str]


def dumps(value: Any) -> str:
    """Compact JSON, as stored in Consul by micro."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
