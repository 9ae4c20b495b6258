"""The Protocol section of ``report.html``: how the numbers were produced (protocol, budgets, seeds,
schedule, regularization, optimizer configurations and what was tuned, versions, the database)."""

from __future__ import annotations

import datetime as _dt
import platform
from collections.abc import Mapping
from typing import Any

import numpy as np
import plotly

from optimlab.lab.results import ComparisonData, ProblemData
from optimlab.reports.html import Page

__all__ = [
    "PROTOCOL_NAMES",
    "budget_text",
    "describe_config",
    "protocol_section",
    "seeds_text",
    "software_versions",
    "versions_line",
]

PROTOCOL_NAMES = {"one-shot": "one-shot", "lr-grid": "learning-rate grid", "optuna": "Optuna tuning"}
_DIVERGENCE = (
    "a NaN or ±Inf loss, or a loss above 10⁴ × max(|initial loss|, 1), ends the run; its final loss "
    "counts as ∞ (worse than any number) in every statistic"
)


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


def versions_line() -> str:
    """The versions of :func:`software_versions` on one line."""
    return " · ".join(f"{k} {v}" for k, v in software_versions().items())


def budget_text(problem: ProblemData) -> str:
    budget = problem.budget
    spe = problem.steps_per_epoch
    if "epochs" in budget:
        what = f"{budget['epochs']} epochs = {problem.total_steps} steps ({spe} per epoch)"
    else:
        what = f"{problem.total_steps} steps"
    return f"{what}, evaluated every {spe} step{'s' if spe > 1 else ''} and at the start"


def seeds_text(problem: ProblemData) -> str:
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


def protocol_section(page: Page, data: ComparisonData, summary: Mapping[str, Any]) -> None:
    """The Protocol section: a one-shot comparison's caveat, how the runs were made, the configurations."""
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
    protocol = PROTOCOL_NAMES.get(str(s.get("protocol")), str(s.get("protocol")))
    if s.get("protocol") == "lr-grid":
        protocol += f", {s.get('lr_grid')} learning rates per optimizer"
    elif s.get("protocol") == "optuna":
        protocol += f", {s.get('trials')} trials per optimizer and problem"
    budgets = {p.spec: budget_text(p) for p in data.problems}
    seeds = {p.spec: seeds_text(p) for p in data.problems}
    regularization = s.get("regularization") or {}
    page.key_values(
        {
            "protocol": protocol,
            "defaults": "the seed experiment's hyperparameters"
            if s.get("defaults") == "seed"
            else "torch.optim's default hyperparameters",
            "budget": budgets,
            "seeds": seeds,
            "schedule": _schedule_text(data),
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


def _schedule_text(data: ComparisonData) -> str:
    s = data.settings
    if s.get("baseline") is None:
        return s.get("schedule") or "constant learning rate"
    given = s.get("schedule")
    how = f"{given}, rescaled to each horizon" if given else "warm-up + cosine, decayed to each horizon's end"
    used = sorted({p.schedule for h in data.horizons for p in h.problems if p.schedule})
    return how + (f" ({'; '.join(used)})" if used else "")


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
