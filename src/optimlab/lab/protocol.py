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
it trains only the runs the store does not hold — the first-order runs of each problem together
as batched replicas (:func:`optimlab.lab.runner.train_batch`), L-BFGS alone, and in worker
processes too when ``jobs > 1`` — commits each run as soon as its batch finishes, and records
the comparison's plan so that :func:`optimlab.lab.results.load_comparison` can rebuild every
table without training.
"""

from __future__ import annotations

import collections
import concurrent.futures as futures
import hashlib
import math
import multiprocessing
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from optimlab.lab.presets import PRESETS, OptimizerConfig, SearchDim
from optimlab.lab.problems import Budget, Problem, get_problem, reporting_user_errors
from optimlab.lab.replicas import DEFAULT_MEMORY_BUDGET, batchable
from optimlab.lab.run import Regularization, RunResult
from optimlab.lab.runner import RunArgs, train, train_batch
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

#: how the lab trains the runs of one problem: ``"auto"`` batches the first-order runs as replicas
#: (:func:`optimlab.lab.runner.train_batch`), ``"off"`` trains every run alone (:func:`train`)
Replicas = Literal["auto", "off"]
#: at most this many runs in one batch: a batch is stored when it ends, so big sweeps still store
#: (and show progress) every few seconds, and several batches can share the worker processes
MAX_BATCH = 256


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

    @property
    def args(self) -> RunArgs:
        return (self.config, self.seed, self.schedule, self.regularization)


ProgressFn = Callable[[str, "Task | None", "RunResult | None"], None]


def _noop(event: str, task: Task | None, result: RunResult | None) -> None:
    return None


_WORKER_PROBLEMS: dict[str, Problem] = {}


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _train_unit(problem: Problem, tasks: Sequence[Task], memory_budget: int) -> list[RunResult]:
    """Train one unit of work: one run alone, or several runs of one problem and budget batched.
    A user's problem that raises becomes one :class:`ProblemError` (also out of a worker)."""
    with reporting_user_errors(problem):
        if len(tasks) == 1:
            task = tasks[0]
            return [train(problem, task.config, task.seed, task.budget, task.schedule, task.regularization)]
        return train_batch(problem, [t.args for t in tasks], tasks[0].budget, memory_budget=memory_budget)


def _worker_unit(tasks: list[Task], memory_budget: int) -> list[dict[str, Any]]:
    spec = tasks[0].problem
    problem = _WORKER_PROBLEMS.get(spec)
    if problem is None:
        problem = _WORKER_PROBLEMS[spec] = get_problem(spec)
    return [result.to_dict() for result in _train_unit(problem, tasks, memory_budget)]


def _unit_cost(tasks: Sequence[Task], problem: Problem) -> float:
    """A rough cost of a unit of work (for starting the longest first): steps × per-step cost,
    where an L-BFGS step costs up to max_iter evaluations and a batched step a fixed part per
    optimizer class plus a small part per run."""
    steps = tasks[0].budget.total_steps(problem.steps_per_epoch)
    if len(tasks) == 1:
        config = tasks[0].config
        return steps * (0.6 * float(config.hyper.get("max_iter", 20)) if config.is_lbfgs else 1.0)
    classes = len({t.config.cls for t in tasks})
    return steps * (0.35 * classes + 0.015 * len(tasks))


