"""The dashboard in a real browser: Debian's Chromium, headless, driven over the DevTools protocol.

The page lists the greeter, shows its endpoint shapes, calls it from the form (a reply, then a typed
error), follows its logs and draws its traces; no script error is thrown on the way. A screenshot is
kept in ``.reports/web-dashboard.png`` (a CI artifact beside the junit reports).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import micro
import pytest

ROOT = Path(__file__).resolve().parents[3]
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
SCREENSHOT = Path(os.environ.get("MICRO_TEST_ARTIFACTS", ROOT / ".reports")) / "web-dashboard.png"

if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip(
        "no Chromium here (apt-get install chromium); under CI=true this fails instead", allow_module_level=True
    )


class Page:
    """One browser tab over the DevTools protocol: commands answered by id, script errors collected."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self.errors: list[str] = []

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        ident = next(self._ids)
        await self._socket.send_json({"id": ident, "method": method, "params": params})
        while True:
            message = await self._socket.receive_json(timeout=30)
            if message.get("method") == "Runtime.exceptionThrown":
                self.errors.append(str(message["params"]["exceptionDetails"]))
            elif message.get("method") == "Log.entryAdded" and message["params"]["entry"]["level"] == "error":
                self.errors.append(message["params"]["entry"]["text"])
            if message.get("id") == ident:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    async def eval(self, expression: str) -> Any:
        reply = await self.send("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in reply:
            raise RuntimeError(f"{expression}: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    async def wait_for(self, expression: str, what: str, timeout: float = 30.0) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await self.eval(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                body = await self.eval("document.body.innerText")
                raise AssertionError(f"timed out waiting for {what}; the page shows:\n{body}")
            await asyncio.sleep(0.2)


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
    if CHROMIUM is None:
        pytest.fail("CI=true and no Chromium: .ci/services.sh installs Debian's chromium")
    profile = tmp_path / "chromium"
    browser = subprocess.Popen(  # noqa: ASYNC220 (started once; the test then only talks to it over a socket)
        [
            CHROMIUM,
            "--headless=new",
            "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
            "--disable-gpu",
            "--no-first-run",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--user-data-dir={profile}",
            "--window-size=1280,900",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as r:
                targets = await r.json()
            target = next(t for t in targets if t["type"] == "page")
            async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=64 << 20) as socket:
                tab = Page(socket)
                await tab.send("Runtime.enable")
                await tab.send("Log.enable")
                await tab.send("Page.enable")
                yield tab
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait()


async def test_the_dashboard_in_chromium(
    page: Page, greeter: micro.Service, environ: dict[str, str], micro_web: Callable[..., Any]
) -> None:
    with micro_web(environ) as (url, token):
        await page.send("Page.navigate", url=f"{url}/#token={token}")
        await page.wait_for("!!document.querySelector('#services button[data-service=\"greeter\"]')", "the greeter")
        # The token left the address bar once read (it stays in this tab's session storage).
        assert "token" not in await page.eval("location.href")
        await page.eval("document.querySelector('#services button[data-service=\"greeter\"]').click()")
        shapes = await page.wait_for(
            "document.getElementById('endpoints').innerText.includes('Say.hello') && "
            "document.getElementById('endpoints').innerText",
            "the endpoints",
        )
        assert "HelloRequest {name: str}" in shapes
        assert "HelloResponse {message: str}" in shapes
        # The service's own endpoint comes first, and the form starts from its request's shape.
        assert await page.eval("document.getElementById('call-endpoint').value") == "Say.hello"
        assert await page.eval("JSON.parse(document.getElementById('call-request').value)") == {"name": ""}

        await page.eval(
            "document.getElementById('call-endpoint').value = 'Say.hello';"
            "document.getElementById('call-request').value = '{\"name\": \"Chromium\"}';"
            "document.getElementById('call-submit').click()"
        )
        await page.wait_for("document.getElementById('call-result').innerText.includes('Hello Chromium')", "the reply")
        await page.eval(
            "document.getElementById('call-request').value = '{\"name\": \"\"}';"
            "document.getElementById('call-submit').click()"
        )
        await page.wait_for(
            "document.getElementById('call-result').classList.contains('error') && "
            "document.getElementById('call-result').innerText.includes('name must not be empty')",
            "the typed error",
        )
        await page.wait_for("document.getElementById('logs').innerText.includes('greeting Chromium')", "the logs")

        await page.eval("document.querySelector('.tabs button[data-tab=\"stats\"]').click()")
        await page.wait_for("document.getElementById('stats').innerText.includes('requests')", "the stats")
        await page.eval("document.querySelector('.tabs button[data-tab=\"traces\"]').click()")
        spans = await page.wait_for(
            "document.querySelectorAll('#traces .span').length > 0 && "
            "[...document.querySelectorAll('#traces .span .label')].map(e => e.innerText)",
            "the trace waterfall",
        )
        assert any(label.startswith("Say.hello") for label in spans)
        # Each bar is placed and sized within its trace.
        widths = await page.eval("[...document.querySelectorAll('#traces .span .bar')].map(b => b.style.width)")
        assert all(w.endswith("%") for w in widths)

        height = await page.eval("document.documentElement.scrollHeight")
        clip = {"x": 0, "y": 0, "width": 1280, "height": min(height, 4000), "scale": 1}
        shot = await page.send("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)
        data = base64.b64decode(shot["data"])
        assert data.startswith(b"\x89PNG")
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        SCREENSHOT.write_bytes(data)
    # The one failed load expected is the 400 of the empty name; anything else is a bug of the page.
    unexpected = [e for e in page.errors if "status of 400" not in e]
    assert unexpected == [], unexpected
