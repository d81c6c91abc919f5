"""``micro web`` as a user runs it: a process that prints its address and token, serves, and stops on SIGINT."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager

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
