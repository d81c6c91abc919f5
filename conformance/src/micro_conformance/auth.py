"""The auth contract (:class:`micro.auth.Auth`): cases A01-A12.

Capabilities: ``tokens`` (tokens are really checked) and ``rules`` (``verify``
applies the rule table). The interface defines the absence of each as
"accepts everything" rather than :class:`~micro.errors.NotSupported`, so the
absence cases check exactly that. Account ids and rule ids start with the
test's unique prefix.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

import pytest
from micro.auth import Access, Account, Auth, Resource, Rule
from micro.errors import BadRequest, Forbidden, InvalidToken, Unauthorized

from .base import Contract, absent, requires

__all__ = ["VERIFY_CASES", "AuthContract", "VerifyCase"]


@dataclass(frozen=True, slots=True)
class VerifyCase:
    """One row of Go Micro's ``TestVerify`` table (``auth/rules_test.go``)."""

    name: str
    rules: tuple[Rule, ...]
    account: Account | None
    resource: Resource
    #: ``None``: access is granted; else the error ``verify`` raises.
    error: type[Exception] | None


_SRV = Resource(name="go.micro.service.foo", type="service", endpoint="Foo.Bar")
_WEB = Resource(name="go.micro.web.foo", type="web", endpoint="/foo/bar")
_ALL = Resource(name="*", type="*", endpoint="*")
_ACCOUNT = Account(id="conformance", scopes=["neededscope"])

#: Go Micro's 18 verify cases, with micro's split of its one error into Unauthorized and Forbidden.
VERIFY_CASES: Final[tuple[VerifyCase, ...]] = (
    VerifyCase("NoRules", (), None, _SRV, Forbidden),
    VerifyCase("CatchallPublicAccount", (Rule("r", "", _ALL),), _ACCOUNT, _SRV, None),
    VerifyCase("CatchallPublicNoAccount", (Rule("r", "", _ALL),), None, _SRV, None),
    VerifyCase("CatchallPrivateAccount", (Rule("r", "*", _ALL),), _ACCOUNT, _SRV, None),
    VerifyCase("CatchallPrivateNoAccount", (Rule("r", "*", _ALL),), None, _SRV, Unauthorized),
    VerifyCase(
        "CatchallServiceRuleMatch",
        (Rule("r", "*", Resource(_SRV.name, _SRV.type, "*")),),
        _ACCOUNT,
        _SRV,
        None,
    ),
    VerifyCase(
        "CatchallServiceRuleNoMatch",
        (Rule("r", "*", Resource("wrongname", _SRV.type, "*")),),
        _ACCOUNT,
        _SRV,
        Forbidden,
    ),
    VerifyCase("ExactRuleValidScope", (Rule("r", "neededscope", _SRV),), _ACCOUNT, _SRV, None),
    VerifyCase("ExactRuleInvalidScope", (Rule("r", "invalidscope", _SRV),), _ACCOUNT, _SRV, Forbidden),
    VerifyCase("CatchallDenyWithAccount", (Rule("r", "*", _ALL, Access.DENIED),), _ACCOUNT, _SRV, Forbidden),
    VerifyCase("CatchallDenyWithNoAccount", (Rule("r", "*", _ALL, Access.DENIED),), None, _SRV, Unauthorized),
    VerifyCase(
        "RulePriorityGrantFirst",
        (Rule("r1", "*", _ALL, Access.GRANTED, 100), Rule("r2", "*", _ALL, Access.DENIED, 1)),
        _ACCOUNT,
        _SRV,
        None,
    ),
    VerifyCase(
        "RulePriorityDenyFirst",
        (Rule("r1", "*", _ALL, Access.GRANTED, 1), Rule("r2", "*", _ALL, Access.DENIED, 100)),
        _ACCOUNT,
        _SRV,
        Forbidden,
    ),
    VerifyCase("WebExactEndpointValid", (Rule("r", "*", _WEB),), _ACCOUNT, _WEB, None),
    VerifyCase(
        "WebExactEndpointInvalid",
        (Rule("r", "*", Resource(_WEB.name, _WEB.type, "/bar/foo")),),
        _ACCOUNT,
        _WEB,
        Forbidden,
    ),
    VerifyCase("WebWildcardEndpoint", (Rule("r", "*", Resource(_WEB.name, _WEB.type, "*")),), _ACCOUNT, _WEB, None),
    VerifyCase(
        "WebWildcardPathEndpointValid",
        (Rule("r", "*", Resource(_WEB.name, _WEB.type, "/foo/*")),),
        _ACCOUNT,
        _WEB,
        None,
    ),
    VerifyCase(
        "WebWildcardPathEndpointInvalid",
        (Rule("r", "*", Resource(_WEB.name, _WEB.type, "/bar/*")),),
        _ACCOUNT,
        _WEB,
        Forbidden,
    ),
)


