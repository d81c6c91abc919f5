"""Deliberately broken implementations fail the contract, and the failure names the case.

Each scenario is a small test module: a built-in implementation with one
defect, a contract class that tests it (``TestBroken``) and one that tests the
healthy built-in (``TestHealthy``). Both run in a pytester session limited to
the case; the broken one must fail that case, the healthy one must pass it, so
the failure comes from the defect and nothing else.
"""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass

import pytest

pytest_plugins = ["pytester"]


@dataclass(frozen=True)
class Scenario:
    id: str
    #: The case that must fail, as the report names it.
    case: str
    #: The module: defines TestBroken and TestHealthy.
    source: str


SCENARIOS = [
    Scenario(
        "store-ignores-limit",
        "S10",
        """
        from micro.store import StoreOptions
        from micro.store.memory import MemoryStore
        from micro_conformance.store import StoreContract

        class NoLimitStore(MemoryStore):
            async def list(self, *, limit=None, **kwargs):
                return await super().list(**kwargs)

            async def read(self, key, *, limit=None, **kwargs):
                return await super().read(key, **kwargs)

        class TestBroken(StoreContract):
            async def make(self, **options):
                return NoLimitStore(StoreOptions(**options))

        class TestHealthy(StoreContract):
            name = "memory"
        """,
    ),
    Scenario(
        "store-accepts-ttl-without-declaring-it",
        "S25",
        """
        from micro.store.memory import MemoryStore
        from micro_conformance.store import StoreContract

        class QuietTTLStore(MemoryStore):
            capabilities = frozenset({"bulk"})

            # The base refuses a TTL the store does not declare; this one goes round it.
            async def write(self, record, *, database=None, table=None, ttl=None):
                db, tb = self._scope(database, table)
                await self._write(record, ttl if ttl is not None else record.expiry, db, tb)

        class TestBroken(StoreContract):
            async def make(self, **options):
                return QuietTTLStore()

        class TestHealthy(StoreContract):
            capabilities = frozenset({"bulk"})

            async def make(self, **options):
                from micro.store.memory import MemoryStore

                class Honest(MemoryStore):
                    capabilities = frozenset({"bulk"})

                    async def write(self, record, *, ttl=None, **kwargs):
                        if ttl is not None or record.expiry is not None:
                            self._require("ttl")
                        await super().write(record, ttl=ttl, **kwargs)

                    async def write_many(self, records, *, ttl=None, **kwargs):
                        records = list(records)
                        if ttl is not None or any(r.expiry is not None for r in records):
                            self._require("ttl")
                        await super().write_many(records, ttl=ttl, **kwargs)

                return Honest()
        """,
    ),
    Scenario(
        "store-declares-an-unknown-capability",
        "X00",
        """
        from micro.store.memory import MemoryStore
        from micro_conformance.store import StoreContract

        class BoastfulStore(MemoryStore):
            capabilities = frozenset({"ttl", "bulk", "teleport"})

        class TestBroken(StoreContract):
            async def make(self, **options):
                return BoastfulStore()

        class TestHealthy(StoreContract):
            name = "memory"
        """,
    ),
    Scenario(
        "broker-delivers-queue-messages-to-every-member",
        "B14",
        """
        from micro.broker.memory import MemoryBroker
        from micro_conformance.broker import BrokerContract

        class NoQueueBroker(MemoryBroker):
            async def subscribe(self, topic, handler, *, queue=None, auto_ack=True):
                return await super().subscribe(topic, handler, auto_ack=auto_ack)

        class TestBroken(BrokerContract):
            async def make(self, **options):
                return NoQueueBroker()

        class TestHealthy(BrokerContract):
            name = "memory"
        """,
    ),
    Scenario(
        "registry-never-expires",
        "R11",
        """
        from micro.registry.memory import MemoryRegistry
        from micro_conformance.registry import RegistryContract

        class ImmortalRegistry(MemoryRegistry):
            async def register(self, service, *, ttl=None):
                await super().register(service, ttl=0)

        class TestBroken(RegistryContract):
            ttl_slack = 0.5

            async def make(self, **options):
                return ImmortalRegistry()

        class TestHealthy(RegistryContract):
            name = "memory"
            ttl_slack = 0.5
        """,
    ),
    Scenario(
        "selector-round-robin-repeats",
        "L04",
        """
        from micro.selector.cache import RoundRobinSelector
        from micro.registry.memory import MemoryRegistry
        from micro_conformance.selector import SelectorContract

        class StutteringSelector(RoundRobinSelector):
            def _strategy(self, service, nodes):
                turn = iter(range(10**6))
                return lambda: nodes[(next(turn) // 2) % len(nodes)]

        class TestBroken(SelectorContract):
            strategy = "roundrobin"

            async def make(self, **options):
                return StutteringSelector(registry=await self.registry())

        class TestHealthy(SelectorContract):
            name = "roundrobin"
            strategy = "roundrobin"
        """,
    ),
    Scenario(
        "codec-drops-unicode",
        "K08",
        """
        from micro.codec.json import JSONCodec
        from micro_conformance.codec import CodecContract

        def ascii_only(value):
            if isinstance(value, str):
                return value.encode("ascii", "replace").decode()
            if isinstance(value, list):
                return [ascii_only(v) for v in value]
            if isinstance(value, dict):
                return {ascii_only(k): ascii_only(v) for k, v in value.items()}
            return value

        class AsciiCodec(JSONCodec):
            def marshal(self, value):
                return super().marshal(ascii_only(value))

        class TestBroken(CodecContract):
            async def make(self, **options):
                return AsciiCodec()

        class TestHealthy(CodecContract):
            name = "json"
        """,
    ),
    Scenario(
        "config-source-reports-a-stale-checksum",
        "C01",
        """
        from micro.config import ChangeSet
        from micro.config.memory import MemorySource
        from micro.config.options import MemorySourceOptions
        from micro_conformance.config import ConfigSourceContract

        class StaleSource(MemorySource):
            async def read(self):
                changeset = await super().read()
                return ChangeSet(changeset.data, "0" * 64, changeset.source)

        class TestBroken(ConfigSourceContract):
            async def make(self, **options):
                return StaleSource(MemorySourceOptions(data={"a": 1}))

        class TestHealthy(ConfigSourceContract):
            name = "memory"
        """,
    ),
    Scenario(
        "sync-try-lock-raises-when-held",
        "Y02",
        """
        from micro.errors import LockHeld
        from micro.sync.memory import MemorySync
        from micro_conformance.sync import SyncContract

        class RaisingSync(MemorySync):
            async def try_lock(self, id, *, ttl=30.0):
                if not await super().try_lock(id, ttl=ttl):
                    raise LockHeld(f"lock {id!r} is held")
                return True

        class TestBroken(SyncContract):
            async def make(self, **options):
                return RaisingSync()

        class TestHealthy(SyncContract):
            name = "memory"
        """,
    ),
    Scenario(
        "transport-truncates-large-messages",
        "T10",
        """
        from micro.transport import Message, Socket
        from micro.transport.memory import MemoryTransport
        from micro_conformance.transport import TransportContract

        class Truncating(Socket):
            def __init__(self, inner):
                self.inner = inner

            local = property(lambda self: self.inner.local)
            remote = property(lambda self: self.inner.remote)

            async def send(self, message):
                await self.inner.send(Message(message.header, message.body[:65536]))

            async def recv(self, *, timeout=None):
                return await self.inner.recv(timeout=timeout)

            async def close_send(self):
                await self.inner.close_send()

            async def close(self):
                await self.inner.close()

        class TruncatingTransport(MemoryTransport):
            async def dial(self, address, *, timeout=None):
                return Truncating(await super().dial(address, timeout=timeout))

        class TestBroken(TransportContract):
            async def make(self, **options):
                from micro.transport import TransportOptions
                return TruncatingTransport(TransportOptions(**options))

        class TestHealthy(TransportContract):
            name = "memory"
        """,
    ),
    Scenario(
        "auth-accepts-expired-tokens",
        "A05",
        """
        import jwt
        from micro.auth import Account
        from micro.auth.jwt import JWTAuth
        from micro.auth.options import JWTAuthOptions
        from micro.errors import InvalidToken
        from micro_conformance.auth import AuthContract

        class LenientAuth(JWTAuth):
            async def inspect(self, token):
                try:
                    return await super().inspect(token)
                except InvalidToken as exc:
                    if "expired" not in str(exc):
                        raise
                    claims = jwt.decode(token, options={"verify_signature": False})
                    return Account(id=claims["sub"], issuer=claims["iss"])

        class TestBroken(AuthContract):
            timeout = 2.5

            async def make(self, **options):
                return LenientAuth(JWTAuthOptions(key_dir=KEYS, **options))

        class TestHealthy(AuthContract):
            name = "jwt"
            options = {"key_dir": KEYS}
        """,
    ),
    Scenario(
        "server-loses-error-codes",
        "P04",
        """
        from micro.errors import MicroError
        from micro.server.rpc import RPCServer
        from micro_conformance.base import create
        from micro_conformance.rpc import RPCContract

        def flatten(next):
            async def handler(request):
                try:
                    return await next(request)
                except MicroError as exc:
                    raise RuntimeError(str(exc)) from None
            return handler

        class TestBroken(RPCContract):
            name = "mucp"
            transports = ("memory",)
            content_types = ("application/json",)

            async def make(self, **options):
                server = await super().make(**options)
                server.wrap(flatten)
                return server

        class TestHealthy(RPCContract):
            name = "mucp"
            transports = ("memory",)
            content_types = ("application/json",)
        """,
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_broken_implementation_fails_the_named_case(pytester: pytest.Pytester, scenario: Scenario) -> None:
    keys = pytester.path / "keys"
    source = textwrap.dedent(scenario.source).replace("KEYS", repr(str(keys)))
    pytester.makepyfile(test_scenario=source)
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        f"--micro-report={report}",
        "-k",
        f"test_{scenario.case.lower()}_",
    )
    rows = json.loads(report.read_text())["cases"]
    outcomes = {(row["contract"], row["case"].partition("[")[0]): row for row in rows}
    broken = outcomes[("TestBroken", scenario.case)]
    healthy = outcomes[("TestHealthy", scenario.case)]
    assert broken["outcome"] == "failed", f"{scenario.id}: {scenario.case} did not fail: {broken}"
    assert broken["message"], "a failed case carries no message"
    assert healthy["outcome"] == "passed", f"{scenario.id}: the healthy control did not pass: {healthy}"
    failed_lines = [line for line in result.outlines if line.startswith("FAILED")]
    assert failed_lines, "pytest's summary lists no failure"
    assert all(f"test_{scenario.case.lower()}_" in line for line in failed_lines), failed_lines
