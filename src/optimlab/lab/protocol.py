"""The comparison protocols: one-shot, learning-rate grid, and Optuna tuning with equal budgets.

Every optimizer gets the same treatment (Choi et al., 2019; Schmidt et al., 2021):

* ``one-shot`` — the configuration as given (library or seed defaults), on every seed;
* ``lr-grid N`` — N log-spaced learning rates around the configuration's own,
  lr·10^linspace(−1.5, 1.5, N), each on every seed (the whole grid is kept, so the sensitivity to
  the learning rate has a spread); the best lr is the one with the lowest median final loss;
* ``optuna K`` — K Optuna trials (TPE, seeded, no pruning) over the preset's declared search space
  (:attr:`optimlab.lab.presets.Preset.search_space`), each a full run on the tuning seed
  :data:`TUNING_SEED`; the best configuration is then re-run on every evaluation seed.

With a **baseline** (``--baseline``), every optimizer — the baseline included — is tuned with the
same budget, and each horizon of ``horizons`` (fractions of the budget, default 1) is a comparison of
its own: every configuration trained to that horizon, its schedule decayed to it
(:attr:`Comparison.run_schedule`: warm-up + cosine unless a schedule is given, which is then
rescaled), tuned and evaluated there. :mod:`optimlab.lab.speedup` turns the runs into speed-ups over
the baseline; :mod:`optimlab.lab.results` into the verdict table.

A problem whose runs do not depend on the seed (a noiseless surface from a fixed start) is run on
one seed only: more seeds would repeat identical numbers.

:func:`run_comparison` executes a :class:`Comparison` against a :class:`~optimlab.lab.storage.Store`:
it trains only the runs the store does not hold — the first-order runs of each problem together
as batched replicas (:func:`optimlab.lab.runner.train_batch`), L-BFGS alone, and in worker
processes too when ``jobs > 1`` — commits each run as soon as its batch finishes, and records
the comparison's plan so that :func:`optimlab.lab.results.load_comparison` can rebuild every
table without training.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from optimlab.lab.contours import contour_entry
from optimlab.lab.executor import Executor, LocalExecutor, cut_units, unit_cost
from optimlab.lab.plansize import check_disk, check_plan_size, plan_size
from optimlab.lab.presets import (
    PRESETS,
    SEED_OPTIMIZERS,
    OptimizerConfig,
    SearchDim,
    config_spec,
    optimizers_from_config,
    parse_optimizers,
)
from optimlab.lab.problems import Budget, Problem, get_problem
from optimlab.lab.replicas import DEFAULT_MEMORY_BUDGET
from optimlab.lab.run import Regularization, RunResult, RunSpec, canonical_json
from optimlab.lab.schedules import ScheduleSpec, parse_schedule
from optimlab.lab.settings import SETTINGS, Replicas, Tune
from optimlab.lab.stats import median, quantile
from optimlab.lab.storage import StorageError, Store

#: warnings (a damaged stored run, trained again) go to the "optimlab.lab" logger: one line each on
#: stderr unless the application routes them elsewhere
_log = logging.getLogger("optimlab.lab")

#: the seed of Optuna's tuning runs, kept apart from the evaluation seeds 0..S−1
TUNING_SEED = 10_000
#: the lr grid spans lr·10^±LR_GRID_DECADES
LR_GRID_DECADES = 1.5
#: the schedule of a comparison against a baseline when none is given: a linear warm-up over 10 % of
#: the run, then a cosine decay to 0 at the run's last step (whatever its horizon)
BASELINE_SCHEDULE = "warmup-cosine"


@dataclass
class Comparison:
    """What ``optimlab compare`` runs: problems × optimizers under one protocol (the defaults are
    :data:`optimlab.lab.settings.SETTINGS`'; :func:`comparison_from` builds one from settings)."""

    problems: list[Problem]
    optimizers: list[OptimizerConfig]
    seeds: int = SETTINGS["seeds"].default
    lr_grid: int | None = SETTINGS["lr_grid"].default
    tune: Tune = SETTINGS["tune"].default
    trials: int = SETTINGS["budget"].default
    budget: Budget | None = None
    schedule: ScheduleSpec | None = None
    regularization: Regularization | None = None
    defaults: str = SETTINGS["defaults"].default
    #: the label of the baseline optimizer (one of ``optimizers``), or None: no baseline
    baseline: str | None = None
    #: the horizons (fractions of the budget, ascending) trained separately against the baseline
    horizons: tuple[float, ...] | None = None
    #: the fraction of the budget this comparison's runs train for (:meth:`at_horizon` sets it)
    horizon: float = 1.0

    def __post_init__(self) -> None:
        if not self.problems:
            raise ValueError("a comparison needs at least one problem")
        if not self.optimizers:
            raise ValueError("a comparison needs at least one optimizer")
        if self.seeds < 1:
            raise ValueError(f"seeds must be ≥ 1, got {self.seeds}")
        if self.lr_grid is not None and self.lr_grid < 1:
            raise ValueError(f"lr-grid must be ≥ 1, got {self.lr_grid}")
        if self.tune not in ("none", "optuna"):
            raise ValueError(f"tune must be 'none' or 'optuna', got {self.tune!r}")
        if self.tune == "optuna" and self.lr_grid is not None:
            raise ValueError("choose either --lr-grid or --tune optuna, not both")
        if self.tune == "optuna" and self.trials < 1:
            raise ValueError(f"the Optuna budget must be ≥ 1 trial, got {self.trials}")
        specs = [p.spec for p in self.problems]
        if len(set(specs)) != len(specs):
            raise ValueError("a problem is listed twice")
        if self.baseline is not None and self.baseline not in [c.label for c in self.optimizers]:
            raise ValueError(f"the baseline {self.baseline!r} is not one of the comparison's optimizers")
        if self.horizons is not None:
            if self.baseline is None:
                raise ValueError("horizons need a baseline to compare against")
            if not self.horizons or any(not 0 < h <= 1 for h in self.horizons):
                raise ValueError(f"horizons must be fractions in (0, 1], got {self.horizons!r}")
            self.horizons = tuple(sorted(set(float(h) for h in self.horizons)))
        if not 0 < self.horizon <= 1:
            raise ValueError(f"a horizon must be in (0, 1], got {self.horizon!r}")
        check_plan_size(self)  # before anything else looks at every run or epoch
        self.check_schedule()

    def check_schedule(self) -> None:
        """Raise ``ValueError`` if the schedule cannot run the whole budget of every problem (a
        warm-up as long as the run, a ``lambda`` negative at some epoch): before any training."""
        for stage in self.stages():
            stage._check_own_schedule()

    def _check_own_schedule(self) -> None:
        for problem in self.problems:
            schedule = self.schedule_for(problem)
            if schedule is None:
                continue
            budget = self.budget_for(problem)
            spe = problem.steps_per_epoch
            try:
                schedule.check_for(budget.epochs_needed(spe), spe, budget.total_steps(spe))
            except ValueError as error:
                at = f", horizon {self.horizon:g}" if self.horizon != 1 else ""
                raise ValueError(f"{error} (problem {problem.spec}{at})") from None

    @property
    def protocol(self) -> str:
        if self.tune == "optuna":
            return "optuna"
        return "lr-grid" if self.lr_grid else "one-shot"

    def budget_for(self, problem: Problem) -> Budget:
        """The budget of this comparison's runs on ``problem``: the given one (or the problem's
        own), cut to :attr:`horizon` — ``round(horizon × steps)`` steps, at least 1 — below 1."""
        budget = self.budget or problem.default_budget
        if self.horizon == 1:
            return budget
        return Budget(steps=max(1, round(self.horizon * budget.total_steps(problem.steps_per_epoch))))

    @property
    def run_schedule(self) -> ScheduleSpec | None:
        """The schedule the runs use: the given one — or, against a baseline, :data:`BASELINE_SCHEDULE`
        — rescaled to :attr:`horizon` (:meth:`~optimlab.lab.schedules.ScheduleSpec.rescaled`)."""
        schedule = self.schedule
        if schedule is None and self.baseline is not None:
            schedule = _baseline_schedule()
        return schedule.rescaled(self.horizon) if schedule is not None else None

    def schedule_for(self, problem: Problem) -> ScheduleSpec | None:
        """The schedule of this comparison's runs on ``problem``: :attr:`run_schedule`, which —
        against a baseline — ends at the run's last step even when that falls within an epoch
        (:meth:`~optimlab.lab.schedules.ScheduleSpec.spanning`: a horizon's cut of the budget)."""
        schedule = self.run_schedule
        if schedule is None or self.baseline is None:
            return schedule
        budget = self.budget_for(problem)
        spe = problem.steps_per_epoch
        return schedule.spanning(budget.total_steps(spe), budget.epochs_needed(spe), spe)

    def at_horizon(self, horizon: float) -> Comparison:
        """This comparison with its runs trained to ``horizon`` (a fraction of the budget)."""
        return dataclasses.replace(self, horizons=None, horizon=horizon)

    def stages(self) -> list[Comparison]:
        """The comparisons run one after another: one per horizon (shortest first), or this one."""
        if not self.horizons:
            return [self]
        return [self.at_horizon(h) for h in self.horizons]

    def seeds_for(self, problem: Problem) -> list[int]:
        return [0] if getattr(problem, "deterministic", False) else list(range(self.seeds))

    def settings(self) -> dict[str, Any]:
        """The comparison's settings as plain data (its id is their hash)."""
        settings: dict[str, Any] = {
            "protocol": self.protocol,
            "problems": [p.spec for p in self.problems],
            "optimizers": [{"label": c.label, "preset": c.preset, **c.canonical()} for c in self.optimizers],
            "seeds": self.seeds,
            "lr_grid": self.lr_grid,
            "tune": self.tune,
            "trials": self.trials if self.tune == "optuna" else None,
            "budget": self.budget.as_dict() if self.budget else None,
            "schedule": self.schedule.text if self.schedule else None,
            "regularization": self.regularization.canonical() if self.regularization else {},
            "defaults": self.defaults,
        }
        if self.baseline is not None:  # only then: the ids of comparisons without one stay as they were
            settings["baseline"] = self.baseline
            settings["horizons"] = list(self.horizons or (self.horizon,))
        return settings

    @property
    def id(self) -> str:
        return hashlib.sha256(canonical_json(self.settings()).encode()).hexdigest()[:16]


@functools.cache
def _baseline_schedule() -> ScheduleSpec | None:
    """:data:`BASELINE_SCHEDULE`, parsed once (a comparison asks for it for every run)."""
    return parse_schedule(BASELINE_SCHEDULE)


def lr_grid(lr: float, n: int, decades: float = LR_GRID_DECADES) -> list[float]:
    """``n`` log-spaced learning rates lr·10^linspace(−decades, decades, n) (4 significant digits);
    ``n = 1`` gives ``[lr]``."""
    if n == 1:
        return [lr]
    return [float(f"{lr * 10**e:.4g}") for e in np.linspace(-decades, decades, n)]


def comparison_from(values: Mapping[str, Any]) -> Comparison:
    """The :class:`Comparison` of resolved settings (:func:`optimlab.lab.settings.resolve`)."""
    profile = values["defaults"]
    problems = [get_problem(spec) for spec in values["problems"]]
    if values["optimizers"] is None:
        configs = parse_optimizers(",".join(SEED_OPTIMIZERS), profile)
    elif isinstance(values["optimizers"], str):
        configs = parse_optimizers(values["optimizers"], profile)
    else:
        configs = optimizers_from_config(values["optimizers"], profile)
    budget = None
    if values["epochs"] is not None:
        budget = Budget(epochs=values["epochs"])
    elif values["steps"] is not None:
        budget = Budget(steps=values["steps"])
    regularization = Regularization(
        weight_decay=values["weight_decay"], l1=values["l1"] or 0.0, clip_norm=values["clip_norm"]
    )
    baseline = None
    schedule = parse_schedule(values["schedule"])
    if values.get("baseline") is not None:
        configs, baseline = with_baseline(configs, values["baseline"], profile)
        if schedule is None and values["schedule"] is not None:  # asked for: no decay, even so
            schedule = ScheduleSpec("constant")
    return Comparison(
        problems=problems,
        optimizers=configs,
        seeds=values["seeds"],
        lr_grid=values["lr_grid"],
        tune=values["tune"],
        trials=values["budget"],
        budget=budget,
        schedule=schedule,
        regularization=regularization if regularization.active else None,
        defaults=profile,
        baseline=baseline,
        horizons=values.get("horizons"),
    )


def with_baseline(
    configs: Sequence[OptimizerConfig], baseline: str, defaults: str = "seed"
) -> tuple[list[OptimizerConfig], str]:
    """``configs`` with the baseline ``baseline`` among them, and its label: a label of ``configs``
    names that one; otherwise ``baseline`` is an optimizer spec (``adamw``, ``adam:lr=0.001``),
    added first unless an optimizer of the same label and configuration is listed. One clear
    ``ValueError`` for an unknown optimizer."""
    labels = [c.label for c in configs]
    if baseline.strip() in labels:
        return list(configs), baseline.strip()
    try:
        parsed = parse_optimizers(baseline, defaults)
    except ValueError as error:
        raise ValueError(f"--baseline {baseline!r}: {error}") from None
    if len(parsed) != 1:
        raise ValueError(f"--baseline {baseline!r} must name one optimizer, not {len(parsed)}")
    config = parsed[0]
    for listed in configs:
        if listed.label == config.label:
            if listed.canonical() != config.canonical():
                raise ValueError(
                    f"--baseline {baseline!r} differs from the optimizer {listed.label!r} of the list; "
                    f"give its label alone (--baseline {listed.label})"
                )
            return list(configs), listed.label
    return [config, *configs], config.label


# --- obtaining runs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunEvent:
    """What :func:`run_comparison` tells its ``progress`` callback.

    ``kind``: ``"planned"`` (once, before training: ``cost`` is the expected cost of every run to
    train, in the units of :func:`optimlab.lab.executor.unit_cost`), ``"done"`` (``run`` was trained
    and stored; ``cost`` is its share of its unit's cost) or ``"reused"`` (``run`` was found in the
    store; ``cost`` 0)."""

    kind: Literal["planned", "done", "reused"]
    run: RunSpec | None = None
    result: RunResult | None = None
    cost: float = 0.0


ProgressFn = Callable[[RunEvent], None]


def _noop(event: RunEvent) -> None:
    return None


class _Runs:
    """The runs of one comparison: reused from the store, or trained by the executor and stored as
    soon as each unit finishes (one transaction per run)."""

    def __init__(
        self,
        store: Store,
        problems: Mapping[str, Problem],
        executor: Executor,
        replicas: Replicas,
        progress: ProgressFn,
    ) -> None:
        self.store, self.problems, self.executor = store, problems, executor
        self.replicas, self.progress = replicas, progress
        self.trained = 0
        self.reused = 0
        self._usable: set[str] = set()  # keys read and found usable
        self._damaged: dict[str, str] = {}  # keys found damaged (to train again) → what is wrong
        self._outdated: set[str] = set()  # keys stored by an older record version (to train again)

    def spec(self, problem: Problem, config: OptimizerConfig, seed: int, comparison: Comparison) -> RunSpec:
        return RunSpec.of(
            problem,
            config,
            seed,
            comparison.budget_for(problem),
            comparison.schedule_for(problem),
            comparison.regularization,
        )

    def stored(self, runs: Sequence[RunSpec]) -> set[str]:
        """The keys of ``runs`` stored with a usable row. A damaged row (truncated JSON, ``{}``,
        ``null``, values of the wrong kind) is named in one warning line and counts as missing: it
        is trained again and its row replaced; so is a run recorded by an older version
        (:data:`~optimlab.lab.run.RECORD_VERSION`: evaluated once an epoch), one line saying how
        many. Each row is read once per comparison."""
        unknown = list({run.key for run in runs} - self._usable - set(self._damaged) - self._outdated)
        if unknown:
            usable, damaged, outdated = self.store.check(unknown)
            self._usable |= usable
            for run in runs:
                if run.key in damaged and run.key not in self._damaged:
                    self._damaged[run.key] = damaged[run.key]
                    _log.warning(
                        "warning: the stored run of %s · %s · seed %d (key %s) in %s is damaged (%s); %s",
                        run.problem,
                        run.config.label,
                        run.seed,
                        run.key[:12],
                        self.store.path,
                        damaged[run.key],
                        "it must be trained again" if self.store.read_only else "training it again",
                    )
            if outdated:
                many = len(outdated) != 1
                if self.store.read_only:  # cannot be replaced: the same training, coarser curves
                    self._usable |= outdated
                    then = "reused as recorded: the database is read-only"
                else:
                    self._outdated |= outdated
                    then = f"training {'them' if many else 'it'} again (the same training, finer curves)"
                _log.warning(
                    "note: %d stored run%s in %s %s recorded when runs were evaluated once an epoch; %s",
                    len(outdated),
                    "s" if many else "",
                    self.store.path,
                    "were" if many else "was",
                    then,
                )
        return {run.key for run in runs if run.key in self._usable}

    def obtain(self, runs: Sequence[RunSpec]) -> None:
        """Make sure every run is stored (training the missing, the damaged and the outdated ones)."""
        stored = self.stored(runs)
        missing: list[RunSpec] = []
        seen: set[str] = set()
        for run in runs:
            if run.key in stored or run.key in seen:
                if run.key in stored:
                    self.reused += 1
                    self.progress(RunEvent("reused", run))
                continue
            seen.add(run.key)
            missing.append(run)
        if not missing:
            return
        if self.store.read_only:  # say so before training anything
            raise StorageError(
                f"this comparison needs {len(missing)} run(s) not stored in {str(self.store.path)!r}, "
                f"which cannot be written: {self.store.read_only_reason}; use a writable --db (a "
                "read-only database gives a report when every run is stored)"
            )
        for unit, results in self.executor.train(cut_units(missing, self.problems, self.replicas)):
            share = unit_cost(unit, self.problems[unit[0].problem]) / len(unit)
            for run, result in zip(unit, results, strict=True):
                self.store.put(
                    run.key,
                    run.identity(),
                    run.config.preset,
                    result,
                    replace=run.key in self._damaged or run.key in self._outdated,
                )
                self._usable.add(run.key)
                self._damaged.pop(run.key, None)
                self._outdated.discard(run.key)
                self.trained += 1
                self.progress(RunEvent("done", run, result, share))

    def expected_cost(self, runs: Sequence[RunSpec], rounds: int = 1) -> float:
        """The cost of training those of ``runs`` not stored yet, ``rounds`` times over."""
        stored = self.stored(runs)
        missing = list({run.key: run for run in runs if run.key not in stored}.values())
        units = cut_units(missing, self.problems, self.replicas)
        return rounds * sum(unit_cost(unit, self.problems[unit[0].problem]) for unit in units)


#: the tuned configuration and trials of each (horizon, problem spec, label)
Tuned = Mapping[tuple[float, str, str], tuple[OptimizerConfig, list[dict[str, Any]]]]


def _final_runs(comparison: Comparison, runs: _Runs, tuned: Tuned) -> list[RunSpec]:
    """Every configuration (the tuned one, with Optuna) on every seed, at every horizon."""
    return [
        runs.spec(problem, chosen, seed, stage)
        for stage in comparison.stages()
        for problem in stage.problems
        for config in stage.optimizers
        for chosen in [tuned[stage.horizon, problem.spec, config.label][0] if tuned else config]
        for seed in stage.seeds_for(problem)
    ]


def _final_loss(store: Store, keys: Sequence[str]) -> list[float]:
    return [run.result.final_loss for run in store.runs(list(keys))]


def run_comparison(
    comparison: Comparison,
    store: Store,
    *,
    jobs: int = 1,
    progress: ProgressFn = _noop,
    replicas: Replicas = "auto",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    executor: Executor | None = None,
) -> str:
    """Run ``comparison``, storing every run in ``store``; returns the comparison's id.

    Runs already stored are reused, so an interrupted comparison resumes where it stopped.
    ``progress`` gets a :class:`RunEvent` for the expected cost before training (a progress bar's
    total), every run trained and stored, and every run found stored; :func:`planned_runs` counts
    the runs. Training is the ``executor``'s (:mod:`optimlab.lab.executor`; by default a
    :class:`~optimlab.lab.executor.LocalExecutor` of ``jobs`` processes: this one and ``jobs − 1``
    workers); storing is this function's.

    Every run the protocol needs is known before training — all of them for one-shot and the lr
    grid, one trial per optimizer at a time for Optuna (each optimizer's study is its own, so
    asking all of them before telling any changes nothing) — so the runs of all optimizers are
    trained together: ``replicas="auto"`` batches the first-order runs of each problem as
    replicas (chunks within ``memory_budget`` bytes; each result equals the sequential run up to
    float rounding) and trains L-BFGS alone; ``"off"`` trains every run alone. A run's key does
    not depend on how it was trained.
    """
    if replicas not in ("auto", "off"):
        raise ValueError(f"replicas must be 'auto' or 'off', got {replicas!r}")
    check_plan_size(comparison)  # the comparison may have changed since it was made
    comparison.check_schedule()
    problems = {p.spec: p for p in comparison.problems}
    executor = executor if executor is not None else LocalExecutor(problems, jobs, memory_budget)
    runs = _Runs(store, problems, executor, replicas, progress)
    plan: dict[str, Any] = {"problems": []}
    stages = comparison.stages()
    grid = [
        runs.spec(problem, config.with_hyper(lr=lr), seed, stage)
        for stage in stages
        for problem in stage.problems
        for config in comparison.optimizers
        for lr in (lr_grid(config.lr, comparison.lr_grid) if comparison.lr_grid else ())
        for seed in comparison.seeds_for(problem)
    ]
    _check_disk(comparison, store, grid, runs)
    try:
        tuned: Tuned = {}
        if comparison.tune == "optuna":
            # the trials' hyperparameters are not known yet: a round of the given ones stands in
            expected = runs.expected_cost(_final_runs(comparison, runs, {}), comparison.trials + 1)
            progress(RunEvent("planned", cost=expected))
            tuned = _tune_optuna(stages, runs)
        elif comparison.lr_grid:
            progress(RunEvent("planned", cost=runs.expected_cost(grid)))
            runs.obtain(grid)
        if not comparison.lr_grid:
            # one-shot: every run; Optuna: the chosen configurations on every seed (the lr grid's
            # chosen runs are part of the grid, already stored)
            final = _final_runs(comparison, runs, tuned)
            if not tuned:
                progress(RunEvent("planned", cost=runs.expected_cost(final)))
            runs.obtain(final)
        horizons = []
        for stage in stages:
            entries = []
            for problem in stage.problems:
                entry = _problem_entry(problem, stage)
                for config in stage.optimizers:
                    entry["optimizers"].append(_optimizer_entry(problem, config, stage, runs, tuned))
                entries.append(entry)
            horizons.append({"horizon": stage.horizon, "problems": entries})
        # the report's tables and figures: the longest horizon; the verdict table reads every one
        plan["problems"] = horizons[-1]["problems"]
        if comparison.baseline is not None:
            plan["baseline"] = comparison.baseline
            plan["horizons"] = horizons
    finally:
        executor.close(cancel=True)
    store.save_comparison(comparison.id, comparison.settings(), plan)
    return comparison.id


def planned_runs(comparison: Comparison) -> int:
    """How many runs ``comparison`` needs (stored or not): for progress bars
    (:func:`optimlab.lab.plansize.plan_size` gives their steps and stored bytes too)."""
    return plan_size(comparison).runs


def _check_disk(comparison: Comparison, store: Store, grid: Sequence[RunSpec], runs: _Runs) -> None:
    """Refuse, before planning, what the disk holding the database cannot take: the estimated
    bytes of the runs not stored yet against its free space (the stored runs of a one-shot or lr
    grid comparison are counted; an Optuna study's trials are not known before it runs)."""
    size = plan_size(comparison)
    free = store.free_bytes()
    if store.read_only or free is None or size.bytes <= free:
        return
    known = (
        [] if comparison.tune == "optuna" else (list(grid) or _final_runs(comparison, runs, {}))
    )  # all horizons
    stored = len(store.existing(run.key for run in known)) if known else 0
    check_disk(size, stored / max(size.runs, 1), free, str(store.path))


def _problem_entry(problem: Problem, comparison: Comparison) -> dict[str, Any]:
    budget = comparison.budget_for(problem)
    schedule = comparison.schedule_for(problem)
    return {
        "horizon": comparison.horizon,
        "schedule": schedule.text if schedule is not None else None,
        "spec": problem.spec,
        "name": problem.name,
        "description": problem.description,
        "target_loss": float(problem.target_loss),
        "budget": budget.as_dict(),
        "total_steps": budget.total_steps(problem.steps_per_epoch),
        "steps_per_epoch": problem.steps_per_epoch,
        "deterministic": bool(getattr(problem, "deterministic", False)),
        "seeds": comparison.seeds_for(problem),
        "contour": contour_entry(problem),  # what a report draws a 2-D problem's contour from
        "optimizers": [],
    }


def _optimizer_entry(
    problem: Problem,
    config: OptimizerConfig,
    comparison: Comparison,
    runs: _Runs,
    tuned: Tuned,
) -> dict[str, Any]:
    """The plan's entry of one optimizer on one problem (its runs are stored by now)."""
    seeds = comparison.seeds_for(problem)
    # spec: the configuration as given, written so that `-o SPEC --defaults D` gives it again (a
    # config file's label is no spec); the tuned command of a report is made of these
    entry: dict[str, Any] = {
        "label": config.label,
        "preset": config.preset,
        "spec": config_spec(config, comparison.defaults),
    }
    if comparison.tune == "optuna":
        config, entry["trials"] = tuned[comparison.horizon, problem.spec, config.label]
    elif comparison.lr_grid:
        grid = []
        for lr in lr_grid(config.lr, comparison.lr_grid):
            candidate = config.with_hyper(lr=lr)
            keys = [runs.spec(problem, candidate, seed, comparison).key for seed in seeds]
            losses = _final_loss(runs.store, keys)
            grid.append({"lr": lr, "keys": keys, "median": median(losses), "q75": quantile(losses, 0.75)})
        # the lowest median final loss; ties broken by the upper quartile, then the smaller lr
        chosen = min(grid, key=lambda g: (g["median"], g["q75"], g["lr"]))
        entry["grid"] = [{"lr": g["lr"], "keys": g["keys"]} for g in grid]
        config = config.with_hyper(lr=chosen["lr"])
    entry["hyper"] = config.canonical()["hyper"]
    entry["class"] = config.cls.__name__
    entry["best_lr"] = config.lr
    entry["keys"] = [runs.spec(problem, config, seed, comparison).key for seed in seeds]
    return entry


def _suggest(trial: Any, name: str, dim: SearchDim) -> float:
    return float(trial.suggest_float(name, dim.low, dim.high, log=dim.log))


class _Study:
    """The Optuna study of one optimizer on one problem: TPE seeded by (problem, label), no pruning."""

    def __init__(self, optuna: Any, stage: Comparison, problem: Problem, config: OptimizerConfig) -> None:
        self.stage, self.problem, self.config = stage, problem, config
        self.space = PRESETS[config.preset].search_space
        name = f"{problem.spec}|{config.label}" + (f"|{stage.horizon!r}" if stage.horizon != 1 else "")
        sampler_seed = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16)
        self.study = optuna.create_study(
            direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=sampler_seed),
            pruner=optuna.pruners.NopPruner(),
        )
        self.trials: list[dict[str, Any]] = []
        self.candidates: dict[int, OptimizerConfig] = {}

    def ask(self) -> tuple[Any, dict[str, float], OptimizerConfig]:
        trial = self.study.ask()
        params = {name: _suggest(trial, name, dim) for name, dim in self.space.items()}
        changes = {k: v for k, v in params.items() if k not in ("beta1", "beta2")}
        if "beta1" in params or "beta2" in params:
            betas = tuple(self.config.hyper.get("betas", (0.9, 0.999)))
            changes["betas"] = (params.get("beta1", betas[0]), params.get("beta2", betas[1]))
        changes = {k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in changes.items()}
        if "betas" in changes:
            changes["betas"] = tuple(float(f"{b:.6g}") for b in changes["betas"])
        return trial, params, self.config.with_hyper(**changes)

    def tell(
        self, trial: Any, params: dict[str, float], candidate: OptimizerConfig, run: RunSpec, value: float
    ) -> None:
        finite = math.isfinite(value)
        self.study.tell(trial, value if finite else float("inf"))
        number = len(self.trials)
        self.candidates[number] = candidate
        self.trials.append(
            {
                "number": number,
                "params": params,
                "hyper": candidate.canonical()["hyper"],
                "key": run.key,
                "value": value if finite else None,
            }
        )

    def best(self) -> OptimizerConfig:
        finite = [t for t in self.trials if t["value"] is not None]
        return self.candidates[min(finite, key=lambda t: t["value"])["number"] if finite else 0]