class Executor:
    """Trains the tasks that the store does not hold and stores each result as soon as its unit of
    work finishes (one transaction per run).

    The missing runs are cut into units: with ``replicas="auto"`` the first-order runs of each
    problem and budget form batches (up to :data:`MAX_BATCH` runs, trained together by
    :func:`~optimlab.lab.runner.train_batch`) and every other run (L-BFGS, models that cannot be
    batched) is a unit of its own; ``"off"`` makes every run its own unit. With ``jobs > 1``,
    ``jobs − 1`` worker processes take units from the costliest down while this process takes
    them from the cheapest up (the costliest start first, and no core waits for a process to
    start). A unit's composition never depends on ``jobs``, so the numbers do not either."""

    def __init__(
        self,
        store: Store,
        problems: dict[str, Problem],
        jobs: int,
        progress: ProgressFn,
        replicas: Replicas = "auto",
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
    ) -> None:
        if replicas not in ("auto", "off"):
            raise ValueError(f"replicas must be 'auto' or 'off', got {replicas!r}")
        if memory_budget < 1:
            raise ValueError(f"memory_budget must be ≥ 1 byte, got {memory_budget!r}")
        self.store, self.problems, self.jobs, self.progress = store, problems, max(1, jobs), progress
        self.replicas, self.memory_budget = replicas, memory_budget
        self.trained = 0
        self.reused = 0
        self._pool: futures.ProcessPoolExecutor | None = None
        self._batchable: dict[str, bool] = {}

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

    def units(self, tasks: Sequence[Task]) -> list[list[Task]]:
        """``tasks`` cut into units of work (see the class docstring), the costliest first."""
        units: list[list[Task]] = []
        groups: dict[tuple[str, Budget], list[Task]] = {}
        for task in tasks:
            if self.replicas == "auto" and batchable(task.config) and self._problem_batchable(task.problem):
                groups.setdefault((task.problem, task.budget), []).append(task)
            else:
                units.append([task])
        for group in groups.values():
            pieces = math.ceil(len(group) / MAX_BATCH)
            size, extra = divmod(len(group), pieces)
            begin = 0
            for piece in range(pieces):
                end = begin + size + (1 if piece < extra else 0)
                units.append(group[begin:end])
                begin = end
        units.sort(key=lambda unit: -_unit_cost(unit, self.problems[unit[0].problem]))
        return units

    def _problem_batchable(self, spec: str) -> bool:
        if spec not in self._batchable:
            self._batchable[spec] = batchable(self.problems[spec])
        return self._batchable[spec]

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
        units = self.units(missing)
        if self.jobs == 1 or len(units) == 1:
            for unit in units:
                self._train_here(unit)
            return
        # jobs − 1 worker processes take the units from the costliest down, each worker the next
        # one as soon as it is free (a done-callback hands it over, even while this process is
        # busy); this process trains too, from the cheapest up, until none is left
        pool = self._get_pool()
        queue = collections.deque(units)
        pending: dict[futures.Future[list[dict[str, Any]]], list[Task]] = {}
        lock = threading.Lock()

        def feed(_finished: futures.Future[Any] | None = None) -> None:
            with lock:
                if not queue:
                    return
                unit = queue.popleft()
                future = pool.submit(_worker_unit, unit, self.memory_budget)
                pending[future] = unit
            future.add_done_callback(feed)

        try:
            for _ in range(min(self.jobs - 1, len(units))):
                feed()
            while True:
                with lock:
                    unit = queue.pop() if queue else None
                if unit is None:
                    break
                self._collect(pending, lock)
                self._train_here(unit)
            while True:
                with lock:
                    waiting = list(pending)
                if not waiting:
                    break
                futures.wait(waiting, return_when=futures.FIRST_COMPLETED)
                self._collect(pending, lock)
        except BaseException:
            with lock:
                queue.clear()
                for future in pending:
                    future.cancel()
            raise

    def _train_here(self, unit: list[Task]) -> None:
        for task in unit:
            self.progress("start", task, None)
        results = _train_unit(self.problems[unit[0].problem], unit, self.memory_budget)
        for task, result in zip(unit, results, strict=True):
            self._store(task, result)

    def _collect(
        self, pending: dict[futures.Future[list[dict[str, Any]]], list[Task]], lock: threading.Lock
    ) -> None:
        """Store the results of the workers' finished units (raising a worker's error)."""
        with lock:
            finished = [(f, pending.pop(f)) for f in list(pending) if f.done()]
        for future, unit in finished:
            for task, data in zip(unit, future.result(), strict=True):
                self._store(task, RunResult.from_dict(data))

    def _get_pool(self) -> futures.ProcessPoolExecutor:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")
            self._pool = futures.ProcessPoolExecutor(
                self.jobs - 1, mp_context=context, initializer=_worker_init
            )
        return self._pool

    def close(self, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=not cancel, cancel_futures=True)
            self._pool = None


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
) -> str:
    """Run ``comparison``, storing every run in ``store``; returns the comparison's id.

    Runs already stored are reused, so an interrupted comparison resumes where it stopped.
    ``progress(event, task, result)`` is called with ``"start"`` (runs trained in this process),
    ``"done"`` (a run trained and stored) and ``"reused"`` (a run found in the store);
    :func:`planned_runs` gives the total for a progress bar. ``jobs > 1`` trains in this process
    and ``jobs − 1`` worker processes.

    Every run the protocol needs is known before training — all of them for one-shot and the lr
    grid, one trial per optimizer at a time for Optuna (each optimizer's study is its own, so
    asking all of them before telling any changes nothing) — so the runs of all optimizers are
    trained together: ``replicas="auto"`` batches the first-order runs of each problem as
    replicas (chunks within ``memory_budget`` bytes; each result equals the sequential run up to
    float rounding) and trains L-BFGS alone; ``"off"`` trains every run alone. A run's key does
    not depend on how it was trained.
    """
    problems = {p.spec: p for p in comparison.problems}
    executor = Executor(store, problems, jobs, progress, replicas, memory_budget)
    plan: dict[str, Any] = {"problems": []}
    try:
        tuned: dict[tuple[str, str], tuple[OptimizerConfig, list[dict[str, Any]]]] = {}
        if comparison.tune == "optuna":
            tuned = _tune_optuna(comparison, executor)
        elif comparison.lr_grid:
            executor.run(
                [
                    executor.task(problem, config.with_hyper(lr=lr), seed, comparison)
                    for problem in comparison.problems
                    for config in comparison.optimizers
                    for lr in lr_grid(config.lr, comparison.lr_grid)
                    for seed in comparison.seeds_for(problem)
                ]
            )
        if not comparison.lr_grid:
            # one-shot: every run; Optuna: the chosen configurations on every seed (the lr grid's
            # chosen runs are part of the grid, already stored)
            final = [
                executor.task(problem, chosen, seed, comparison)
                for problem in comparison.problems
                for config in comparison.optimizers
                for chosen in [tuned[problem.spec, config.label][0] if tuned else config]
                for seed in comparison.seeds_for(problem)
            ]
            executor.run(final)
        for problem in comparison.problems:
            entry = _problem_entry(problem, comparison)
            for config in comparison.optimizers:
                entry["optimizers"].append(_optimizer_entry(problem, config, comparison, executor, tuned))
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


