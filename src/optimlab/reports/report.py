"""``report.html`` of a stored comparison: one self-contained page with interactive figures, and every
figure's PNG twin under ``figures/``.

Entry point: :func:`write_report`. It reads a :class:`~optimlab.lab.results.ComparisonData` (loaded
from storage) and its summary (:func:`optimlab.lab.results.summarize`, the numbers of
``summary.json``, so the page, the JSON and the command line never disagree); it trains nothing.

The page states the protocol (one-shot, lr grid or Optuna; budgets, search spaces, seeds, schedule,
regularization, optimizer configurations, versions) and then, per problem, the ranked table, the loss
curves (median and IQR band across seeds; x in steps, gradient evaluations or seconds; log toggle; the
lr beside the loss), the training loss per step, the lr sensitivity (lr grid or Optuna trials) and, for
2-D problems, the contour with every optimizer's trajectory and a play/slider animation; across
problems, the performance profile and its scores.
"""

from __future__ import annotations

import datetime as _dt
import math
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import plotly

from optimlab.lab.results import (
    PROFILE_COSTS,
    ComparisonData,
    ProblemData,
    summarize,
    summary_profile,
)
from optimlab.lab.run import RunResult
from optimlab.lab.stats import Profile
from optimlab.reports import adapt, figures, png
from optimlab.reports.data import Curves, color_map
from optimlab.reports.output import Output
from optimlab.reports.page import Page, format_number, format_spread

__all__ = [
    "add_loss_figure",
    "add_surface_figure",
    "cell",
    "describe_config",
    "ranked_table_rows",
    "software_versions",
    "write_report",
]

_PROTOCOL_NAMES = {"one-shot": "one-shot", "lr-grid": "learning-rate grid", "optuna": "Optuna tuning"}
_DIVERGENCE = (
    "a NaN or ±Inf loss, or a loss above 10⁴ × max(|initial loss|, 1), ends the run; its final loss "
    "counts as ∞ (worse than any number) in every statistic"
)


def cell(value: float | int | None, digits: int = 4) -> str:
    """A summary number as text: ``None`` (JSON's stand-in for +∞) as "∞"."""
    return format_number(math.inf if value is None else value, digits)


def _value(value: Any) -> str:
    if isinstance(value, list | tuple):
        return "(" + ", ".join(_value(v) for v in value) + ")"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def describe_config(cls: str, hyper: Mapping[str, Any]) -> str:
    """``Adam(betas=(0.9, 0.99), lr=0.01)``: the class and its explicit hyperparameters (sorted)."""
    return f"{cls}(" + ", ".join(f"{k}={_value(hyper[k])}" for k in sorted(hyper)) + ")"


def software_versions(*, optuna: bool = False) -> dict[str, str]:
    """Versions of the software that wrote the page."""
    import matplotlib
    import torch

    import optimlab

    versions = {
        "optimlab": optimlab.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "plotly": plotly.__version__,
        "matplotlib": matplotlib.__version__,
    }
    if optuna:
        try:
            import optuna as _optuna

            versions["optuna"] = _optuna.__version__
        except ImportError:  # pragma: no cover - optuna is in the lab extra
            pass
    return versions


def _budget_text(problem: ProblemData) -> str:
    budget = problem.budget
    spe = problem.steps_per_epoch
    if "epochs" in budget:
        what = f"{budget['epochs']} epochs = {problem.total_steps} steps ({spe} per epoch)"
    else:
        what = f"{problem.total_steps} steps"
    return f"{what}, evaluated every {spe} step{'s' if spe > 1 else ''} and at the start"


def _seeds_text(problem: ProblemData) -> str:
    if problem.deterministic:
        return "1 run (deterministic: every seed gives the same numbers)"
    seeds = problem.seeds
    if len(seeds) == 1:
        return f"1 seed ({seeds[0]})"
    shown = f"{seeds[0]}…{seeds[-1]}" if len(seeds) > 3 else ", ".join(map(str, seeds))
    return f"{len(seeds)} seeds ({shown})"


def _protocol_sentence(data: ComparisonData) -> str:
    s = data.settings
    seeds = s.get("seeds")
    if s.get("protocol") == "optuna":
        return (
            f"Each optimizer was tuned separately on each problem with {s.get('trials')} Optuna trials "
            "(TPE sampler, seeded; no pruning) over its search space below, every trial a full run on the "
            "tuning seed 10000 (seed 0 on deterministic problems); the best configuration (lowest final "
            f"loss) was then run on the {seeds} evaluation seeds 0…{int(seeds) - 1}, and those runs are "
            "what the tables and curves show."
        )
    if s.get("protocol") == "lr-grid":
        n = s.get("lr_grid")
        return (
            f"Each optimizer's learning rate was tuned on each problem over a grid of {n} values "
            "lr·10^linspace(−1.5, 1.5, N) around its own lr (below), every value on every seed; the best lr "
            "has the lowest median final loss (ties: the lower upper quartile, then the smaller lr). The "
            "tables and curves show the runs at the best lr; the sensitivity figures show every lr."
        )
    return (
        f"Every optimizer ran once per seed (seeds 0…{int(seeds) - 1}) with the hyperparameters below, "
        "without any tuning."
    )