def _tune_optuna(stages: Sequence[Comparison], runs: _Runs) -> Tuned:
    """K trials of TPE over each preset's search space on the tuning seed, for every horizon (each
    of ``stages``), problem and optimizer; returns the best configuration and the trials of each
    (horizon, problem spec, label).

    Trial k of every study is asked, then all of them are trained together (batched), then told:
    the studies are independent, so this gives the trials one study after another would."""
    try:
        import optuna
    except ImportError as error:  # pragma: no cover - optuna is in the lab extra
        raise ValueError("--tune optuna needs Optuna (pip install 'optimlab[lab]')") from error
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = [
        _Study(optuna, stage, problem, config)
        for stage in stages
        for problem in stage.problems
        for config in stage.optimizers
    ]
    for _ in range(stages[0].trials):
        asked = []
        for study in studies:
            trial, params, candidate = study.ask()
            problem = study.problem
            tuning_seed = 0 if getattr(problem, "deterministic", False) else TUNING_SEED
            asked.append(
                (study, trial, params, candidate, runs.spec(problem, candidate, tuning_seed, study.stage))
            )
        runs.obtain([run for *_, run in asked])
        for study, trial, params, candidate, run in asked:
            stored = runs.store.get(run.key)
            study.tell(trial, params, candidate, run, stored.result.final_loss if stored else math.inf)
    return {(s.stage.horizon, s.problem.spec, s.config.label): (s.best(), s.trials) for s in studies}
