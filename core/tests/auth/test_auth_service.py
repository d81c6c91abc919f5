"""Auth enforced on a Service: selecting ``MICRO_AUTH=jwt`` protects it, and every instance sharing the
store (here SQLite, across OS processes) sees the same accounts, rules and keys; ``micro auth`` edits them.

The service runs in its own process (tests/service/serve.py, which adds no auth code of its own); the test
process is a second instance on the same store, a client, and the user at a shell running ``micro``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt as pyjwt
import micro
import pytest
from micro.auth import Auth
from micro.client import Client
from micro.errors import ConfigError, Forbidden, Unauthorized

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "service"))
sys.path.insert(0, str(HERE.parent / "cli"))

from clirun import micro as run_micro  # noqa: E402
from procs import ServiceProcess, spawner, unique_name  # noqa: E402

#: How long a rule edited elsewhere may take to apply (MICRO_AUTH_RULES_REFRESH below), with room for a busy machine.
REFRESH = 0.5
APPLY_WITHIN = 20.0


def auth_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {
        "MICRO_AUTH": "jwt",
        "MICRO_STORE": "sqlite",
        "MICRO_STORE_PATH": str(tmp_path / "shared.db"),
        "MICRO_AUTH_RULES_REFRESH": str(REFRESH),
        **extra,
    }


@pytest.fixture
async def shared(tmp_path: Path) -> AsyncIterator[tuple[dict[str, str], Auth]]:
    """The environment of the shared store, and an auth on it in this process (a second instance)."""
    env = auth_env(tmp_path)
    auth = micro.create("auth", environ=env)
    async with auth:
        yield env, auth


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    client = micro.create("client", cls=Client)
    async with client:
        yield client


@contextlib.asynccontextmanager
async def spawn(env: dict[str, str]) -> AsyncIterator[ServiceProcess]:
    async with spawner() as start:
        yield await start(unique_name(), env)


async def eventually(check: Callable[[], Awaitable[Any]], within: float = APPLY_WITHIN) -> Any:
    """``check()``'s result once it stops raising AssertionError or a micro error, within ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await check()
        except (AssertionError, pytest.fail.Exception, Unauthorized, Forbidden):
            if time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_selecting_jwt_protects_the_service_and_instances_share_the_store(
    shared: tuple[dict[str, str], Auth], client: Client
) -> None:
    env, auth = shared
    async with spawn(env) as service:
        # No token: refused, although serve.py adds no wrapper of its own.
        with pytest.raises(Unauthorized):
            await client.call(service.name, "Echo.hello", {"name": "x"})
        # An account made by this instance signs in at the other one: same accounts, same keys.
        await auth.generate("alice", secret="alice-secret", scopes=["user"])
        token = await auth.token(id="alice", secret="alice-secret")
        reply = await client.call(service.name, "Echo.hello", {"name": "a"}, metadata=bearer(token.access_token))
        assert reply["pid"] == service.process.pid
        # A rule granted here applies there within the refresh time; revoking it lifts it again.
        from micro.auth import Resource, Rule

        admin = Rule("admin-only", "admin", Resource(name=service.name, type="service", endpoint="Echo.hello"))
        await auth.grant(admin)

        async def refused() -> None:
            with pytest.raises(Forbidden):
                await client.call(service.name, "Echo.hello", {}, metadata=bearer(token.access_token))

        await eventually(refused)
        # Only the covered endpoint: Echo.count has no rule, so any account may still stream it.
        async with await client.stream(
            service.name, "Echo.count", {"to": 2}, metadata=bearer(token.access_token)
        ) as stream:
            await stream.close_send()
            assert [n async for n in stream] == [0, 1]
        await auth.revoke(admin)
        await eventually(lambda: client.call(service.name, "Echo.hello", {}, metadata=bearer(token.access_token)))