def _protocol(out: Output, data: ComparisonData, summary: Mapping[str, Any]) -> None:
    page = out.page
    s = data.settings
    page.section("Protocol")
    if data.one_shot:
        seed_defaults = s.get("defaults") == "seed"
        page.callout(
            "Every optimizer ran once per seed at fixed settings"
            + (
                " (the seed experiment's: lr 0.01 for all, RMSprop α 0.9, Adam-family betas (0.9, 0.99), "
                "L-BFGS max_iter 10)"
                if seed_defaults
                else " (torch.optim's defaults)"
            )
            + ". It shows how these particular settings do, not which optimizer is better: an optimizer "
            "whose default learning rate suits a problem poorly loses here whatever its merits. For a fair "
            "comparison give every optimizer the same tuning budget: an lr grid as below, or "
            "--tune optuna --budget 20 in place of --lr-grid 7.",
            title="This is a one-shot comparison.",
            code=summary.get("tuned_command") or "",
        )
    page.text(_protocol_sentence(data))
    protocol = _PROTOCOL_NAMES.get(str(s.get("protocol")), str(s.get("protocol")))
    if s.get("protocol") == "lr-grid":
        protocol += f", {s.get('lr_grid')} learning rates per optimizer"
    elif s.get("protocol") == "optuna":
        protocol += f", {s.get('trials')} trials per optimizer and problem"
    budgets = {p.spec: _budget_text(p) for p in data.problems}
    seeds = {p.spec: _seeds_text(p) for p in data.problems}
    regularization = s.get("regularization") or {}
    page.key_values(
        {
            "protocol": protocol,
            "defaults": "the seed experiment's hyperparameters"
            if s.get("defaults") == "seed"
            else "torch.optim's default hyperparameters",
            "budget": budgets,
            "seeds": seeds,
            "schedule": s.get("schedule") or "constant learning rate",
            "regularization": (
                ", ".join(f"{k} {v:g}" for k, v in regularization.items()) if regularization else "none"
            ),
            "final loss": "the full training objective, evaluated after the last step",
            "target": "each problem's target loss; steps to target = the first evaluation at or below it",
            "divergence": _DIVERGENCE,
            "versions": " · ".join(
                f"{k} {v}" for k, v in software_versions(optuna=s.get("protocol") == "optuna").items()
            ),
            "written on": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            "database": f"{data.db_path} (comparison {data.id})",
        },
        caption="How the numbers below were produced",
    )
    page.table(*_configuration_table(data), caption="Optimizer configurations (as given, before tuning)")


def _search_space(data: ComparisonData, label: str, preset: str) -> str:
    s = data.settings
    if s.get("protocol") == "lr-grid":
        for problem in data.problems:
            for o in problem.optimizers:
                if o.label == label and o.grid:
                    return "lr ∈ {" + ", ".join(f"{lr:.3g}" for lr, _ in o.grid) + "}"
        return "–"
    if s.get("protocol") == "optuna":
        from optimlab.lab.presets import PRESETS

        space = PRESETS[preset].search_space if preset in PRESETS else {}
        return "; ".join(
            f"{name} ∈ [{dim.low:g}, {dim.high:g}]" + (" (log)" if dim.log else "")
            for name, dim in space.items()
        )
    return "–"


def _configuration_table(data: ComparisonData) -> tuple[list[str], list[list[str]]]:
    tuned = data.settings.get("protocol") in ("lr-grid", "optuna")
    columns = ["optimizer", "preset", "configuration"] + (["tuned over"] if tuned else [])
    rows = []
    for o in data.settings.get("optimizers", []):
        row = [o["label"], o.get("preset", ""), describe_config(o.get("class", "?"), o.get("hyper", {}))]
        if tuned:
            row.append(_search_space(data, o["label"], o.get("preset", "")))
        rows.append(row)
    return columns, rows