class AuthContract(Contract[Auth]):
    """The behaviour every :class:`~micro.auth.Auth` shares; see :mod:`micro.auth.base`."""

    interface = "auth"
    known_capabilities = frozenset({"tokens", "rules"})

    @pytest.fixture
    def auth(self, subject: Auth) -> Auth:
        return subject

    async def account(self, auth: Auth, label: str = "user", **kwargs: object) -> Account:
        return await auth.generate(self.names(label), **kwargs)  # type: ignore[arg-type]

    # -- accounts --------------------------------------------------------------------------

    async def test_a01_generate_returns_the_account_with_its_secret(self, auth: Auth) -> None:
        """generate() returns id, type, scopes, metadata (provider included), the namespace as issuer, a secret."""
        account = await auth.generate(
            self.names("svc"), type="service", scopes=["read", "write"], metadata={"team": "ü"}, provider="basic"
        )
        assert (account.id, account.type, account.scopes) == (self.names("svc"), "service", ["read", "write"])
        assert account.metadata.get("team") == "ü" and account.metadata.get("provider") == "basic"
        assert account.issuer == auth.options.namespace
        assert isinstance(account.secret, str) and len(account.secret) >= 16, "a generated secret is missing or short"
        chosen = await auth.generate(self.names("chosen"), secret="s3cret-chosen")
        assert chosen.secret == "s3cret-chosen"
        with pytest.raises(BadRequest):
            await auth.generate("")

    # -- tokens ----------------------------------------------------------------------------

    @requires("tokens")
    async def test_a02_token_then_inspect_gives_the_account_without_its_secret(self, auth: Auth) -> None:
        """A token from the credentials inspects to the account (id, type, scopes, metadata), never the secret."""
        account = await self.account(auth, type="service", scopes=["a", "b"], metadata={"k": "v"})
        before = time.time()
        token = await auth.token(id=account.id, secret=account.secret, expiry=120)
        assert token.access_token and token.refresh_token and token.access_token != token.refresh_token
        assert before - 1 <= token.created <= time.time() + 1
        assert token.created + 115 <= token.expiry <= token.created + 121 and not token.expired
        seen = await auth.inspect(token.access_token)
        assert (seen.id, seen.type, seen.scopes, seen.issuer) == (account.id, "service", ["a", "b"], account.issuer)
        assert seen.metadata.get("k") == "v"
        assert seen.secret == "", "inspect() revealed the account's secret"
        assert account.secret not in token.access_token and account.secret not in token.refresh_token

    @requires("tokens")
    async def test_a03_refresh_token_renews_and_is_not_an_access_token(self, auth: Auth) -> None:
        """token(refresh_token=...) gives a new token for the same account; inspect() refuses a refresh token."""
        account = await self.account(auth)
        first = await auth.token(id=account.id, secret=account.secret)
        renewed = await auth.token(refresh_token=first.refresh_token)
        assert (await auth.inspect(renewed.access_token)).id == account.id
        with pytest.raises(InvalidToken):
            await auth.inspect(first.refresh_token)

    @requires("tokens")
    async def test_a04_bad_credentials_and_garbage_tokens_raise_invalid_token(self, auth: Auth) -> None:
        """A wrong secret, an unknown id, garbage, an empty or a tampered token all raise InvalidToken."""
        account = await self.account(auth)
        with pytest.raises(InvalidToken) as wrong:
            await auth.token(id=account.id, secret=account.secret + "x")
        with pytest.raises(InvalidToken) as unknown:
            await auth.token(id=self.names("nobody"), secret="whatever")
        assert str(wrong.value) == str(unknown.value), "the errors tell a wrong secret from an unknown account"
        token = await auth.token(id=account.id, secret=account.secret)
        tampered = token.access_token[:-4] + ("AAAA" if not token.access_token.endswith("AAAA") else "BBBB")
        for bad in ("not-a-token", "", "a.b.c", tampered):
            with pytest.raises(InvalidToken):
                await auth.inspect(bad)
        with pytest.raises(InvalidToken):
            await auth.token(refresh_token="not-a-token")

    @requires("tokens")
    async def test_a05_expired_token_raises_invalid_token(self, auth: Auth) -> None:
        """An access token past its expiry no longer inspects."""
        account = await self.account(auth)
        token = await auth.token(id=account.id, secret=account.secret, expiry=1)
        assert (await auth.inspect(token.access_token)).id == account.id

        async def expired() -> None:
            with pytest.raises(InvalidToken):
                await auth.inspect(token.access_token)

        await self.eventually(expired, "the token expiring")
        assert token.expired

    @requires("tokens")
    async def test_a06_token_from_another_namespace_raises_invalid_token(self, auth: Auth) -> None:
        """A token issued under one namespace does not inspect under another (same keys otherwise)."""
        other = await self.another(namespace=self.names("elsewhere"))
        account = await other.generate(self.names("user"))
        token = await other.token(id=account.id, secret=account.secret)
        assert (await other.inspect(token.access_token)).issuer == self.names("elsewhere")
        with pytest.raises(InvalidToken):
            await auth.inspect(token.access_token)

    async def test_a07_malformed_token_requests_raise_bad_request(self, auth: Auth) -> None:
        """token() with no credentials, with both kinds, or with a non-positive expiry raises BadRequest."""
        account = await self.account(auth)
        with pytest.raises(BadRequest):
            await auth.token()
        with pytest.raises(BadRequest):
            await auth.token(id=account.id, secret=account.secret, refresh_token="x")
        for expiry in (0, -5):
            with pytest.raises(BadRequest):
                await auth.token(id=account.id, secret=account.secret, expiry=expiry)

    @absent("tokens")
    async def test_a08_without_tokens_anything_inspects(self, auth: Auth) -> None:
        """Without "tokens", the implementation checks nothing: any token inspects to an account."""
        seen = await auth.inspect("not-a-token")
        assert isinstance(seen, Account) and seen.secret == ""

    # -- rules -----------------------------------------------------------------------------

    async def test_a09_grant_list_revoke(self, auth: Auth) -> None:
        """grant() adds or replaces in place, rules() lists in grant order, revoke() removes and is idempotent."""
        first = Rule(self.names("r1"), "*", _SRV)
        second = Rule(self.names("r2"), "", _WEB, Access.DENIED, 5)
        replaced = Rule(self.names("r1"), "admin", _ALL, Access.DENIED, 9)
        await auth.grant(first)
        await auth.grant(second)
        self.later(lambda: auth.revoke(second))
        ours = [r for r in await auth.rules() if r.id.startswith(self.names.prefix)]
        assert ours == [first, second]
        await auth.grant(replaced)
        ours = [r for r in await auth.rules() if r.id.startswith(self.names.prefix)]
        assert ours == [replaced, second], "a replaced rule did not keep its place"
        await auth.revoke(first)
        await auth.revoke(first)
        assert [r.id for r in await auth.rules() if r.id.startswith(self.names.prefix)] == [second.id]
        with pytest.raises(BadRequest):
            await auth.grant(Rule("", "*", _ALL))

    @requires("rules")
    @pytest.mark.parametrize("case", VERIFY_CASES, ids=[c.name for c in VERIFY_CASES])
    async def test_a10_verify_follows_go_micros_table(self, case: VerifyCase) -> None:
        """verify() decides each of Go Micro's 18 rule cases as Go Micro does (Unauthorized vs Forbidden)."""
        auth = await self.another()
        for rule in await auth.rules():
            await auth.revoke(rule)
        for rule in case.rules:
            await auth.grant(Rule(self.names(rule.id), rule.scope, rule.resource, rule.access, rule.priority))
        if case.error is None:
            await auth.verify(case.account, case.resource)
        else:
            with pytest.raises(case.error) as caught:
                await auth.verify(case.account, case.resource)
            if case.error is Forbidden:
                assert not isinstance(caught.value, Unauthorized), "Forbidden must not also be Unauthorized"

    @requires("rules")
    async def test_a11_revoked_rules_stop_applying(self) -> None:
        """A granted rule lets an account in; once revoked, it no longer does."""
        auth = await self.another()
        for existing in await auth.rules():
            await auth.revoke(existing)
        rule = Rule(self.names("open"), "*", _SRV)
        await auth.grant(rule)
        await auth.verify(_ACCOUNT, _SRV)
        await auth.revoke(rule)
        with pytest.raises(Forbidden):
            await auth.verify(_ACCOUNT, _SRV)

    @absent("rules")
    async def test_a12_without_rules_everything_is_allowed(self, auth: Auth) -> None:
        """Without "rules", verify() allows everyone, even with a denying rule granted."""
        await auth.verify(None, _SRV)
        rule = Rule(self.names("deny"), "", _ALL, Access.DENIED)
        await auth.grant(rule)
        self.later(lambda: auth.revoke(rule))
        await auth.verify(_ACCOUNT, _SRV)