async def test_wrong_forged_and_expired_tokens_are_refused(
    shared: tuple[dict[str, str], Auth], client: Client, tmp_path: Path
) -> None:
    env, auth = shared
    await auth.generate("bob", secret="bob-secret", scopes=["admin"])
    async with spawn(env) as service:
        # Signed by another key (an auth with its own key pair): InvalidToken, a 401.
        stranger = micro.create("auth", "jwt", key_dir=str(tmp_path / "other-keys"))
        async with stranger:
            await stranger.generate("bob", secret="bob-secret", scopes=["admin"])
            foreign = await stranger.token(id="bob", secret="bob-secret")
        with pytest.raises(Unauthorized, match="signature"):
            await client.call(service.name, "Echo.hello", {}, metadata=bearer(foreign.access_token))
        # Unsigned, or "signed" with the public key as an HMAC secret: refused.
        claims = {"iss": "micro", "sub": "bob", "iat": int(time.time()), "exp": int(time.time()) + 60}
        claims |= {"use": "access", "type": "user", "scopes": ["admin"], "metadata": {}}
        unsigned = pyjwt.encode(claims, None, algorithm="none")
        with pytest.raises(Unauthorized):
            await client.call(service.name, "Echo.hello", {}, metadata=bearer(unsigned))
        head, _payload, signature = (await auth.token(id="bob", secret="bob-secret")).access_token.split(".")
        forged_payload = base64.urlsafe_b64encode(json.dumps({**claims, "sub": "root"}).encode()).rstrip(b"=").decode()
        with pytest.raises(Unauthorized):
            await client.call(service.name, "Echo.hello", {}, metadata=bearer(f"{head}.{forged_payload}.{signature}"))
        # Expired: JWT times are whole seconds, so a 1s token is dead within 2s.
        short = await auth.token(id="bob", secret="bob-secret", expiry=1.0)
        await asyncio.sleep(max(0.0, short.expiry + 1 - time.time()))
        with pytest.raises(Unauthorized, match="expired"):
            await client.call(service.name, "Echo.hello", {}, metadata=bearer(short.access_token))
        # Nothing else the caller sends decides who it is.
        claims_in_metadata = {
            "Micro-Account": "bob",
            "Micro-Id": "bob",
            "X-Micro-User": "bob",
            "Micro-From-Service": service.name,
            "Authorization": "bob",
        }
        with pytest.raises(Unauthorized):
            await client.call(service.name, "Echo.hello", {}, metadata=claims_in_metadata)


async def test_deny_by_default_and_rules_edited_with_micro_auth(
    shared: tuple[dict[str, str], Auth], client: Client
) -> None:
    env = {**shared[0], "MICRO_AUTH_DENY_BY_DEFAULT": "true"}
    status, out, err = await run_micro("auth", "create", "account", "carol", "--secret", "c-secret", env=env)
    assert status == 0, err
    status, token, err = await run_micro("auth", "token", "carol", "--secret", "c-secret", env=env)
    assert status == 0, err
    token = token.strip()
    async with spawn(env) as service:
        # A valid token is not enough: nothing is ruled open.
        for endpoint in ("Echo.hello", "Debug.health", "Debug.stats"):
            with pytest.raises(Forbidden):
                await client.call(service.name, endpoint, {}, metadata=bearer(token))
        with pytest.raises(Unauthorized):
            await client.call(service.name, "Echo.hello", {})
        # The user opens one endpoint to any account, and another to everyone, from the shell.
        resource = f"service:{service.name}:Echo.hello"
        status, _, err = await run_micro("auth", "create", "rule", "hello", "--resource", resource, env=env)
        assert status == 0, err
        public = f"service:{service.name}:Debug.health"
        status, _, err = await run_micro(
            "auth", "create", "rule", "health", "--scope", "", "--resource", public, env=env
        )
        assert status == 0, err
        status, out, err = await run_micro("auth", "list", "rules", "--json", env=env)
        assert status == 0, err
        assert {r["id"]: r["resource"] for r in json.loads(out)} == {"hello": resource, "health": public}

        await eventually(lambda: client.call(service.name, "Echo.hello", {}, metadata=bearer(token)))
        await eventually(lambda: client.call(service.name, "Debug.health", {}))
        async with await client.stream(service.name, "Echo.count", {"to": 1}, metadata=bearer(token)) as stream:
            await stream.close_send()
            with pytest.raises(Forbidden):
                await stream.recv()
        # `micro call` signs with --token; the Debug endpoints answer only what the rules admit, even locally.
        status, out, err = await run_micro("call", "--token", token, service.name, "Echo.hello", '{"name": "c"}')
        assert status == 0, err
        assert json.loads(out)["message"] == "Hello c"
        status, _, err = await run_micro("call", service.name, "Debug.stats")
        assert status == 1
        assert json.loads(err)["code"] == 401
        # Revoked from the shell: refused again within the refresh time.
        status, _, err = await run_micro("auth", "delete", "rule", "hello", env=env)
        assert status == 0, err

        async def refused() -> None:
            with pytest.raises(Forbidden):
                await client.call(service.name, "Echo.hello", {}, metadata=bearer(token))

        await eventually(refused)


