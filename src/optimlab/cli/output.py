"""What the commands print: tables (the same columns and numbers as the pages) and where files went."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text

from optimlab.cli.app import console


def table(
    title: str, columns: list[str], rows: list[list[Any]], *, left: tuple[str, ...] = ("optimizer", "rule")
) -> Table:
    """A rich table; numbers formatted as the pages format them; the ``left`` columns (text) to the left."""
    result = Table(title=Text(title), title_justify="left")
    cells = _cells(rows)
    for column in columns:
        # too narrow a terminal folds a cell onto a second line rather than cutting a number short
        # (print_ranked_tables also moves the problem's own metrics to a table of their own)
        result.add_column(Text(column), justify="left" if column in left else "right", overflow="fold")
    for row in cells:
        result.add_row(*(Text(cell) for cell in row))  # shown as written: E[g²] is not markup
    return result


def _cells(rows: list[list[Any]]) -> list[list[str]]:
    from optimlab.reports.html import format_number

    return [[c if isinstance(c, str) else format_number(c) for c in row] for row in rows]


def _width(columns: list[str], rows: list[list[Any]]) -> int:
    """The width of :func:`table`'s table with every header and cell on one line (rich's default box:
    one border and two spaces of padding a column, and the last border)."""
    cells = _cells(rows)
    widest = [max([cell_len(c), *(cell_len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    return sum(w + 3 for w in widest) + 1


def print_ranked_tables(summary: dict[str, Any]) -> None:
    """Each problem's ranked table, with the same columns and numbers as the report's."""
    from optimlab.reports.html import format_number
    from optimlab.reports.ranking import ranked_notes, ranked_table_rows

    for spec, info in summary["problems"].items():
        runs = "1 run each (deterministic)" if info["deterministic"] else f"{len(info['seeds'])} seeds"
        title = f"{spec} — target loss {format_number(float(info['target_loss']))}, {runs}"
        columns, rows = ranked_table_rows(summary, spec, compact=True)
        ranked = table(title, columns, rows)
        metrics = columns.index("s/run") + 1  # the problem's own metrics follow
        if metrics < len(columns) and _width(columns, rows) > console.width:
            # too wide for the terminal: the problem's own metrics in a table of their own, same rows
            ranked = table(title, columns[:metrics], [row[:metrics] for row in rows])
            console.print(ranked)
            keep = [0, 1, *range(metrics, len(columns))]
            extra = table(
                f"{spec} — final metrics",
                [columns[i] for i in keep],
                [[row[i] for i in keep] for row in rows],
            )
            console.print(extra)
        else:
            console.print(ranked)
        for note in ranked_notes(info):
            console.print(f"note: {note}", markup=False, highlight=False)


def print_written(paths: list[Path]) -> None:
    """Where a command wrote its files: the page, then its figures."""
    page, figures = paths[-1], paths[:-1]
    console.print(f"wrote {page}", markup=False, highlight=False, soft_wrap=True)
    if figures:
        names = ", ".join(p.name for p in figures)
        console.print(f"  and in {figures[0].parent}: {names}", markup=False, highlight=False, soft_wrap=True)


def print_verdict(summary: dict[str, Any]) -> None:
    """The verdict against the baseline (with ``--baseline``): the report's first table."""
    from optimlab.reports.verdict import speedup_text

    verdict = summary.get("verdict")
    if not verdict:
        return
    several = len(verdict["horizons"]) > 1
    columns = ["problem"] + (["horizon"] if several else []) + ["optimizer", "speed-up [95% CI]", "verdict"]
    rows = [
        [row["problem"]]
        + ([f"{row['horizon']:g}"] if several else [])
        + [row["optimizer"], speedup_text(row), row["verdict"]]
        for row in verdict["rows"]
    ]
    console.print(
        table(f"Verdict against {verdict['baseline']}", columns, rows, left=("problem", "optimizer"))
    )
