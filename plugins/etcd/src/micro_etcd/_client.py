"""One connection to etcd shared by a component: its v3 JSON gateway (grpc-gateway, ``/v3/...``) over aiohttp.

etcd 3.4 and later serve every gRPC call of the KV, lease and watch services as
``POST /v3/<service>/<call>`` with a JSON body; keys and values travel base64
encoded, 64-bit numbers (revisions, lease ids) as strings. Every request goes
through :meth:`Etcd.call`, which bounds it in time and turns transport and
server errors into :mod:`micro.errors`; the watch stream is :meth:`Etcd.watch`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import os
import ssl
import urllib.parse
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
from micro.errors import BackendUnavailable, BadRequest, Forbidden, MessageTooLarge, MicroError, NotFound, Unauthorized

from .options import check_address

__all__ = ["DEFAULT_ADDRESS", "Etcd", "KeyValue", "b64", "prefix_end", "unb64"]

#: The server used when neither the options nor ``$ETCD_ENDPOINTS`` name one.
DEFAULT_ADDRESS: Final = "127.0.0.1:2379"

#: The longest line of a watch stream read (one response, possibly many events): past it the stream fails.
MAX_STREAM_LINE: Final = 8 * 1024 * 1024

# gRPC status codes the gateway reports in its error bodies.
_INVALID_ARGUMENT: Final = 3
_NOT_FOUND: Final = 5
_PERMISSION_DENIED: Final = 7
_RESOURCE_EXHAUSTED: Final = 8
_UNAUTHENTICATED: Final = 16


def b64(data: str | bytes) -> str:
    """``data`` (text as UTF-8) in base64, as the gateway takes keys and values."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def unb64(text: object) -> bytes:
    """The bytes of a base64 field of a gateway answer (absent or empty: ``b""``)."""
    return base64.b64decode(text) if isinstance(text, str) and text else b""


