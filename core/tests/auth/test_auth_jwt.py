"""JWTAuth: accounts, tokens, keys, rules."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat

import jwt as pyjwt
import micro
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from micro.auth import SCOPE_ACCOUNT, Access, Account, JWTAuthOptions, Resource, Rule
from micro.auth.jwt import JWTAuth
from micro.errors import BadRequest, ConfigError, Forbidden, InvalidOption, InvalidToken, Unauthorized


@pytest.fixture
async def auth(tmp_path):
    async with JWTAuth(JWTAuthOptions(key_dir=str(tmp_path / "keys"))) as instance:
        yield instance


def payload(token: str) -> dict:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def private_pem(key) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def public_pem(key) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


async def test_generate_then_inspect_keeps_the_account_and_leaks_no_secret(auth):
    account = await auth.generate(
        "svc-a", type="service", scopes=["read", "write"], metadata={"team": "x"}, provider="basic"
    )
    assert account.secret
    assert account.issuer == "micro"
    token = await auth.token(id="svc-a", secret=account.secret)
    inspected = await auth.inspect(token.access_token)
    assert inspected == Account(
        id="svc-a",
        type="service",
        issuer="micro",
        secret="",
        scopes=["read", "write"],
        metadata={"team": "x", "provider": "basic"},
    )
    for text in (token.access_token, token.refresh_token):
        assert account.secret not in json.dumps(payload(text))
    assert token.created <= token.expiry - 3599
    assert not token.expired


async def test_given_secret_and_wrong_credentials(auth):
    await auth.generate("u", secret="s3cret")
    await auth.token(id="u", secret="s3cret")
    for wrong in ({"id": "u", "secret": "nope"}, {"id": "nobody", "secret": "s3cret"}):
        with pytest.raises(InvalidToken, match="invalid account id or secret"):
            await auth.token(**wrong)


async def test_refresh_token_gives_a_new_token_and_is_not_an_access_token(auth):
    account = await auth.generate("u", scopes=["a"])
    first = await auth.token(id="u", secret=account.secret)
    second = await auth.token(refresh_token=first.refresh_token, expiry=60)
    assert second.access_token != first.access_token
    assert second.expiry - second.created == pytest.approx(60, abs=1)
    assert (await auth.inspect(second.access_token)).scopes == ["a"]
    with pytest.raises(InvalidToken, match="not an access token"):
        await auth.inspect(first.refresh_token)
    with pytest.raises(InvalidToken, match="not a refresh token"):
        await auth.token(refresh_token=first.access_token)
    # Generating the account again voids its earlier refresh tokens.
    await auth.generate("u")
    with pytest.raises(InvalidToken, match="no longer exists"):
        await auth.token(refresh_token=second.refresh_token)


async def test_bad_token_requests_are_bad_requests(auth):
    with pytest.raises(BadRequest):
        await auth.token()
    with pytest.raises(BadRequest):
        await auth.token(id="u")
    with pytest.raises(BadRequest, match="not both"):
        await auth.token(id="u", secret="s", refresh_token="r")
    with pytest.raises(BadRequest, match="expiry"):
        await auth.token(id="u", secret="s", expiry=0)
    with pytest.raises(BadRequest):
        await auth.generate("")
    with pytest.raises(BadRequest):
        await auth.generate("u", scopes="admin")
    with pytest.raises(BadRequest):
        await auth.generate("u", metadata={"k": 1})  # type: ignore[dict-item]


async def test_expired_token_is_invalid(auth):
    account = await auth.generate("u")
    token = await auth.token(id="u", secret=account.secret, expiry=1)
    assert token.expiry == int(token.expiry) <= token.created + 1
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    error = None
    while error is None:
        try:
            await auth.inspect(token.access_token)
        except InvalidToken as exc:
            error = exc
        assert loop.time() < deadline, "the token never expired"
        await asyncio.sleep(0.02)
    assert "expired" in str(error)
    assert token.expired


@pytest.mark.parametrize("garbage", ["", "garbage", "a.b.c", "Bearer x", "e30.e30.", 42])
async def test_garbage_is_invalid(auth, garbage):
    with pytest.raises(InvalidToken):
        await auth.inspect(garbage)


async def test_forged_and_foreign_tokens_are_invalid(auth, tmp_path):
    account = await auth.generate("u")
    good = await auth.token(id="u", secret=account.secret)
    claims = payload(good.access_token)
    # Same claims, signed by another key.
    forged = pyjwt.encode(claims, ed25519.Ed25519PrivateKey.generate(), algorithm="EdDSA")
    with pytest.raises(InvalidToken, match="signature"):
        await auth.inspect(forged)
    # Same claims, unsigned (alg "none").
    with pytest.raises(InvalidToken):
        await auth.inspect(pyjwt.encode(claims, None, algorithm="none"))
    # Claims changed after signing.
    head, _, sig = good.access_token.split(".")
    body = base64.urlsafe_b64encode(json.dumps({**claims, "scopes": ["admin"]}).encode()).rstrip(b"=").decode()
    with pytest.raises(InvalidToken):
        await auth.inspect(f"{head}.{body}.{sig}")
    # Right key, other namespace.
    async with JWTAuth(JWTAuthOptions(key_dir=str(tmp_path / "keys"), namespace="other")) as other:
        await other.generate("u", secret="s")
        foreign = await other.token(id="u", secret="s")
    with pytest.raises(InvalidToken, match="namespace"):
        await auth.inspect(foreign.access_token)


async def test_key_pair_is_generated_once_kept_private_and_shared(tmp_path):
    key_dir = tmp_path / "keys"
    first = JWTAuth(JWTAuthOptions(key_dir=str(key_dir)))
    assert not key_dir.exists(), "the constructor must not do I/O"
    await first.start()
    private_file, public_file = key_dir / "eddsa_private.pem", key_dir / "eddsa_public.pem"
    assert stat.S_IMODE(private_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_dir.stat().st_mode) == 0o700
    assert [p.name for p in key_dir.iterdir() if p.name.startswith(".")] == []
    account = await first.generate("u")
    token = await first.token(id="u", secret=account.secret)
    # A restarted instance and a service holding only the public key both accept the token.
    second = JWTAuth(JWTAuthOptions(key_dir=str(key_dir)))
    assert (await second.inspect(token.access_token)).id == "u"
    checker = JWTAuth(JWTAuthOptions(public_key=str(public_file), key_dir=str(tmp_path / "unused")))
    assert (await checker.inspect(token.access_token)).id == "u"
    assert not (tmp_path / "unused").exists()
    await checker.generate("v", secret="s")
    with pytest.raises(ConfigError, match="only a public key"):
        await checker.token(id="v", secret="s")


async def test_keys_given_as_pem_text_rsa():
    key = ed25519.Ed25519PrivateKey.generate()
    auth = JWTAuth(JWTAuthOptions(private_key=private_pem(key), public_key=public_pem(key)))
    await auth.generate("u", secret="s")
    token = await auth.token(id="u", secret="s")
    assert pyjwt.decode(token.access_token, key.public_key(), algorithms=["EdDSA"], issuer="micro")["sub"] == "u"

    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_auth = JWTAuth(JWTAuthOptions(private_key=private_pem(rsa_key), algorithm="RS256"))
    await rsa_auth.generate("u", secret="s")
    rsa_token = await rsa_auth.token(id="u", secret="s")
    assert pyjwt.get_unverified_header(rsa_token.access_token)["alg"] == "RS256"
    assert (await rsa_auth.inspect(rsa_token.access_token)).id == "u"
    # An RS256 token is not accepted by an EdDSA auth even if it could read it.
    with pytest.raises(InvalidToken):
        await auth.inspect(rsa_token.access_token)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"private_key": "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"}, "private_key"),
        ({"private_key": "/does/not/exist.pem"}, "private_key"),
        ({"public_key": "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n"}, "public_key"),
    ],
)
async def test_bad_keys_are_invalid_options(options, match):
    with pytest.raises(InvalidOption, match=match):
        await JWTAuth(JWTAuthOptions(**options)).start()


async def test_mismatched_keys_are_invalid_options():
    key, other = ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate()
    with pytest.raises(InvalidOption, match="does not belong"):
        await JWTAuth(JWTAuthOptions(private_key=private_pem(key), public_key=public_pem(other))).start()
    with pytest.raises(InvalidOption, match="RS256"):
        await JWTAuth(JWTAuthOptions(private_key=private_pem(key), algorithm="RS256")).start()


async def test_key_dir_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InvalidOption, match="key_dir"):
        await JWTAuth(JWTAuthOptions(key_dir=str(blocker / "keys"))).start()


async def test_grant_list_revoke_and_verify(auth):
    public = Rule("public", "", Resource("greeter", "service", "Greeter.Hello"))
    members = Rule("members", SCOPE_ACCOUNT, Resource("*", "*", "*"), priority=-1)
    await auth.grant(members)
    await auth.grant(public)
    await auth.grant(public)
    assert await auth.rules() == [members, public]
    await auth.verify(None, Resource("greeter", "service", "Greeter.Hello"))
    with pytest.raises(Unauthorized):
        await auth.verify(None, Resource("greeter", "service", "Greeter.Bye"))
    await auth.verify(Account("u"), Resource("greeter", "service", "Greeter.Bye"))
    await auth.grant(Rule("members", SCOPE_ACCOUNT, Resource("*", "*", "*"), Access.DENIED))
    assert [r.access for r in await auth.rules()] == [Access.DENIED, Access.GRANTED]
    with pytest.raises(Forbidden):
        await auth.verify(Account("u"), Resource("greeter", "service", "Greeter.Bye"))
    await auth.revoke(members)
    await auth.revoke(members)
    assert await auth.rules() == [public]
    with pytest.raises(BadRequest):
        await auth.grant(Rule("", "", Resource("*", "*", "*")))


def test_selected_by_name_with_micro_variables(tmp_path):
    environ = {"MICRO_AUTH": "jwt", "MICRO_AUTH_TOKEN_EXPIRY": "15m", "MICRO_AUTH_KEY_DIR": str(tmp_path)}
    auth = micro.create("auth", environ=environ)
    assert isinstance(auth, JWTAuth)
    assert auth.options.token_expiry == 900
    assert auth.capabilities == {"tokens", "rules"}
    assert os.listdir(tmp_path) == []
