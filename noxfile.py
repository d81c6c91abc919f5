"""Sessions for the whole monorepo: ``nox -s tests``, ``lint``, ``typecheck``, ``build``, ``compat``, ``demo``,
``conformance``, ``bench``, ``docs``.

Every distribution is installed from its local path, so a session tests the
tree as it is, plugins and conformance suite included.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import nox
from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).parent
PLUGINS = sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))
REPORTS = ROOT / ".reports"
#: Every distribution in the tree: the core, the conformance suite, then each plugin.
DISTRIBUTIONS = [ROOT / "core", ROOT / "conformance", *PLUGINS]
#: The core's distribution name; every distribution's name starts with ``asyncmicro-``.
CORE = "asyncmicro-core"
MKDOCS = "mkdocs==1.6.1"  # pinned: the site is built with warnings as errors
XDG = ("XDG_RUNTIME_DIR", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME")

nox.options.sessions = ["tests", "lint", "typecheck", "build", "compat"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False


def _has_tests(path: Path) -> bool:
    return any((path / "tests").glob("**/test_*.py"))


def _install_all(session: nox.Session) -> None:
    targets = ["-e", f"{ROOT / 'core'}[test]"]
    if (ROOT / "conformance" / "pyproject.toml").exists():
        targets += ["-e", str(ROOT / "conformance")]
    for plugin in PLUGINS:
        targets += ["-e", f"{plugin}[test]" if "test" in (plugin / "pyproject.toml").read_text() else str(plugin)]
    session.install(*targets)


@nox.session
def tests(session: nox.Session) -> None:
    """Every distribution's tests and the reliability suite; plugin suites run against the real servers on loopback."""
    _install_all(session)
    session.install(MKDOCS)
    REPORTS.mkdir(exist_ok=True)
    # reliability/: the fault and hostile-input suite across the blocks and plugins (docs/reliability.md).
    suites = [
        ROOT / "core",
        *([ROOT / "conformance"] if (ROOT / "conformance").exists() else []),
        *PLUGINS,
        ROOT / "reliability",
        ROOT / "docs",  # the site builds with warnings as errors, and every example in the docs runs
    ]
    failed: list[str] = []
    for suite in suites:
        if not _has_tests(suite):
            continue
        session.chdir(suite)
        report = REPORTS / f"{suite.name}.xml"
        try:
            session.run("pytest", f"--junitxml={report}", *session.posargs)
        except nox.command.CommandFailed:
            failed.append(suite.name)
    session.chdir(ROOT)
    if failed:
        session.error(f"test suites failed: {', '.join(failed)}")


