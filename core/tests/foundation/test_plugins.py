"""Discovery, selection and start-up errors (issue: foundation)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import micro
import pytest
from micro import errors, hookspecs
from micro.plugins import Distribution, PluginManager


def install_plugin(root: Path, dist: str, module: str, code: str, *, requires: str = "asyncmicro-core>=0.1") -> Path:
    """Build ``dist`` (one module ``module`` with ``code``, entry point ``micro.plugins``) and
    install it with pip into a fresh directory; returns that directory (a sys.path entry)."""
    src = root / f"src-{dist}"
    (src / module).mkdir(parents=True)
    (src / module / "__init__.py").write_text(textwrap.dedent(code))
    (src / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""
            [build-system]
            requires = ["setuptools>=70.1"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist}"
            version = "1.2.3"
            dependencies = ["{requires}"]

            [project.entry-points."micro.plugins"]
            {module} = "{module}"

            [tool.setuptools]
            packages = ["{module}"]
            """
        )
    )
    site = root / f"site-{dist}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--target",
            str(site),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return site


THROWAWAY = """
from dataclasses import dataclass
from micro.component import Component
from micro.hookspecs import hookimpl
from micro.options import Options


@dataclass(frozen=True, kw_only=True, slots=True)
class ThrowawayOptions(Options):
    size: int = 1
    label: str = "plain"


class ThrowawayStore(Component):
    options_type = ThrowawayOptions


@hookimpl
def micro_register_store(register):
    register("throwaway", "micro_throwaway:ThrowawayStore")
"""

DUPLICATE = """
from micro.hookspecs import hookimpl

@hookimpl
def micro_register_store(register):
    register("memory", "micro_duplicate:Nothing")
"""

FUTURE = """
from micro.hookspecs import hookimpl

@hookimpl
def micro_register_store(register):
    register("future", "micro_future:Nothing")
"""

LEGACY = """
from micro.hookspecs import hookimpl

@hookimpl
def micro_register_store(register):
    register("legacy", "micro_legacy:Nothing")
"""

MISSPELT = """
from micro.hookspecs import hookimpl

@hookimpl
def micro_register_stor(register):
    register("misspelt", "micro_misspelt:Nothing")
"""


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dists")
    # The pip runs go at once: one after another four took ~9 s, and over 25 s on a loaded machine.
    with ThreadPoolExecutor(5) as pool:
        installs = {
            "throwaway": pool.submit(install_plugin, root, "micro-throwaway", "micro_throwaway", THROWAWAY),
            "duplicate": pool.submit(install_plugin, root, "micro-duplicate", "micro_duplicate", DUPLICATE),
            "future": pool.submit(
                install_plugin, root, "micro-future", "micro_future", FUTURE, requires="asyncmicro-core>=99"
            ),
            "misspelt": pool.submit(install_plugin, root, "micro-misspelt", "micro_misspelt", MISSPELT),
            # Written against the core's name before the rename: micro-core is somebody else's package.
            "legacy": pool.submit(
                install_plugin, root, "micro-legacy", "micro_legacy", LEGACY, requires="micro-core>=0.1,<0.2"
            ),
        }
        return {name: install.result() for name, install in installs.items()}


def manager_with(*sites: Path) -> PluginManager:
    return PluginManager(path=[*map(str, sites), *sys.path])


def run(code: str, *, env: dict[str, str], path: Path | None = None) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("MICRO_")}
    full.update(env)
    if path is not None:
        full["PYTHONPATH"] = os.pathsep.join(filter(None, [str(path), full.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-c", code], env=full, capture_output=True, text=True, timeout=60, check=False
    )


def test_builtin_defaults_cover_every_interface() -> None:
    manager = PluginManager()
    for interface in hookspecs.INTERFACES:
        defaults = [p for p in manager.providers(interface) if p.default]
        assert len(defaults) == 1, interface
        assert defaults[0].distribution is not None
        assert defaults[0].distribution.name == "asyncmicro-core"


def test_micro_plugins_json_lists_every_interface() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "micro", "plugins", "--json"], capture_output=True, text=True, timeout=60, check=True
    )
    rows = json.loads(out.stdout)
    defaults = {r["interface"]: r for r in rows if r["default"]}
    assert set(defaults) == set(hookspecs.INTERFACES)
    assert all(r["distribution"] == "asyncmicro-core" and r["status"] == "ok" for r in defaults.values())
    assert {"distribution", "version", "interface", "name", "core_range", "status"} <= set(rows[0])


