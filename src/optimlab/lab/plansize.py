"""How big a comparison is — runs, steps, stored bytes — by arithmetic, before anything is planned.

:func:`plan_size` counts what a :class:`~optimlab.lab.protocol.Comparison` needs without building a
single run: per problem, its seeds (one for a deterministic problem) × its optimizers × the learning
rates of the grid (or the Optuna trials plus the final runs), each of the problem's steps. A
``--lr-grid 100000`` is thus refused in microseconds, not after half a minute of planning.

:func:`check_plan_size` refuses what no comparison should be (more than :data:`MAX_RUNS` runs, a run
of more than :data:`MAX_STEPS_PER_RUN` steps) and :func:`check_disk` what the disk holding the
database cannot take (the estimated bytes of the runs not stored yet against its free space), each
with one line that says the numbers. The protocol calls both before it plans or trains.

The stored size of a run is estimated from what a :class:`~optimlab.lab.run.RunResult` keeps: the
loss and learning rate of every step (and the point of a 2-D surface's trajectory), its evaluations
(:class:`~optimlab.lab.run.EvaluationSchedule`), and its key, spec and headline numbers — measured on
the built-in problems, rounded up. This module imports nothing heavy; results and reports may use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

from optimlab.lab.run import EvaluationSchedule

if TYPE_CHECKING:
    from optimlab.lab.problems import Problem
    from optimlab.lab.protocol import Comparison

#: at most this many runs in one comparison (a sweep of 11 optimizers × 10 problems × a 15-point lr
#: grid × 10 seeds is 16,500)
MAX_RUNS = 50_000
#: at most this many steps in one run (a run keeps every step's loss: a million is ~50 MB)
MAX_STEPS_PER_RUN = 1_000_000
#: stored bytes per step (the loss and the lr as JSON numbers), per trajectory point, per evaluation
#: (a full one holds every metric: counted as such) and per run (key, spec, columns, index)
BYTES_PER_STEP = 48
BYTES_PER_POINT = 48
BYTES_PER_EVALUATION = 256
BYTES_PER_RUN = 1024


class PlanSize(NamedTuple):
    """What a comparison needs: ``runs`` (stored or not), ``steps`` (all runs together) and
    ``bytes`` (an estimate of their stored size)."""

    runs: int
    steps: int
    bytes: int

    def __str__(self) -> str:
        return f"{self.runs:,} runs ({self.steps:,} steps, about {human_bytes(self.bytes)})"


def human_bytes(count: float) -> str:
    """``count`` bytes in kB/MB/GB/TB (powers of 1000)."""
    for unit in ("bytes", "kB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError  # pragma: no cover


def runs_size(runs: int, steps: int, steps_per_epoch: int, trajectory: bool = False) -> PlanSize:
    """The size of ``runs`` runs of ``steps`` steps each, ``steps_per_epoch`` to an epoch (which
    says how often they are evaluated: :class:`~optimlab.lab.run.EvaluationSchedule`)."""
    evaluations = EvaluationSchedule(max(steps, 1), max(steps_per_epoch, 1)).count()
    per_run = (
        steps * (BYTES_PER_STEP + (BYTES_PER_POINT if trajectory else 0))
        + evaluations * BYTES_PER_EVALUATION
        + BYTES_PER_RUN
    )
    return PlanSize(runs, runs * steps, runs * per_run)


def total(sizes: Iterable[PlanSize]) -> PlanSize:
    """The sum of ``sizes``."""
    runs = steps = size = 0
    for part in sizes:
        runs, steps, size = runs + part.runs, steps + part.steps, size + part.bytes
    return PlanSize(runs, steps, size)


def runs_per_optimizer(comparison: Comparison, problem: Problem) -> int:
    """The runs one optimizer needs on ``problem``: its seeds, × the lr grid, or + the trials."""
    seeds = 1 if getattr(problem, "deterministic", False) else comparison.seeds
    if comparison.tune == "optuna":
        return comparison.trials + seeds
    return seeds * (comparison.lr_grid or 1)


def plan_size(comparison: Comparison) -> PlanSize:
    """``(runs, steps, bytes)`` of ``comparison`` (every run it needs, stored or not), by arithmetic
    alone: see the module docstring. A comparison of several horizons is the sum of its horizons'."""
    stages = comparison.stages()
    if len(stages) > 1 or stages[0] is not comparison:
        return total(plan_size(stage) for stage in stages)
    sizes = []
    for problem in comparison.problems:
        budget = comparison.budget_for(problem)
        sizes.append(
            runs_size(
                runs_per_optimizer(comparison, problem) * len(comparison.optimizers),
                budget.total_steps(problem.steps_per_epoch),
                problem.steps_per_epoch,
                callable(getattr(problem, "trajectory_point", None)),
            )
        )
    return total(sizes)


def check_plan_size(comparison: Comparison) -> PlanSize:
    """``plan_size(comparison)``, or one ``ValueError`` when it trains more than :data:`MAX_RUNS`
    runs or a run of more than :data:`MAX_STEPS_PER_RUN` steps."""
    for problem in comparison.problems:
        budget = comparison.budget_for(problem)
        steps = budget.total_steps(problem.steps_per_epoch)
        if steps > MAX_STEPS_PER_RUN:
            how = f" ({budget.epochs:,} epochs × {problem.steps_per_epoch:,})" if budget.epochs else ""
            raise ValueError(
                f"a run of {problem.spec} would take {steps:,} steps{how}; at most "
                f"{MAX_STEPS_PER_RUN:,} steps per run (use fewer --epochs or --steps)"
            )
    size = plan_size(comparison)
    if size.runs > MAX_RUNS:
        if comparison.tune == "optuna":
            each = f"{comparison.trials:,} trials + the seeds"
        elif comparison.lr_grid:
            each = f"{comparison.lr_grid:,} learning rates × up to {comparison.seeds:,} seeds"
        else:
            each = f"up to {comparison.seeds:,} seeds"
        stages = len(comparison.stages())
        horizons = f" × {stages} horizons" if stages > 1 else ""
        raise ValueError(
            f"this comparison would train {size.runs:,} runs ({len(comparison.problems)} problem(s) × "
            f"{len(comparison.optimizers)} optimizer(s) × {each}{horizons}); at most {MAX_RUNS:,} runs "
            "in one comparison (use fewer seeds, learning rates, trials, optimizers or problems)"
        )
    return size


def check_disk(size: PlanSize, stored_fraction: float, free: int | None, db: str) -> None:
    """Raise one ``ValueError`` when the runs of ``size`` not stored yet (``1 − stored_fraction``
    of them) would not fit in ``free`` bytes (the free space of the disk holding ``db``)."""
    if free is None:
        return
    needed = math.ceil(size.bytes * max(0.0, 1.0 - stored_fraction))
    if needed > free:
        missing = math.ceil(size.runs * max(0.0, 1.0 - stored_fraction))
        raise ValueError(
            f"this comparison would store about {human_bytes(needed)} ({missing:,} runs of "
            f"{size.steps // max(size.runs, 1):,} steps on average) in {db!r}, but its disk has "
            f"{human_bytes(free)} free (free some space, or use another --db)"
        )
