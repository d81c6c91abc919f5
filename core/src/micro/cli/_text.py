"""Plain-text tables and trees for the ``micro`` command, with click's colours (no rich: the core stays small).

Colours are ANSI codes added with :func:`click.style`; :func:`click.echo` strips them
when the output is not a terminal, so piped output is plain text. Widths are
measured on the text without its colours.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import click

__all__ = ["Cell", "Tree", "styled", "table", "terminal_width"]


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


def terminal_width() -> int:
    """The columns of the terminal the output goes to; 80 when it is not a terminal (piped, a file)."""
    return shutil.get_terminal_size((80, 24)).columns if sys.stdout.isatty() else 80


def table(
    columns: Sequence[str],
    rows: Iterable[Sequence[str | Cell]],
    *,
    title: str | None = None,
    right: Iterable[str] = (),
    gap: int = 2,
    width: int | None = None,
    keep: Iterable[str] = (),
) -> str:
    """``rows`` under bold ``columns``, each column as wide as its widest cell; the ``right`` ones right-aligned.

    Without ``width`` cells are never cut or wrapped: a table is read with grep and copied from as often as
    looked at. With ``width`` (:func:`terminal_width` for the screen's), the widest columns are shortened
    first, their cells cut with ``…``, until a row fits (no column below 8 characters); the columns named in
    ``keep`` are never shortened.
    """
    aligned_right = set(right)
    kept = set(keep)
    header = [Cell(column, bold=True) for column in columns]
    body = [[cell if isinstance(cell, Cell) else Cell(cell) for cell in row] for row in rows]
    widths = [len(column) for column in columns]
    for row in body:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell.text))
    if width is not None:
        while sum(widths) + gap * (len(widths) - 1) > width:
            shorter = [i for i, size in enumerate(widths) if columns[i] not in kept and size > _NARROWEST]
            if not shorter:
                break
            widths[max(shorter, key=lambda i: widths[i])] -= 1

    def line(cells: Sequence[Cell]) -> str:
        parts = []
        for index, cell in enumerate(cells):
            size = widths[index]
            if len(cell.text) > size:
                cell = dataclasses.replace(cell, text=cell.text[: size - 1] + "…")
            pad = " " * (size - len(cell.text))
            is_last = index == len(cells) - 1
            if columns[index] in aligned_right:
                parts.append(pad + cell.render())
            else:
                parts.append(cell.render() + ("" if is_last else pad))
        return (" " * gap).join(parts).rstrip()

    lines = [] if title is None else [styled(title, "bold")]
    lines.append(line(header))
    lines.extend(line(row) for row in body)
    return "\n".join(lines)


#: A column is not shortened below this many characters to make a table fit.
_NARROWEST = 8


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
