"""The pages of ``optimlab surface``, ``optimlab schedule`` and ``optimlab lr-find``: each a self-contained
HTML file with its figures' PNG twins (and the surface's GIF) under ``figures/``.

The commands train (:mod:`optimlab.lab`); these functions only draw what they were given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optimlab.lab.lr_find import RULES, LRFindSummary
from optimlab.lab.run import RunResult
from optimlab.reports import adapt, figures, png
from optimlab.reports.data import color_map
from optimlab.reports.output import Output
from optimlab.reports.page import Page, format_number
from optimlab.reports.report import (
    add_loss_figure,
    add_surface_figure,
    cell,
    describe_config,
    software_versions,
)

__all__ = [
    "lr_find_rows",
    "surface_rows",
    "write_lr_find_page",
    "write_schedule_page",
    "write_surface_page",
]


def _versions() -> str:
    return " · ".join(f"{k} {v}" for k, v in software_versions().items())


# --- optimlab surface -------------------------------------------------------------------------------


def surface_rows(
    results: Mapping[str, RunResult], configs: Mapping[str, Any]
) -> tuple[list[str], list[list]]:
    """The table of a surface run: optimizers ranked by final f (diverged last), with the lr, the final
    distance to the nearest known minimum, the steps and gradient evaluations to the target, how the
    run diverged (nan, inf or explosion) and the wall time."""
    order = sorted(results, key=lambda k: (results[k].final_loss, results[k].steps_to_target, k))
    columns = ["#", "optimizer", "lr", "final f", "to a minimum", "steps→target", "evals→target"]
    columns += ["diverged", "wall s"]
    rows = []
    for rank, label in enumerate(order, start=1):
        r = results[label]
        distance = r.final_metrics.get("distance_to_minimum")
        rows.append(
            [
                rank,
                label,
                cell(configs[label].lr, 3) if label in configs else "–",
                cell(r.final_loss),
                "–" if distance is None or r.diverged else cell(distance, 3),
                cell(r.steps_to_target),
                cell(r.evals_to_target),
                (r.divergence or "yes") if r.diverged else "no",
                cell(r.wall_s, 3),
            ]
        )
    return columns, rows


def write_surface_page(
    problem: Any,
    results: Mapping[str, RunResult],
    configs: Mapping[str, Any],
    out_dir: str | Path,
    *,
    gif: bool = True,
) -> list[Path]:
    """``out_dir/surface.html``: every optimizer's trajectory on the 2-D ``problem`` (contour, animation)
    and its loss, with PNGs (and the GIF) under ``figures/``. ``results`` and ``configs`` map optimizer
    labels to their run and :class:`~optimlab.lab.presets.OptimizerConfig`. Returns the files written,
    the page last."""
    if not adapt.is_surface(problem):
        raise ValueError(f"problem {problem.spec!r} is not a 2-D surface")
    if not results:
        raise ValueError("no runs to draw")
    colors = color_map(list(results))
    first = next(iter(results.values()))
    noise = float(getattr(problem, "noise", 0.0))
    page = Page(
        f"{problem.spec}: optimizers on a 2-D surface",
        subtitle=f"{problem.description} · {len(results)} optimizer{'s' if len(results) != 1 else ''}, "
        f"{first.steps} steps from ({problem.start[0]:g}, {problem.start[1]:g})"
        + (f" · noisy gradients (σ = {noise:g})" if noise else ""),
    )
    out = Output(page, out_dir, gif=gif)
    spec = problem.spec
    page.section("Trajectories")
    page.text(
        f"Each optimizer starts at ({problem.start[0]:g}, {problem.start[1]:g}) and takes up to "
        f"{first.steps} steps on f; a step sees "
        + (
            f"a noisy gradient ∇f + σε with σ = {noise:g} and ε ~ N(0, I) drawn from seed {first.seed}."
            if noise
            else "the exact gradient of f."
        )
        + f" Target: f ≤ {format_number(problem.target_loss)}."
    )
    columns, rows = surface_rows(results, configs)
    page.table(columns, rows, numeric=[c != "optimizer" for c in columns], highlight=[0])
    add_surface_figure(out, problem, results, title=f"{spec}: trajectories", colors=colors)
    add_loss_figure(
        out,
        {label: c for label, r in results.items() if (c := adapt.eval_curves([r])) is not None},
        out.name(spec, "loss"),
        title=f"{spec}: f along the way",
        caption="f (without noise) at the start and every "
        f"{problem.steps_per_epoch} steps; the lower panel shows the learning rate. Buttons switch the "
        "x axis between steps, gradient evaluations (L-BFGS evaluates several per step) and seconds.",
        colors=colors,
        target=float(problem.target_loss),
    )
    page.section("Settings")
    page.key_values(
        {
            "problem": spec,
            "optimizers": {label: describe_config(c.cls.__name__, c.hyper) for label, c in configs.items()},
            "seed": first.seed,
            "versions": _versions(),
        }
    )
    out.write("surface.html")
    return out.written


# --- optimlab schedule ------------------------------------------------------------------------------


_METRIC = "loss after each epoch"


def write_schedule_page(
    curves: Mapping[str, Sequence[float]],
    out_dir: str | Path,
    *,
    lr: float,
    steps: int,
    plateau: Mapping[str, tuple[Sequence[float], Sequence[float], str]] | None = None,
) -> list[Path]:
    """``out_dir/schedule.html``: the learning rate over ``steps`` scheduler steps for every schedule
    (``spec -> lr per step``) overlaid in one figure, and for each ``plateau`` spec a figure of its lr with
    the metric that drove it (``spec -> (lr per epoch, metric per epoch, where the metric came from)``).
    Returns the files written, the page last."""
    if not curves:
        raise ValueError("no schedules to draw")
    plateau = dict(plateau or {})
    page = Page(
        "learning-rate schedules",
        subtitle=f"{len(curves)} schedule{'s' if len(curves) != 1 else ''} from lr {lr:g} over {steps} "
        "steps, built on torch.optim.lr_scheduler",
    )
    out = Output(page, out_dir)
    colors = color_map(list(curves))
    page.section("Schedules")
    page.text(
        f"The learning rate in force at each of {steps} scheduler steps, starting from lr {lr:g}: every "
        "schedule is torch's own scheduler (torch.optim.lr_scheduler) stepping an optimizer, once per x "
        "unit. Schedules that step per epoch in training (step, multistep, exponential, cosine, plateau, "
        "lambda) and those that step per batch (onecycle, warmup, warmup-cosine) are drawn on the same "
        "axis, one step each."
        + (
            " ReduceLROnPlateau (plateau) needs a metric: its lr comes from a real training run, whose "
            "loss after each epoch drove the scheduler (figures below)."
            if plateau
            else ""
        )
    )
    title = "learning rate per step" + (" (plateau: driven by a real run's loss)" if plateau else "")
    out.figure(
        figures.schedule_figure(curves, title=title, colors=colors, x_title="step"),
        out.name("schedule"),
        caption="One line per schedule; the lr holds until the next scheduler step. Buttons switch the lr "
        "axis between linear and log (which shows fast decays such as exponential).",
        png=lambda path: png.schedule_png(curves, path, title=title, colors=colors, x_title="step"),
    )
    for spec, (lrs, metric, source) in plateau.items():
        one = {spec: lrs}
        ptitle = f"{spec}: driven by the loss of a real run"
        out.figure(
            figures.schedule_figure(
                one, title=ptitle, colors=colors, x_title="epoch", metric=(_METRIC, metric)
            ),
            out.name("schedule", spec),
            caption=f"{source}. ReduceLROnPlateau reads the loss after each epoch (dotted, right axis) and "
            "cuts the lr when it has not improved for `patience` epochs.",
            png=lambda path, one=one, t=ptitle, m=metric: png.schedule_png(
                one, path, title=t, colors=colors, x_title="epoch", metric=(_METRIC, m)
            ),
        )
    page.section("Settings")
    page.key_values({"initial lr": lr, "steps": steps, "versions": _versions()})
    out.write("schedule.html")
    return out.written


# --- optimlab lr-find -------------------------------------------------------------------------------


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
        f"{problem.spec}: learning-rate range test",
        subtitle=f"{', '.join(summaries)} · lr from {min_lr:g} to {max_lr:g} over {steps} steps · "
        f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}",
    )
    out = Output(page, out_dir)
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
    title = f"{problem.spec}: LR range test"
    out.figure(
        figures.lr_find_figure(summaries, title=title, colors=colors),
        out.name("lr-find", problem.spec),
        caption="Smoothed loss against learning rate (log axis) with the suggested learning rates.",
        png=lambda path: png.lr_find_png(summaries, path, title=title, colors=colors),
    )
    page.section("Settings")
    page.key_values(
        {
            "problem": f"{problem.spec} — {problem.description}",
            "optimizers": {label: describe_config(c.cls.__name__, c.hyper) for label, c in configs.items()},
            "ramp": f"{min_lr:g} → {max_lr:g}, {steps} steps (one batch each)",
            "seeds": ", ".join(map(str, seeds)),
            "stopped early": {label: f"{stopped.get(label, 0)} of {len(seeds)} seeds" for label in summaries},
            "versions": _versions(),
        }
    )
    out.write("lr_find.html")
    return out.written
