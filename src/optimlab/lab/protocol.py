"""The comparison protocols: one-shot, learning-rate grid, and Optuna tuning with equal budgets.

Every optimizer gets the same treatment (Choi et al., 2019; Schmidt et al., 2021):

* ``one-shot`` — the configuration as given (library or seed defaults), on every seed;
* ``lr-grid N`` — N log-spaced learning rates around the configuration's own,
  lr·10^linspace(−1.5, 1.5, N), each on every seed (the whole grid is kept, so the sensitivity to
  the learning rate has a spread); the best lr is the one with the lowest median final loss;
* ``optuna K`` — K Optuna trials (TPE, seeded, no pruning) over the preset's declared search space
  (:attr:`optimlab.lab.presets.Preset.search_space`), each a full run on the tuning seed
  :data:`TUNING_SEED`; the best configuration is then re-run on every evaluation seed.

A problem whose runs do not depend on the seed (a noiseless surface from a fixed start) is run on
one seed only: more seeds would repeat identical numbers.

:func:`run_comparison` executes a :class:`Comparison` against a :class:`~optimlab.lab.storage.Store`:
it trains only the runs the store does not hold (in worker processes when ``jobs > 1``), commits
each finished run at once, and records the comparison's plan so that
:func:`optimlab.lab.results.load_comparison` can rebuild every table without training.
"""

from __future__ import annotations

import concurrent.futures as futures
import hashlib
import math
import multiprocessing
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from optimlab.lab.presets import PRESETS, OptimizerConfig, SearchDim
from optimlab.lab.problems import Budget, Problem, get_problem
from optimlab.lab.runner import Regularization, RunResult, train
from optimlab.lab.schedules import ScheduleSpec
from optimlab.lab.stats import median, quantile
from optimlab.lab.storage import Store, canonical_json, run_key, run_spec

#: the seed of Optuna's tuning runs, kept apart from the evaluation seeds 0..S−1
TUNING_SEED = 10_000
#: the lr grid spans lr·10^±LR_GRID_DECADES
LR_GRID_DECADES = 1.5

Tune = Literal["none", "optuna"]


