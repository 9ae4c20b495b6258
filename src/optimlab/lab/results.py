"""Results of a stored comparison: load them, aggregate them, rank them — never train.

:func:`load_comparison` rebuilds a :class:`ComparisonData` from a :class:`~optimlab.lab.storage.Store`
(the comparison's settings, its problems, and for every optimizer the runs that answer it: the final
runs on the evaluation seeds, the whole lr grid, the Optuna trials). :func:`summarize` turns it into
the plain dict written as ``summary.json``; reports (:mod:`optimlab.reports`) read both.

Aggregates per problem and optimizer, over the evaluation seeds of its final configuration:

* ``final_loss``: median, q25, q75 and a 95 % bootstrap CI of the median (a diverged run counts
  as +∞, written ``null`` in JSON);
* ``diverged``: the fraction of runs that diverged (``diverged_runs`` the count);
* ``steps_to_target`` / ``evals_to_target``: the median over seeds (a miss is ∞ → ``null``),
  with ``target_reached`` the number of seeds that reached the target;
* ``wall_s``: the median wall time of a run; ``grad_evals``: the median gradient evaluations;
* ``best_lr``: the learning rate used (chosen by the lr grid or Optuna when tuned);
* ``metrics``: the median of each final evaluated metric (``val_accuracy``, ``zero_fraction``, …);
* ``rank``: 1 = best, by median final loss, then median steps to target;
* ``lr_at_grid_edge``: ``"low"``/``"high"`` when the lr grid's best learning rate is its lowest or
  highest (the best may lie beyond the grid: widen it), else ``null``.

Per problem, ``few_seeds`` is true when it was evaluated on fewer than :data:`MIN_SEEDS` seeds (and
is not deterministic): its spreads and confidence intervals then say little. For a one-shot
comparison, ``tuned_command`` is the command of the same comparison with an lr grid, and
``tuned_runs`` how many runs it trains.

Across problems, a performance profile (:func:`optimlab.lab.stats.performance_profile`) of the
steps and of the gradient evaluations to target, with AlgoPerf's score.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optimlab import __version__
from optimlab.lab.contours import Contour, from_entry
from optimlab.lab.plansize import PlanSize, runs_size, total
from optimlab.lab.run import RunResult
from optimlab.lab.spec import format_spec, format_value
from optimlab.lab.stats import Profile, bootstrap_ci, median, performance_profile, quantile, summary
from optimlab.lab.storage import StorageError, Store
from optimlab.lab.verdict import add_verdict


@dataclass
class OptimizerData:
    """One optimizer on one problem: its final configuration and runs, plus tuning evidence."""

    label: str
    preset: str
    cls: str
    hyper: dict[str, Any]
    best_lr: float
    runs: list[RunResult]
    grid: list[tuple[float, list[RunResult]]] = field(default_factory=list)
    trials: list[dict[str, Any]] = field(default_factory=list)
    #: the spec that gives this configuration again under the comparison's defaults (``adam:lr=0.05``
    #: for a config file's ``fast``); "" in plans stored before it was recorded
    spec: str = ""


@dataclass
class ProblemData:
    spec: str
    name: str
    description: str
    target_loss: float
    budget: dict[str, int]
    total_steps: int
    steps_per_epoch: int
    deterministic: bool
    seeds: list[int]
    optimizers: list[OptimizerData]
    contour: Contour | None = None  #: a 2-D problem's contour (None: another problem, or stored before)
    horizon: float = 1.0  #: the fraction of the budget its runs trained for (a comparison with a baseline)
    schedule: str | None = None  #: the schedule its runs used (recorded with a baseline), rescaled to it


@dataclass
class HorizonData:
    """The problems of one horizon of a comparison with a baseline: every run trained to
    ``horizon`` × the budget, tuned there."""

    horizon: float
    problems: list[ProblemData]


@dataclass
class ComparisonData:
    """Everything a report needs about one comparison, read from the store."""

    id: str
    settings: dict[str, Any]
    problems: list[ProblemData]
    db_path: str = ""
    #: the baseline's label (``--baseline``), or None
    baseline: str | None = None
    #: every horizon, shortest first, the last being ``problems`` (with a baseline; else empty)
    horizons: list[HorizonData] = field(default_factory=list)

    @property
    def one_shot(self) -> bool:
        return self.settings.get("protocol") == "one-shot"


def load_comparison(store: Store, comparison_id: str | None = None) -> ComparisonData:
    """The comparison ``comparison_id`` (default: the latest) with its runs loaded from ``store``.

    Raises :class:`~optimlab.lab.storage.StorageError` with one line when its plan is damaged, when
    one of its runs is damaged, or when one is missing (statistics over fewer runs than the plan
    says would be wrong numbers, silently): running the comparison again trains them anew."""
    cid, settings, plan = store.comparison(comparison_id)
    try:
        return _comparison_data(store, cid, settings, plan)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        if isinstance(error, StorageError):
            raise
        raise StorageError(
            f"comparison {cid} in {str(store.path)!r} is damaged (its plan lacks or mistypes {error}); "
            "run it again to record it anew"
        ) from None


def _runs_of(store: Store, cid: str, keys: Sequence[str]) -> list[RunResult]:
    runs = [stored.result for stored in store.runs(list(keys))]
    if len(runs) != len(keys):
        found = store.existing(keys)
        missing = [k for k in keys if k not in found]
        raise StorageError(
            f"comparison {cid} in {str(store.path)!r} misses {len(missing)} of its runs "
            f"(key {missing[0][:12]}{', …' if len(missing) > 1 else ''}); run it again to train them"
        )
    return runs


def _comparison_data(
    store: Store, cid: str, settings: dict[str, Any], plan: dict[str, Any]
) -> ComparisonData:
    problems = _problems(store, cid, plan["problems"])
    horizons = []
    for entry in plan.get("horizons", []):
        same = entry["problems"] == plan["problems"]
        horizons.append(
            HorizonData(
                float(entry["horizon"]), problems if same else _problems(store, cid, entry["problems"])
            )
        )
    baseline = plan.get("baseline")
    return ComparisonData(
        id=cid,
        settings=settings,
        problems=problems,
        db_path=str(store.path),
        baseline=None if baseline is None else str(baseline),
        horizons=horizons,
    )


def _problems(store: Store, cid: str, entries: Sequence[dict[str, Any]]) -> list[ProblemData]:
    problems = []
    for p in entries:
        optimizers = []
        for o in p["optimizers"]:
            runs = _runs_of(store, cid, o["keys"])
            grid = [(float(g["lr"]), _runs_of(store, cid, g["keys"])) for g in o.get("grid", [])]
            optimizers.append(
                OptimizerData(
                    label=o["label"],
                    preset=o["preset"],
                    cls=o.get("class", ""),
                    hyper=o.get("hyper", {}),
                    best_lr=float(o["best_lr"]),
                    runs=runs,
                    grid=grid,
                    trials=o.get("trials", []),
                    spec=str(o.get("spec", "")),
                )
            )
        problems.append(
            ProblemData(
                spec=p["spec"],
                name=p["name"],
                description=p["description"],
                target_loss=float(p["target_loss"]),
                budget=p["budget"],
                total_steps=int(p["total_steps"]),
                steps_per_epoch=int(p["steps_per_epoch"]),
                deterministic=bool(p["deterministic"]),
                seeds=list(p["seeds"]),
                optimizers=optimizers,
                contour=from_entry(p.get("contour")),
                horizon=float(p.get("horizon", 1.0)),
                schedule=p.get("schedule"),
            )
        )
    return problems


def _json_number(value: float) -> float | None:
    """+∞/NaN as ``null`` (JSON has no infinity); finite values unchanged."""
    return value if isinstance(value, int | float) and math.isfinite(value) else None


def aggregate(runs: Sequence[RunResult]) -> dict[str, Any]:
    """The statistics of one optimizer's runs on one problem (see the module docstring)."""
    finals = [r.final_loss for r in runs]
    steps = [r.steps_to_target for r in runs]
    evals = [r.evals_to_target for r in runs]
    low, high = bootstrap_ci(finals)
    metric_names = sorted({k for r in runs for k in r.final_metrics if k != "loss"})
    metrics = {
        name: _json_number(
            median([r.final_metrics.get(name, math.nan) for r in runs if not r.diverged] or [math.nan])
        )
        for name in metric_names
    }
    stats = summary(finals)
    return {
        "runs": len(runs),
        "final_loss": {
            **{k: _json_number(v) for k, v in stats.items()},
            "ci95": [_json_number(low), _json_number(high)],
        },
        "diverged": (sum(r.diverged for r in runs) / len(runs)) if runs else None,
        "diverged_runs": sum(r.diverged for r in runs),
        "divergence": sorted({r.divergence for r in runs if r.divergence}),
        "steps_to_target": _json_number(median(steps)) if runs else None,
        "evals_to_target": _json_number(median(evals)) if runs else None,
        "target_reached": sum(math.isfinite(s) for s in steps),
        "wall_s": median([r.wall_s for r in runs]) if runs else None,
        "wall_s_total": sum(r.wall_s for r in runs),
        "grad_evals": median([float(r.grad_evals) for r in runs]) if runs else None,
        "steps": median([float(r.steps) for r in runs]) if runs else None,
        "metrics": metrics,
    }