async def test_micro_auth_accounts_and_the_services_own_credentials(
    shared: tuple[dict[str, str], Auth], tmp_path: Path
) -> None:
    env = shared[0]
    status, out, err = await run_micro("auth", "create", "account", "svc", "--type", "service", "--json", env=env)
    assert status == 0, err
    created = json.loads(out)
    assert created["id"] == "svc"
    assert created["secret"]
    status, out, err = await run_micro("auth", "list", "accounts", "--json", env=env)
    assert status == 0, err
    assert json.loads(out) == [{"id": "svc", "type": "service", "scopes": []}]
    assert "secret" not in out
    # `micro call` with MICRO_AUTH_ID/SECRET signs in with them, as a service's own calls do.
    async with spawn(env) as service:
        signed = {**env, "MICRO_AUTH_ID": "svc", "MICRO_AUTH_SECRET": created["secret"]}
        status, out, err = await run_micro("call", service.name, "Echo.hello", "{}", env=signed)
        assert status == 0, err
        wrong = {**signed, "MICRO_AUTH_SECRET": "nope"}
        status, _, err = await run_micro("call", service.name, "Echo.hello", "{}", env=wrong)
        assert status == 1
        assert json.loads(err)["code"] == 401
    status, _, err = await run_micro("auth", "delete", "account", "svc", env=env)
    assert status == 0, err
    status, _, err = await run_micro("auth", "token", "svc", "--secret", created["secret"], env=env)
    assert status == 1
    assert json.loads(err)["code"] == 401


async def test_micro_auth_refuses_a_store_the_services_cannot_see() -> None:
    status, _, err = await run_micro("auth", "list", "rules", env={"MICRO_AUTH": "jwt"})
    assert status == 3
    assert "MICRO_STORE" in err
    assert "Traceback" not in err
    status, _, err = await run_micro("auth", "list", "rules", env={"MICRO_AUTH": "", "MICRO_STORE": "sqlite"})
    assert status == 3
    assert "MICRO_AUTH" in err


def test_deny_by_default_needs_an_auth_with_rules() -> None:
    with pytest.raises(ConfigError, match="MICRO_AUTH_DENY_BY_DEFAULT"):
        micro.Service("x", environ={**os.environ, "MICRO_AUTH_DENY_BY_DEFAULT": "true"})


async def test_an_auth_without_rules_guards_nothing(client: Client) -> None:
    service = micro.Service(unique_name(), environ=dict(os.environ))

    class Echo:
        async def hello(self, req: dict[str, Any]) -> dict[str, Any]:
            return req

    service.handle(Echo())
    async with service:
        assert service.auth.name == "noop"
        assert await client.call(service.name, "Echo.hello", {"a": 1}) == {"a": 1}