def test_unknown_name_lists_installed_names() -> None:
    result = run("import micro; micro.create('store')", env={"MICRO_STORE": "nope"})
    assert result.returncode != 0
    assert "PluginNotFound" in result.stderr
    assert "no store named 'nope' (from MICRO_STORE)" in result.stderr
    assert "memory (asyncmicro-core" in result.stderr
    assert "sqlite (asyncmicro-core" in result.stderr


def test_unknown_name_in_process() -> None:
    with pytest.raises(errors.PluginNotFound, match=r"Installed: .*memory \(asyncmicro-core") as info:
        micro.create("store", environ={"MICRO_STORE": "nope"})
    assert isinstance(info.value, errors.ConfigError)


def test_unknown_interface() -> None:
    with pytest.raises(errors.PluginNotFound, match="unknown interface 'stor'"):
        micro.create("stor")


def test_installed_plugin_is_selected_by_env(sites: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(sites["throwaway"]))
    manager = manager_with(sites["throwaway"])
    store = manager.create("store", environ={"MICRO_STORE": "throwaway", "MICRO_STORE_SIZE": "7"})
    assert type(store).__name__ == "ThrowawayStore"
    assert store.name == "throwaway"
    assert store.options.size == 7
    provider = manager.resolve("store", "throwaway")
    assert provider.distribution == Distribution("micro-throwaway", "1.2.3", ">=0.1")