def median_curve(runs: Sequence[RunResult], metric: str = "loss") -> dict[str, list[float | None]]:
    """The median (and quartiles) over runs of an evaluated metric at each step it was evaluated
    (the loss: every evaluation; other metrics: the start and every epoch).

    Runs that stopped early (divergence) count as +∞ from then on (a NaN as +∞); a run not
    evaluated at a step it trained past (a record of an older version: evaluated per epoch only) is
    left out of that step's statistics."""
    if not runs:
        return {"steps": [], "median": [], "q25": [], "q75": []}
    points = [{int(e["step"]): float(e[metric]) for e in run.evals if metric in e} for run in runs]
    longest = max(range(len(runs)), key=lambda i: (len(points[i]), len(runs[i].evals)))
    steps = sorted(points[longest])
    columns: list[list[float]] = [[] for _ in steps]
    for run, values in zip(runs, points, strict=True):
        last = max((int(e["step"]) for e in run.evals), default=-1)
        for i, step in enumerate(steps):
            if step in values:
                columns[i].append(math.inf if math.isnan(values[step]) else values[step])
            elif step > last:
                columns[i].append(math.inf)
    return {
        "steps": steps,
        "median": [_json_number(median(c)) for c in columns],
        "q25": [_json_number(quantile(c, 0.25)) for c in columns],
        "q75": [_json_number(quantile(c, 0.75)) for c in columns],
    }


