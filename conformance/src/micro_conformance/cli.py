"""``micro conformance``: run a contract against an installed implementation and print the cases.

Exit status: 0 when every case passed or was skipped for a capability the
implementation does not declare; 1 when a case failed or the suite could not
run; 2 for a usage error, an unknown name or a bad option; 3 when the one
implementation asked for is unreachable (its backend is down). With ``--all``
unreachable implementations are listed as such and do not change the status.

``micro --help`` imports this module for the command's summary, so the runner
(and with it pytest) and rich are imported only when the command runs.
"""

from __future__ import annotations

import concurrent.futures
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click
from micro.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from .runner import Result

__all__ = ["command"]

_STYLE = {
    "passed": "green",
    "failed": "red",
    "error": "red",
    "unreachable": "magenta",
    "skipped": "yellow",
}


def _options(pairs: Sequence[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--option")
        options[key.strip().lower().replace("-", "_")] = value
    return options


def _case_table(result: Result, *, show_passed: bool = True) -> Table:
    from rich.table import Table

    title = f"{result.interface} {result.name}: [{_STYLE.get(result.status, 'white')}]{result.status}[/]"
    table = Table(title=title, title_justify="left", expand=False)
    for column in ("case", "capability", "behaviour", "result", "detail"):
        table.add_column(column, overflow="fold")
    for case in result.cases:
        if not show_passed and case.outcome == "passed":
            continue
        capability = case.capability or "-"
        if case.kind == "absent":
            capability += " (absent)"
        style = _STYLE.get(case.outcome, "white")
        table.add_row(case.case, capability, case.title, f"[{style}]{case.outcome}[/]", case.message)
    return table


def _summary_table(results: Sequence[Result]) -> Table:
    from rich.table import Table

    table = Table(title="micro conformance --all", title_justify="left")
    for column in ("interface", "name", "status", "passed", "failed", "skipped", "note"):
        table.add_column(column, overflow="fold")
    for r in results:
        style = _STYLE.get(r.status, "white")
        failed = r.count("failed") + r.count("error")
        note = r.reason or ", ".join(f"{c.case} {c.outcome}" for c in r.cases if c.outcome in ("failed", "error"))
        table.add_row(
            r.interface,
            r.name,
            f"[{style}]{r.status}[/]",
            str(r.count("passed")),
            str(failed),
            str(r.count("skipped")),
            note,
        )
    return table


@click.command("conformance")
@click.argument("interface", required=False, metavar="INTERFACE")
@click.argument("name", required=False, metavar="NAME")
@click.option("--option", "-o", "pairs", multiple=True, metavar="KEY=VALUE", help="An option, as MICRO_<IFACE>_KEY.")
@click.option("--all", "run_all", is_flag=True, help="Test every installed implementation (of INTERFACE if given).")
@click.option("-k", "keyword", metavar="EXPR", help="Only cases matching EXPR (pytest -k), e.g. 's04 or ttl'.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON instead of tables.")
@click.option("-v", "--verbose", is_flag=True, help="Also print pytest's output.")
@click.option("--case-timeout", default=60.0, show_default=True, help="Seconds one case may take.")
@click.option("-j", "--jobs", default=1, show_default=True, help="With --all: implementations tested at once.")
def command(
    interface: str | None,
    name: str | None,
    pairs: tuple[str, ...],
    run_all: bool,
    keyword: str | None,
    as_json: bool,
    verbose: bool,
    case_timeout: float,
    jobs: int,
) -> None:
    """Check that implementation NAME of INTERFACE behaves as the interface says.

    NAME is resolved exactly as MICRO_<INTERFACE>=NAME would be (the registered
    default when omitted), so this tests the installed plugin. Interfaces:
    auth, broker, codec, config, network, registry, selector, server, store, sync, transport, tunnel.
    With --all, every installed implementation (of INTERFACE, if given) is tested.
    """
    from rich.console import Console

    from .runner import CONTRACTS, check, implementations, run

    console = Console()
    pytest_args = ["-k", keyword] if keyword else []
    if run_all:
        if name or pairs:
            raise click.UsageError("--all takes no NAME or --option (an INTERFACE narrows it)")
        if interface is not None and interface not in CONTRACTS:
            raise click.UsageError(f"no contract for {interface!r}; interfaces: {', '.join(sorted(CONTRACTS))}")
        targets = [t for t in implementations() if interface is None or t[0] == interface]

        def one(target: tuple[str, str]) -> Result:
            return run(target[0], target[1], pytest_args=pytest_args, case_timeout=case_timeout)

        results: list[Result] = []
        # Each run is a pytest subprocess, so threads only wait; results print in a fixed order.
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for result in pool.map(one, targets):
                results.append(result)
                if as_json:
                    continue
                if verbose:
                    console.print(result.output)
                if result.cases and result.status != "passed":
                    console.print(_case_table(result, show_passed=False))
        if as_json:
            click.echo(json.dumps([r.to_dict() for r in results], indent=2))
        else:
            console.print(_summary_table(results))
        unreachable = [f"{r.interface} {r.name}" for r in results if r.status == "unreachable"]
        if unreachable and not as_json:
            console.print(
                f"[magenta]{len(unreachable)} implementation(s) unreachable, not tested:[/] {', '.join(unreachable)}"
            )
        sys.exit(1 if any(r.status in ("failed", "error") for r in results) else 0)

    if interface is None:
        raise click.UsageError("give INTERFACE (and NAME), or --all")
    if interface not in CONTRACTS:
        raise click.UsageError(f"no contract for {interface!r}; interfaces: {', '.join(sorted(CONTRACTS))}")
    options = _options(pairs)
    try:
        if name is None:
            from micro.plugins import get_manager

            name = get_manager().resolve(interface).name
        check(interface, name, options)
    except ConfigError as exc:
        console.print(f"[red]error:[/] {exc}")
        sys.exit(2)
    result = run(interface, name, options, pytest_args=pytest_args, case_timeout=case_timeout)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        if verbose or result.status == "error":
            console.print(result.output)
        console.print(_case_table(result))
        _footer(console, result)
    sys.exit({"passed": 0, "unreachable": 3}.get(result.status, 1))


def _footer(console: Console, result: Result) -> None:
    counts = ", ".join(f"{result.count(o)} {o}" for o in ("passed", "failed", "error", "skipped") if result.count(o))
    style = _STYLE.get(result.status, "white")
    line = f"[{style}]{result.interface} {result.name}: {result.status}[/] ({counts or 'no cases'})"
    if result.reason:
        line += f": {result.reason}"
    console.print(line)
