"""``micro conformance`` end to end, against the built-ins and a third-party plugin installed outside the tree.

The plugin distribution is built in a temporary directory with the setuptools
backend and installed with pip into another one, then put on ``PYTHONPATH``
for the ``micro`` subprocess, exactly as a stranger's plugin would be found.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PLUGIN = """
from micro.errors import BackendUnavailable
from micro.hookspecs import hookimpl
from micro.store.memory import MemoryStore


class ThrowawayStore(MemoryStore):
    '''A correct store: the embedded memory store under another name.'''


class ForgetfulStore(MemoryStore):
    '''Ignores limit when listing, so case S10 fails.'''

    async def list(self, *, limit=None, **kwargs):
        return await super().list(**kwargs)


class DownStore(MemoryStore):
    '''Its backend is never reachable.'''

    async def start(self):
        raise BackendUnavailable("throwaway-down: connection refused (127.0.0.1:1)")


@hookimpl
def micro_register_store(register):
    register("throwaway", "micro_throwaway:ThrowawayStore")
    register("throwaway-broken", "micro_throwaway:ForgetfulStore")
    register("throwaway-down", "micro_throwaway:DownStore")
"""


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The throwaway plugin, built and pip-installed into a directory of its own."""
    root = tmp_path_factory.mktemp("plugin")
    src = root / "src"
    (src / "micro_throwaway").mkdir(parents=True)
    (src / "micro_throwaway" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    (src / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["setuptools>=70.1"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "micro-throwaway"
            version = "0.0.1"
            dependencies = ["asyncmicro-core>=0.1,<0.2"]

            [project.entry-points."micro.plugins"]
            throwaway = "micro_throwaway"

            [tool.setuptools]
            packages = ["micro_throwaway"]
            """
        )
    )
    target = root / "site"
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
            str(target),
            str(src),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return target


@pytest.fixture(scope="module", autouse=True)
def private_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Point every default file location (sqlite store, local registry, jwt keys) into a temporary directory."""
    home = tmp_path_factory.mktemp("home")
    for variable in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR"):
        (home / variable).mkdir()
        _ENV[variable] = str(home / variable)


_ENV: dict[str, str] = {}


def micro(*args: str, site: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICRO_")}
    env.update(_ENV, COLUMNS="200")
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "micro", "conformance", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_third_party_store_passes(site: Path) -> None:
    proc = micro("store", "throwaway", site=site)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "store throwaway: passed" in proc.stdout
    assert "S10" in proc.stdout
    assert "S25" in proc.stdout


def test_third_party_store_failure_names_the_case(site: Path) -> None:
    proc = micro("store", "throwaway-broken", "--json", site=site)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["status"] == "failed"
    failed = {c["case"] for c in result["cases"] if c["outcome"] == "failed"}
    assert "S10" in failed, failed
    # S17 and S26: a negative limit, and one past 2**63 - 1, are no longer refused either.
    assert failed <= {"S10", "S17", "S26"}, failed
    capability = {c["case"]: c["capability"] for c in result["cases"]}
    assert capability["S21"] == "ttl"
    assert capability["S10"] == ""


def test_unreachable_backend_is_reported_as_such(site: Path) -> None:
    proc = micro("store", "throwaway-down", "-k", "s02 or s04", site=site)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "unreachable" in proc.stdout
    assert "connection refused" in proc.stdout


def test_builtin_by_default_name_with_an_option(tmp_path: Path) -> None:
    proc = micro("sync", "file", "--option", f"path={tmp_path / 'sync.db'}", "-k", "y01 or y02", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert {c["case"]: c["outcome"] for c in result["cases"]} == {"Y01": "passed", "Y02": "passed"}


def test_unknown_name_lists_what_is_installed() -> None:
    proc = micro("store", "nope")
    assert proc.returncode == 2
    assert "no store named 'nope'" in proc.stdout
    assert "memory" in proc.stdout


def test_bad_option_and_unknown_interface_are_usage_errors() -> None:
    proc = micro("store", "memory", "--option", "tabel=x")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "MICRO_STORE_TABEL" in proc.stdout
    proc = micro("frobnicator", "x")
    assert proc.returncode == 2
    assert "no contract for 'frobnicator'" in proc.stderr
    proc = micro("store", "memory", "--option", "novalue")
    assert proc.returncode == 2
    assert "KEY=VALUE" in proc.stderr


# --all runs every installed store (redis, postgres, ... too) in subprocesses, twice: minutes on a loaded 2-core CI.
@pytest.mark.timeout(600)
def test_all_reports_every_implementation_and_unreachable_ones_clearly(site: Path) -> None:
    proc = micro("--all", "store", "-k", "x00 or s10", "--jobs", "2", site=site)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "unreachable, not tested: store throwaway-down" in proc.stdout
    assert "S10 failed" in proc.stdout
    proc = micro("--all", "store", "-k", "s10", "--jobs", "2", "--json", site=site)
    results = {r["name"]: r for r in json.loads(proc.stdout)}
    assert {"memory", "sqlite", "throwaway", "throwaway-broken", "throwaway-down"} <= set(results)
    assert all(r["interface"] == "store" for r in results.values())
    assert results["throwaway-broken"]["status"] == "failed"
    assert results["throwaway-down"]["status"] == "unreachable"
    for name in ("memory", "sqlite", "throwaway"):
        assert results[name]["status"] == "passed", results[name]


def test_all_without_the_suite_for_an_interface_is_a_usage_error() -> None:
    proc = micro("--all", "frobnicator")
    assert proc.returncode == 2
    assert "no contract for 'frobnicator'" in proc.stderr


def test_micro_help_lists_the_command_without_importing_pytest() -> None:
    # micro --help imports the plugin's command module for its summary; pytest alone would cost ~130 ms.
    code = (
        "import json, sys\n"
        "from micro.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    loaded = set(json.loads(proc.stderr))
    assert "conformance  Check that implementation NAME" in proc.stdout
    assert "micro_conformance.cli" in loaded  # else this test checks nothing
    assert not {"pytest", "_pytest", "rich", "micro_conformance.runner", "micro_conformance.base"} & loaded


def test_conformance_help_still_works() -> None:
    proc = micro("--help")
    assert proc.returncode == 0, proc.stderr
    assert "Check that implementation NAME of INTERFACE" in proc.stdout
    assert "--case-timeout" in proc.stdout