@dataclass
class Comparison:
    """What ``optimlab compare`` runs: problems × optimizers under one protocol."""

    problems: list[Problem]
    optimizers: list[OptimizerConfig]
    seeds: int = 5
    lr_grid: int | None = None
    tune: Tune = "none"
    trials: int = 20
    budget: Budget | None = None
    schedule: ScheduleSpec | None = None
    regularization: Regularization | None = None
    defaults: str = "seed"

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
        for problem in self.problems:
            if self.schedule is not None:
                budget = self.budget_for(problem)
                self.schedule.check_for(
                    budget.epochs_needed(problem.steps_per_epoch), problem.steps_per_epoch
                )

    @property
    def protocol(self) -> str:
        if self.tune == "optuna":
            return "optuna"
        return "lr-grid" if self.lr_grid else "one-shot"

    def budget_for(self, problem: Problem) -> Budget:
        return self.budget or problem.default_budget

    def seeds_for(self, problem: Problem) -> list[int]:
        return [0] if getattr(problem, "deterministic", False) else list(range(self.seeds))

    def settings(self) -> dict[str, Any]:
        """The comparison's settings as plain data (its id is their hash)."""
        return {
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

    @property
    def id(self) -> str:
        return hashlib.sha256(canonical_json(self.settings()).encode()).hexdigest()[:16]


def lr_grid(lr: float, n: int, decades: float = LR_GRID_DECADES) -> list[float]:
    """``n`` log-spaced learning rates lr·10^linspace(−decades, decades, n) (4 significant digits);
    ``n = 1`` gives ``[lr]``."""
    if n == 1:
        return [lr]
    return [float(f"{lr * 10**e:.4g}") for e in np.linspace(-decades, decades, n)]


# --- execution ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Task:
    """One run to obtain: everything :func:`train` needs, plus its key."""

    problem: str
    config: OptimizerConfig
    seed: int
    budget: Budget
    schedule: ScheduleSpec | None
    regularization: Regularization | None
    key: str
    spec: dict[str, Any] = field(compare=False, hash=False)


ProgressFn = Callable[[str, "Task | None", "RunResult | None"], None]


def _noop(event: str, task: Task | None, result: RunResult | None) -> None:
    return None


_WORKER_PROBLEMS: dict[str, Problem] = {}


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _worker_train(task: Task) -> dict[str, Any]:
    problem = _WORKER_PROBLEMS.get(task.problem)
    if problem is None:
        problem = _WORKER_PROBLEMS[task.problem] = get_problem(task.problem)
    return train(problem, task.config, task.seed, task.budget, task.schedule, task.regularization).to_dict()


class Executor:
    """Trains tasks that the store does not hold and stores each result as soon as it finishes."""

    def __init__(self, store: Store, problems: dict[str, Problem], jobs: int, progress: ProgressFn) -> None:
        self.store, self.problems, self.jobs, self.progress = store, problems, max(1, jobs), progress
        self.trained = 0
        self.reused = 0
        self._pool: futures.ProcessPoolExecutor | None = None

    def task(self, problem: Problem, config: OptimizerConfig, seed: int, comparison: Comparison) -> Task:
        budget = comparison.budget_for(problem)
        spec = run_spec(problem, config, seed, budget, comparison.schedule, comparison.regularization)
        return Task(
            problem.spec,
            config,
            seed,
            budget,
            comparison.schedule,
            comparison.regularization,
            run_key(spec),
            spec,
        )

    def _store(self, task: Task, result: RunResult) -> None:
        self.store.put(task.key, task.spec, task.config.preset, result)
        self.trained += 1
        self.progress("done", task, result)

    def run(self, tasks: Sequence[Task]) -> None:
        """Make sure every task's run is stored (training the missing ones)."""
        stored = self.store.existing(t.key for t in tasks)
        missing: list[Task] = []
        seen: set[str] = set()
        for task in tasks:
            if task.key in stored or task.key in seen:
                if task.key in stored:
                    self.reused += 1
                    self.progress("reused", task, None)
                continue
            seen.add(task.key)
            missing.append(task)
        if not missing:
            return
        # the slowest runs first, so that the last worker does not finish long after the others
        missing.sort(key=lambda t: (not t.config.is_lbfgs,))
        if self.jobs == 1 or len(missing) == 1:
            for task in missing:
                self.progress("start", task, None)
                result = train(
                    self.problems[task.problem],
                    task.config,
                    task.seed,
                    task.budget,
                    task.schedule,
                    task.regularization,
                )
                self._store(task, result)
            return
        pool = self._get_pool()
        pending = {pool.submit(_worker_train, task): task for task in missing}
        try:
            for future in futures.as_completed(pending):
                task = pending[future]
                self._store(task, RunResult.from_dict(future.result()))
        except BaseException:
            for future in pending:
                future.cancel()
            raise

    def _get_pool(self) -> futures.ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = futures.ProcessPoolExecutor(self.jobs, mp_context=context, initializer=_worker_init)
        return self._pool

    def close(self, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=not cancel, cancel_futures=True)
            self._pool = None


def _final_loss(store: Store, keys: Sequence[str]) -> list[float]:
    return [run.result.final_loss for run in store.runs(list(keys))]


def run_comparison(
    comparison: Comparison, store: Store, *, jobs: int = 1, progress: ProgressFn = _noop
) -> str:
    """Run ``comparison``, storing every run in ``store``; returns the comparison's id.

    Runs already stored are reused, so an interrupted comparison resumes where it stopped.
    ``progress(event, task, result)`` is called with ``"start"`` (sequential runs only), ``"done"``
    (a run trained and stored) and ``"reused"`` (a run found in the store); :func:`planned_runs`
    gives the total for a progress bar. ``jobs > 1`` trains in that many worker processes.
    """
    problems = {p.spec: p for p in comparison.problems}
    executor = Executor(store, problems, jobs, progress)
    plan: dict[str, Any] = {"problems": []}
    try:
        for problem in comparison.problems:
            entry = _problem_entry(problem, comparison)
            for config in comparison.optimizers:
                entry["optimizers"].append(_run_optimizer(problem, config, comparison, executor))
            plan["problems"].append(entry)
    finally:
        executor.close(cancel=True)
    store.save_comparison(comparison.id, comparison.settings(), plan)
    return comparison.id


def planned_runs(comparison: Comparison) -> int:
    """How many runs ``comparison`` needs (stored or not): for progress bars."""
    total = 0
    for problem in comparison.problems:
        seeds = len(comparison.seeds_for(problem))
        per_optimizer = seeds * (comparison.lr_grid or 1)
        if comparison.tune == "optuna":
            per_optimizer = comparison.trials + seeds
        total += per_optimizer * len(comparison.optimizers)
    return total


def _problem_entry(problem: Problem, comparison: Comparison) -> dict[str, Any]:
    budget = comparison.budget_for(problem)
    return {
        "spec": problem.spec,
        "name": problem.name,
        "description": problem.description,
        "target_loss": float(problem.target_loss),
        "budget": budget.as_dict(),
        "total_steps": budget.total_steps(problem.steps_per_epoch),
        "steps_per_epoch": problem.steps_per_epoch,
        "deterministic": bool(getattr(problem, "deterministic", False)),
        "seeds": comparison.seeds_for(problem),
        "optimizers": [],
    }


def _run_optimizer(
    problem: Problem, config: OptimizerConfig, comparison: Comparison, executor: Executor
) -> dict[str, Any]:
    seeds = comparison.seeds_for(problem)
    entry: dict[str, Any] = {"label": config.label, "preset": config.preset}
    if comparison.tune == "optuna":
        best, trials = _tune_optuna(problem, config, comparison, executor)
        entry["trials"] = trials
        config = best
    elif comparison.lr_grid:
        grid = []
        for lr in lr_grid(config.lr, comparison.lr_grid):
            candidate = config.with_hyper(lr=lr)
            tasks = [executor.task(problem, candidate, seed, comparison) for seed in seeds]
            executor.run(tasks)
            losses = _final_loss(executor.store, [t.key for t in tasks])
            grid.append(
                {
                    "lr": lr,
                    "hyper": candidate.canonical()["hyper"],
                    "keys": [t.key for t in tasks],
                    "median": median(losses),
                    "q75": quantile(losses, 0.75),
                }
            )
        # the lowest median final loss; ties broken by the upper quartile, then the smaller lr
        chosen = min(grid, key=lambda g: (g["median"], g["q75"], g["lr"]))
        entry["grid"] = [{"lr": g["lr"], "keys": g["keys"]} for g in grid]
        config = config.with_hyper(lr=chosen["lr"])
    tasks = [executor.task(problem, config, seed, comparison) for seed in seeds]
    executor.run(tasks)
    entry["hyper"] = config.canonical()["hyper"]
    entry["class"] = config.cls.__name__
    entry["best_lr"] = config.lr
    entry["keys"] = [t.key for t in tasks]
    return entry


def _suggest(trial: Any, name: str, dim: SearchDim) -> float:
    return float(trial.suggest_float(name, dim.low, dim.high, log=dim.log))


def _tune_optuna(
    problem: Problem, config: OptimizerConfig, comparison: Comparison, executor: Executor
) -> tuple[OptimizerConfig, list[dict[str, Any]]]:
    """K trials of TPE over the preset's search space on the tuning seed; returns the best config."""
    try:
        import optuna
    except ImportError as error:  # pragma: no cover - optuna is in the lab extra
        raise ValueError("--tune optuna needs Optuna (pip install 'optimlab[lab]')") from error
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = PRESETS[config.preset].search_space
    sampler_seed = int(hashlib.sha256(f"{problem.spec}|{config.label}".encode()).hexdigest()[:8], 16)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=sampler_seed),
        pruner=optuna.pruners.NopPruner(),
    )
    tuning_seed = 0 if getattr(problem, "deterministic", False) else TUNING_SEED
    trials: list[dict[str, Any]] = []
    candidates: dict[int, OptimizerConfig] = {}
    for number in range(comparison.trials):
        trial = study.ask()
        params = {name: _suggest(trial, name, dim) for name, dim in space.items()}
        changes = {k: v for k, v in params.items() if k not in ("beta1", "beta2")}
        if "beta1" in params or "beta2" in params:
            betas = tuple(config.hyper.get("betas", (0.9, 0.999)))
            changes["betas"] = (params.get("beta1", betas[0]), params.get("beta2", betas[1]))
        changes = {k: float(f"{v:.6g}") if isinstance(v, float) else v for k, v in changes.items()}
        if "betas" in changes:
            changes["betas"] = tuple(float(f"{b:.6g}") for b in changes["betas"])
        candidate = config.with_hyper(**changes)
        task = executor.task(problem, candidate, tuning_seed, comparison)
        executor.run([task])
        stored = executor.store.get(task.key)
        value = stored.result.final_loss if stored else math.inf
        study.tell(trial, value if math.isfinite(value) else float("inf"))
        candidates[number] = candidate
        trials.append(
            {
                "number": number,
                "params": params,
                "hyper": candidate.canonical()["hyper"],
                "key": task.key,
                "value": value if math.isfinite(value) else None,
            }
        )
    finite = [t for t in trials if t["value"] is not None]
    best_number = min(finite, key=lambda t: t["value"])["number"] if finite else 0
    return candidates[best_number], trials


def default_jobs() -> int:
    """Worker processes for a comparison: the CPU cores available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
