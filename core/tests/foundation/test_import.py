"""``import micro`` stays cheap and never imports a plugin or a backend."""

from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import subprocess
import sys
from pathlib import Path

from micro.plugins import ENTRY_POINT_GROUP


def test_import_micro_loads_no_backend() -> None:
    code = "import sys, json, micro; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(out.stdout))
    heavy = {"zeroconf", "jwt", "cryptography", "google.protobuf", "redis", "aio_pika", "consul", "sqlite3", "click"}
    assert not heavy & loaded
    assert not {m for m in loaded if m.startswith("micro_")}


# A default Service: build it, start it (no subscriber, so no broker), stop it; then list what is loaded.
_SERVICE = """
import asyncio, json, sys
import micro

async def main():
    service = micro.Service("import-probe", handle_signals=False)
    await service.start()
    await service.stop()

asyncio.run(main())
print(json.dumps(sorted(sys.modules)))
"""


def test_default_service_imports_only_what_it_selected(tmp_path: Path) -> None:
    """Nothing an unselected plugin implements is imported, nor aiohttp while the http broker is unused.

    Plugin discovery imports each distribution's registration module (``micro_x.plugin``: names and
    dotted paths, which a plugin may mark as the default); their implementations load on selection.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICRO_")}
    for name in ("XDG_RUNTIME_DIR", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"):
        env[name] = str(tmp_path)  # the local registry's file and the local secret, not the user's
    out = subprocess.run(
        [sys.executable, "-c", _SERVICE], capture_output=True, text=True, timeout=120, check=True, env=env
    )
    loaded = set(json.loads(out.stdout.splitlines()[-1]))
    assert "micro.server.rpc" in loaded  # the probe did build and start a service
    assert not {m for m in loaded if m.split(".")[0] in {"aiohttp", "yarl", "multidict"}}
    # Libraries only a non-default choice needs (whether installed here or not), and the built-in
    # implementations that are not the defaults.
    unselected = {
        "zeroconf", "jwt", "cryptography", "yaml", "google", "grpc", "redis", "aio_pika", "aiormq", "nats",
        "consul", "asyncpg", "opentelemetry", "prometheus_client", "uvicorn", "starlette", "click", "rich",
        "pydantic", "uvloop",
    }  # fmt: skip
    assert not {m for m in loaded if m.split(".")[0] in unselected}
    not_defaults = {
        "micro.auth.jwt", "micro.registry.mdns", "micro.registry.memory", "micro.broker.memory",
        "micro.transport.http", "micro.transport.memory", "micro.selector.leastconn", "micro.codec.proto",
        "micro.codec.msgpack", "micro.codec.jsonrpc", "micro.store", "micro.sync", "micro.runtime",
        "micro.network", "micro.tunnel", "micro.config", "micro.cli", "micro.testing",
    }  # fmt: skip
    assert not {m for m in loaded if any(m == n or m.startswith(n + ".") for n in not_defaults)}
    # Registration modules (the entry points) and the packages above them are allowed; nothing else.
    allowed: set[str] = set()
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        parts = entry.module.split(".")
        allowed.update(".".join(parts[: i + 1]) for i in range(len(parts)))
    plugin_modules = {m for m in loaded if m.startswith("micro_")}
    assert plugin_modules <= allowed, sorted(plugin_modules - allowed)
