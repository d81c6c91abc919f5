"""The security and reliability pages cite tests by name: each cited test must exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REPO

PAGES = ["docs/security.md", "docs/reliability.md"]
# `path/to/test_x.py::test_name`, or `::test_name` continuing the last path; `…[param]` is ignored.
_CITE = re.compile(r"`((?:[\w./-]+/)?test_\w+\.py)?::(test_\w+)(?:\[[^\]]*\])?`|`((?:[\w./-]+/)test_\w+\.py)`")


def _cited(page: str) -> list[tuple[str, str | None]]:
    text = (REPO / page).read_text()
    base = "reliability/tests/" if page.endswith("reliability.md") else ""
    found: list[tuple[str, str | None]] = []
    current: str | None = None
    for match in _CITE.finditer(text):
        path, name, whole = match.groups()
        if whole:
            current = whole
            found.append((whole, None))
            continue
        if path:
            current = path if "/" in path else base + path
        if current is not None:
            found.append((current, name))
    return found


@pytest.mark.parametrize("page", PAGES)
def test_every_cited_test_exists(page: str) -> None:
    cited = _cited(page)
    assert cited, f"{page} cites no test"
    missing = []
    for path, name in cited:
        file = REPO / path
        if not file.exists():
            missing.append(path)
        elif name is not None and not re.search(rf"def {name}\b", file.read_text()):
            missing.append(f"{path}::{name}")
    assert missing == [], f"{page} cites tests that do not exist: {missing}"


def test_every_reliability_test_is_in_the_table() -> None:
    text = (REPO / "docs/reliability.md").read_text()
    here = Path(__file__).parent
    for module in sorted(here.glob("test_*.py")):
        if module.name == "test_docs.py":
            continue
        for name in re.findall(r"^async def (test_\w+)|^def (test_\w+)", module.read_text(), re.M):
            test = name[0] or name[1]
            assert test in text, f"{module.name}::{test} is not listed in docs/reliability.md"
