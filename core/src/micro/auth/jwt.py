"""Auth with JSON Web Tokens signed by an asymmetric key (Ed25519 or RSA), through PyJWT and cryptography."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import os
import secrets
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Final

from .._private import open_private, private_dir, write_private
from ..component import Make, Parts
from ..errors import ConfigError, InvalidOption, InvalidToken, MissingExtra
from ..store.base import Store
from ..store.memory import MemoryStore
from ._book import AuthBook, StoredAccount
from ._common import check_token_request, new_account
from .base import Account, Auth, Rule, Token
from .options import JWTAuthOptions

try:
    import jwt
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
except ModuleNotFoundError as exc:  # an extra: the default auth is noop
    missing = "jwt (PyJWT)" if exc.name is None or exc.name.startswith("jwt") else "cryptography"
    raise MissingExtra("auth 'jwt'", extra="jwt", module=missing) from exc

__all__ = ["JWTAuth"]

PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | rsa.RSAPublicKey

_ACCESS: Final = "access"
_REFRESH: Final = "refresh"
# scrypt's interactive-login parameters (RFC 7914 section 2): about 16 MiB and tens of milliseconds per hash.
_SCRYPT: Final = {"n": 2**14, "r": 8, "p": 1, "dklen": 32}
# Hashed when an unknown id is presented, so that a wrong id costs as long as a wrong secret.
_DUMMY_SALT: Final = b"micro.auth.jwt.unknown-account"


def _hash_secret(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode("utf-8"), salt=salt, **_SCRYPT)


def default_key_dir() -> Path:
    """``$XDG_CONFIG_HOME/micro/auth``, else ``~/.config/micro/auth``."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "micro" / "auth"


@dataclass(frozen=True, slots=True)
class _Keys:
    public: PublicKey
    private: PrivateKey | None
    #: Read from the store (so another instance may have replaced it), not from options or a file.
    stored: bool = False
    loaded: float = 0.0