@nox.session
def docs(session: nox.Session) -> None:
    """The documentation site into .site/, warnings as errors; ``nox -s docs -- serve`` serves it live."""
    _install_all(session)
    session.install(MKDOCS)
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", *session.posargs[1:])
    else:
        session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    session.install("ruff==0.17.6")  # pinned: a newer ruff may format differently and fail CI
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on every distribution: the core, the conformance suite and each plugin (each its own config)."""
    session.install("mypy==2.4.1", "types-PyYAML")
    _install_all(session)
    for dist in DISTRIBUTIONS:
        session.chdir(dist)
        session.run("mypy")
    session.chdir(ROOT)


@nox.session
def build(session: nox.Session) -> None:
    """Every distribution as an sdist and a wheel (the wheel built from the sdist), metadata checked.

    ``twine check --strict`` checks what the package index would reject (metadata, README rendering);
    ``.ci/check_dists.py`` checks the names: every distribution is ``asyncmicro-*``, nothing requires a
    ``micro-*`` distribution (on the public index those are unrelated packages), core ranges have both bounds.
    """
    session.install("build>=1", "twine>=5", "hatchling>=1.21")
    out = REPORTS / "dist"
    shutil.rmtree(out, ignore_errors=True)
    for dist in DISTRIBUTIONS:
        # --no-isolation: hatchling from this venv, so no throwaway build environment per distribution.
        session.run("python", "-m", "build", "--no-isolation", "--outdir", str(out), str(dist), silent=True)
    session.run("twine", "check", "--strict", *sorted(map(str, out.iterdir())))
    session.run("python", str(ROOT / ".ci" / "check_dists.py"), str(out), *map(str, DISTRIBUTIONS))


def _core_version(source: Path) -> Version:
    text = (source / "src" / "micro" / "_version.py").read_text()
    match = re.search(r'__version__ = "([^"]+)"', text)
    if match is None:
        raise ValueError(f"no __version__ in {source}/src/micro/_version.py")
    return Version(match.group(1))


def _core_requirement(plugin: Path) -> Requirement:
    project = tomllib.loads((plugin / "pyproject.toml").read_text())["project"]
    for line in project.get("dependencies", []):
        requirement = Requirement(line)
        if requirement.name == CORE:
            return requirement
    raise ValueError(f"{plugin.name}: declares no {CORE} requirement")


def _lower_bound(requirement: Requirement) -> Version:
    bounds = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==", "~=", "===")]
    if not bounds:
        raise ValueError(f"{requirement} has no lower bound: the oldest core it supports is unknown")
    return max(bounds)


def _tagged_core(version: Version, scratch: Path) -> Path | None:
    """The core's source at the git tag of ``version`` (``asyncmicro-core-v0.1.0``, ``core-v0.1``, ``v0.1.0``...)."""
    try:
        tags = subprocess.run(["git", "tag", "--list"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    for tag in tags.split():
        match = re.fullmatch(r"(?:asyncmicro-core-|core-)?v?(\d[\w.]*)", tag)
        try:
            if match is None or Version(match.group(1)) != version:
                continue
        except InvalidVersion:
            continue
        target = scratch / f"core-{tag}"
        target.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", tag, "core"], cwd=ROOT, capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
        return target / "core"
    return None


@nox.session
def compat(session: nox.Session) -> None:
    """Each plugin's suite against the oldest and the newest core it declares, installed as wheels.

    Oldest: the lower bound of the plugin's ``asyncmicro-core`` requirement, built from the git tag of that
    version, or the tree's core when the tree is at that version; newest: the tree's core, which must satisfy
    the requirement. A bound that cannot be built is an error, never a skip. While only one core version
    exists (0.1.0, no release tagged yet) both bounds are that core, and the suite still runs once per bound.
    """
    scratch = Path(session.create_tmp())
    wheels = scratch / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    session.install("build>=1", "hatchling>=1.21")
    tree = _core_version(ROOT / "core")
    plan: list[tuple[Path, str, Version, Path]] = []
    for plugin in PLUGINS:
        requirement = _core_requirement(plugin)
        oldest = _lower_bound(requirement)
        if not requirement.specifier.contains(tree, prereleases=True):
            session.error(f"{plugin.name}: requires {requirement}, but the tree's core is {tree}")
        if oldest == tree:
            source = ROOT / "core"
            session.log(f"{plugin.name}: {requirement}: oldest declared core {oldest} is the tree's core")
        elif (tagged := _tagged_core(oldest, scratch)) is not None:
            source = tagged
        else:
            session.error(f"{plugin.name}: requires {requirement}; core {oldest} is neither in the tree nor tagged")
        plan += [(plugin, "oldest", oldest, source), (plugin, "newest", tree, ROOT / "core")]
    built: dict[Path, Path] = {}
    for source in {source for *_, source in plan}:
        outdir = wheels / str(len(built))
        session.run("python", "-m", "build", "--wheel", "--no-isolation", "--outdir", str(outdir), str(source))
        built[source] = next(outdir.glob("*.whl"))
    # The plugins and the conformance suite as wheels too: the suites test what a user installs.
    session.install(str(built[ROOT / "core"]), str(ROOT / "conformance"), *(f"{p}[test]" for p in PLUGINS))
    REPORTS.mkdir(exist_ok=True)
    failed: list[str] = []
    for plugin, bound, version, source in plan:
        session.install("--no-deps", "--force-reinstall", str(built[source]))
        installed = session.run(
            "python", "-c", f"import importlib.metadata as m; print(m.version({CORE!r}))", silent=True
        )
        if Version(str(installed).strip()) != version:
            session.error(f"{plugin.name} ({bound}): expected {CORE} {version}, found {installed}")
        session.log(f"{plugin.name}: suite against the {bound} declared core, {CORE} {version}")
        session.chdir(plugin)
        report = REPORTS / f"compat-{plugin.name}-{bound}.xml"
        try:
            session.run("pytest", f"--junitxml={report}", *session.posargs)
        except nox.command.CommandFailed:
            failed.append(f"{plugin.name} ({bound} core {version})")
        session.chdir(ROOT)
    if failed:
        session.error(f"compat suites failed: {', '.join(failed)}")


@nox.session
def demo(session: nox.Session) -> None:
    """Install the core (asyncmicro-core) alone and run the greeter demo on the embedded defaults."""
    session.install(str(ROOT / "core"))
    session.run("python", str(ROOT / "contrib" / "greeter" / "demo.py"), *session.posargs)


@nox.session
def conformance(session: nox.Session) -> None:
    """``micro conformance --all``: every installed implementation that can be reached."""
    _install_all(session)
    # Per-user state of the embedded defaults (sqlite store, local registry, JWT keys) goes to the
    # session's temporary directory, not the developer's home.
    scratch = session.create_tmp()
    env = {name: str(Path(scratch) / name.lower()) for name in XDG}
    session.run("micro", "conformance", "--all", *session.posargs, env=env)


def _install_stamp(session: nox.Session, *inputs: Path) -> tuple[Path, str]:
    """Where this venv records what it was set up from, and the digest of ``inputs`` to compare with it.

    Every distribution is installed editable, so only its metadata (``pyproject.toml``: dependencies,
    entry points) and the requirement files call for a new install; skipping pip saves ~30 s.
    """
    digest = hashlib.sha256()
    for path in inputs:
        digest.update(str(path).encode() + b"\0" + (path.read_bytes() if path.exists() else b"") + b"\0")
    return Path(str(session.virtualenv.location)) / ".micro-installed", digest.hexdigest()


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks side by side with the alternatives; ``nox -s bench -- --quick`` for a spot check."""
    requirements = ROOT / "benchmarks" / "requirements.txt"
    metadata = [ROOT / "core" / "pyproject.toml", ROOT / "conformance" / "pyproject.toml", requirements]
    stamp, digest = _install_stamp(session, *metadata, *(plugin / "pyproject.toml" for plugin in PLUGINS))
    if stamp.exists() and stamp.read_text() == digest:
        session.log("dependencies unchanged since the last install: not reinstalling")
    else:
        _install_all(session)
        if requirements.exists():
            session.install("-r", str(requirements))
        stamp.write_text(digest)
    session.run("python", str(ROOT / "benchmarks" / "run.py"), *session.posargs)
