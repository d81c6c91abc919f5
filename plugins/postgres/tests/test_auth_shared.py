"""Two jwt auths wired to one PostgreSQL store (``MICRO_STORE=postgres``) share accounts, rules and keys."""

from __future__ import annotations

import asyncio
import time

import micro
import pytest
from micro.auth import Resource, Rule
from micro.errors import InvalidToken

from .conftest import ADDRESS


async def test_instances_on_one_postgres_store_share_accounts_rules_and_keys(schema: str) -> None:
    env = {
        "MICRO_STORE": "postgres",
        "MICRO_STORE_ADDRESS": ADDRESS,
        "MICRO_STORE_SCHEMA": schema,
        "MICRO_AUTH_RULES_REFRESH": "0.2",
    }
    one, two = micro.create("auth", "jwt", environ=env), micro.create("auth", "jwt", environ=env)
    async with one, two:
        assert one.store is not two.store  # each built its own client from the environment
        account = await one.generate("alice", scopes=["ops"])
        # The other instance checks the secret, issues a token the first one inspects: one key pair, in PostgreSQL.
        token = await two.token(id="alice", secret=account.secret)
        assert (await one.inspect(token.access_token)).scopes == ["ops"]
        with pytest.raises(InvalidToken):
            await two.token(id="alice", secret="wrong")
        rule = Rule("ops", "ops", Resource("service", "*", "*"))
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
