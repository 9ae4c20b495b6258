"""Train one run step by step: a problem, an optimizer configuration, a seed and a budget → a
:class:`~optimlab.lab.run.RunResult` (what a run records is described in :mod:`optimlab.lab.run`).

:func:`train` is a plain function of its arguments (no global state besides torch's own RNG, which
it does not use): the model comes from ``problem.build_model(seed)``, the data order from
``problem.batches(seed, epoch)``, so a run is reproducible anywhere and can be replaced by a
batched (vmapped) path behind the same signature (:func:`train_batch`).

Regularization: ``weight_decay`` is the optimizer's own argument (coupled L2, decoupled for
AdamW), ``l1`` the optimizer's proximal ``l1`` option (exact zeros), ``clip_norm`` clips the
gradient's global norm with ``torch.nn.utils.clip_grad_norm_`` before each step. L-BFGS has no
proximal step: for it ``l1`` and ``weight_decay`` are added to the objective (λ₁‖θ‖₁ and ½λ₂‖θ‖²),
and ``clip_norm`` does not apply (its line search and curvature pairs need the true gradient;
clipped gradients make it diverge).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from optimlab.lab.loop import StepsCallback, run_steps
from optimlab.lab.presets import OptimizerConfig
from optimlab.lab.problems import Budget, Problem
from optimlab.lab.replicas import DEFAULT_MEMORY_BUDGET, ReplicaRun, batchable, spec_for, train_replicas
from optimlab.lab.run import (
    EXPLOSION_FACTOR,
    Regularization,
    RunResult,
    RunSpec,
    apply_regularization,
    make_result,
)
from optimlab.lab.schedules import ScheduleSpec

__all__ = [
    "EXPLOSION_FACTOR",
    "Regularization",
    "RunResult",
    "RunSpec",
    "apply_regularization",
    "make_result",
    "result_from_replica",
    "train",
    "train_batch",
]


def _penalty(model: nn.Module, regularization: Regularization | None) -> Callable[[], Tensor] | None:
    if regularization is None or (regularization.l1 == 0 and not regularization.weight_decay):
        return None
    params = [p for p in model.parameters() if p.requires_grad]
    l1, l2 = regularization.l1, regularization.weight_decay or 0.0

    def penalty() -> Tensor:
        total = torch.zeros(())
        for p in params:
            if l1:
                total = total + l1 * p.abs().sum()
            if l2:
                total = total + 0.5 * l2 * p.pow(2).sum()
        return total

    return penalty


def train(
    problem: Problem,
    optimizer: OptimizerConfig,
    seed: int,
    budget: Budget | None = None,
    schedule: ScheduleSpec | None = None,
    regularization: Regularization | None = None,
    *,
    explosion_factor: float = EXPLOSION_FACTOR,
    on_steps: StepsCallback | None = None,
) -> RunResult:
    """Train ``problem`` with ``optimizer`` from seed ``seed`` for ``budget`` (default: the
    problem's own) and return what was recorded. Never raises for a diverging run.

    ``on_steps(n)``, when given, is told of the steps trained as they are — at every evaluation,
    the steps since its last call — so that its calls add up to the run's steps."""
    budget = budget or problem.default_budget
    steps_per_epoch = problem.steps_per_epoch
    epochs = budget.epochs_needed(steps_per_epoch)
    config = apply_regularization(optimizer, regularization)
    model = problem.build_model(seed)
    opt = config.build([p for p in model.parameters() if p.requires_grad])
    scheduler = schedule.build(opt, epochs=epochs, steps_per_epoch=steps_per_epoch) if schedule else None
    record = run_steps(
        problem,
        model,
        opt,
        seed,
        total_steps=budget.total_steps(steps_per_epoch),
        epochs=epochs,
        evaluate=problem.evaluate,
        explosion_factor=explosion_factor,
        scheduler=scheduler,
        per_step=scheduler is not None and schedule is not None and schedule.interval == "step",
        clip_norm=regularization.clip_norm if regularization else None,
        penalty=_penalty(model, regularization) if config.is_lbfgs else None,
        trajectory_point=getattr(problem, "trajectory_point", None),
        on_steps=on_steps,
    )
    return make_result(problem, optimizer, seed, record)


# --- many runs of one problem at once ----------------------------------------------------------


def train_batch(
    problem: Problem,
    runs: Sequence[RunSpec],
    *,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    explosion_factor: float = EXPLOSION_FACTOR,
    on_steps: StepsCallback | None = None,
) -> list[RunResult]:
    """Train several runs of ``problem`` (all with the same budget) and return their results in
    order; each equals :func:`train` of the same run up to float rounding.

    The first-order runs (two or more, on a model that allows it) train together as batched
    replicas (:func:`optimlab.lab.replicas.train_replicas`, in chunks within ``memory_budget``
    bytes); the others — L-BFGS, models with buffers or dropout — one after another with
    :func:`train`. A batched run's ``wall_s`` (and its evaluations' ``wall_s``) is the batch's wall
    time divided by its number of runs, and its ``extra`` holds ``{"batched": True}``.

    ``on_steps(n)``, when given, is told of the run-steps trained as they are: a batched step of R
    runs still training counts R, so its calls add up to the steps of all the runs.
    """
    if len({run.budget for run in runs}) > 1:
        raise ValueError("the runs of one batch must have the same budget")
    together = [i for i, run in enumerate(runs) if batchable(run.config)]
    if len(together) < 2 or not batchable(problem):
        together = []
    results: list[RunResult | None] = [None] * len(runs)
    if together:
        batched = _train_replicas(
            problem, [runs[i] for i in together], memory_budget, explosion_factor, on_steps
        )
        for i, result in zip(together, batched, strict=True):
            results[i] = result
    for i, run in enumerate(runs):
        if results[i] is None:
            results[i] = train(
                problem,
                run.config,
                run.seed,
                run.budget,
                run.schedule,
                run.regularization,
                explosion_factor=explosion_factor,
                on_steps=on_steps,
            )
    return results  # type: ignore[return-value]


def _train_replicas(
    problem: Problem,
    runs: Sequence[RunSpec],
    memory_budget: int,
    explosion_factor: float,
    on_steps: StepsCallback | None,
) -> list[RunResult]:
    specs = [spec_for(run.config, run.seed, run.schedule, run.regularization) for run in runs]
    record_point = getattr(problem, "trajectory_point", None)
    model = problem.build_model(specs[0].seed)
    wants_trajectory = record_point is not None and record_point(model) is not None
    start = time.perf_counter()
    replica_runs = train_replicas(
        problem,  # type: ignore[arg-type]
        specs,
        steps=runs[0].budget.total_steps(problem.steps_per_epoch),
        mode="auto",
        memory_budget=memory_budget,
        explosion_factor=explosion_factor,
        evaluation="full",
        trajectory=wants_trajectory,
        on_steps=on_steps,
    )
    wall = (time.perf_counter() - start) / len(specs)
    return [
        result_from_replica(problem, run.config, run.seed, replica_run, wall_s=wall, model=model)
        for run, replica_run in zip(runs, replica_runs, strict=True)
    ]


def result_from_replica(
    problem: Problem,
    optimizer: OptimizerConfig,
    seed: int,
    run: ReplicaRun,
    *,
    wall_s: float,
    model: nn.Module | None = None,
) -> RunResult:
    """The :class:`RunResult` of a run trained by :mod:`optimlab.lab.replicas` (see :func:`make_result`).

    A recorded parameter path becomes the problem's ``trajectory_point`` of each point (loaded into
    ``model``, a model of the problem, built when not given)."""
    trajectory = None
    if run.trajectory is not None:
        record_point = getattr(problem, "trajectory_point", None)
        if record_point is not None:
            holder = model if model is not None else problem.build_model(seed)
            trajectory = _trajectory_points(holder, record_point, run.trajectory)
    record = dataclasses.replace(run, wall_s=wall_s, trajectory=trajectory)
    return make_result(problem, optimizer, seed, record, extra={"batched": True} if run.batched else None)


@torch.no_grad()
def _trajectory_points(
    model: nn.Module, record_point: Callable[[nn.Module], Any], path: Sequence[Sequence[float]]
) -> list[list[float]]:
    params = list(model.parameters())
    saved = torch.nn.utils.parameters_to_vector(params).clone()
    dtype = saved.dtype
    try:
        points = []
        for flat in path:
            torch.nn.utils.vector_to_parameters(torch.tensor(flat, dtype=dtype), params)
            points.append(record_point(model))
        return points
    finally:
        torch.nn.utils.vector_to_parameters(saved, params)
