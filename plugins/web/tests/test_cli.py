"""``micro web`` as a user runs it: a process that prints its address and token, serves, and stops on SIGINT."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import aiohttp
import micro
from micro_web.app import TOKEN_HEADER

MICRO = [sys.executable, "-c", "from micro.cli import main; main()"]
MicroWeb = Callable[..., AbstractContextManager[tuple[str, str]]]


async def test_micro_web_serves_the_registry_with_its_printed_token(
    greeter: micro.Service, environ: dict[str, str], micro_web: MicroWeb
) -> None:
    with micro_web(environ) as (url, token):
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/api/services") as r:
                assert r.status == 401
            async with session.get(f"{url}/api/services", headers={TOKEN_HEADER: token}) as r:
                assert r.status == 200
                assert "greeter" in [s["name"] for s in (await r.json())["services"]]
            async with session.get(f"{url}/") as r:
                assert r.status == 200


async def test_a_configured_token_is_used_and_a_short_one_refused(environ: dict[str, str], micro_web: MicroWeb) -> None:
    with micro_web({**environ, "MICRO_WEB_TOKEN": "k" * 20}) as (_, token):
        assert token == "k" * 20
    done = await asyncio.to_thread(
        subprocess.run,
        [*MICRO, "web"],
        env={**environ, "MICRO_WEB_TOKEN": "short"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "MICRO_WEB_TOKEN" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_address_in_use_is_one_clear_line(environ: dict[str, str], micro_web: MicroWeb) -> None:
    with micro_web(environ) as (url, _):
        port = url.rsplit(":", 1)[1]
        done = subprocess.run(
            [*MICRO, "web", "--address", f"127.0.0.1:{port}"],
            env=environ,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
    assert os.environ.get("MICRO_WEB_TOKEN") is None


async def test_calls_to_a_service_that_enforces_auth_carry_the_users_token(
    environ: dict[str, str], micro_web: MicroWeb, tmp_path: Path, say: object
) -> None:
    # The greeter enforces jwt (selected, nothing else); accounts live in a store every process shares.
    env = {**environ, "MICRO_AUTH": "jwt", "MICRO_STORE": "sqlite", "MICRO_STORE_PATH": str(tmp_path / "auth.db")}
    auth = micro.create("auth", environ=env)
    async with auth:
        account = await auth.generate("dashboard-user", scopes=["admin"])
    service = micro.Service("greeter", environ=env)
    service.handle(say)
    body = {"service": "greeter", "endpoint": "Say.hello", "request": {"name": "Ada"}}
    async with service:
        signed = {**env, "MICRO_AUTH_ID": "dashboard-user", "MICRO_AUTH_SECRET": account.secret or ""}
        with micro_web(signed) as (url, token):
            status, reply = await _call(url, token, body)
        assert (status, reply) == (200, {"response": {"message": "Hello Ada"}})
        with micro_web(env) as (url, token):  # no credentials: the service refuses the page's call
            status, reply = await _call(url, token, body)
        assert status == 401
        assert reply["error"]["code"] == 401


async def _call(url: str, token: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    headers = {TOKEN_HEADER: token}
    async with aiohttp.ClientSession() as session, session.post(f"{url}/api/call", json=body, headers=headers) as r:
        return r.status, await r.json()


async def test_connections_past_max_connections_are_closed_as_they_are_accepted(
    environ: dict[str, str], micro_web: MicroWeb
) -> None:
    """aiohttp keeps no connection limit: 3,000 silent connections were all held for idle_timeout."""
    with micro_web({**environ, "MICRO_WEB_MAX_CONNECTIONS": "2"}) as (url, token):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        held = [await asyncio.open_connection(host, int(port)) for _ in range(2)]
        await asyncio.sleep(0.3)  # accepted: aiohttp counts a connection once it is made
        reader, writer = await asyncio.open_connection(host, int(port))
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # closed at once, unanswered
        writer.close()
        for r, _ in held:  # the two within the limit stay open
            try:
                async with asyncio.timeout(0.5):
                    await r.read()
                raise AssertionError("a connection within max_connections was closed")
            except TimeoutError:
                pass
        for _, w in held:
            w.close()
        await asyncio.sleep(0.3)
        async with (  # room again
            aiohttp.ClientSession() as session,
            session.get(f"{url}/api/services", headers={TOKEN_HEADER: token}) as r,
        ):
            assert r.status == 200


async def test_a_burst_of_connections_does_not_overshoot_max_connections(
    environ: dict[str, str], micro_web: MicroWeb
) -> None:
    """aiohttp counts a connection a loop turn after it is accepted: a batch of accepts overshot the limit."""
    with micro_web({**environ, "MICRO_WEB_MAX_CONNECTIONS": "20"}) as (url, _):
        host, port = url.removeprefix("http://").rsplit(":", 1)
        clients = await asyncio.gather(*(asyncio.open_connection(host, int(port)) for _ in range(200)))

        async def still_open(reader: asyncio.StreamReader) -> bool:
            try:
                async with asyncio.timeout(1.0):
                    await reader.read()
                return False
            except TimeoutError:
                return True

        kept = sum(await asyncio.gather(*(still_open(reader) for reader, _ in clients)))
        for _, writer in clients:
            writer.close()
        assert kept <= 20, f"{kept} connections kept open, MICRO_WEB_MAX_CONNECTIONS 20"
