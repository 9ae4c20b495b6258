"""The ranked table of a problem: optimizers by median final loss, then median steps to target — as
``report.html`` shows it and, compact, as ``optimlab compare`` prints it (same numbers)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from optimlab.reports.html import format_number, format_spread

__all__ = ["EDGE_MARKS", "cell", "ranked_notes", "ranked_rows", "ranked_table_rows"]

#: the mark after a best lr at the edge of its grid: its lowest (↓) or highest (↑) learning rate
EDGE_MARKS = {"low": "↓", "high": "↑"}


def cell(value: float | int | None, digits: int = 4) -> str:
    """A summary number as text: ``None`` (JSON's stand-in for +∞) as "∞"."""
    return format_number(math.inf if value is None else value, digits)


def ranked_rows(
    info: Mapping[str, Any], *, compact: bool = False
) -> tuple[list[str], list[list[object]], list[bool]]:
    """Columns, rows and which columns are numeric of a problem's ranked table. ``compact`` (for a
    terminal) leaves out the confidence interval and splits the median from its spread. A best lr at
    the edge of its grid is marked (:data:`EDGE_MARKS`; :func:`ranked_notes` says what it means); the
    problem's own final metrics (accuracy, fraction of exact zeros, …) close the row."""
    opts = info["optimizers"]
    ranking = info["ranking"]
    show_evals = any(opts[k]["evals_to_target"] != opts[k]["steps_to_target"] for k in ranking)
    metric_names = sorted({m for k in ranking for m in opts[k]["metrics"]})
    target = format_number(float(info["target_loss"]), 4)
    rows = []
    for label in ranking:
        o = opts[label]
        fl = {
            k: math.inf if o["final_loss"][k] is None else o["final_loss"][k]
            for k in ("median", "q25", "q75")
        }
        ci = o["final_loss"].get("ci95") or [None, None]
        row: dict[str, object] = {"#": o["rank"], "optimizer": label}
        edge = EDGE_MARKS.get(o.get("lr_at_grid_edge") or "", "")
        lr = cell(o["best_lr"], 3) + (f" {edge}" if edge else "")
        if compact:
            row["lr"] = lr
            row["final loss"] = cell(fl["median"])
            row["IQR"] = "–" if o["runs"] == 1 else f"[{cell(fl['q25'], 3)}, {cell(fl['q75'], 3)}]"
        elif o["runs"] == 1:  # one run: no spread to show
            row["final loss: median [IQR]"] = cell(fl["median"])
            row["95 % CI"] = "–"
        else:
            row["final loss: median [IQR]"] = (
                cell(fl["median"])
                if math.isinf(fl["median"]) and math.isinf(fl["q25"])
                else format_spread(fl["median"], fl["q25"], fl["q75"], digits=3)
            )
            row["95 % CI"] = f"[{cell(ci[0], 3)}, {cell(ci[1], 3)}]"
        if not compact:
            row["lr"] = lr
        row["diverged"] = f"{o['diverged_runs']}/{o['runs']}"
        reached = "" if o["target_reached"] in (0, o["runs"]) else f" ({o['target_reached']}/{o['runs']})"
        row["steps→target" if compact else f"steps to {target}"] = cell(o["steps_to_target"]) + reached
        if show_evals:
            row["evals→target" if compact else f"grad evals to {target}"] = cell(o["evals_to_target"])
        row["s/run" if compact else "s / run"] = cell(o["wall_s"], 3 if not compact else 2)
        for m in metric_names:
            value = o["metrics"].get(m)
            name = m.replace("_", " ")
            if compact:  # narrow enough for a terminal of 120 columns
                name = name.replace("accuracy", "acc").replace("fraction", "frac")
            row[name] = "–" if value is None else cell(value, 3 if compact else 4)
        rows.append(row)
    columns = list(rows[0]) if rows else ["#", "optimizer"]
    numeric = [c != "optimizer" for c in columns]
    return columns, [[r[c] for c in columns] for r in rows], numeric


def ranked_notes(info: Mapping[str, Any]) -> list[str]:
    """What a reader of a problem's ranked table must know to trust it: best learning rates at the
    edge of their grid (the grid did not bracket the optimum) and statistics from too few seeds."""
    notes = []
    opts = info["optimizers"]
    edges = [(label, opts[label]) for label in info["ranking"] if opts[label].get("lr_at_grid_edge")]
    if edges:
        side = {"low": "lowest", "high": "highest"}
        which = "; ".join(
            f"{label}: {cell(o['best_lr'], 3)}, its {side[o['lr_at_grid_edge']]}" for label, o in edges
        )
        notes.append(
            f"{EDGE_MARKS['low']}/{EDGE_MARKS['high']} the best learning rate is the lowest/highest of its "
            f"grid ({which}): the grid did not bracket the optimum, which may lie beyond it — widen the "
            "grid (--lr-grid) on that side."
        )
    if info.get("few_seeds"):
        seeds = len(info["seeds"])
        notes.append(
            f"Only {seeds} seed{'s' if seeds != 1 else ''}: medians, IQRs and confidence intervals from so "
            "few runs say little; use --seeds 3 or more before trusting the ranking."
        )
    return notes


def ranked_table_rows(
    summary: Mapping[str, Any], spec: str, *, compact: bool = False
) -> tuple[list[str], list[list[object]]]:
    """The ranked table of problem ``spec`` as the report shows it (columns, rows of text and numbers);
    ``compact``: the narrower version for a terminal, with the same numbers."""
    columns, rows, _ = ranked_rows(summary["problems"][spec], compact=compact)
    return columns, rows
