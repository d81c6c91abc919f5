"""micro.cli._text: the plain tables and trees the micro command prints (rich is not a dependency)."""

from __future__ import annotations

import click
from micro.cli._text import Cell, Tree, styled, table


def test_columns_are_as_wide_as_their_widest_cell_and_never_cut() -> None:
    long = "asyncmicro-conformance-with-a-very-long-name"
    out = table(("name", "n"), [(long, "1"), ("b", Cell("22", fg="red"))], right=("n",))
    lines = click.unstyle(out).splitlines()
    assert lines == [
        "name" + " " * (len(long) - 4) + "   n",
        long + "   1",
        "b" + " " * (len(long) - 1) + "  22",
    ]
    assert "\x1b[31m22" in out  # coloured on a terminal; click.echo strips it otherwise


def test_title_and_brackets_are_kept_as_text() -> None:
    out = click.unstyle(table(("endpoint", "request"), [("Say.hello", "list[Any]")], title="endpoints"))
    assert out.splitlines()[0] == "endpoints"
    assert "list[Any]" in out


def test_styled_words() -> None:
    assert styled("x", None) == "x"
    assert click.unstyle(styled("x", "bold red")) == "x"
    assert styled("x", "bold red") == click.style("x", fg="red", bold=True)
    assert styled("x", "dim") == click.style("x", dim=True)


def test_tree() -> None:
    root = Tree("trace t")
    a = root.add("a")
    a.add("a1")
    a.add("a2")
    root.add("b")
    assert root.render().splitlines() == ["trace t", "├── a", "│   ├── a1", "│   └── a2", "└── b"]


def test_with_a_width_the_widest_columns_are_cut_to_fit_but_kept_ones_never() -> None:
    name = "asyncmicro-conformance"
    rows = [(name, "x" * 40, Cell("y" * 30, fg="red")), ("b", "short", "z")]
    out = click.unstyle(table(("name", "long", "other"), rows, width=50, keep=("name",)))
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 50, out
    assert lines[1].startswith(name + "  ")  # kept whole
    assert "…" in lines[1]
    assert lines[2].split() == ["b", "short", "z"]
    # Nothing to cut but kept or narrow columns: the table is as wide as it must be.
    wide = click.unstyle(table(("name",), [(name,)], width=10, keep=("name",)))
    assert wide.splitlines()[1] == name
    assert table(("a",), [("x" * 100,)]).splitlines()[1] == "x" * 100  # no width: never cut
