"""Executors: units of runs in, their results out — the caller stores them.

A *unit* is one run alone, or several first-order runs of one problem and budget that train
together as batched replicas (:func:`optimlab.lab.runner.train_batch`). What a unit holds never
depends on where it trains, so neither do the numbers. :func:`cut_units` makes the units of a list
of runs; an :class:`Executor` trains them and yields each unit's results as it finishes, in any
order. :class:`LocalExecutor` trains here and in worker processes of this machine;
:class:`optimlab.lab.ray_executor.RayExecutor` on a Ray cluster, with the same two methods.
"""

from __future__ import annotations

import collections
import concurrent.futures as futures
import math
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from optimlab.lab.problems import Budget, Problem, get_problem, reporting_user_errors
from optimlab.lab.replicas import DEFAULT_MEMORY_BUDGET, batchable
from optimlab.lab.run import RunResult, RunSpec
from optimlab.lab.runner import train, train_batch
from optimlab.lab.settings import Replicas
from optimlab.lab.workers import default_jobs, start_workers, stop_workers, submit

#: at most this many runs in one batch: a batch is stored when it ends, so big sweeps still store
#: (and show progress) every few seconds, and several batches can share the worker processes — the
#: 720 runs of 9 optimizers × 8 learning rates × 10 seeds are two batches, one for each of two cores
#: (three of 240 cost 1.15× their CPU time and left one core idle a third of the time)
MAX_BATCH = 384

Unit = Sequence[RunSpec]

__all__ = [
    "MAX_BATCH",
    "Executor",
    "LocalExecutor",
    "Unit",
    "cut_units",
    "default_jobs",
    "train_unit",
    "unit_cost",
]


class Executor(Protocol):
    """Trains units of runs (see the module docstring)."""

    def train(self, units: Sequence[Unit]) -> Iterator[tuple[Unit, list[RunResult]]]:
        """Train every unit; yield ``(unit, its results in the unit's order)`` as each finishes. A
        user's problem that raises ends the iteration with one :class:`ProblemError`."""
        ...

    def close(self, cancel: bool = False) -> None:
        """Release what the executor holds (worker processes); ``cancel`` drops pending work."""
        ...


def cut_units(
    runs: Sequence[RunSpec], problems: Mapping[str, Problem], replicas: Replicas = "auto"
) -> list[list[RunSpec]]:
    """``runs`` cut into units, the costliest first: with ``replicas="auto"`` the first-order runs
    of each problem and budget form batches of up to :data:`MAX_BATCH` runs, and every other run
    (L-BFGS, models that cannot be batched) is a unit of its own; ``"off"`` makes every run one."""
    if replicas not in ("auto", "off"):
        raise ValueError(f"replicas must be 'auto' or 'off', got {replicas!r}")
    units: list[list[RunSpec]] = []
    groups: dict[tuple[str, Budget], list[RunSpec]] = {}
    model_batches: dict[str, bool] = {}
    for run in runs:
        if replicas == "auto" and batchable(run.config):
            if run.problem not in model_batches:
                with reporting_user_errors(problems[run.problem]):  # builds the user's model
                    model_batches[run.problem] = batchable(problems[run.problem])
            if model_batches[run.problem]:
                groups.setdefault((run.problem, run.budget), []).append(run)
                continue
        units.append([run])
    for group in groups.values():
        pieces = math.ceil(len(group) / MAX_BATCH)
        size, extra = divmod(len(group), pieces)
        begin = 0
        for piece in range(pieces):
            end = begin + size + (1 if piece < extra else 0)
            units.append(group[begin:end])
            begin = end
    units.sort(key=lambda unit: -unit_cost(unit, problems[unit[0].problem]))
    return units


def unit_cost(unit: Unit, problem: Problem) -> float:
    """A rough cost of a unit (for starting the longest first, and for weighting progress): steps ×
    per-step cost, where an L-BFGS step costs up to max_iter evaluations and a batched step a fixed
    part per optimizer class plus a small part per run."""
    steps = unit[0].budget.total_steps(problem.steps_per_epoch)
    if len(unit) == 1:
        config = unit[0].config
        return steps * (0.6 * float(config.hyper.get("max_iter", 20)) if config.is_lbfgs else 1.0)
    classes = len({run.config.cls for run in unit})
    return steps * (0.35 * classes + 0.015 * len(unit))


