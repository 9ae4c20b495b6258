"""``report.html`` of a stored comparison: one self-contained page with interactive figures, and every
figure's PNG twin under ``figures/``.

Entry point: :func:`write_report`. It reads a :class:`~optimlab.lab.results.ComparisonData` (loaded
from storage) and its summary (:func:`optimlab.lab.results.summarize`, the numbers of
``summary.json``, so the page, the JSON and the command line never disagree); it trains nothing.

The page leads, in a comparison against a baseline, with the verdict table
(:mod:`optimlab.reports.verdict`), then states the protocol (:mod:`optimlab.reports.protocol`) and
then, per problem, the ranked table (:mod:`optimlab.reports.ranking`) and the figures of
:data:`PROBLEM_FIGURES` — the loss curves, the training loss per step, the lr sensitivity and, for
2-D problems, the contour with every optimizer's trajectory and its animation; across problems, the
performance profile and its scores.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from optimlab.lab.results import (
    PROFILE_COSTS,
    ComparisonData,
    ProblemData,
    summarize,
    summary_profile,
)
from optimlab.lab.stats import Profile
from optimlab.reports.figures import loss, lr_sensitivity, profile, surface, train_loss
from optimlab.reports.figures.schedule import zero_lr_text
from optimlab.reports.figures.style import color_map
from optimlab.reports.html import Page, format_number
from optimlab.reports.output import Output
from optimlab.reports.protocol import (
    PROTOCOL_NAMES,
    budget_text,
    describe_config,
    protocol_section,
    seeds_text,
)
from optimlab.reports.ranking import ranked_notes, ranked_rows
from optimlab.reports.renderer import Renderer
from optimlab.reports.section import ProblemSection, SectionFigure, problem_titles
from optimlab.reports.verdict import verdict_section

__all__ = ["PROBLEM_FIGURES", "write_report"]

#: the figures of each problem's section, in order (each adds itself where it has something to draw)
PROBLEM_FIGURES: tuple[SectionFigure, ...] = (
    loss.in_report,
    train_loss.in_report,
    lr_sensitivity.in_report,
    surface.in_report,
)


def _problem_section(
    out: Output,
    data: ComparisonData,
    problem: ProblemData,
    info: Mapping[str, Any],
    colors: Mapping[str, str],
    title: str,
) -> None:
    page = out.page
    page.section(title)
    target = format_number(problem.target_loss, 4)
    description = problem.description.rstrip()
    if description and description[-1] not in ".?!":
        description += "."
    spec = f" Spec: {problem.spec}." if title != problem.spec else ""
    page.text(
        f"{description}{spec} Target loss {target}. Budget: {budget_text(problem)}. "
        f"{seeds_text(problem).capitalize()} per configuration."
    )
    run = next((r for o in problem.optimizers for r in o.runs if r.lrs), None)
    schedule = data.settings.get("schedule")
    warning = zero_lr_text(f"The schedule {schedule}", run.lrs, "step") if run and schedule else None
    if warning:
        page.callout(warning, title="A learning rate of 0.")
    columns, rows, numeric = ranked_rows(info)
    page.table(
        columns,
        rows,
        caption="Ranked by median final loss, then median steps to target. IQR: the inter-quartile range "
        "across seeds; 95 % CI: bootstrap interval of the median; ∞ = diverged, or target never reached "
        "(in brackets: the seeds that reached it, where only some did); s / run: median wall time. Extra "
        "columns: the problem's own final metrics (median over the runs that did not diverge).",
        numeric=numeric,
        highlight=[0],
    )
    for note in ranked_notes(info):
        page.callout(note, title="Read this table with care.")
    if data.settings.get("protocol") == "optuna":
        trial_rows = []
        for o in problem.optimizers:
            values = [t.get("value") for t in o.trials]
            trial_rows.append(
                [
                    o.label,
                    len(o.trials),
                    sum(v is None for v in values),
                    describe_config(o.cls, o.hyper),
                ]
            )
        page.table(
            ["optimizer", "trials", "diverged trials", "chosen configuration"],
            trial_rows,
            caption="Optuna: the configuration each optimizer was evaluated with",
            numeric=[False, True, True, False],
        )
    section = ProblemSection(out, problem, title, colors)
    for add in PROBLEM_FIGURES:
        add(section)


def _profiles(summary: Mapping[str, Any]) -> dict[str, Profile]:
    out = {}
    for cost in PROFILE_COSTS:
        profile = summary_profile(summary["problems"], cost)
        if profile is not None:
            out[cost] = profile
    return out


def _across_problems(out: Output, summary: Mapping[str, Any], colors: Mapping[str, str]) -> None:
    profiles = _profiles(summary)
    if "steps" not in profiles:
        return
    page = out.page
    page.section("Across problems")
    n = len(summary["problems"])
    page.text(
        "Performance profile (Dolan & Moré 2002): for each optimizer, the fraction of problems on which "
        "it reaches the target within a factor τ of the fastest optimizer's median steps (or gradient "
        "evaluations) to target. The score is the normalized area under the profile for τ from 1 to 4, "
        "as in AlgoPerf (Dahl et al. 2023): 1 = fastest on every problem, 0 = never within 4× of the "
        "fastest." + (" With a single problem the profile only restates its table." if n == 1 else "")
    )
    steps = profiles["steps"]
    evals = profiles.get("grad_evals")
    scores = steps.scores
    order = sorted(steps.solvers, key=lambda s: (-scores[s], steps.solvers.index(s)))
    solved = {s: int(np.isfinite(steps.ratios[:, j]).sum()) for j, s in enumerate(steps.solvers)}
    wins = {s: int((steps.ratios[:, j] == 1.0).sum()) for j, s in enumerate(steps.solvers)}
    columns = ["optimizer", "score (steps)"] + (["score (grad evals)"] if evals else [])
    columns += ["problems solved", "fastest on"]
    rows = []
    for s in order:
        row: list[object] = [s, round(scores[s], 3)]
        if evals:
            row.append(round(evals.scores[s], 3))
        row += [f"{solved[s]}/{n}", f"{wins[s]}/{n}"]
        rows.append(row)
    page.table(
        columns,
        rows,
        caption="Ordered by the score on steps to target",
        numeric=[False] + [True] * (len(columns) - 1),
        highlight=[0],
        digits=3,
    )
    if not any(solved.values()):
        page.text("No optimizer reached the target on any problem, so the profiles are flat at 0.", note=True)
    differs = evals is not None and not np.array_equal(evals.ratios, steps.ratios)
    for cost, each in profiles.items():
        if cost == "grad_evals" and not differs:
            continue
        what = "steps to target" if cost == "steps" else "gradient evaluations to target"
        profile.add(out, each, cost, what=what, colors=colors)


def _labels(data: ComparisonData) -> list[str]:
    labels = [o["label"] for o in data.settings.get("optimizers", [])]
    for problem in data.problems:
        labels += [o.label for o in problem.optimizers if o.label not in labels]
    return labels


def write_report(
    data: ComparisonData,
    out_dir: str | Path,
    summary: dict[str, Any] | None = None,
    *,
    gif: bool = False,
    static: bool = True,
    renderer: Renderer | None = None,
) -> Path:
    """Write ``out_dir/report.html`` for ``data`` and each figure's PNG under ``out_dir/figures/``
    (``static=False``: no PNGs); ``gif`` also writes the surface animations as GIFs there. ``summary``
    defaults to :func:`optimlab.lab.results.summarize` of ``data``; a ``renderer``
    (:class:`~optimlab.reports.renderer.Renderer`) draws the files in its process meanwhile.
    Returns the page's path."""
    summary = summary or summarize(data)
    colors = color_map(_labels(data))
    titles = problem_titles(data.problems)
    n_opt = len(data.settings.get("optimizers", []))
    protocol = PROTOCOL_NAMES.get(str(data.settings.get("protocol")), str(data.settings.get("protocol")))
    page = Page(
        "optimlab comparison",
        subtitle=f"{len(data.problems)} problem{'s' if len(data.problems) != 1 else ''} × {n_opt} "
        f"optimizer{'s' if n_opt != 1 else ''} · {protocol} · "
        f"{', '.join(titles.values())}",
    )
    out = Output(page, out_dir, "report.html", static=static, gif=gif, renderer=renderer)
    verdict_section(page, summary)  # first, in a comparison against a baseline
    protocol_section(page, data, summary)
    for problem in data.problems:
        _problem_section(out, data, problem, summary["problems"][problem.spec], colors, titles[problem.spec])
    _across_problems(out, summary, colors)
    return out.write()
