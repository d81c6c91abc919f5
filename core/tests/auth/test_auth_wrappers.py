"""server_wrapper and client_wrapper: 401 versus 403, tokens put on and taken off the metadata."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from micro import Metadata
from micro.auth import (
    SCOPE_ACCOUNT,
    SCOPE_PUBLIC,
    AuthOptions,
    JWTAuthOptions,
    Resource,
    Rule,
    client_wrapper,
    current_account,
    server_wrapper,
)
from micro.auth.jwt import JWTAuth
from micro.auth.noop import NoopAuth
from micro.errors import Forbidden, InvalidToken, Unauthorized


@dataclass
class FakeRequest:
    service: str
    endpoint: str
    metadata: Metadata = field(default_factory=Metadata)


class Handler:
    def __init__(self) -> None:
        self.seen: list[tuple[FakeRequest, object]] = []

    async def __call__(self, request: FakeRequest) -> str:
        self.seen.append((request, current_account()))
        return f"handled {request.endpoint}"


@pytest.fixture
async def auth(tmp_path):
    async with JWTAuth(JWTAuthOptions(key_dir=str(tmp_path))) as instance:
        await instance.grant(Rule("public", SCOPE_PUBLIC, Resource("greeter", "service", "Greeter.Hello")))
        await instance.grant(Rule("members", SCOPE_ACCOUNT, Resource("greeter", "service", "Greeter.Members")))
        await instance.grant(Rule("admins", "admin", Resource("greeter", "service", "Greeter.Admin")))
        yield instance


async def bearer(auth, id: str, scopes=()) -> str:
    account = await auth.generate(id, scopes=scopes)
    return "Bearer " + (await auth.token(id=id, secret=account.secret)).access_token


async def test_public_endpoint_without_a_token(auth):
    handler = Handler()
    wrapped = server_wrapper(auth)(handler)
    assert await wrapped(FakeRequest("greeter", "Greeter.Hello")) == "handled Greeter.Hello"
    assert handler.seen[0][1] is None


async def test_no_token_is_401_and_the_handler_does_not_run(auth):
    handler = Handler()
    wrapped = server_wrapper(auth)(handler)
    with pytest.raises(Unauthorized) as info:
        await wrapped(FakeRequest("greeter", "Greeter.Members"))
    assert info.value.code == 401
    assert info.value.id == "greeter"
    assert not isinstance(info.value, Forbidden)
    assert handler.seen == []


@pytest.mark.parametrize("header", ["Bearer garbage", "Basic dXNlcjpwYXNz", "Bearer ", "token-without-scheme"])
async def test_bad_token_is_401_even_on_a_public_endpoint(auth, header):
    handler = Handler()
    wrapped = server_wrapper(auth)(handler)
    with pytest.raises(InvalidToken) as info:
        await wrapped(FakeRequest("greeter", "Greeter.Hello", Metadata({"Authorization": header})))
    assert info.value.code == 401
    assert handler.seen == []


async def test_account_without_the_scope_is_403(auth):
    handler = Handler()
    wrapped = server_wrapper(auth)(handler)
    token = await bearer(auth, "alice", scopes=["user"])
    with pytest.raises(Forbidden) as info:
        await wrapped(FakeRequest("greeter", "Greeter.Admin", Metadata({"authorization": token})))
    assert info.value.code == 403
    assert "alice" in str(info.value)
    assert handler.seen == []


async def test_allowed_account_reaches_the_handler_with_its_account(auth):
    handler = Handler()
    wrapped = server_wrapper(auth)(handler)
    token = await bearer(auth, "root", scopes=["admin"])
    request = FakeRequest("greeter", "Greeter.Admin", Metadata({"AUTHORIZATION": token}))
    assert await wrapped(request) == "handled Greeter.Admin"
    account = handler.seen[0][1]
    assert account.id == "root"
    assert account.scopes == ["admin"]
    assert current_account() is None
    assert wrapped.__wrapped__ is handler


async def test_noop_auth_lets_everything_through():
    handler = Handler()
    wrapped = server_wrapper(NoopAuth())(handler)
    request = FakeRequest("any", "Any.Thing", Metadata({"Authorization": "Bearer whatever"}))
    assert await wrapped(request) == "handled Any.Thing"
    assert handler.seen[0][1].id == "default"


async def test_client_wrapper_with_a_fixed_token_and_a_provider():
    calls = Handler()
    fixed = client_wrapper("abc")(calls)
    request = FakeRequest("greeter", "Greeter.Hello")
    await fixed(request)
    assert request.metadata["authorization"] == "Bearer abc"

    async def anonymous() -> str | None:
        return None

    request = FakeRequest("greeter", "Greeter.Hello")
    await client_wrapper(anonymous)(calls)(request)
    assert "Authorization" not in request.metadata

    # A token already there (passed on from an incoming call) is kept.
    request = FakeRequest("greeter", "Greeter.Hello", Metadata({"Authorization": "Bearer upstream"}))
    await fixed(request)
    assert request.metadata["Authorization"] == "Bearer upstream"


class CountingAuth(JWTAuth):
    requests: list[str]

    async def token(self, **kwargs):
        self.requests.append("refresh" if kwargs.get("refresh_token") else "credentials")
        return await super().token(**kwargs)


async def test_client_wrapper_with_an_auth_caches_and_renews(tmp_path):
    options = JWTAuthOptions(key_dir=str(tmp_path), id="caller", secret="s3cret", token_expiry=3600)
    auth = CountingAuth(options)
    auth.requests = []
    await auth.generate("caller", secret="s3cret", scopes=["admin"])
    await auth.grant(Rule("admins", "admin", Resource("*", "*", "*")))
    server = server_wrapper(auth)(Handler())
    client = client_wrapper(auth)(server)
    for _ in range(3):
        assert await client(FakeRequest("greeter", "Greeter.Admin")) == "handled Greeter.Admin"
    assert auth.requests == ["credentials"]

    # Tokens shorter than the renewal margin are renewed on every call, by refresh token.
    short = CountingAuth(options.replace(token_expiry=5))
    short.requests = []
    await short.generate("caller", secret="s3cret")
    signed = client_wrapper(short)(Handler())
    await signed(FakeRequest("s", "E.P"))
    await signed(FakeRequest("s", "E.P"))
    assert short.requests == ["credentials", "refresh"]


async def test_client_wrapper_with_an_auth_without_credentials_calls_anonymously():
    request = FakeRequest("greeter", "Greeter.Hello")
    await client_wrapper(NoopAuth(AuthOptions()))(Handler())(request)
    assert "Authorization" not in request.metadata
