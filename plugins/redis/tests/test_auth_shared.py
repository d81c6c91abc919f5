"""Two jwt auths (and two services) wired to one Redis store (``MICRO_STORE=redis``) share accounts, rules, keys."""

from __future__ import annotations

import asyncio
import time
import uuid

import micro
import pytest
from micro.auth import Resource, Rule
from micro.errors import Forbidden, InvalidToken, Unauthorized

from .conftest import ADDRESS


async def test_instances_on_one_redis_store_share_accounts_rules_and_keys(prefix: str) -> None:
    env = {
        "MICRO_STORE": "redis",
        "MICRO_STORE_ADDRESS": ADDRESS,
        "MICRO_STORE_KEY_PREFIX": prefix,
        "MICRO_AUTH_RULES_REFRESH": "0.2",
    }
    one, two = micro.create("auth", "jwt", environ=env), micro.create("auth", "jwt", environ=env)
    async with one, two:
        assert one.store is not two.store  # each built its own client from the environment
        account = await one.generate("alice", scopes=["ops"])
        # The other instance checks the secret, issues a token the first one inspects: one key pair, in Redis.
        token = await two.token(id="alice", secret=account.secret)
        assert (await one.inspect(token.access_token)).scopes == ["ops"]
        with pytest.raises(InvalidToken):
            await two.token(id="alice", secret="wrong")
        rule = Rule("ops", "ops", Resource(name="*", type="service", endpoint="*"))
        await one.grant(rule)
        deadline = time.monotonic() + 10
        while rule not in await two.rules():
            assert time.monotonic() < deadline, "the rule did not reach the other instance"
            await asyncio.sleep(0.05)
        await two.revoke(rule)
        while rule in await one.rules():
            assert time.monotonic() < deadline + 10, "the revocation did not reach the other instance"
            await asyncio.sleep(0.05)
        assert [a.id for a in await two.accounts()] == ["alice"]


async def test_two_services_on_one_redis_store_enforce_the_same_accounts_and_rules(prefix: str) -> None:
    space = uuid.uuid4().hex
    env = {
        "MICRO_AUTH": "jwt",
        "MICRO_AUTH_RULES_REFRESH": "0.2",
        "MICRO_STORE": "redis",
        "MICRO_STORE_ADDRESS": ADDRESS,
        "MICRO_STORE_KEY_PREFIX": prefix,
        "MICRO_REGISTRY": "memory",
        "MICRO_REGISTRY_SPACE": space,
        "MICRO_BROKER": "memory",
        "MICRO_BROKER_SPACE": space,
    }

    class Echo:
        async def hello(self, req: dict[str, str]) -> dict[str, str]:
            return req

    one, two = micro.Service("shared-one", environ=env), micro.Service("shared-two", environ=env)
    for service in (one, two):
        service.handle(Echo())
    client = micro.create("client", environ={k: v for k, v in env.items() if not k.startswith("MICRO_AUTH")})
    async with one, two, client:
        with pytest.raises(Unauthorized):
            await client.call("shared-two", "Echo.hello", {})
        # An account made through one service's auth signs in at the other: same accounts and keys, in Redis.
        account = await one.auth.generate("ops-bot", scopes=["ops"])
        token = await one.auth.token(id="ops-bot", secret=account.secret)
        bearer = {"Authorization": f"Bearer {token.access_token}"}
        assert await client.call("shared-two", "Echo.hello", {"a": "1"}, metadata=bearer) == {"a": "1"}
        # A rule granted through the second applies on the first within the refresh time.
        await two.auth.grant(Rule("admins", "admin", Resource(name="shared-one", type="service", endpoint="*")))
        deadline = time.monotonic() + 10
        while True:
            try:
                await client.call("shared-one", "Echo.hello", {}, metadata=bearer)
            except Forbidden:
                break
            assert time.monotonic() < deadline, "the rule did not reach the other service"
            await asyncio.sleep(0.05)
        assert await client.call("shared-two", "Echo.hello", {}, metadata=bearer) == {}
