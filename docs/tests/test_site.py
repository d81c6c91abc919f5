"""The site builds with warnings as errors, and its configuration reference names every variable read."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from examples import ROOT

sys.path.insert(0, str(ROOT / "docs" / "_tools"))
import reference

#: ``MICRO_*`` names in the sources that are not variables: each with why.
NOT_VARIABLES = {
    "MICRO_X_FLAG": "an example in a comment of micro/options.py",
}
_VARIABLE = re.compile(r"\bMICRO_[A-Z0-9_]*[A-Z0-9](?![A-Za-z0-9_<])")


def test_the_site_builds_with_warnings_as_errors(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    site = tmp_path / "site"
    assert (site / "reference" / "index.html").exists()
    for readme in ROOT.glob("plugins/*/README.md"):  # each plugin's README is a page of the site
        assert (site / "plugins" / readme.parent.name / "index.html").exists(), readme


def test_the_committed_reference_is_current() -> None:
    committed = (ROOT / "docs" / "reference.md").read_text()
    assert committed == reference.render(), "regenerate it: python docs/_tools/reference.py > docs/reference.md"


def test_the_reference_names_every_variable_the_code_reads() -> None:
    page = reference.render()
    sources = [*ROOT.glob("core/src/**/*.py"), *ROOT.glob("plugins/*/src/**/*.py")]
    missing: dict[str, str] = {}
    for path in sources:
        for name in _VARIABLE.findall(path.read_text()):
            if name not in NOT_VARIABLES and f"`{name}`" not in page:
                missing.setdefault(name, str(path.relative_to(ROOT)))
    assert not missing, f"variables read but not in the reference (add them to an options class): {missing}"


def test_the_reference_shows_each_field_with_its_comment() -> None:
    page = reference.render()
    # A field of a base class (the store's table), of a backend (sqlite's path) and of the service.
    table = r"\| `MICRO_STORE_TABLE` \| str \| `micro` \| The table used when a call passes `table=None`"
    assert re.search(table, page)
    assert re.search(r"\| `MICRO_STORE_PATH` \| str \\\| None \| \(unset\) \| The database file", page)
    assert "`MICRO_REGISTER_TTL`" in page
    assert "`MICRO_DEBUG_ACCESS`" in page
    assert ":class:" not in page
    assert "``" not in page