class JWTAuth(Auth):
    """Accounts and rules in a store, stateless access tokens.

    Tokens are JWTs signed with ``algorithm`` (``EdDSA``, Ed25519, by default,
    or ``RS256``) and carry the account's id, type, scopes and metadata, but
    never its secret, so any service holding the public key can
    :meth:`inspect` them without asking this one. An access token lives
    ``expiry`` seconds, rounded down to a whole second of the clock (JWT
    times are whole seconds); a refresh token lives ``refresh_expiry`` and is
    only accepted by :meth:`token`.

    **Accounts and rules** live in ``store`` (table ``options.table``): the
    configured store when a :class:`~micro.Service` wires the auth
    (``MICRO_STORE``), so every instance given the same store shares them
    (see :mod:`micro.auth._book`). Secrets are kept as scrypt hashes; generating
    an account again voids its earlier refresh tokens. :meth:`rules` reads the
    store again at most every ``rules_refresh`` seconds, which bounds how long a
    rule granted or revoked elsewhere takes to apply here. Without a store and
    without ``make``, a private in-memory store is used.

    **Keys**: ``private_key``/``public_key`` options (PEM text or a file path);
    else ``key_dir`` if set; else, with a store that is not the in-process
    memory store, a key pair kept in that store, so instances on other hosts
    check each other's tokens (whoever can read the store can then issue
    tokens: give the keys as options to keep them out of it); else a key pair
    generated on first use in the default ``key_dir``. With only ``public_key``,
    the instance checks tokens but cannot issue them
    (:class:`~micro.errors.ConfigError`).
    """

    options_type: ClassVar[type[JWTAuthOptions]] = JWTAuthOptions
    options: JWTAuthOptions
    capabilities: ClassVar[frozenset[str]] = frozenset({"tokens", "rules"})
    # Used directly (micro.create("auth", "jwt")) it opens its store on first use.
    starts_on_use: ClassVar[bool] = True

    def __init__(
        self, options: JWTAuthOptions | None = None, *, store: Store | None = None, make: Make | None = None
    ) -> None:
        super().__init__(options)
        self._parts = Parts(make)
        if store is None:
            store = self._parts.make(Store, MemoryStore)
        self._book = AuthBook(
            store, namespace=self.options.namespace, table=self.options.table, refresh=self.options.rules_refresh
        )
        self._keys: _Keys | None = None
        self._keys_lock = asyncio.Lock()

    @property
    def store(self) -> Store:
        """Where the accounts and rules are kept."""
        return self._book.store

    async def _start(self) -> None:
        """Open the store, then load the keys, or generate and keep a key pair.

        Raises :class:`~micro.errors.InvalidOption` for bad keys.
        """
        await self._book.store.start()
        self._keys = None
        await self._load_keys()

    async def _close(self) -> None:
        await self._parts.close()

    async def _ready(self) -> None:
        if self._component_state != "started":
            await self._open_for_use()

    # -- keys -----------------------------------------------------------------------------------

    async def _load_keys(self, *, reload: bool = False) -> _Keys:
        keys = self._keys
        if keys is None or reload:
            async with self._keys_lock:
                if self._keys is None or self._keys is keys:
                    self._keys = await self._read_any_keys()
        assert self._keys is not None
        return self._keys

    async def _read_any_keys(self) -> _Keys:
        options = self.options
        if options.private_key or options.public_key or options.key_dir or isinstance(self._book.store, MemoryStore):
            return await asyncio.to_thread(self._read_keys)
        algorithm = options.algorithm
        pem = await self._book.key(algorithm)
        if pem is None:
            pem = await self._book.put_key(algorithm, await asyncio.to_thread(self._new_private_pem))
        private = self._private(pem, "store")
        return _Keys(private.public_key(), private, stored=True, loaded=time.monotonic())

    def _new_private_pem(self) -> bytes:
        private: PrivateKey = (
            ed25519.Ed25519PrivateKey.generate()
            if self.options.algorithm == "EdDSA"
            else rsa.generate_private_key(public_exponent=65537, key_size=2048)
        )
        return private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    def _read_keys(self) -> _Keys:
        options = self.options
        if options.private_key:
            private = self._private(_pem(options.private_key, "private_key"), "private_key")
            public: PublicKey = private.public_key()
            if options.public_key:
                given = self._public(_pem(options.public_key, "public_key"), "public_key")
                if _public_bytes(given) != _public_bytes(public):
                    raise InvalidOption("does not belong to the private key", option="public_key")
            return _Keys(public, private)
        if options.public_key:
            return _Keys(self._public(_pem(options.public_key, "public_key"), "public_key"), None)
        if options.key_dir:
            private = self._stored_key_pair(Path(options.key_dir).expanduser(), default=False)
        else:
            private = self._stored_key_pair(default_key_dir(), default=True)
        return _Keys(private.public_key(), private)

    def _private(self, data: bytes, option: str) -> PrivateKey:
        key = _load_private(data, option)
        wanted = ed25519.Ed25519PrivateKey if self.options.algorithm == "EdDSA" else rsa.RSAPrivateKey
        if not isinstance(key, wanted):
            raise InvalidOption(self._wrong_kind(key), option=option)
        return key

    def _public(self, data: bytes, option: str) -> PublicKey:
        key = _load_public(data, option)
        wanted = ed25519.Ed25519PublicKey if self.options.algorithm == "EdDSA" else rsa.RSAPublicKey
        if not isinstance(key, wanted):
            raise InvalidOption(self._wrong_kind(key), option=option)
        return key

    def _wrong_kind(self, key: object) -> str:
        return f"a {type(key).__name__.lstrip('_')} cannot be used for {self.options.algorithm} tokens"

    def _stored_key_pair(self, directory: Path, *, default: bool) -> PrivateKey:
        prefix = self.options.algorithm.lower()
        private_path = directory / f"{prefix}_private.pem"
        public_path = directory / f"{prefix}_public.pem"
        try:
            # The default directory is micro's own: made, or checked and tightened, 0700, and its key file must
            # be the user's and not a symlink. A configured one that exists is the user's choice (a mounted
            # secret is often a symlink); what micro creates there is private either way.
            if default or not directory.exists():
                private_dir(directory)
            if private_path.exists():
                return self._private(self._read_private(private_path, default=default), "key_dir")
            pem = self._new_private_pem()
            private = self._private(pem, "key_dir")
            # mkstemp creates the file 0600 with O_EXCL; link() publishes it whole, and fails if another process
            # got there first.
            handle, temporary = tempfile.mkstemp(dir=directory, prefix=".key-")
            try:
                with os.fdopen(handle, "wb") as file:
                    file.write(pem)
                    file.flush()
                    os.fsync(file.fileno())
                try:
                    os.link(temporary, private_path)
                except FileExistsError:
                    return self._private(self._read_private(private_path, default=default), "key_dir")
            finally:
                os.unlink(temporary)
            write_private(public_path, _public_bytes(private.public_key()))
            return private
        except OSError as exc:
            raise InvalidOption(f"cannot keep keys in {str(directory)!r}: {exc}", option="key_dir") from exc

    @staticmethod
    def _read_private(path: Path, *, default: bool) -> bytes:
        if not default:
            return path.read_bytes()
        with os.fdopen(open_private(path, os.O_RDONLY, create=False), "rb") as file:
            return file.read()

    async def _signing_key(self) -> PrivateKey:
        keys = await self._load_keys()
        if keys.private is None:
            raise ConfigError("this JWT auth has only a public key: set private_key to issue tokens")
        return keys.private

    # -- accounts and tokens --------------------------------------------------------------------

    async def generate(
        self,
        id: str,
        *,
        secret: str | None = None,
        type: str = "user",
        scopes: Iterable[str] = (),
        metadata: Mapping[str, str] | None = None,
        provider: str | None = None,
    ) -> Account:
        account = new_account(
            id,
            issuer=self.options.namespace,
            secret=secret,
            type=type,
            scopes=scopes,
            metadata=metadata,
            provider=provider,
        )
        await self._ready()
        salt = secrets.token_bytes(16)
        digest = await asyncio.to_thread(_hash_secret, account.secret, salt)
        await self._book.put_account(StoredAccount(replace(account, secret=""), salt, digest, secrets.token_hex(8)))
        return account

    async def accounts(self) -> list[Account]:
        """Every account (without secrets), sorted by id. Not part of the :class:`Auth` interface."""
        await self._ready()
        return await self._book.accounts()

    async def delete(self, id: str) -> None:
        """Remove the account ``id`` (idempotent): its refresh tokens and credentials stop working at once;
        access tokens already issued stay valid until they expire. Not part of the :class:`Auth` interface."""
        await self._ready()
        await self._book.delete_account(id)

    async def grant(self, rule: Rule) -> None:
        await self._ready()
        await self._book.grant(rule)

    async def revoke(self, rule: Rule) -> None:
        await self._ready()
        await self._book.revoke(rule)

    async def rules(self) -> list[Rule]:
        await self._ready()
        return await self._book.rules()

    async def inspect(self, token: str) -> Account:
        claims = await self._decode(token, _ACCESS)
        scopes, metadata, kind = claims.get("scopes", []), claims.get("metadata", {}), claims.get("type", "user")
        if (
            not isinstance(scopes, list)
            or not all(isinstance(s, str) for s in scopes)
            or not isinstance(metadata, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
            or not isinstance(kind, str)
        ):
            raise InvalidToken("the token's account claims are malformed")
        return Account(id=claims["sub"], type=kind, issuer=claims["iss"], scopes=scopes, metadata=metadata)

    async def _decode(self, token: str, use: str) -> dict[str, Any]:
        if not isinstance(token, str) or not token:
            raise InvalidToken("no token given")
        await self._ready()
        keys = await self._load_keys()
        try:
            return self._check(token, use, keys)
        except InvalidToken:
            # Another instance may have kept its own key pair first (or the key was replaced in the store):
            # read the store's key again, at most once a second, and check once more.
            if not keys.stored or time.monotonic() - keys.loaded < 1.0:
                raise
        return self._check(token, use, await self._load_keys(reload=True))

    def _check(self, token: str, use: str, keys: _Keys) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                keys.public,
                algorithms=[self.options.algorithm],
                issuer=self.options.namespace,
                options={"require": ["exp", "iat", "iss", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken(f"the token was not issued by namespace {self.options.namespace!r}") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("the token's signature is not valid") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"not a valid token: {exc}") from None
        if claims.get("use") != use:
            raise InvalidToken(f"not an {use} token" if use == _ACCESS else f"not a {use} token")
        return claims

    async def token(
        self,
        *,
        id: str | None = None,
        secret: str | None = None,
        refresh_token: str | None = None,
        expiry: float | None = None,
    ) -> Token:
        lifetime = check_token_request(id, secret, refresh_token, expiry, self.options.token_expiry)
        await self._ready()
        if refresh_token is not None:
            claims = await self._decode(refresh_token, _REFRESH)
            stored = await self._book.account(claims["sub"])
            if stored is None or not hmac.compare_digest(str(claims.get("ver", "")), stored.version):
                raise InvalidToken("the refresh token's account no longer exists")
        else:
            assert id is not None
            assert secret is not None
            stored = await self._book.account(id)
            salt = stored.salt if stored is not None else _DUMMY_SALT
            digest = await asyncio.to_thread(_hash_secret, secret, salt)
            if stored is None or not hmac.compare_digest(digest, stored.digest):
                raise InvalidToken("invalid account id or secret")
        return await self._issue(stored, lifetime)

    async def _issue(self, stored: StoredAccount, lifetime: float) -> Token:
        key = await self._signing_key()
        account, now = stored.account, time.time()
        # PyJWT compares whole seconds (int(exp)); the expiry reported is the one it will enforce.
        expires = math.floor(now + lifetime)
        common = {"iss": self.options.namespace, "sub": account.id, "iat": now}
        access = {
            **common,
            "exp": expires,
            "jti": secrets.token_hex(8),
            "use": _ACCESS,
            "type": account.type,
            "scopes": list(account.scopes),
            "metadata": dict(account.metadata),
        }
        refresh = {
            **common,
            "exp": math.floor(now + self.options.refresh_expiry),
            "jti": secrets.token_hex(8),
            "use": _REFRESH,
            "ver": stored.version,
        }
        algorithm = self.options.algorithm
        return Token(
            access_token=jwt.encode(access, key, algorithm=algorithm),
            refresh_token=jwt.encode(refresh, key, algorithm=algorithm),
            created=now,
            expiry=float(expires),
        )


def _pem(value: str, option: str) -> bytes:
    """PEM text as given, or the content of the file it names."""
    if value.lstrip().startswith("-----BEGIN"):
        return value.encode("ascii", "replace")
    try:
        return Path(value).expanduser().read_bytes()
    except OSError as exc:
        raise InvalidOption(f"neither PEM text nor a readable file: {exc}", option=option) from exc


def _load_private(data: bytes, option: str) -> object:
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise InvalidOption(f"not an unencrypted PEM private key: {exc}", option=option) from exc


def _load_public(data: bytes, option: str) -> object:
    try:
        return serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidOption(f"not a PEM public key: {exc}", option=option) from exc


def _public_bytes(key: PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
