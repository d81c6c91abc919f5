"""The rule table: every case checks exactly one documented rule, and the docs list every rule."""

from __future__ import annotations

import inspect
from pathlib import Path

from micro_conformance.base import Contract, case_id
from micro_conformance.rules import RULES, rule_for
from micro_conformance.runner import CONTRACTS, contract_for

DOCS = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"


def cases_of(contract: type[Contract[object]]) -> set[str]:  # type: ignore[type-var]
    return {case_id(name) for name, _ in inspect.getmembers(contract, inspect.isfunction)} - {None}  # type: ignore[misc]


def test_every_case_belongs_to_exactly_one_rule() -> None:
    for interface in CONTRACTS:
        contract = contract_for(interface)
        for case in sorted(cases_of(contract)):
            owners = [r.id for r in RULES if case in r.cases and r.interface in (contract.interface, "any")]
            assert len(owners) == 1, f"{interface} case {case} belongs to {owners or 'no rule'}"
            assert rule_for(contract.interface, case) is not None


def test_every_rule_names_cases_that_exist() -> None:
    known = {(contract_for(i).interface, c) for i in CONTRACTS for c in cases_of(contract_for(i))}
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids)), "a rule id is used twice"
    for rule in RULES:
        for case in rule.cases:
            interfaces = {i for i, _ in known} if rule.interface == "any" else {rule.interface}
            assert any((i, case) in known for i in interfaces), f"{rule.id} names {case}, which no contract has"


def test_every_rule_is_in_the_docs() -> None:
    text = DOCS.read_text()
    missing = [r.id for r in RULES if f"`{r.id}`" not in text]
    assert not missing, f"rules missing from docs/conformance.md: {missing}"