def _ranked_rows(
    info: Mapping[str, Any], *, compact: bool = False
) -> tuple[list[str], list[list[object]], list[bool]]:
    """Columns, rows and which columns are numeric of a problem's ranked table. ``compact`` (for a
    terminal) leaves out the confidence interval, the counts of runs that reached the target and the
    problem's extra metrics, and splits the median from its spread."""
    opts = info["optimizers"]
    ranking = info["ranking"]
    show_evals = any(opts[k]["evals_to_target"] != opts[k]["steps_to_target"] for k in ranking)
    metric_names = [] if compact else sorted({m for k in ranking for m in opts[k]["metrics"]})
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
        if compact:
            row["lr"] = cell(o["best_lr"], 3)
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
            row["lr"] = cell(o["best_lr"], 3)
        row["diverged"] = f"{o['diverged_runs']}/{o['runs']}"
        reached = "" if o["target_reached"] in (0, o["runs"]) else f" ({o['target_reached']}/{o['runs']})"
        row["steps→target" if compact else f"steps to {target}"] = cell(o["steps_to_target"]) + reached
        if show_evals:
            row["evals→target" if compact else f"grad evals to {target}"] = cell(o["evals_to_target"])
        row["s/run" if compact else "s / run"] = cell(o["wall_s"], 3 if not compact else 2)
        for m in metric_names:
            value = o["metrics"].get(m)
            row[m.replace("_", " ")] = "–" if value is None else cell(value, 4)
        rows.append(row)
    columns = list(rows[0]) if rows else ["#", "optimizer"]
    numeric = [c != "optimizer" for c in columns]
    return columns, [[r[c] for c in columns] for r in rows], numeric


def _problem_section(
    out: Output,
    data: ComparisonData,
    problem: ProblemData,
    info: Mapping[str, Any],
    colors: Mapping[str, str],
) -> None:
    page = out.page
    spec = problem.spec
    page.section(spec)
    target = format_number(problem.target_loss, 4)
    description = problem.description.rstrip()
    if description and description[-1] not in ".?!":
        description += "."
    page.text(
        f"{description} Target loss {target}. Budget: {_budget_text(problem)}. "
        f"{_seeds_text(problem).capitalize()} per configuration."
    )
    columns, rows, numeric = _ranked_rows(info)
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
    obj = _problem_object(problem)
    surface = obj is not None and adapt.is_surface(obj)
    _loss_figures(out, problem, colors, per_step=not surface and problem.steps_per_epoch > 1)
    _sensitivity_figure(out, problem, colors)
    if surface:
        _surface_figure(out, problem, obj, colors)


def add_loss_figure(
    out: Output,
    curves: Mapping[str, Curves],
    name: str,
    *,
    title: str,
    caption: str,
    colors: Mapping[str, str],
    target: float | None = None,
) -> None:
    """Add a loss figure (median and IQR band per optimizer, the lr beside it) and its PNG."""
    if not curves:
        return
    out.figure(
        figures.loss_figure(curves, title=title, colors=colors, target=target),
        name,
        caption=caption,
        png=lambda path: png.loss_png(curves, path, title=title, colors=colors, target=target),
    )


def _curves(problem: ProblemData, make: Any) -> dict[str, Curves]:
    """``label -> make(runs)`` for the optimizers that have something to draw."""
    return {o.label: c for o in problem.optimizers if (c := make(o.runs)) is not None}


def _loss_figures(out: Output, problem: ProblemData, colors: Mapping[str, str], *, per_step: bool) -> None:
    """The evaluated loss; with ``per_step``, also the training loss of every step (not for surfaces,
    whose per-step loss is the evaluated curve, only denser)."""
    spec = problem.spec
    add_loss_figure(
        out,
        _curves(problem, adapt.eval_curves),
        out.name(spec, "loss"),
        title=f"{spec}: loss at each evaluation",
        caption="The full training objective at the start and after every epoch: the median across "
        "seeds (line) and the inter-quartile band; the lower panel shows the learning rate in force. "
        "Buttons switch the x axis between steps, gradient evaluations and seconds, and the loss "
        "axis between log and linear; a legend entry says how many seeds diverged.",
        colors=colors,
        target=problem.target_loss,
    )
    if per_step:
        add_loss_figure(
            out,
            _curves(problem, adapt.step_curves),
            out.name(spec, "train-loss"),
            title=f"{spec}: training loss per step",
            caption="The mini-batch loss each step saw (before its update) and the learning rate it used: "
            "median across seeds and inter-quartile band.",
            colors=colors,
        )


