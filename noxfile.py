"""Sessions for the whole monorepo: ``nox -s tests``, ``lint``, ``typecheck``, ``demo``, ``conformance``, ``bench``.

Every distribution is installed from its local path, so a session tests the
tree as it is, plugins and conformance suite included.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PLUGINS = sorted(p.parent for p in (ROOT / "plugins").glob("*/pyproject.toml"))
REPORTS = ROOT / ".reports"
XDG = ("XDG_RUNTIME_DIR", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME")

nox.options.sessions = ["tests", "lint", "typecheck"]
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
    """Every distribution's tests; plugin suites run against the real servers on loopback."""
    _install_all(session)
    REPORTS.mkdir(exist_ok=True)
    suites = [ROOT / "core", *([ROOT / "conformance"] if (ROOT / "conformance").exists() else []), *PLUGINS]
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
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole tree."""
    session.install("ruff==0.17.6")  # pinned: a newer ruff may format differently and fail CI
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict on micro-core."""
    session.install("mypy==2.4.1", "types-PyYAML", "-e", f"{ROOT / 'core'}[test]")
    session.chdir(ROOT / "core")
    session.run("mypy")


@nox.session
def demo(session: nox.Session) -> None:
    """Install micro-core alone and run the greeter demo on the embedded defaults."""
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