#: fewer evaluation seeds than this and a problem's spreads (IQR, 95 % CI) say little: flagged
MIN_SEEDS = 3


def lr_at_grid_edge(opt: OptimizerData) -> str | None:
    """``"low"`` or ``"high"`` when the best learning rate of an lr grid (of two or more) is its
    lowest or highest: the best may lie beyond the grid; ``None`` otherwise (or without a grid)."""
    lrs = [lr for lr, _ in opt.grid]
    if len(lrs) < 2:
        return None
    if opt.best_lr == min(lrs):
        return "low"
    if opt.best_lr == max(lrs):
        return "high"
    return None


def few_seeds(problem: ProblemData) -> bool:
    """Whether ``problem`` was evaluated on fewer than :data:`MIN_SEEDS` seeds (a deterministic
    problem's one seed is every seed: never flagged)."""
    return not problem.deterministic and len(problem.seeds) < MIN_SEEDS


def _rank_key(entry: dict[str, Any]) -> tuple[float, float, str]:
    loss = entry["final_loss"]["median"]
    steps = entry["steps_to_target"]
    return (math.inf if loss is None else loss, math.inf if steps is None else steps, entry["label"])


#: the lr grid of the suggested tuned comparison
TUNED_LR_GRID = 7


def _optimizer_specs(data: ComparisonData) -> list[str]:
    """The specs of the comparison's optimizers (each once): recorded in the plan, or, in a plan
    stored before they were, the preset with every explicit hyperparameter (the same run keys)."""
    specs: list[str] = []
    recorded = data.problems[0].optimizers if data.problems else []
    if recorded and all(o.spec for o in recorded):
        specs = [o.spec for o in recorded]
    else:
        specs = [format_spec(o["preset"], o.get("hyper", {})) for o in data.settings.get("optimizers", [])]
    return list(dict.fromkeys(specs))


def tuned_command(data: ComparisonData, out: str | None = None) -> str:
    """The command that runs this comparison tuned — an lr grid of :data:`TUNED_LR_GRID` around each
    optimizer's own lr — and otherwise the same: problems, optimizers (as specs: a config file's
    labels are not), seeds, defaults, budget, schedule, regularization, baseline and horizons,
    ``--db`` (this comparison's)
    and ``--out`` (when given), each argument quoted for a POSIX shell (:func:`shlex.quote`)."""
    settings = data.settings
    args = ["optimlab", "compare"]
    for spec in settings.get("problems", []):
        args += ["--problem", spec]
    specs = _optimizer_specs(data)
    if specs:
        args += ["--optimizers", ",".join(specs)]
    args += ["--seeds", str(settings.get("seeds", 5)), "--lr-grid", str(TUNED_LR_GRID)]
    if settings.get("defaults", "seed") != "seed":
        args += ["--defaults", str(settings["defaults"])]
    for unit, value in (settings.get("budget") or {}).items():
        args += [f"--{unit}", str(value)]
    if settings.get("schedule"):
        args += ["--schedule", str(settings["schedule"])]
    for name, option in (("weight_decay", "--weight-decay"), ("l1", "--l1"), ("clip_norm", "--clip-norm")):
        value = (settings.get("regularization") or {}).get(name)
        if value is not None:
            args += [option, format_value(value)]
    if settings.get("baseline") is not None:
        args += ["--baseline", str(settings["baseline"])]
        horizons = settings.get("horizons") or [1.0]
        if horizons != [1.0]:
            args += ["--horizons", ",".join(f"{h:g}" for h in horizons)]
    if data.db_path:
        args += ["--db", data.db_path]
    if out is not None:
        args += ["--out", str(out)]
    return shlex.join(args)