def _sensitivity_figure(out: Output, problem: ProblemData, colors: Mapping[str, str]) -> None:
    """Final loss against lr: every lr of the grid (with seeds as spread), or every Optuna trial."""
    spec = problem.spec
    grid = {o.label: adapt.grid_sensitivity(o.grid, o.best_lr) for o in problem.optimizers if o.grid}
    trials = {o.label: adapt.trial_sensitivity(o.trials, o.best_lr) for o in problem.optimizers if o.trials}
    if any(v is not None for v in grid.values()):
        data, lines, title = grid, True, f"{spec}: final loss against learning rate"
        caption = (
            "Every lr of the grid: each dot is one seed's final loss, the line the median, the band the "
            "inter-quartile range; ★ marks the lr the protocol chose, ✕ an lr where seeds diverged."
        )
    else:
        data, lines, title = trials, False, f"{spec}: Optuna trials, final loss against learning rate"
        caption = (
            "Every Optuna trial (one run on the tuning seed; the other tuned hyperparameters vary too, so "
            "the points are not a curve); ★ marks the chosen configuration's lr, ✕ a diverged trial."
        )
    shown = {label: v for label, v in data.items() if v is not None}
    if not shown:
        return
    out.figure(
        figures.lr_sensitivity_figure(shown, title=title, colors=colors, lines=lines),
        out.name(spec, "lr-sensitivity"),
        caption=caption,
        png=lambda path: png.lr_sensitivity_png(shown, path, title=title, colors=colors, lines=lines),
    )


def _problem_object(problem: ProblemData) -> Any:
    from optimlab.lab.problems import get_problem

    try:
        return get_problem(problem.spec)
    except ValueError:  # a user problem that cannot be imported here: no contour, the rest still works
        return None


def add_surface_figure(
    out: Output, problem: Any, runs: Mapping[str, RunResult | None], *, title: str, colors: Mapping[str, str]
) -> None:
    """Add the contour of the 2-D ``problem`` with each run's trajectory and its animation, the PNG of
    the finished paths and (when the output asks for it) the animated GIF."""
    paths = adapt.trajectories(runs)
    if not paths:
        return
    surface = adapt.problem_surface(problem)
    start = tuple(problem.start)
    out.figure(
        figures.surface_figure(surface, paths, title=title, colors=colors, start=start),
        out.name(problem.spec, "surface"),
        caption="Filled contours of f (log-spaced levels when f spans decades), ★ the known minima, ○ the "
        "start; each line is one optimizer's path. ▶ plays the runs step by step, the slider scrubs "
        "through them; points outside the window are cut off.",
        png=lambda path: png.surface_png(surface, paths, path, title=title, colors=colors, start=start),
        gif=lambda path: png.surface_gif(surface, paths, path, title=title, colors=colors, start=start),
    )


def _surface_figure(out: Output, problem: ProblemData, obj: Any, colors: Mapping[str, str]) -> None:
    first = {o.label: (o.runs[0] if o.runs else None) for o in problem.optimizers}
    seed = next(iter(r.seed for r in first.values() if r is not None), 0)
    add_surface_figure(out, obj, first, title=f"{problem.spec}: trajectories (seed {seed})", colors=colors)


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
    for cost, profile in profiles.items():
        if cost == "grad_evals" and not differs:
            continue
        what = "steps to target" if cost == "steps" else "gradient evaluations to target"
        title = f"performance profile: {what}"
        out.figure(
            figures.performance_profile_figure(profile, title=title, colors=colors, cost=what),
            out.name("performance-profile", cost),
            caption="Higher and further left is better; the legend gives each optimizer's score.",
            png=lambda path, p=profile, t=title, w=what: png.performance_profile_png(
                p, path, title=t, colors=colors, cost=w
            ),
        )


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
) -> Path:
    """Write ``out_dir/report.html`` for ``data`` and each figure's PNG under ``out_dir/figures/``
    (``static=False``: no PNGs); ``gif`` also writes the surface animations as GIFs there. ``summary``
    defaults to :func:`optimlab.lab.results.summarize` of ``data``. Returns the page's path."""
    summary = summary or summarize(data)
    colors = color_map(_labels(data))
    n_opt = len(data.settings.get("optimizers", []))
    protocol = _PROTOCOL_NAMES.get(str(data.settings.get("protocol")), str(data.settings.get("protocol")))
    page = Page(
        "optimlab comparison",
        subtitle=f"{len(data.problems)} problem{'s' if len(data.problems) != 1 else ''} × {n_opt} "
        f"optimizer{'s' if n_opt != 1 else ''} · {protocol} · "
        f"{', '.join(p.spec for p in data.problems)}",
    )
    out = Output(page, out_dir, static=static, gif=gif)
    _protocol(out, data, summary)
    for problem in data.problems:
        _problem_section(out, data, problem, summary["problems"][problem.spec], colors)
    _across_problems(out, summary, colors)
    return out.write("report.html")


def ranked_table_rows(
    summary: Mapping[str, Any], spec: str, *, compact: bool = False
) -> tuple[list[str], list[list[object]]]:
    """The ranked table of problem ``spec`` as the report shows it (columns, rows of text and numbers);
    ``compact``: the narrower version for a terminal, with the same numbers."""
    columns, rows, _ = _ranked_rows(summary["problems"][spec], compact=compact)
    return columns, rows
