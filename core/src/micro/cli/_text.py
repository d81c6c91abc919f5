"""Plain-text tables and trees for the ``micro`` command, with click's colours (no rich: the core stays small).

Colours are ANSI codes added with :func:`click.style`; :func:`click.echo` strips them
when the output is not a terminal, so piped output is plain text. Widths are
measured on the text without its colours.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import click

__all__ = ["Cell", "Tree", "styled", "table"]


@dataclass(frozen=True, slots=True)
class Cell:
    """A table cell: ``text`` shown in ``fg`` colour (a click colour name), ``bold`` or ``dim``."""

    text: str
    fg: str | None = None
    bold: bool = False
    dim: bool = False

    def render(self) -> str:
        if self.fg is None and not self.bold and not self.dim:
            return self.text
        return click.style(self.text, fg=self.fg, bold=self.bold or None, dim=self.dim or None)


def styled(text: str, style: str | None) -> str:
    """``text`` in a style spelled as words: ``"bold red"``, ``"dim"``, ``"yellow"``; ``None``: as it is."""
    if not style:
        return text
    words = style.split()
    colours = [w for w in words if w not in ("bold", "dim")]
    return Cell(text, colours[0] if colours else None, "bold" in words, "dim" in words).render()


def table(
    columns: Sequence[str],
    rows: Iterable[Sequence[str | Cell]],
    *,
    title: str | None = None,
    right: Iterable[str] = (),
    gap: int = 2,
) -> str:
    """``rows`` under bold ``columns``, each column as wide as its widest cell; the ``right`` ones right-aligned.

    Cells are never cut or wrapped: a table is read with grep and copied from as often as looked at.
    """
    aligned_right = set(right)
    body = [[cell if isinstance(cell, Cell) else Cell(cell) for cell in row] for row in rows]
    widths = [len(column) for column in columns]
    for row in body:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell.text))

    def line(cells: Sequence[Cell]) -> str:
        parts = []
        for index, cell in enumerate(cells):
            pad = " " * (widths[index] - len(cell.text))
            is_last = index == len(cells) - 1
            if columns[index] in aligned_right:
                parts.append(pad + cell.render())
            else:
                parts.append(cell.render() + ("" if is_last else pad))
        return (" " * gap).join(parts).rstrip()

    lines = [] if title is None else [styled(title, "bold")]
    lines.append(line([Cell(column, bold=True) for column in columns]))
    lines.extend(line(row) for row in body)
    return "\n".join(lines)


@dataclass(slots=True)
class Tree:
    """A label with children, drawn with box-drawing guides as ``tree`` does."""

    label: str
    children: list[Tree] = field(default_factory=list)

    def add(self, label: str) -> Tree:
        child = Tree(label)
        self.children.append(child)
        return child

    def render(self) -> str:
        lines = [self.label]
        self._draw(lines, "")
        return "\n".join(lines)

    def _draw(self, lines: list[str], prefix: str) -> None:
        for index, child in enumerate(self.children):
            last = index == len(self.children) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{child.label}")
            child._draw(lines, prefix + ("    " if last else "│   "))
