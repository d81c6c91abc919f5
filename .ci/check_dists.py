"""Check the names in built distributions: ``python .ci/check_dists.py DIST_DIR PROJECT_DIR...``.

For each project directory (its ``pyproject.toml`` names the distribution) DIST_DIR must hold exactly one
wheel and one sdist of it, and their metadata must say:

* the name is ``asyncmicro-*``: ``micro-core``, ``micro-nats``, ``micro-config``... on the public package index
  are unrelated packages, so a ``micro-*`` name can be neither published nor safely required;
* no requirement names a ``micro-*`` distribution (pip would fetch that unrelated package);
* a requirement on ``asyncmicro-core`` has a lower and an upper bound (the ``compat`` session tests both ends);
* the project's ``CHANGELOG.md`` has a ``## <version>`` section for the version built, and the sdist ships it.

Exits 1 listing every problem; ``twine check`` covers the rest of the metadata.
"""

from __future__ import annotations

import sys
import tarfile
import tomllib
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

PREFIX = "asyncmicro-"
CORE = "asyncmicro-core"


def wheel_metadata(path: Path) -> Message:
    with zipfile.ZipFile(path) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(archive.read(name).decode())


def sdist_metadata(path: Path) -> Message:
    with tarfile.open(path) as archive:
        member = next(m for m in archive.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO"))
        handle = archive.extractfile(member)
        assert handle is not None
        return Parser().parsestr(handle.read().decode())


def check(metadata: Message, where: str) -> list[str]:
    problems: list[str] = []
    name = canonicalize_name(metadata["Name"] or "")
    if not name.startswith(PREFIX):
        problems.append(f"{where}: name {metadata['Name']!r} does not start with {PREFIX!r}")
    for line in metadata.get_all("Requires-Dist") or []:
        requirement = Requirement(line)
        required = canonicalize_name(requirement.name)
        if required.startswith("micro-"):
            problems.append(f"{where}: requires {line!r}: {required} on the public index is an unrelated package")
        if required == CORE:
            operators = {spec.operator for spec in requirement.specifier}
            if not operators & {">=", "~=", "=="} or not operators & {"<", "<=", "~=", "=="}:
                problems.append(f"{where}: requires {line!r}: the core range needs a lower and an upper bound")
    return problems


def changelog_versions(text: str) -> set[Version]:
    """The versions that have a ``## <version> ...`` heading."""
    found: set[Version] = set()
    for line in text.splitlines():
        if line.startswith("## ") and len(line.split()) > 1:
            try:
                found.add(Version(line.split()[1]))
            except InvalidVersion:
                pass  # "## Unreleased"
    return found


def check_changelog(project: Path, metadata: Message, sdist: Path) -> list[str]:
    changelog = project / "CHANGELOG.md"
    if not changelog.is_file():
        return [f"{project.name}: no CHANGELOG.md (every distribution keeps one)"]
    problems = []
    if Version(metadata["Version"]) not in changelog_versions(changelog.read_text()):
        problems.append(f"{changelog}: no '## {metadata['Version']}' section for the version built")
    with tarfile.open(sdist) as archive:
        if not any(m.name.count("/") == 1 and m.name.endswith("/CHANGELOG.md") for m in archive.getmembers()):
            problems.append(f"{sdist.name}: CHANGELOG.md is not in the sdist")
    return problems


def main(dist_dir: Path, projects: list[Path]) -> int:
    problems: list[str] = []
    for project in projects:
        declared = tomllib.loads((project / "pyproject.toml").read_text())["project"]["name"]
        stem = canonicalize_name(declared).replace("-", "_")
        wheels = sorted(dist_dir.glob(f"{stem}-*.whl"))
        sdists = sorted(dist_dir.glob(f"{stem}-*.tar.gz"))
        if len(wheels) != 1 or len(sdists) != 1:
            problems.append(f"{project.name}: expected one wheel and one sdist of {declared}, found {wheels + sdists}")
            continue
        metadata = wheel_metadata(wheels[0])
        problems += check(metadata, wheels[0].name)
        problems += check_changelog(project, metadata, sdists[0])
        problems += check(sdist_metadata(sdists[0]), sdists[0].name)
        print(f"check_dists: {declared}: {wheels[0].name}, {sdists[0].name}")
    for problem in problems:
        print(f"check_dists: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), [Path(arg) for arg in sys.argv[2:]]))