def prefix_end(prefix: str | bytes) -> bytes:
    """The end of the range of every key starting with ``prefix`` (etcd's ``WithPrefix``)."""
    raw = bytearray(prefix.encode("utf-8") if isinstance(prefix, str) else prefix)
    while raw:
        if raw[-1] < 0xFF:
            raw[-1] += 1
            return bytes(raw)
        raw.pop()
    return b"\0"  # every key


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One key as etcd returns it."""

    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    lease: int

    @classmethod
    def of(cls, data: Any) -> KeyValue:
        data = data if isinstance(data, dict) else {}
        return cls(
            key=unb64(data.get("key")),
            value=unb64(data.get("value")),
            create_revision=_int(data.get("create_revision")),
            mod_revision=_int(data.get("mod_revision")),
            lease=_int(data.get("lease")),
        )


_JSON: Final = {"Content-Type": "application/json"}


def _payload(body: dict[str, Any]) -> bytes | io.BytesIO:
    # aiohttp warns that a large bytes body blocks the loop while it is sent; a file-like body is streamed.
    raw = json.dumps(body, separators=(",", ":")).encode("utf-8")
    return io.BytesIO(raw) if len(raw) > 512 * 1024 else raw


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload, no-any-return]
    except (TypeError, ValueError):
        return 0


def _base(address: str) -> tuple[str, str]:
    """The base URL of ``address`` and how errors name it (``127.0.0.1:2379``, or the URL for https)."""
    parts = urllib.parse.urlsplit(address if "//" in address else f"//{address}")
    scheme = parts.scheme or "http"
    host = parts.hostname or "127.0.0.1"
    host = f"[{host}]" if ":" in host else host
    shown = f"{host}:{parts.port}" if scheme == "http" else f"{scheme}://{host}:{parts.port}"
    return f"{scheme}://{host}:{parts.port}", shown


class Etcd:
    """A component's connection to etcd: which server, and how to call it.

    Nothing happens until :meth:`open`. ``variable`` is the ``MICRO_*`` variable
    named in errors (``MICRO_REGISTRY_ADDRESS``). ``connections`` caps the HTTP
    connections open at once (a watch stream holds one while it lasts).
    """

    def __init__(self, addresses: tuple[str, ...], *, variable: str, timeout: float, connections: int = 100) -> None:
        if addresses:
            self.source = variable
        elif os.environ.get("ETCD_ENDPOINTS", "").strip():
            addresses = tuple(a.strip() for a in os.environ["ETCD_ENDPOINTS"].split(",") if a.strip())
            self.source = "ETCD_ENDPOINTS"
            for address in addresses:  # not checked with the options: a bad one must fail as clearly
                check_address(address, variable="ETCD_ENDPOINTS")
        else:
            addresses, self.source = (DEFAULT_ADDRESS,), f"the default; set {variable}"
        self.bases = tuple(_base(a) for a in addresses)
        self.base, self.address = self.bases[0]
        self.timeout = timeout
        self.connections = connections
        self._session: aiohttp.ClientSession | None = None

    @property
    def is_open(self) -> bool:
        return self._session is not None

    def where(self) -> str:
        return f"etcd at {self.address} ({self.source})"

    async def open(self) -> None:
        """Find the first server that answers; :class:`~micro.errors.BackendUnavailable` if none does. Idempotent."""
        if self._session is not None:
            return
        failures: list[str] = []
        for base, shown in self.bases:
            self.base, self.address = base, shown
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.connections, ssl=ssl.create_default_context()),
                read_bufsize=MAX_STREAM_LINE // 2,  # aiohttp reads lines of up to twice this
            )
            try:
                await self.call("maintenance/status", {}, "reaching the server")
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
        """Release the HTTP session (and every stream on it). Idempotent."""
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    def _session_or_fail(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise BackendUnavailable(f"{self.where()}: not connected")
        return self._session

    async def call(self, path: str, body: dict[str, Any], doing: str) -> dict[str, Any]:
        """``POST /v3/<path>`` with ``body`` within ``timeout``; the answer's JSON object.

        Raises :class:`~micro.errors.BackendUnavailable` when the server cannot be
        reached, times out or fails, :class:`~micro.errors.NotFound` for a missing
        lease (gRPC NotFound), :class:`~micro.errors.BadRequest` for a request etcd
        rejects, :class:`~micro.errors.MessageTooLarge` for one over its size limit,
        :class:`~micro.errors.Unauthorized` / :class:`~micro.errors.Forbidden` when
        authentication is enabled on the server.
        """
        session = self._session_or_fail()
        try:
            async with asyncio.timeout(self.timeout):
                async with session.post(f"{self.base}/v3/{path}", data=_payload(body), headers=_JSON) as response:
                    text = await response.text()
                    status = response.status
        except TimeoutError as exc:
            raise BackendUnavailable(f"{self.where()}: no answer within {self.timeout:g}s while {doing}") from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise BackendUnavailable(f"{self.where()}: {doing} failed: {exc}") from exc
        try:
            answer = json.loads(text) if text.strip() else {}
        except ValueError:
            answer = None
        if not isinstance(answer, dict):
            raise BackendUnavailable(f"{self.where()}: {doing}: not a JSON object (HTTP {status}): {text[:200]!r}")
        if status != 200 or ("error" in answer and "code" in answer):
            raise self.error(answer, status, doing)
        return answer

    def error(self, answer: dict[str, Any], status: int, doing: str) -> MicroError:
        """The micro error for an error answer of the gateway (``{"code": <gRPC code>, "message": ...}``)."""
        code = _int(answer.get("code"))
        message = str(answer.get("message") or answer.get("error") or f"HTTP {status}")
        text = f"{self.where()}: {doing}: {message}"
        if code == _NOT_FOUND:
            return NotFound(text)
        if code == _INVALID_ARGUMENT and "too large" in message:
            return MessageTooLarge(text)
        if code == _INVALID_ARGUMENT:
            return BadRequest(text)
        if code == _RESOURCE_EXHAUSTED:
            return MessageTooLarge(text)
        if code == _UNAUTHENTICATED:
            return Unauthorized(text)
        if code == _PERMISSION_DENIED:
            return Forbidden(text)
        return BackendUnavailable(text)

    # -- the calls micro uses -----------------------------------------------------------------

    async def range(self, key: str | bytes, end: bytes | None, doing: str) -> tuple[int, list[KeyValue]]:
        """The keys from ``key`` (to ``end``, exclusive) and the store's revision they were read at."""
        body: dict[str, Any] = {"key": b64(key)}
        if end is not None:
            body["range_end"] = b64(end)
        answer = await self.call("kv/range", body, doing)
        revision = _int((answer.get("header") or {}).get("revision"))
        return revision, [KeyValue.of(kv) for kv in answer.get("kvs") or []]

    async def put(self, key: str | bytes, value: str | bytes, doing: str, *, lease: int = 0) -> None:
        body: dict[str, Any] = {"key": b64(key), "value": b64(value)}
        if lease:
            body["lease"] = str(lease)
        await self.call("kv/put", body, doing)

    async def delete(self, key: str | bytes, end: bytes | None, doing: str) -> int:
        """Delete ``key`` (to ``end``); how many keys were deleted."""
        body: dict[str, Any] = {"key": b64(key)}
        if end is not None:
            body["range_end"] = b64(end)
        return _int((await self.call("kv/deleterange", body, doing)).get("deleted"))

    async def txn(
        self, compare: list[dict[str, Any]], success: list[dict[str, Any]], failure: list[dict[str, Any]], doing: str
    ) -> tuple[bool, list[dict[str, Any]]]:
        """An etcd transaction: whether every comparison held, and the responses of the branch that ran."""
        answer = await self.call("kv/txn", {"compare": compare, "success": success, "failure": failure}, doing)
        return bool(answer.get("succeeded")), list(answer.get("responses") or [])

    async def grant(self, ttl: int, doing: str) -> int:
        """A new lease of ``ttl`` whole seconds; its id."""
        answer = await self.call("lease/grant", {"TTL": str(ttl)}, doing)
        lease = _int(answer.get("ID"))
        if not lease:
            raise BackendUnavailable(f"{self.where()}: {doing}: no lease granted ({answer.get('error') or 'no ID'})")
        return lease

    async def keepalive(self, lease: int, doing: str) -> int:
        """Renew ``lease`` to its full TTL; the TTL it now has, ``0`` if it had expired (or never existed).

        The gateway serves the bidirectional keep-alive stream as a request with one answer.
        """
        answer = await self.call("lease/keepalive", {"ID": str(lease)}, doing)
        return _int((answer.get("result") or {}).get("TTL"))

    async def revoke(self, lease: int, doing: str) -> None:
        """Revoke ``lease`` (its keys are deleted); a lease that is gone already is not an error."""
        with contextlib.suppress(NotFound):
            await self.call("lease/revoke", {"ID": str(lease)}, doing)

    @contextlib.asynccontextmanager
    async def watch(self, key: str | bytes, end: bytes | None, start_revision: int, doing: str) -> AsyncIterator[Any]:
        """A watch stream from ``start_revision`` on: yields an async iterator of the stream's ``result`` objects.

        Opening it is bounded by ``timeout``; reading is not (a quiet stream is
        normal). The iterator ends when the server closes the stream; transport
        errors raise :class:`~micro.errors.BackendUnavailable`, an error answer
        the translated error.
        """
        session = self._session_or_fail()
        request: dict[str, Any] = {"key": b64(key), "start_revision": str(start_revision)}
        if end is not None:
            request["range_end"] = b64(end)
        timeout = aiohttp.ClientTimeout(total=None, connect=self.timeout, sock_read=None)
        try:
            async with asyncio.timeout(self.timeout):
                response = await session.post(
                    f"{self.base}/v3/watch", json={"create_request": request}, timeout=timeout
                )
        except TimeoutError as exc:
            raise BackendUnavailable(f"{self.where()}: no answer within {self.timeout:g}s while {doing}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise BackendUnavailable(f"{self.where()}: {doing} failed: {exc}") from exc
        try:
            if response.status != 200:
                text = await response.text()
                raise BackendUnavailable(f"{self.where()}: {doing}: HTTP {response.status}: {text[:200]!r}")
            yield self._results(response, doing)
        finally:
            response.close()

    async def _results(self, response: aiohttp.ClientResponse, doing: str) -> AsyncIterator[dict[str, Any]]:
        while True:
            try:
                line = await response.content.readline()
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                raise BackendUnavailable(f"{self.where()}: {doing}: the watch stream broke: {exc}") from exc
            if not line:
                return
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError as exc:
                raise BackendUnavailable(f"{self.where()}: {doing}: a watch answer is not JSON") from exc
            if not isinstance(message, dict):
                continue
            if "error" in message:
                error = message["error"] if isinstance(message["error"], dict) else message
                raise self.error(error, response.status, doing)
            result = message.get("result")
            if isinstance(result, dict):
                yield result
