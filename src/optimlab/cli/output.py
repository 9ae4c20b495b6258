"""What the commands print: tables (the same columns and numbers as the pages) and where files went."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from optimlab.cli.app import console


def table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """A rich table; numbers formatted as the pages format them."""
    from optimlab.reports.html import format_number

    result = Table(title=title, title_justify="left")
    for column in columns:
        result.add_column(
            column, justify="left" if column in ("optimizer", "rule") else "right", no_wrap=True
        )
    for row in rows:
        result.add_row(*(c if isinstance(c, str) else format_number(c) for c in row))
    return result


def print_ranked_tables(summary: dict[str, Any]) -> None:
    """Each problem's ranked table, with the same columns and numbers as the report's."""
    from optimlab.reports.html import format_number
    from optimlab.reports.ranking import ranked_table_rows

    for spec, info in summary["problems"].items():
        runs = "1 run each (deterministic)" if info["deterministic"] else f"{len(info['seeds'])} seeds"
        title = f"{spec} — target loss {format_number(float(info['target_loss']))}, {runs}"
        columns, rows = ranked_table_rows(summary, spec, compact=True)
        console.print(table(title, columns, rows))


def print_written(paths: list[Path]) -> None:
    """Where a command wrote its files: the page, then its figures."""
    page, figures = paths[-1], paths[:-1]
    console.print(f"wrote {page}", markup=False, highlight=False, soft_wrap=True)
    if figures:
        names = ", ".join(p.name for p in figures)
        console.print(f"  and in {figures[0].parent}: {names}", markup=False, highlight=False, soft_wrap=True)