def _optimizer_entry(
    problem: Problem,
    config: OptimizerConfig,
    comparison: Comparison,
    executor: Executor,
    tuned: dict[tuple[str, str], tuple[OptimizerConfig, list[dict[str, Any]]]],
) -> dict[str, Any]:
    """The plan's entry of one optimizer on one problem (its runs are stored by now)."""
    seeds = comparison.seeds_for(problem)
    entry: dict[str, Any] = {"label": config.label, "preset": config.preset}
    if comparison.tune == "optuna":
        config, entry["trials"] = tuned[problem.spec, config.label]
    elif comparison.lr_grid:
        grid = []
        for lr in lr_grid(config.lr, comparison.lr_grid):
            candidate = config.with_hyper(lr=lr)
            keys = [executor.task(problem, candidate, seed, comparison).key for seed in seeds]
            losses = _final_loss(executor.store, keys)
            grid.append({"lr": lr, "keys": keys, "median": median(losses), "q75": quantile(losses, 0.75)})
        # the lowest median final loss; ties broken by the upper quartile, then the smaller lr
        chosen = min(grid, key=lambda g: (g["median"], g["q75"], g["lr"]))
        entry["grid"] = [{"lr": g["lr"], "keys": g["keys"]} for g in grid]
        config = config.with_hyper(lr=chosen["lr"])
    entry["hyper"] = config.canonical()["hyper"]
    entry["class"] = config.cls.__name__
    entry["best_lr"] = config.lr
    entry["keys"] = [executor.task(problem, config, seed, comparison).key for seed in seeds]
    return entry


def _suggest(trial: Any, name: str, dim: SearchDim) -> float:
    return float(trial.suggest_float(name, dim.low, dim.high, log=dim.log))


class _Study:
    """The Optuna study of one optimizer on one problem: TPE seeded by (problem, label), no pruning."""

    def __init__(self, optuna: Any, problem: Problem, config: OptimizerConfig) -> None:
        self.problem, self.config = problem, config
        self.space = PRESETS[config.preset].search_space
        sampler_seed = int(hashlib.sha256(f"{problem.spec}|{config.label}".encode()).hexdigest()[:8], 16)
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
        self, trial: Any, params: dict[str, float], candidate: OptimizerConfig, task: Task, value: float
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
                "key": task.key,
                "value": value if finite else None,
            }
        )

    def best(self) -> OptimizerConfig:
        finite = [t for t in self.trials if t["value"] is not None]
        return self.candidates[min(finite, key=lambda t: t["value"])["number"] if finite else 0]


def _tune_optuna(
    comparison: Comparison, executor: Executor
) -> dict[tuple[str, str], tuple[OptimizerConfig, list[dict[str, Any]]]]:
    """K trials of TPE over each preset's search space on the tuning seed, for every problem and
    optimizer; returns the best configuration and the trials of each (problem spec, label).

    Trial k of every study is asked, then all of them are trained together (batched), then told:
    the studies are independent, so this gives the trials one study after another would."""
    try:
        import optuna
    except ImportError as error:  # pragma: no cover - optuna is in the lab extra
        raise ValueError("--tune optuna needs Optuna (pip install 'optimlab[lab]')") from error
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    studies = [
        _Study(optuna, problem, config) for problem in comparison.problems for config in comparison.optimizers
    ]
    for _ in range(comparison.trials):
        asked = []
        for study in studies:
            trial, params, candidate = study.ask()
            problem = study.problem
            tuning_seed = 0 if getattr(problem, "deterministic", False) else TUNING_SEED
            asked.append(
                (study, trial, params, candidate, executor.task(problem, candidate, tuning_seed, comparison))
            )
        executor.run([task for *_, task in asked])
        for study, trial, params, candidate, task in asked:
            stored = executor.store.get(task.key)
            study.tell(trial, params, candidate, task, stored.result.final_loss if stored else math.inf)
    return {(s.problem.spec, s.config.label): (s.best(), s.trials) for s in studies}


def default_jobs() -> int:
    """Worker processes for a comparison: the CPU cores available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
