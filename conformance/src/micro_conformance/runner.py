"""Running a contract against an installed implementation, outside any test suite.

:func:`run` writes a one-class test module for ``(interface, name)`` into a
temporary directory and runs pytest on it in a subprocess (so one
implementation's crash, hang or leaked state never affects the next), with
``--micro-report`` to read back what happened to each case. ``micro
conformance`` is a thin layer over it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, cast

from micro.errors import InvalidOption
from micro.plugins import PluginManager, get_manager

from .base import Contract, create

__all__ = ["CONTRACTS", "Case", "Result", "Status", "contract_class", "contract_for", "implementations", "run"]

#: The contract of each interface, by import path (imported only when used).
CONTRACTS: Final[dict[str, str]] = {
    "auth": "micro_conformance.auth:AuthContract",
    "broker": "micro_conformance.broker:BrokerContract",
    "codec": "micro_conformance.codec:CodecContract",
    "config": "micro_conformance.config:ConfigSourceContract",
    "registry": "micro_conformance.registry:RegistryContract",
    "selector": "micro_conformance.selector:SelectorContract",
    "server": "micro_conformance.rpc:RPCContract",
    "store": "micro_conformance.store:StoreContract",
    "sync": "micro_conformance.sync:SyncContract",
    "transport": "micro_conformance.transport:TransportContract",
    "tunnel": "micro_conformance.tunnel:TunnelContract",
    "network": "micro_conformance.network:NetworkContract",
}

#: How one implementation fared: every case passed or was skipped; some case failed; its backend
#: could not be reached; or the suite itself could not run (a collection error, a crash, a time-out).
Status = Literal["passed", "failed", "unreachable", "error"]


@dataclass(frozen=True, slots=True)
class Case:
    """One contract case's outcome, as written by the pytest plugin's ``--micro-report``."""

    case: str
    title: str
    capability: str
    kind: str
    outcome: str
    message: str
    test: str
    duration: float = 0.0

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Case:
        return cls(
            case=str(row.get("case", "")),
            title=str(row.get("title", "")),
            capability=str(row.get("capability", "")),
            kind=str(row.get("kind", "core")),
            outcome=str(row.get("outcome") or "error"),
            message=str(row.get("message", "")),
            test=str(row.get("test", "")),
            duration=float(row.get("duration", 0.0)),
        )


@dataclass(slots=True)
class Result:
    """Everything :func:`run` learnt about one implementation."""

    interface: str
    name: str
    status: Status
    cases: list[Case] = field(default_factory=list)
    #: Why the status is ``"error"`` or ``"unreachable"``.
    reason: str = ""
    #: pytest's own output, for ``--verbose`` and for errors.
    output: str = ""

    def count(self, outcome: str) -> int:
        return sum(1 for c in self.cases if c.outcome == outcome)

    def to_dict(self) -> dict[str, Any]:
        return {
            "interface": self.interface,
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "cases": [
                {
                    "case": c.case,
                    "title": c.title,
                    "capability": c.capability,
                    "kind": c.kind,
                    "outcome": c.outcome,
                    "message": c.message,
                    "test": c.test,
                    "duration": round(c.duration, 4),
                }
                for c in self.cases
            ],
        }


def contract_for(interface: str) -> type[Contract[Any]]:
    """The contract class for ``interface``; :class:`KeyError` if there is none."""
    module_name, _, attr = CONTRACTS[interface].partition(":")
    return cast(type[Contract[Any]], getattr(importlib.import_module(module_name), attr))


def contract_class(interface: str, name: str, option_strings: Mapping[str, str] | None = None) -> type[Contract[Any]]:
    """A concrete contract class testing implementation ``name`` with options given as strings.

    The contract may adapt itself to the implementation it will meet (see
    ``Contract.adapt``), for example to seed a built-in config source.
    """
    manager = get_manager()
    implementation = manager.factory(manager.resolve(interface, name))
    base = contract_for(interface).adapt(implementation)
    attrs: dict[str, Any] = {"name": name, "option_strings": dict(option_strings or {})}
    return type(f"Test{interface.capitalize()}{_camel(name)}", (base,), attrs)


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.replace(".", "-").replace("_", "-").split("-"))


def implementations(manager: PluginManager | None = None) -> list[tuple[str, str]]:
    """Every installed ``(interface, name)`` that has a contract, sorted."""
    manager = manager or get_manager()
    return [(interface, name) for interface in sorted(CONTRACTS) for name in manager.names(interface)]


_MODULE = """\
# Generated by micro conformance: the {interface} contract against {name!r}.
from micro_conformance.runner import contract_class