def train_unit(problem: Problem, unit: Unit, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> list[RunResult]:
    """Train one unit of ``problem``. A user's problem that raises becomes one
    :class:`~optimlab.lab.problems.ProblemError` (also out of a worker process)."""
    with reporting_user_errors(problem):
        if len(unit) == 1:
            run = unit[0]
            return [train(problem, run.config, run.seed, run.budget, run.schedule, run.regularization)]
        return train_batch(problem, unit, memory_budget=memory_budget)


_WORKER_PROBLEMS: dict[str, Problem] = {}


def _worker_unit(unit: list[RunSpec], memory_budget: int) -> list[RunResult]:
    """A unit trained in a worker process; its results go back pickled as they are (a copy by
    ``to_dict`` first, as it was, cost the worker a deep copy of every run's record)."""
    spec = unit[0].problem
    problem = _WORKER_PROBLEMS.get(spec)
    if problem is None:
        problem = _WORKER_PROBLEMS[spec] = get_problem(spec)
    return train_unit(problem, unit, memory_budget)


class LocalExecutor:
    """Trains units in this process and, with ``jobs > 1``, in ``jobs − 1`` worker processes: the
    workers take units from the costliest down, each the next as soon as it is free, while this
    process takes them from the cheapest up (the costliest start first, and no core waits for a
    process to start)."""

    def __init__(
        self,
        problems: Mapping[str, Problem],
        jobs: int = 1,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        *,
        pool: futures.ProcessPoolExecutor | None = None,
    ) -> None:
        """``pool``: ``jobs − 1`` workers started ahead (:func:`optimlab.lab.workers.start_workers`),
        which this executor then owns; by default they start at the first unit they are given."""
        if memory_budget < 1:
            raise ValueError(f"memory_budget must be ≥ 1 byte, got {memory_budget!r}")
        self.problems, self.jobs, self.memory_budget = problems, max(1, jobs), memory_budget
        self._pool: futures.ProcessPoolExecutor | None = pool

    def train(self, units: Sequence[Unit]) -> Iterator[tuple[Unit, list[RunResult]]]:
        if self.jobs == 1 or len(units) == 1:
            for unit in units:
                yield unit, train_unit(self.problems[unit[0].problem], unit, self.memory_budget)
            return
        pool = self._get_pool()
        queue = collections.deque(units)
        pending: dict[futures.Future[list[RunResult]], Unit] = {}
        lock = threading.RLock()  # a future cancelled below runs feed() at once, in this thread

        def feed(_finished: futures.Future[Any] | None = None) -> None:
            with lock:
                if not queue:
                    return
                unit = queue.popleft()
                future = self._submit(pool, unit)
                pending[future] = unit
            future.add_done_callback(feed)

        def finished() -> list[tuple[Unit, list[RunResult]]]:
            with lock:
                done = [(f, pending.pop(f)) for f in list(pending) if f.done()]
            return [(unit, future.result()) for future, unit in done]

        try:
            for _ in range(min(self.jobs - 1, len(units))):
                feed()
            while True:
                with lock:
                    unit = queue.pop() if queue else None
                if unit is None:
                    break
                yield from finished()
                yield unit, train_unit(self.problems[unit[0].problem], unit, self.memory_budget)
            while True:
                with lock:
                    waiting = list(pending)
                if not waiting:
                    break
                futures.wait(waiting, return_when=futures.FIRST_COMPLETED)
                yield from finished()
        except BaseException:
            with lock:
                queue.clear()
                for future in pending:
                    future.cancel()
            raise

    def _get_pool(self) -> futures.ProcessPoolExecutor:
        if self._pool is None:
            self._pool = start_workers(self.jobs - 1)
        return self._pool

    def _submit(self, pool: futures.ProcessPoolExecutor, unit: Unit) -> futures.Future[Any]:
        return submit(pool, _worker_unit, list(unit), self.memory_budget)

    def close(self, cancel: bool = False) -> None:
        """Shut the workers down; with ``cancel`` at once (pending units dropped, running ones
        stopped: their results would not be stored anyway)."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            if cancel:
                stop_workers(pool)
            else:
                pool.shutdown(wait=True, cancel_futures=True)
