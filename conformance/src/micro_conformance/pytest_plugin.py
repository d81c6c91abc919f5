"""The pytest plugin (entry point ``pytest11``): fixtures, markers and the case report.

Loaded automatically once asyncmicro-conformance is installed. It provides:

* fixtures ``micro_run_id`` (one per session; ``--micro-run-id`` pins it),
  ``micro_names`` (a :class:`~micro_conformance.base.Names` unique to the test)
  and ``micro_poll`` (:func:`~micro_conformance.base.eventually`);
* the markers ``micro_capability(name)`` and ``micro_absent(name)`` (see
  :func:`~micro_conformance.base.requires` and :func:`~micro_conformance.base.absent`);
* the marker ``live_server(server)`` for tests that need a live server: skipped when it does not answer,
  failed instead under CI (see :mod:`micro_conformance.live`);
* ``--micro-report=PATH``: one JSON row per contract case (case id, capability,
  outcome, message), which ``micro conformance`` turns into its table.

A contract case whose implementation fails to start with
:class:`~micro.errors.Unavailable` is reported with the outcome ``"unreachable"``
(see :class:`~micro_conformance.base.Unreachable`): pytest still counts it as a
failure, but the report tells a down backend apart from a broken implementation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import pytest

from . import live
from .base import (
    ABSENT_MARKER,
    CAPABILITY_MARKER,
    Contract,
    ContractViolation,
    Names,
    Unreachable,
    case_id,
    new_run_id,
)
from .rules import rule_for
from .testing import eventually

__all__ = ["micro_names", "micro_poll", "micro_run_id"]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("asyncmicro-conformance")
    group.addoption("--micro-report", metavar="PATH", help="write one JSON row per contract case to PATH")
    group.addoption("--micro-run-id", metavar="ID", help="the run id that prefixes every name (default: random)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{CAPABILITY_MARKER}(name): run only if the implementation declares capability `name`"
    )
    config.addinivalue_line(
        "markers", f"{ABSENT_MARKER}(name): run only if the implementation does not declare capability `name`"
    )
    config.addinivalue_line(
        "markers",
        f"{live.LIVE_MARKER}(server): needs the live server `server` (a micro_conformance.live.LiveServer);"
        " skipped when it does not answer, failed instead when CI is set",
    )
    config.pluginmanager.register(_Reporter(config), "micro-conformance-reporter")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # Before any fixture connects: a down server is one clear skip (or CI failure), not a connection error.
    live.require_marked(item)


@pytest.fixture(scope="session")
def micro_run_id(request: pytest.FixtureRequest) -> str:
    """The id that prefixes every key, topic and service name of this run."""
    pinned = request.config.getoption("--micro-run-id")
    return str(pinned) if pinned else new_run_id()


@pytest.fixture
def micro_names(micro_run_id: str) -> Names:
    """Names unique to this test: ``micro_names("orders")``."""
    return Names(micro_run_id)


@pytest.fixture
def micro_poll() -> Callable[..., Any]:
    """:func:`~micro_conformance.base.eventually`: ``await micro_poll(lambda: len(got) == 3, timeout=5)``."""
    return eventually


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    cls = metafunc.cls
    if isinstance(cls, type) and issubclass(cls, Contract):
        cls.generate_tests(metafunc)


def _describe(item: pytest.Item) -> dict[str, Any] | None:
    cls = getattr(item, "cls", None)
    if not (isinstance(cls, type) and issubclass(cls, Contract)):
        return None
    name = getattr(item, "originalname", None) or item.name
    capability, kind = "", "core"
    for marker_name, marker_kind in ((CAPABILITY_MARKER, "requires"), (ABSENT_MARKER, "absent")):
        marker = item.get_closest_marker(marker_name)
        if marker is not None:
            capability, kind = str(marker.args[0]), marker_kind
    doc = (getattr(getattr(item, "obj", None), "__doc__", None) or "").strip().splitlines()
    case = case_id(name) or name
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        case += f"[{callspec.id}]"
    return {
        "nodeid": item.nodeid,
        "case": case,
        "test": name,
        "title": doc[0] if doc else name,
        "contract": cls.__name__,
        "interface": cls.interface,
        "name": cls.name,
        "capability": capability,
        "kind": kind,
        "outcome": "",
        "message": "",
        "duration": 0.0,
        "impl": "",
    }


def rule_of(item: pytest.Item) -> str | None:
    """What a failure of a contract case reports it broke, else ``None`` (not a contract case).

    ``"[S29] rule store.expiry: <the rule>\ncase: <first line of the case's docstring>"``;
    a case no rule lists (a contract subclass's own) gives its docstring alone.
    """
    cls = getattr(item, "cls", None)
    if not (isinstance(cls, type) and issubclass(cls, Contract)):
        return None
    name = getattr(item, "originalname", None) or item.name
    doc = (getattr(getattr(item, "obj", None), "__doc__", None) or "").strip().splitlines()
    case = case_id(name) or name
    title = doc[0].strip() if doc else name
    rule = rule_for(cls.interface, case)
    if rule is None:
        return f"[{case}] {title}"
    return f"[{case}] rule {rule.id}: {rule.text}\ncase: {title}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """A failing contract case raises :class:`ContractViolation` naming its rule, whatever it raised."""
    try:
        return (yield)
    except (Exception, pytest.fail.Exception) as exc:
        rule = rule_of(item)
        if rule is None or isinstance(exc, (Unreachable, ContractViolation)):
            raise
        detail = str(exc).strip() or "(no message)"
        raise ContractViolation(f"{rule}\nbroken: {type(exc).__name__}: {detail}") from exc


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if call.excinfo is not None and call.excinfo.errisinstance(Unreachable):
        report.user_properties.append(("micro_unreachable", str(call.excinfo.value)))
    return report


def _message(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple):  # a skip: (path, line, "Skipped: reason")
        return str(longrepr[2]).removeprefix("Skipped: ")
    crash = getattr(longrepr, "reprcrash", None)
    if crash is not None:
        return str(crash.message)
    text = str(longrepr or "").strip()
    return text.splitlines()[-1] if text else ""


class _Reporter:
    """Turns the reports of contract tests into rows; one per session, registered in ``pytest_configure``."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.rows: dict[str, dict[str, Any]] = {}
        self.collect_errors: list[str] = []

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            row = _describe(item)
            if row is not None:
                self.rows[item.nodeid] = row

    def pytest_deselected(self, items: list[pytest.Item]) -> None:
        for item in items:
            self.rows.pop(item.nodeid, None)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self.collect_errors.append(f"{report.nodeid or '<session>'}: {_message(report)}")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        row = self.rows.get(report.nodeid)
        if row is None:
            return
        properties = dict(report.user_properties)
        if properties.get("micro_impl"):
            row["impl"] = properties["micro_impl"]
        row["duration"] += report.duration
        unreachable = properties.get("micro_unreachable")
        if report.failed and unreachable and report.when in ("setup", "call"):
            row["outcome"], row["message"] = "unreachable", str(unreachable)
        elif report.when == "setup":
            if report.failed:
                row["outcome"], row["message"] = "error", _message(report)
            elif report.skipped:
                row["outcome"], row["message"] = "skipped", _message(report)
        elif report.when == "call":
            row["outcome"] = report.outcome
            row["message"] = "" if report.passed else _message(report)
        elif report.failed and row["outcome"] in ("passed", ""):
            row["outcome"], row["message"] = "error", f"teardown: {_message(report)}"

    def pytest_sessionfinish(self, exitstatus: int) -> None:
        path = self.config.getoption("--micro-report")
        if not path:
            return
        document = {
            "created": time.time(),
            "exitstatus": int(exitstatus),
            "collect_errors": self.collect_errors,
            "cases": [{**row, "outcome": row["outcome"] or "not run"} for row in self.rows.values()],
        }
        Path(path).write_text(json.dumps(document, indent=1))
