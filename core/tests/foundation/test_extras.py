"""A minimal core: what only a selected implementation needs is an extra, named in the error when it is missing."""

from __future__ import annotations

import importlib.metadata as metadata
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from micro.errors import ConfigError, MissingExtra
from micro.plugins import PluginManager
from packaging.requirements import Requirement

DEMO = Path(__file__).resolve().parents[3] / "contrib" / "greeter" / "demo.py"
#: The top-level modules of the extras, and the micro modules that import them.
EXTRA_MODULES = {
    "zeroconf": "micro.registry.mdns",
    "jwt": "micro.auth.jwt",
    "google.protobuf": "micro.codec.proto",
    "yaml": "micro.config.file",
    "cryptography": "micro.auth.jwt",
    "rich": "micro.cli._text",
}


def test_the_core_requires_only_what_the_zero_config_path_needs() -> None:
    requirements = [Requirement(line) for line in metadata.requires("asyncmicro-core") or []]
    unconditional = {r.name.lower() for r in requirements if r.marker is None}
    assert unconditional == {"pluggy", "packaging", "click", "orjson", "msgpack", "aiohttp"}
    by_extra: dict[str, set[str]] = {}
    for r in requirements:
        for extra in ("mdns", "jwt", "tunnel", "proto", "yaml", "all"):
            if r.marker is not None and r.marker.evaluate({"extra": extra}):
                by_extra.setdefault(extra, set()).add(r.name.lower())
    assert by_extra["mdns"] == {"zeroconf"}
    assert by_extra["jwt"] == {"pyjwt", "cryptography"}
    assert by_extra["tunnel"] == {"cryptography"}
    assert by_extra["proto"] == {"protobuf"}
    assert by_extra["yaml"] == {"pyyaml"}
    assert by_extra["all"] == {"zeroconf", "pyjwt", "cryptography", "protobuf", "pyyaml"}


@pytest.fixture
def without(monkeypatch: pytest.MonkeyPatch) -> object:
    """``without("zeroconf")``: the module cannot be imported (as if its extra were not installed)."""

    def block(module: str) -> None:
        for name in [module, *(name for name in sys.modules if name.startswith(f"{module}."))]:
            monkeypatch.setitem(sys.modules, name, None)  # type: ignore[arg-type]  # None: import raises
        for name in list(sys.modules):
            if name.startswith("micro.") and name in EXTRA_MODULES.values():
                monkeypatch.delitem(sys.modules, name)

    return block


@pytest.mark.parametrize(
    ("interface", "name", "options", "module", "message"),
    [
        ("registry", "mdns", {}, "zeroconf", "registry 'mdns' needs zeroconf, which is not installed: "
         "pip install 'asyncmicro-core[mdns]'"),
        ("auth", "jwt", {}, "jwt", "auth 'jwt' needs jwt (PyJWT), which is not installed: "
         "pip install 'asyncmicro-core[jwt]'"),
        ("auth", "jwt", {}, "cryptography", "auth 'jwt' needs cryptography, which is not installed: "
         "pip install 'asyncmicro-core[jwt]'"),
        ("codec", "proto", {}, "google.protobuf", "codec 'proto' needs google.protobuf (protobuf), which is not "
         "installed: pip install 'asyncmicro-core[proto]'"),
        ("config", "file", {"path": "settings.yaml"}, "yaml", "config file:settings.yaml (YAML) needs yaml (PyYAML), "
         "which is not installed: pip install 'asyncmicro-core[yaml]'"),
    ],
)  # fmt: skip
def test_selecting_an_implementation_whose_extra_is_missing_names_the_extra(
    without: object, interface: str, name: str, options: dict[str, str], module: str, message: str
) -> None:
    without(module)  # type: ignore[operator]
    manager = PluginManager(entry_points=False)
    with pytest.raises(MissingExtra) as info:
        manager.create(interface, name, **options)
    assert str(info.value) == message
    assert info.value.extra == message.rsplit("[", 1)[1].rstrip("]'")
    assert isinstance(info.value, ConfigError)  # a start-up error, like every selection mistake


def test_json_and_toml_files_need_no_extra(without: object, tmp_path: Path) -> None:
    without("yaml")  # type: ignore[operator]
    manager = PluginManager(entry_points=False)
    for path in (tmp_path / "a.json", tmp_path / "a.toml"):
        manager.create("config", "file", path=str(path))


def test_the_demo_runs_with_no_extra_installed(tmp_path: Path) -> None:
    """The zero-config path (two processes, RPC, streaming, pub/sub) imports nothing an extra provides."""
    (tmp_path / "sitecustomize.py").write_text(
        textwrap.dedent(
            f"""
            import sys
            for module in {sorted(EXTRA_MODULES)!r}:
                sys.modules[module] = None  # as if not installed: importing it raises ModuleNotFoundError
            """
        )
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, str(DEMO)], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "exited with status 0" in out.stdout


async def test_an_encrypted_tunnel_names_the_tunnel_extra(without: object) -> None:
    """The tunnel needs cryptography only for encrypted links: without it, an encrypting tunnel fails at start."""
    without("cryptography")  # type: ignore[operator]
    from micro.tunnel.mucp import MUCPTunnel
    from micro.tunnel.options import TunnelOptions

    tunnel = MUCPTunnel(TunnelOptions(address="127.0.0.1:0", token="t", encrypt=True))
    with pytest.raises(MissingExtra) as info:
        await tunnel.connect()
    assert info.value.extra == "tunnel"
    assert "pip install 'asyncmicro-core[tunnel]'" in str(info.value)
    plain = MUCPTunnel(TunnelOptions(address="127.0.0.1:0", token="t", encrypt=False))
    await plain.connect()  # an unencrypted tunnel needs no extra
    await plain.close()
