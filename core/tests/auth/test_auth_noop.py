"""NoopAuth: accepts everyone, still checks its arguments."""

from __future__ import annotations

import micro
import pytest
from micro.auth import Account, AuthOptions, Resource, Rule
from micro.auth.noop import NoopAuth
from micro.errors import BadRequest


async def test_noop_is_the_default_and_lets_everything_through():
    auth = micro.create("auth", environ={"MICRO_AUTH_NAMESPACE": "ns"})
    assert isinstance(auth, NoopAuth)
    assert auth.capabilities == frozenset()
    async with auth:
        account = await auth.generate("u", scopes=["a"], metadata={"k": "v"}, provider="oauth")
        assert (account.id, account.issuer, account.scopes, account.metadata) == (
            "u",
            "ns",
            ["a"],
            {"k": "v", "provider": "oauth"},
        )
        assert account.secret
        token = await auth.token(id="u", secret="anything")
        assert token.access_token
        assert not token.expired
        assert await auth.inspect("not even a token") == Account(id="default", issuer="ns")
        await auth.verify(None, Resource("any", "service", "Any.Thing"))
        rule = Rule("r", "", Resource("*", "*", "*"))
        await auth.grant(rule)
        assert await auth.rules() == [rule]
        await auth.revoke(rule)
        assert await auth.rules() == []


async def test_noop_checks_arguments():
    auth = NoopAuth(AuthOptions())
    with pytest.raises(BadRequest):
        await auth.generate("")
    with pytest.raises(BadRequest):
        await auth.token()
    with pytest.raises(BadRequest):
        await auth.grant(Rule("", "", Resource("*", "*", "*")))