{cls} = contract_class({interface!r}, {name!r}, {options!r})
"""

_INI = """\
[pytest]
asyncio_default_fixture_loop_scope = function
{timeout}
"""


def check(interface: str, name: str, option_strings: Mapping[str, str] | None = None) -> None:
    """Resolve and build (without starting) the implementation, so that a bad name or option fails fast.

    Raises :class:`KeyError` for an interface without a contract, and the
    plugin manager's errors (:class:`~micro.errors.PluginNotFound`,
    :class:`~micro.errors.InvalidOption`...) as ``MICRO_<INTERFACE>=<name>`` would.
    An option that is missing rather than wrong is left to the contract, which
    may supply it (the file config source's path, for one).
    """
    contract_for(interface)
    given = {key.lower().replace("-", "_") for key in option_strings or {}}
    try:
        create(interface, name, strings=option_strings)
    except InvalidOption as exc:
        if exc.option in given or exc.option == "?":
            raise


def run(
    interface: str,
    name: str,
    option_strings: Mapping[str, str] | None = None,
    *,
    pytest_args: Sequence[str] = (),
    case_timeout: float = 60.0,
    timeout: float = 900.0,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
) -> Result:
    """Run the ``interface`` contract against ``name`` in a pytest subprocess and collect its cases.

    ``case_timeout`` bounds each case (with pytest-timeout), ``timeout`` the whole
    run. The implementation is resolved in the subprocess exactly as
    ``MICRO_<INTERFACE>=<name>`` resolves it, with ``option_strings`` as
    ``MICRO_<INTERFACE>_<KEY>`` values.
    """
    options = dict(option_strings or {})
    cls = f"Test{interface.capitalize()}{_camel(name)}"
    with tempfile.TemporaryDirectory(prefix="micro-conformance-") as tmp:
        root = Path(tmp)
        module = root / f"test_{interface}_conformance.py"
        module.write_text(_MODULE.format(interface=interface, name=name, options=options, cls=cls))
        has_timeout = importlib.util.find_spec("pytest_timeout") is not None
        (root / "pytest.ini").write_text(_INI.format(timeout=f"timeout = {case_timeout:g}" if has_timeout else ""))
        report = root / "report.json"
        command = [
            python,
            "-m",
            "pytest",
            str(module),
            "-c",
            str(root / "pytest.ini"),
            "--rootdir",
            str(root),
            "-p",
            "micro_conformance",
            "-p",
            "no:cacheprovider",
            f"--micro-report={report}",
            "-q",
            "-rfE",
            *pytest_args,
        ]
        environ = dict(os.environ if env is None else env)
        try:
            proc = subprocess.run(
                command, cwd=root, env=environ, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            return Result(interface, name, "error", reason=f"the suite did not finish within {timeout:g}s", output=out)
        output = proc.stdout + proc.stderr
        if not report.exists():
            tail = "\n".join(output.strip().splitlines()[-5:])
            reason = f"pytest exited with {proc.returncode}: {tail}"
            return Result(interface, name, "error", reason=reason, output=output)
        document = json.loads(report.read_text())
    cases = [Case.from_row(row) for row in document.get("cases", [])]
    return _judge(Result(interface, name, "passed", cases, output=output), document)


def _judge(result: Result, document: Mapping[str, Any]) -> Result:
    errors = [str(e) for e in document.get("collect_errors", [])]
    if errors:
        result.status, result.reason = "error", "; ".join(errors)
    elif not result.cases:
        result.status, result.reason = "error", "no contract case was collected"
    elif any(c.outcome in ("failed", "error") for c in result.cases):
        result.status = "failed"
    elif any(c.outcome == "unreachable" for c in result.cases):
        first = next(c for c in result.cases if c.outcome == "unreachable")
        result.status, result.reason = "unreachable", first.message
    return result