def tuned_size(data: ComparisonData) -> PlanSize:
    """How many runs (and steps) :func:`tuned_command` trains, stored or not (those of this
    comparison are part of its grid: they are reused)."""
    optimizers = len(_optimizer_specs(data))
    return total(
        runs_size(
            len(p.seeds) * TUNED_LR_GRID * optimizers,
            p.total_steps,
            p.steps_per_epoch,
            any(r.trajectory is not None for o in p.optimizers for r in o.runs),
        )
        for p in data.problems
    )


#: the costs of the performance profiles: summary key -> the optimizer entry's field
PROFILE_COSTS: dict[str, str] = {"steps": "steps_to_target", "grad_evals": "evals_to_target"}
#: τ values at which ``summary.json`` tabulates each profile (1 … τ_max)
PROFILE_POINTS = 61


def summary_profile(problems: dict[str, Any], cost: str = "steps") -> Profile | None:
    """The performance profile of ``cost`` (a key of :data:`PROFILE_COSTS`) over the ``problems``
    of a summary (``summary["problems"]``); ``None`` without problems. A target met before the
    first step costs one step."""
    field_name = PROFILE_COSTS[cost]
    costs = {
        spec: {label: entry[field_name] for label, entry in info["optimizers"].items()}
        for spec, info in problems.items()
    }
    if not costs or not any(costs.values()):
        return None
    return performance_profile(costs, floor=1.0)


def summarize(data: ComparisonData, out: str | Path | None = None) -> dict[str, Any]:
    """The plain-data summary of a comparison (what ``summary.json`` holds); ``out``, the folder it
    is written to, goes into the suggested ``tuned_command``."""
    problems: dict[str, Any] = {}
    for problem in data.problems:
        entries = []
        for opt in problem.optimizers:
            entry = {
                "label": opt.label,
                "preset": opt.preset,
                "class": opt.cls,
                "hyper": opt.hyper,
                "best_lr": opt.best_lr,
                **aggregate(opt.runs),
            }
            if opt.grid:
                entry["lr_sensitivity"] = [
                    {
                        "lr": lr,
                        **{k: _json_number(v) for k, v in summary([r.final_loss for r in runs]).items()},
                        "diverged": sum(r.diverged for r in runs) / max(len(runs), 1),
                    }
                    for lr, runs in opt.grid
                ]
            entry["lr_at_grid_edge"] = lr_at_grid_edge(opt)
            if opt.trials:
                entry["trials"] = opt.trials
            entry["curve"] = median_curve(opt.runs)
            entries.append(entry)
        entries.sort(key=_rank_key)
        for rank, entry in enumerate(entries, start=1):
            entry["rank"] = rank
        problems[problem.spec] = {
            "name": problem.name,
            "description": problem.description,
            "target_loss": problem.target_loss,
            "budget": problem.budget,
            "total_steps": problem.total_steps,
            "deterministic": problem.deterministic,
            "seeds": problem.seeds,
            "few_seeds": few_seeds(problem),
            "ranking": [e["label"] for e in entries],
            "optimizers": {e.pop("label"): e for e in entries},
        }
    profiles = {}
    for cost in PROFILE_COSTS:
        profile = summary_profile(problems, cost)
        if profile is None:
            continue
        taus = np.linspace(1.0, profile.tau_max, PROFILE_POINTS)
        rho = profile.rho(taus)
        profiles[cost] = {
            "tau_max": profile.tau_max,
            "taus": [float(t) for t in taus],
            "rho": {s: rho[j].tolist() for j, s in enumerate(profile.solvers)},
            "score": profile.scores,
            "ratios": {
                s: {p: _json_number(r) for p, r in rs.items()} for s, rs in profile.ratio_table().items()
            },
        }
    result = {
        "optimlab_version": __version__,
        "comparison": data.id,
        "protocol": data.settings.get("protocol"),
        "one_shot": data.one_shot,
        "settings": data.settings,
        "tuned_command": tuned_command(data, None if out is None else str(out)) if data.one_shot else None,
        "tuned_runs": tuned_size(data).runs if data.one_shot else None,
        "notes": {
            "null": "null stands for +∞: a diverged run's loss, or a target never reached",
            "final_loss": "the full training objective after the last step, over the evaluation seeds",
            "steps_to_target": "median over seeds of the first evaluated step with loss ≤ target_loss",
            "diverged": "fraction of runs with a NaN/Inf loss or a loss above 1e4 × max(|initial loss|, 1)",
        },
        "problems": problems,
        "performance_profile": profiles,
    }
    if data.baseline is not None:
        add_verdict(result, data)
    return result
