"""Accounts, rules and the signing key of an auth, kept in a :class:`~micro.store.Store`.

Every instance given the same store (``MICRO_STORE=sqlite`` on one host, ``redis``
or ``postgres`` across hosts) sees the same accounts and rules: ``micro auth`` edits
them there and the running services read them back. Records live in the auth's
table (``MICRO_AUTH_TABLE``, ``"auth"``) of the store's database, under keys
``<namespace>/account/<id>``, ``<namespace>/rule/<id>`` and ``<namespace>/key/<algorithm>``.
Values are JSON; an account's secret is never stored, only its scrypt hash.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, Final

import orjson

from ..errors import BadRequest, InternalError, RecordNotFound
from ..store.base import Record, Store
from .base import Access, Account, Resource, Rule

__all__ = ["AuthBook", "StoredAccount"]

_ACCOUNT: Final = "account/"
_RULE: Final = "rule/"
_KEY: Final = "key/"


@dataclass(frozen=True, slots=True)
class StoredAccount:
    """An account as kept: without its secret, with the hash that checks it."""

    account: Account
    salt: bytes
    digest: bytes
    #: Changes each time the account is generated again, which voids its earlier refresh tokens.
    version: str


def _loads(record: Record) -> dict[str, Any]:
    try:
        value = orjson.loads(record.value)
    except orjson.JSONDecodeError as exc:
        raise InternalError(f"auth record {record.key!r} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InternalError(f"auth record {record.key!r} is not a JSON object")
    return value


def _account(record: Record) -> StoredAccount:
    data = _loads(record)
    try:
        account = Account(
            id=str(data["id"]),
            type=str(data["type"]),
            issuer=str(data["issuer"]),
            scopes=[str(s) for s in data["scopes"]],
            metadata={str(k): str(v) for k, v in data["metadata"].items()},
        )
        return StoredAccount(account, bytes.fromhex(data["salt"]), bytes.fromhex(data["digest"]), str(data["version"]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InternalError(f"auth record {record.key!r} is not an account: {exc!r}") from None


def _rule(record: Record) -> tuple[int, Rule]:
    data = _loads(record)
    try:
        resource = data["resource"]
        rule = Rule(
            id=str(data["id"]),
            scope=str(data["scope"]),
            resource=Resource(
                name=str(resource["name"]), type=str(resource["type"]), endpoint=str(resource["endpoint"])
            ),
            access=Access(data["access"]),
            priority=int(data["priority"]),
        )
        return int(data["seq"]), rule
    except (KeyError, TypeError, ValueError) as exc:
        raise InternalError(f"auth record {record.key!r} is not a rule: {exc!r}") from None


class AuthBook:
    """The accounts, rules and key of one namespace in ``store``'s ``table``.

    :param refresh: seconds :meth:`rules` may answer from its copy before reading the store again; a rule
        granted or revoked through another instance (or ``micro auth``) is applied within that time.
    """

    def __init__(self, store: Store, *, namespace: str, table: str, refresh: float) -> None:
        self.store = store
        self._prefix = f"{namespace}/"
        self._table = table
        self._refresh = refresh
        self._rules: list[Rule] | None = None
        self._read_at = 0.0
        self._lock = asyncio.Lock()

    def _key(self, kind: str, name: str) -> str:
        return f"{self._prefix}{kind}{name}"

    async def _get(self, key: str) -> Record | None:
        try:
            records = await self.store.read(key, table=self._table)
        except RecordNotFound:
            return None
        return records[0] if records else None

    async def _put(self, key: str, value: dict[str, Any]) -> None:
        await self.store.write(Record(key=key, value=orjson.dumps(value)), table=self._table)

    # -- accounts -------------------------------------------------------------------------------

    async def account(self, id: str) -> StoredAccount | None:
        """The account ``id``, or ``None``."""
        record = await self._get(self._key(_ACCOUNT, id))
        return None if record is None else _account(record)

    async def put_account(self, stored: StoredAccount) -> None:
        """Create or replace an account (its secret must already be blanked)."""
        a = stored.account
        await self._put(
            self._key(_ACCOUNT, a.id),
            {
                "id": a.id,
                "type": a.type,
                "issuer": a.issuer,
                "scopes": list(a.scopes),
                "metadata": dict(a.metadata),
                "salt": stored.salt.hex(),
                "digest": stored.digest.hex(),
                "version": stored.version,
            },
        )

    async def accounts(self) -> list[Account]:
        """Every account, without secrets, sorted by id."""
        records = await self.store.read(self._key(_ACCOUNT, ""), prefix=True, table=self._table)
        return sorted((_account(r).account for r in records), key=lambda a: a.id)

    async def delete_account(self, id: str) -> None:
        """Remove the account ``id`` (idempotent); its tokens stop refreshing."""
        await self.store.delete(self._key(_ACCOUNT, id), table=self._table)

    # -- rules ----------------------------------------------------------------------------------

    async def grant(self, rule: Rule) -> None:
        """Add or replace ``rule``; a replaced rule keeps its place in the order."""
        if not isinstance(rule, Rule):
            raise BadRequest(f"expected a Rule, got {type(rule).__name__}")
        if not isinstance(rule.id, str) or not rule.id:
            raise BadRequest("a rule needs a non-empty id")
        if not isinstance(rule.resource, Resource) or not isinstance(rule.access, Access):
            raise BadRequest(f"rule {rule.id!r} needs a Resource and an Access")
        key = self._key(_RULE, rule.id)
        existing = await self._get(key)
        seq = _rule(existing)[0] if existing is not None else time.time_ns()
        r = rule.resource
        await self._put(
            key,
            {
                "id": rule.id,
                "scope": rule.scope,
                "resource": {"name": r.name, "type": r.type, "endpoint": r.endpoint},
                "access": rule.access.value,
                "priority": rule.priority,
                "seq": seq,
            },
        )
        self._rules = None

    async def revoke(self, rule: Rule) -> None:
        """Remove the rule with ``rule.id`` (idempotent)."""
        if isinstance(rule.id, str) and rule.id:
            await self.store.delete(self._key(_RULE, rule.id), table=self._table)
        self._rules = None

    async def rules(self) -> list[Rule]:
        """Every rule in the order first granted; read from the store at most every ``refresh`` seconds."""
        rules = self._rules
        if rules is not None and time.monotonic() - self._read_at < self._refresh:
            return list(rules)
        async with self._lock:
            if self._rules is None or time.monotonic() - self._read_at >= self._refresh:
                records = await self.store.read(self._key(_RULE, ""), prefix=True, table=self._table)
                self._rules = [rule for _, rule in sorted((_rule(r) for r in records), key=lambda p: p[0])]
                self._read_at = time.monotonic()
            return list(self._rules)

    # -- the signing key ------------------------------------------------------------------------

    async def key(self, algorithm: str) -> bytes | None:
        """The PEM private key kept for ``algorithm``, or ``None``."""
        record = await self._get(self._key(_KEY, algorithm))
        return None if record is None else record.value

    async def put_key(self, algorithm: str, pem: bytes) -> bytes:
        """Keep ``pem`` unless a key is there already; returns the key that is kept after the write.

        Stores have no create-if-absent, so two first instances may both write: each reads the key back
        and uses what the store holds, and an instance that still signed with the other key reloads it
        when a token fails to check (see :class:`~micro.auth.jwt.JWTAuth`).
        """
        key = self._key(_KEY, algorithm)
        existing = await self._get(key)
        if existing is not None:
            return existing.value
        await self.store.write(Record(key=key, value=pem), table=self._table)
        kept = await self._get(key)
        return pem if kept is None else kept.value
