"""``lr_find.html``: the learning-rate range test of each optimizer on one problem, with the suggested
learning rates in a table and on the figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optimlab.lab.lr_find import RULES, LRFindSummary
from optimlab.reports.figures.lr_find import LRFindFigure
from optimlab.reports.figures.style import color_map
from optimlab.reports.html import Page, format_number
from optimlab.reports.output import Output
from optimlab.reports.protocol import describe_config, versions_line
from optimlab.reports.section import problem_title

__all__ = ["lr_find_rows", "write_lr_find_page"]


def _seed_range(values: np.ndarray) -> str:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return "–"
    if v.size == 1:
        return f"{format_number(float(v[0]), 3)} (1 seed)"
    return f"{format_number(float(v.min()), 3)} – {format_number(float(v.max()), 3)} ({v.size} seeds)"


def lr_find_rows(summaries: Mapping[str, LRFindSummary]) -> tuple[list[str], list[list]]:
    """Per optimizer and rule: the suggested lr (read off the median curve) and the range of the seeds'
    own suggestions."""
    rows = []
    for label, s in summaries.items():
        for rule in RULES:
            lr = s.suggestions.get(rule)
            rows.append(
                [
                    label,
                    rule,
                    "–" if lr is None else format_number(lr, 3),
                    _seed_range(s.seed_suggestions[rule]),
                ]
            )
    return ["optimizer", "rule", "suggested lr", "seeds' own suggestions"], rows


def write_lr_find_page(
    problem: Any,
    summaries: Mapping[str, LRFindSummary],
    configs: Mapping[str, Any],
    out_dir: str | Path,
    *,
    min_lr: float,
    max_lr: float,
    steps: int,
    seeds: Sequence[int],
    stopped: Mapping[str, int] | None = None,
) -> list[Path]:
    """``out_dir/lr_find.html``: the LR range test of each optimizer on ``problem`` (smoothed loss against
    lr, median and IQR band across ``seeds``, the suggestions) with its PNG. ``stopped`` counts, per
    optimizer, the seeds whose loss blew up before the end of the ramp. Returns the files written, the
    page last."""
    if not summaries:
        raise ValueError("no range tests to draw")
    stopped = dict(stopped or {})
    colors = color_map(list(summaries))
    page = Page(
        f"{problem_title(problem.spec, problem.name)}: learning-rate range test",
        subtitle=f"{', '.join(summaries)} · lr from {min_lr:g} to {max_lr:g} over {steps} steps · "
        f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}",
    )
    out = Output(page, out_dir, "lr_find.html")
    page.section("Range test")
    page.text(
        f"Each optimizer trains {problem.spec} from a fresh model while the learning rate grows "
        f"exponentially from {min_lr:g} to {max_lr:g} over {steps} steps (Smith 2017), one run per seed. "
        "The curve is the bias-corrected moving average (β = 0.9) of the training loss, the median across "
        "seeds with the inter-quartile band; a run stops once its smoothed loss exceeds 4 × its best. "
        "Suggestions: steepest descent (most negative slope per decade of lr), valley (two thirds down the "
        "longest descent) and the lr of the minimum divided by 10; the bar on each marker spans the seeds' "
        "own suggestions by that rule."
    )
    columns, rows = lr_find_rows(summaries)
    page.table(columns, rows, numeric=[False, False, True, True])
    title = f"{problem_title(problem.spec, problem.name)}: LR range test"
    out.figure(
        LRFindFigure(summaries, title=title, colors=colors),
        out.name("lr-find", problem.spec),
        caption="Smoothed loss against learning rate (log axis) with the suggested learning rates.",
    )
    page.section("Settings")
    page.key_values(
        {
            "problem": f"{problem.spec} — {problem.description}",
            "optimizers": {label: describe_config(c.cls.__name__, c.hyper) for label, c in configs.items()},
            "ramp": f"{min_lr:g} → {max_lr:g}, {steps} steps (one batch each)",
            "seeds": ", ".join(map(str, seeds)),
            "stopped early": {label: f"{stopped.get(label, 0)} of {len(seeds)} seeds" for label in summaries},
            "versions": versions_line(),
        }
    )
    out.write()
    return out.written