def test_installed_plugin_in_a_fresh_process(sites: dict[str, Path]) -> None:
    code = "import micro; s = micro.create('store'); print(type(s).__name__, s.options.label)"
    result = run(code, env={"MICRO_STORE": "throwaway", "MICRO_STORE_LABEL": "hello"}, path=sites["throwaway"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ThrowawayStore", "hello"]


def test_code_overrides_env(sites: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(sites["throwaway"]))
    manager = manager_with(sites["throwaway"])
    env = {"MICRO_STORE": "throwaway", "MICRO_STORE_SIZE": "7"}
    assert manager.create("store", environ=env, size=9).options.size == 9
    # Variables configure the name they select: they do not leak into another choice.
    other = manager.create("store", "throwaway", environ={"MICRO_STORE": "memory", "MICRO_STORE_SIZE": "x"})
    assert other.options.size == 1


def test_bad_option_names_the_variable(sites: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(sites["throwaway"]))
    manager = manager_with(sites["throwaway"])
    with pytest.raises(errors.InvalidOption, match=r"MICRO_STORE_SIZE: expected an integer, got 'big'") as info:
        manager.create("store", environ={"MICRO_STORE": "throwaway", "MICRO_STORE_SIZE": "big"})
    assert info.value.variable == "MICRO_STORE_SIZE"
    with pytest.raises(errors.InvalidOption, match=r"MICRO_STORE_SIZZE: unknown option .* known options: label, size"):
        manager.create("store", environ={"MICRO_STORE": "throwaway", "MICRO_STORE_SIZZE": "3"})


def test_duplicate_name_names_both_distributions(sites: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(sites["duplicate"]))
    manager = manager_with(sites["duplicate"])
    with pytest.raises(errors.PluginConflict) as info:
        manager.create("store", environ={"MICRO_STORE": "memory"})
    message = str(info.value)
    assert "asyncmicro-core" in message
    assert "micro-duplicate 1.2.3" in message
    # Other names of the same interface are unaffected.
    assert manager.resolve("store", "sqlite").distribution.name == "asyncmicro-core"  # type: ignore[union-attr]


def test_duplicate_name_in_a_fresh_process(sites: dict[str, Path]) -> None:
    result = run("import micro; micro.create('store')", env={"MICRO_STORE": "memory"}, path=sites["duplicate"])
    assert result.returncode != 0
    assert "PluginConflict" in result.stderr
    assert "micro-duplicate 1.2.3" in result.stderr
    assert "asyncmicro-core" in result.stderr


def test_plugin_requiring_the_old_core_name_is_reported_not_loaded(
    sites: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """micro-core on the public index is an unrelated package: a plugin that requires it would make pip
    replace the real core, so it is refused, with the name to declare instead."""
    monkeypatch.syspath_prepend(str(sites["legacy"]))
    manager = manager_with(sites["legacy"])
    info = {i.name: i for i in manager.plugins()}["micro-legacy:micro_legacy"]
    assert info.status == "incompatible"
    assert info.reason == (
        "requires micro-core<0.2,>=0.1, an unrelated package on the public index:"
        " micro's core is asyncmicro-core, declare asyncmicro-core<0.2,>=0.1 instead"
    )
    assert "legacy" not in manager.names("store")
    with pytest.raises(errors.PluginNotFound, match=r"Not loaded: micro-legacy 1.2.3: incompatible"):
        manager.create("store", "legacy")


def test_plugin_outside_core_range_is_reported_not_loaded(
    sites: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(sites["future"]))
    manager = manager_with(sites["future"])
    infos = {i.name: i for i in manager.plugins()}
    info = infos["micro-future:micro_future"]
    assert info.status == "incompatible"
    assert "supports asyncmicro-core>=99" in info.reason
    assert "future" not in manager.names("store")
    with pytest.raises(errors.PluginNotFound, match=r"Not loaded: micro-future 1.2.3: incompatible"):
        manager.create("store", "future")


def test_misspelt_hook_is_reported_invalid(sites: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(sites["misspelt"]))
    manager = manager_with(sites["misspelt"])
    info = {i.name: i for i in manager.plugins()}["micro-misspelt:micro_misspelt"]
    assert info.status == "invalid"
    assert "micro_register_stor" in info.reason
    assert "misspelt" not in manager.names("store")
    assert {"memory", "sqlite"} <= set(manager.names("store"))


def test_micro_plugins_shows_status_of_every_plugin(sites: dict[str, Path]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICRO_")}
    env["PYTHONPATH"] = os.pathsep.join(str(sites[k]) for k in ("duplicate", "future", "misspelt"))
    out = subprocess.run(
        [sys.executable, "-m", "micro", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    rows = json.loads(out.stdout)
    statuses = {(r["distribution"], r["interface"], r["name"]): r["status"] for r in rows}
    assert statuses[("micro-duplicate", "store", "memory")] == "conflict"
    assert statuses[("asyncmicro-core", "store", "memory")] == "conflict"
    assert statuses[("asyncmicro-core", "broker", "memory")] == "ok"
    assert statuses[("micro-future", None, None)].startswith("incompatible")
    assert statuses[("micro-misspelt", None, None)].startswith("invalid")


class _Plugin:
    def __init__(self, **names: str) -> None:
        self.names = names

    @hookspecs.hookimpl
    def micro_register_broker(self, register: hookspecs.Register) -> None:
        for name, factory in self.names.items():
            register(name, factory, default=True)


def test_two_defaults_conflict() -> None:
    manager = PluginManager()
    manager.register(_Plugin(other="micro.broker.memory:MemoryBroker"), "second-default")
    with pytest.raises(errors.PluginConflict, match=r"claim to be the default: .*'http' from asyncmicro-core"):
        manager.resolve("broker")


def test_registered_factory_that_does_not_import() -> None:
    manager = PluginManager(entry_points=False)
    manager.register(_Plugin(ghost="no_such_module:Ghost"), "ghosts")
    with pytest.raises(errors.ConfigError, match=r"cannot be imported \(no_such_module:Ghost\)"):
        manager.create("broker", "ghost")


def test_invalid_registration_marks_plugin() -> None:
    manager = PluginManager(entry_points=False)
    manager.register(_Plugin(**{"Bad Name": "x:y"}), "bad")
    assert {i.name: i.status for i in manager.plugins()}["bad"] == "error"
    assert "invalid broker name 'Bad Name'" in {i.name: i.reason for i in manager.plugins()}["bad"]


def test_wiring_reaches_only_constructors_that_take_it() -> None:
    from micro.broker.http import HTTPBroker
    from micro.broker.memory import MemoryBroker
    from micro.registry.memory import MemoryRegistry

    registry = MemoryRegistry()
    http = micro.create("broker", "http", environ={}, wiring={"registry": registry, "transport": None})
    assert isinstance(http, HTTPBroker)
    assert http.registry is registry
    memory = micro.create("broker", "memory", environ={}, wiring={"registry": registry})
    assert isinstance(memory, MemoryBroker)
