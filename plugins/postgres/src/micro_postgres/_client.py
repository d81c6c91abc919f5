"""Connecting to the PostgreSQL server named by an options object, shared by the store and sync."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from micro.errors import BackendUnavailable, InvalidOption, MicroError

from ._errors import redact, translate
from .options import display_address, server_dsn

__all__ = ["Server"]


class _ConnectionOptions(Protocol):
    @property
    def address(self) -> tuple[str, ...]: ...
    @property
    def connect_timeout(self) -> float: ...
    @property
    def request_timeout(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Server:
    """One PostgreSQL server as the options describe it, and how errors about it are worded."""

    dsn: str
    #: The address without credentials, for messages.
    address: str
    #: The variable that sets the address, e.g. ``MICRO_STORE_ADDRESS``.
    variable: str
    connect_timeout: float
    request_timeout: float

    @classmethod
    def of(cls, options: _ConnectionOptions, interface: str) -> Server:
        dsn = server_dsn(options.address)
        return cls(
            dsn=dsn,
            address=display_address(dsn),
            variable=f"MICRO_{interface.upper()}_ADDRESS",
            connect_timeout=float(options.connect_timeout),
            request_timeout=float(options.request_timeout),
        )

    @property
    def where(self) -> str:
        """The prefix of every error message: ``postgres at 127.0.0.1:5432/test (MICRO_STORE_ADDRESS)``."""
        return f"postgres at {self.address} ({self.variable})"

    def translate(self, exc: BaseException) -> MicroError | None:
        """:func:`~micro_postgres._errors.translate` naming this server."""
        return translate(exc, self.where)

    def _arguments(self, name: str) -> dict[str, Any]:
        return {
            "timeout": self.connect_timeout,
            "command_timeout": self.request_timeout,
            "server_settings": {"application_name": name[:63]},
        }

    async def connect(self, name: str) -> asyncpg.Connection:
        """One connection, its ``application_name`` set to ``name``.

        Raises :class:`~micro.errors.BackendUnavailable` naming the address and its
        variable if the server does not answer within ``connect_timeout``,
        :class:`~micro.errors.Unauthorized` if it refuses the credentials.
        """
        conn: asyncpg.Connection = await self._open(asyncpg.connect(self.dsn, **self._arguments(name)))
        return conn

    async def pool(self, name: str, size: int, *, stateless: bool = False) -> asyncpg.Pool:
        """A pool of up to ``size`` connections (one opened now, to check the server answers).

        ``stateless``: the caller never leaves session state on a connection (no ``LISTEN``,
        ``SET``, session advisory lock or cursor outside a transaction), so a connection going back
        to the pool skips asyncpg's reset statement, a round trip per use. An open transaction is
        still rolled back.
        """
        extra: dict[str, Any] = {"connection_class": _StatelessConnection} if stateless else {}
        pool = asyncpg.create_pool(self.dsn, min_size=1, max_size=size, **self._arguments(name), **extra)
        return await self._open(pool)  # type: ignore[no-any-return]

    async def _open(self, opening: Any) -> Any:
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await opening
        except TimeoutError:
            raise BackendUnavailable(f"{self.where}: no answer within {self.connect_timeout:g}s") from None
        except (ValueError, asyncpg.exceptions.ClientConfigurationError) as exc:
            # asyncpg's parser may quote the DSN it refused; the message goes through redact().
            raise InvalidOption(f"{redact(str(exc))}", option="address") from None
        except Exception as exc:
            micro = self.translate(exc)
            if micro is None:
                raise
            raise micro from None


class _StatelessConnection(asyncpg.Connection):
    """A pooled connection whose users leave no session state: nothing to reset on release."""

    def get_reset_query(self) -> str:
        return ""
