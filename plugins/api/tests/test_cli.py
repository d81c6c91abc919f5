"""``micro api`` in its own process: curl and httpx through it, its OpenAPI document validated, schemathesis on it.

The services run in this process and register in the local registry; the gateway process finds them
there, as it would find services of other processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import micro
import pytest
from openapi_spec_validator import validate
from shop import Catalogue, unique_name

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(
    CURL is None and os.environ.get("CI") != "true", reason="curl is not installed (.ci/services.sh installs it)"
)


@pytest.fixture
async def catalogue() -> AsyncIterator[str]:
    name = unique_name("catalogue")
    svc = micro.Service(name, drain_timeout=1.0)
    svc.handle(Catalogue())
    async with svc:
        yield name


@pytest.fixture
async def gateway_process() -> AsyncIterator[str]:
    """``python -m micro api --address 127.0.0.1:0``; its base URL, read from the line it prints when ready."""
    env = {**os.environ, "MICRO_API_REQUEST_TIMEOUT": "10s", "MICRO_API_MAX_BODY_SIZE": "65536"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "micro", "api", "--address", "127.0.0.1:0",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        async with asyncio.timeout(60):
            line = (await process.stderr.readline()).decode()
        found = re.search(r"serving on (http://\S+)", line)
        assert found, line
        url = found.group(1)
        async with httpx.AsyncClient(timeout=5) as http, asyncio.timeout(60):
            while True:  # the address is printed just before uvicorn starts answering
                try:
                    if (await http.get(f"{url}/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        yield url
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            await process.wait()
    assert process.returncode == 0, await process.stderr.read()


async def run(*argv: str, timeout: float = 60, cwd: Path | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=cwd
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await process.communicate()
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@needs_curl
async def test_curl_through_micro_api(gateway_process: str, catalogue: str) -> None:
    assert CURL is not None
    status, out, err = await run(
        CURL, "-sS", "-H", "Content-Type: application/json", "-d", '{"name": "tea", "price": 2}',
        f"{gateway_process}/{catalogue}/Catalogue/echo",
    )  # fmt: skip
    assert status == 0, err
    assert json.loads(out) == {"name": "tea", "price": 2, "tags": []}

    status, out, err = await run(
        CURL, "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-d", "{}", f"{gateway_process}/nobody-here/X/y"
    )
    assert (status, out) == (0, "404"), err

    status, out, err = await run(CURL, "-sS", "-N", "-d", '{"to": 3}', f"{gateway_process}/{catalogue}/Catalogue/count")
    assert status == 0, err
    assert out == "data: 0\n\ndata: 1\n\ndata: 2\n\n"


async def test_httpx_through_micro_api(gateway_process: str, catalogue: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_process, timeout=30) as http:
        response = await http.post(f"/{catalogue}/Catalogue/search", json={"text": "t", "limit": 2})
        assert response.status_code == 200
        assert response.json() == {
            "items": [{"name": "t-0", "price": 0.0, "tags": []}, {"name": "t-1", "price": 0.0, "tags": []}],
            "total": 2,
        }
        assert (await http.post(f"/{catalogue}/Catalogue/search", content=b"[")).status_code == 400
        assert (await http.post(f"/{catalogue}/Catalogue/search", content=b"x" * 70_000)).status_code == 413


def check_document(document: dict[str, object], service: str) -> None:
    validate(document)  # OpenAPI 3.1, by openapi-spec-validator
    paths = document["paths"]
    assert isinstance(paths, dict)
    mine = sorted(p for p in paths if p.startswith(f"/{service}/"))
    assert mine == [f"/{service}/Catalogue/{m}" for m in ("add", "chat", "count", "echo", "ping", "search", "total")]
    search = paths[f"/{service}/Catalogue/search"]["post"]
    assert search["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": f"#/components/schemas/{service}.Query"
    }
    assert "text/event-stream" in paths[f"/{service}/Catalogue/count"]["post"]["responses"]["200"]["content"]
    assert paths[f"/{service}/Catalogue/chat"]["x-micro-stream"]["kind"] == "bidi_stream"
    assert "post" not in paths[f"/{service}/Catalogue/chat"]
    assert not any("/Debug/" in p for p in paths)
    schemas = document["components"]["schemas"]  # type: ignore[index]
    assert schemas[f"{service}.Query"]["properties"] == {
        "text": {"type": "string"},
        "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
        "filters": {"type": "object", "additionalProperties": {"type": "string"}},
    }


async def test_the_openapi_document_served_and_printed(gateway_process: str, catalogue: str) -> None:
    async with httpx.AsyncClient(base_url=gateway_process, timeout=30) as http:
        response = await http.get("/openapi.json")
    assert response.status_code == 200
    check_document(response.json(), catalogue)
    status, out, err = await run(sys.executable, "-m", "micro", "api", "--openapi")
    assert status == 0, err
    check_document(json.loads(out), catalogue)


async def test_schemathesis_finds_no_server_error(gateway_process: str, catalogue: str, tmp_path: Path) -> None:
    schemathesis = Path(sys.executable).with_name("schemathesis")
    status, out, err = await run(
        str(schemathesis), "run", f"{gateway_process}/openapi.json",
        "--checks", "not_a_server_error",
        "--include-tag", catalogue,
        "--max-examples", "15", "--max-time", "45", "--request-timeout", "20",
        "--phases", "examples,coverage,fuzzing",
        "--generation-deterministic", "--no-shrink",
        "--report-dir", str(tmp_path),
        timeout=240,
        cwd=tmp_path,  # its caches (.schemathesis, .hypothesis) go there, not into the tree
    )  # fmt: skip
    assert status == 0, out + err
    # It did run the operations (a filter matching nothing would pass too).
    assert re.search(r"Tested: 6\b", out), out  # add, count, echo, ping, search, total (chat is WebSocket only)


async def test_micro_api_refuses_unknown_settings() -> None:
    env = {**os.environ, "MICRO_API_MAX_BODDY_SIZE": "10"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "micro", "api", "--address", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    async with asyncio.timeout(60):
        _, err = await process.communicate()
    assert process.returncode == 1
    assert "MICRO_API_MAX_BODDY_SIZE" in err.decode()
