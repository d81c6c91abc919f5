"""The catalogue of broken implementations: the suite catches each, with its rule's cases and no others.

``catalogue/broken.py`` holds one deliberately broken implementation per rule of
:mod:`micro_conformance.rules` (every rule of the interfaces in ``COMPLETE`` but
those in ``UNCOVERED``, each with its reason). The whole contract runs against each, in
one pytest subprocess per contract, two at a time; then, per implementation, the cases that failed
must be cases of the rule it breaks, at least one must have failed, and every
failure message must name that rule.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from micro_conformance.rules import RULES

HERE = Path(__file__).resolve().parent / "catalogue"
sys.path.insert(0, str(HERE))
from broken import CATALOGUE, Entry, class_name  # noqa: E402  (a plain module beside the tests, not a package)

#: The first test runs the whole catalogue (about two minutes, more on a loaded machine).
pytestmark = pytest.mark.timeout(900)
RULE = {rule.id: rule for rule in RULES}
#: Interfaces whose every rule must have a broken implementation in the catalogue.
COMPLETE = ("store", "broker", "registry", "sync", "transport", "codec", "config", "auth", "network")
#: Rules of those interfaces that no built-in can be broken for yet, and why.
UNCOVERED = {
    "transport.tls": "T17 cannot tell TLS from plain text yet: a transport ignoring tls=True would pass it",
    "codec.raw": "the JSON codec cannot claim 'raw' without failing the round-trip cases too",
    "config.malformed": "the memory source cannot be corrupted (C11 needs a corrupt() hook)",
    "auth.namespace": "breaking it needs the JWT keys outside the implementation",
}
FAILED = ("failed", "error", "unreachable")
MODULE = f"""
import sys

sys.path.insert(0, {str(HERE)!r})
from broken import classes

globals().update(classes())
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """Every row of the report, by contract class: the catalogue run once."""
    root = tmp_path_factory.mktemp("catalogue")
    (root / "test_broken_catalogue.py").write_text(MODULE)
    env = {**os.environ, "MICRO_CATALOGUE_KEYS": str(root / "keys")}
    env = {k: v for k, v in env.items() if not k.startswith("MICRO_") or k == "MICRO_CATALOGUE_KEYS"}
    groups: dict[str, list[str]] = {}
    for entry in CATALOGUE:
        groups.setdefault(entry.contract, []).append(class_name(entry))

    def run(index: int, classes: list[str]) -> Path:
        report = root / f"report-{index}.json"
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-q",
            "--tb=line",  # the rows carry the messages; full tracebacks only cost time
            "-o",
            "asyncio_default_fixture_loop_scope=function",
            f"--micro-report={report}",
            *(f"test_broken_catalogue.py::{name}" for name in classes),
        ]
        with (root / f"output-{index}.txt").open("w") as output:
            subprocess.run(
                command, cwd=root, env=env, stdout=output, stderr=subprocess.STDOUT, timeout=600, check=False
            )
        return report

    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(run, range(len(groups)), groups.values()))
    rows: dict[str, list[dict[str, Any]]] = {}
    for report in reports:
        assert report.exists(), f"the catalogue run wrote no report {report.name}"
        document = json.loads(report.read_text())
        assert not document["collect_errors"], document["collect_errors"]
        for row in document["cases"]:
            rows.setdefault(row["contract"], []).append(row)
    return rows


@pytest.mark.parametrize("entry", CATALOGUE, ids=[f"{e.rule}:{e.defect}" for e in CATALOGUE])
def test_the_suite_catches_it_with_its_rule_alone(outcomes: dict[str, list[dict[str, Any]]], entry: Entry) -> None:
    rule = RULE[entry.rule]
    rows = outcomes.get(class_name(entry))
    assert rows, f"{entry.defect}: no case ran"
    not_run = [row["case"] for row in rows if row["outcome"] == "not run"]
    assert not not_run, f"{entry.defect}: cases not run (see output-*.txt of the catalogue run): {not_run}"
    failed = {row["case"].partition("[")[0]: row for row in rows if row["outcome"] in FAILED}
    assert failed, f"{entry.defect} breaks {rule.id} ({', '.join(rule.cases)}) but every case passed"
    others = {case: row["message"] for case, row in failed.items() if case not in rule.cases}
    assert not others, f"{entry.defect} breaks {rule.id} only, yet other cases failed: {others}"
    for case, row in failed.items():
        assert row["outcome"] == "failed", f"{case} did not fail cleanly: {row['outcome']}: {row['message']}"
        assert f"rule {rule.id}" in row["message"], f"{case}'s message does not name {rule.id}: {row['message']}"


def test_every_rule_of_the_complete_interfaces_has_a_broken_implementation() -> None:
    covered = {entry.rule for entry in CATALOGUE}
    missing = [r.id for r in RULES if r.interface in COMPLETE and r.id not in covered | set(UNCOVERED)]
    assert not missing, f"rules without a broken implementation in the catalogue: {missing}"
    unknown = sorted(covered - set(RULE))
    assert not unknown, f"catalogue entries name rules that do not exist: {unknown}"
