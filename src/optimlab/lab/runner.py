"""Train one run: a problem, an optimizer configuration, a seed and a budget → a :class:`RunResult`.

:func:`train` is a plain function of its arguments (no global state besides torch's own RNG, which
it does not use): the model comes from ``problem.build_model(seed)``, the data order from
``problem.batches(seed, epoch)``, so a run is reproducible anywhere and can be replaced by a
batched (vmapped) path behind the same signature.

What a run records:

* the training loss of every step (the mini-batch loss the optimizer saw, before its update) and
  the learning rate it used;
* after every epoch (and before the first step), ``problem.evaluate(model)`` — the full objective
  ``loss`` and validation metrics — with the step count, gradient evaluations and wall time so far;
* gradient evaluations: one per step for first-order optimizers, one per closure call for L-BFGS;
* divergence as a result, never an exception: a NaN or ±Inf loss or evaluation (``"nan"``,
  ``"inf"``) or a loss above ``explosion_factor × max(|initial loss|, 1)`` (``"explosion"``) ends
  the run with ``diverged=True`` and a final loss of +∞;
* steps and gradient evaluations to the problem's target loss: the first evaluation whose ``loss``
  is at or below ``problem.target_loss`` (∞ when never reached).

Regularization: ``weight_decay`` is the optimizer's own argument (coupled L2, decoupled for
AdamW), ``l1`` the optimizer's proximal ``l1`` option (exact zeros), ``clip_norm`` clips the
gradient's global norm with ``torch.nn.utils.clip_grad_norm_`` before each step. L-BFGS has no
proximal step: for it ``l1`` and ``weight_decay`` are added to the objective (λ₁‖θ‖₁ and ½λ₂‖θ‖²),
and ``clip_norm`` does not apply (its line search and curvature pairs need the true gradient;
clipped gradients make it diverge).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import Tensor, nn

from optimlab.lab.loop import run_steps
from optimlab.lab.presets import OptimizerConfig
from optimlab.lab.problems import Budget, Problem
from optimlab.lab.replicas import (
    DEFAULT_MEMORY_BUDGET,
    ReplicaRun,
    batchable_optimizer,
    model_batchable,
    spec_for,
    train_replicas,
)
from optimlab.lab.schedules import ScheduleSpec

#: a loss above this factor × max(|initial loss|, 1) counts as an explosion
EXPLOSION_FACTOR = 1e4


@dataclass(frozen=True)
class Regularization:
    """Regularization applied on top of an optimizer configuration (all off by default)."""

    weight_decay: float | None = None  #: None keeps the configuration's own weight_decay
    l1: float = 0.0
    clip_norm: float | None = None

    def __post_init__(self) -> None:
        for name in ("weight_decay", "l1", "clip_norm"):
            value = getattr(self, name)
            if value is not None and (not math.isfinite(value) or value < 0):
                raise ValueError(f"{name} must be a finite number ≥ 0, got {value!r}")
        if self.clip_norm == 0:
            raise ValueError("clip_norm must be > 0")

    @property
    def active(self) -> bool:
        return self.weight_decay is not None or self.l1 > 0 or self.clip_norm is not None

    def canonical(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != 0.0}


def apply_regularization(config: OptimizerConfig, regularization: Regularization | None) -> OptimizerConfig:
    """``config`` with the regularization's weight decay and L1 moved into its hyperparameters
    (first-order optimizers); L-BFGS keeps its configuration (its penalty goes into the loss)."""
    if regularization is None or config.is_lbfgs:
        return config
    changes: dict[str, Any] = {}
    if regularization.weight_decay is not None:
        changes["weight_decay"] = regularization.weight_decay
    if regularization.l1 > 0:
        changes["l1"] = regularization.l1
    return config.with_hyper(**changes) if changes else config


@dataclass
class RunResult:
    """Everything one run recorded (see the module docstring). JSON-friendly via :meth:`to_dict`."""

    problem: str
    optimizer: str
    seed: int
    final_loss: float
    final_metrics: dict[str, float]
    losses: list[float]
    lrs: list[float]
    evals: list[dict[str, float]]
    grad_evals: int
    steps: int
    wall_s: float
    diverged: bool
    divergence: str | None
    target_loss: float
    steps_to_target: float
    evals_to_target: float
    trajectory: list[list[float]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def eval_curve(self, metric: str = "loss") -> tuple[list[int], list[float]]:
        """(steps, values) of an evaluated metric, one point per epoch (and the start)."""
        points = [(int(e["step"]), float(e[metric])) for e in self.evals if metric in e]
        return [p[0] for p in points], [p[1] for p in points]


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
) -> RunResult:
    """Train ``problem`` with ``optimizer`` from seed ``seed`` for ``budget`` (default: the
    problem's own) and return what was recorded. Never raises for a diverging run."""
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
    )
    return make_result(
        problem,
        optimizer,
        seed,
        losses=record.losses,
        lrs=record.lrs,
        evals=record.evals,
        grad_evals=record.grad_evals,
        steps=record.steps,
        wall_s=record.wall_s,
        divergence=record.divergence,
        trajectory=record.trajectory,
    )


def make_result(
    problem: Problem,
    optimizer: OptimizerConfig,
    seed: int,
    *,
    losses: list[float],
    lrs: list[float],
    evals: list[dict[str, float]],
    grad_evals: int,
    steps: int,
    wall_s: float,
    divergence: str | None,
    trajectory: list[list[float]] | None = None,
    extra: dict[str, Any] | None = None,
) -> RunResult:
    """The :class:`RunResult` of what a run recorded, however it was trained (:func:`train` or a
    batched replica): the final loss (+∞ when diverged) and metrics from the last evaluation, and
    steps/gradient evaluations to the target from the first evaluation at or below it."""
    target = float(problem.target_loss)
    reached = next((e for e in evals if math.isfinite(e["loss"]) and e["loss"] <= target), None)
    final_metrics = {k: v for k, v in evals[-1].items() if k not in ("epoch", "step", "grad_evals", "wall_s")}
    return RunResult(
        problem=problem.spec,
        optimizer=optimizer.label,
        seed=seed,
        final_loss=math.inf if divergence else float(final_metrics["loss"]),
        final_metrics=final_metrics,
        losses=losses,
        lrs=lrs,
        evals=evals,
        grad_evals=grad_evals,
        steps=steps,
        wall_s=wall_s,
        diverged=divergence is not None,
        divergence=divergence,
        target_loss=target,
        steps_to_target=math.inf if reached is None else float(reached["step"]),
        evals_to_target=math.inf if reached is None else float(reached["grad_evals"]),
        trajectory=trajectory,
        extra=dict(extra or {}),
    )


# --- many runs of one problem at once ----------------------------------------------------------

#: one run of :func:`train_batch`: (configuration, seed, schedule, regularization)
RunArgs = tuple[OptimizerConfig, int, "ScheduleSpec | None", "Regularization | None"]


def batchable(config: OptimizerConfig) -> bool:
    """Whether runs of ``config`` can train as batched replicas: a first-order optimizer of
    :mod:`optimlab.optim` (L-BFGS needs closures and trains alone)."""
    return batchable_optimizer(config.cls)


def problem_batchable(problem: Problem) -> bool:
    """Whether replicas of ``problem``'s model can share a vmapped pass
    (:func:`optimlab.lab.replicas.model_batchable`: no buffers, no random layers)."""
    return model_batchable(problem.build_model(0))


def train_batch(
    problem: Problem,
    runs: Sequence[RunArgs],
    budget: Budget | None = None,
    *,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    explosion_factor: float = EXPLOSION_FACTOR,
) -> list[RunResult]:
    """Train several runs of ``problem`` — ``(config, seed, schedule, regularization)`` each — and
    return their results in order; each equals :func:`train` of the same run up to float rounding.

    The first-order runs (two or more, on a model that allows it) train together as batched
    replicas (:func:`optimlab.lab.replicas.train_replicas`, in chunks within ``memory_budget``
    bytes); the others — L-BFGS, models with buffers or dropout — one after another with
    :func:`train`. A batched run's ``wall_s`` (and its evaluations' ``wall_s``) is the batch's wall
    time divided by its number of runs, and its ``extra`` holds ``{"batched": True}``.
    """
    budget = budget or problem.default_budget
    together = [i for i, run in enumerate(runs) if batchable(run[0])]
    if len(together) < 2 or not problem_batchable(problem):
        together = []
    results: list[RunResult | None] = [None] * len(runs)
    if together:
        subset = [runs[i] for i in together]
        batched = _train_replicas(problem, subset, budget, memory_budget, explosion_factor)
        for i, result in zip(together, batched, strict=True):
            results[i] = result
    for i, (config, seed, schedule, regularization) in enumerate(runs):
        if results[i] is None:
            results[i] = train(
                problem, config, seed, budget, schedule, regularization, explosion_factor=explosion_factor
            )
    return results  # type: ignore[return-value]


def _train_replicas(
    problem: Problem, runs: Sequence[RunArgs], budget: Budget, memory_budget: int, explosion_factor: float
) -> list[RunResult]:
    specs = [spec_for(config, seed, schedule, reg) for config, seed, schedule, reg in runs]
    record_point = getattr(problem, "trajectory_point", None)
    model = problem.build_model(specs[0].seed)
    wants_trajectory = record_point is not None and record_point(model) is not None
    start = time.perf_counter()
    replica_runs = train_replicas(
        problem,  # type: ignore[arg-type]
        specs,
        steps=budget.total_steps(problem.steps_per_epoch),
        mode="auto",
        memory_budget=memory_budget,
        explosion_factor=explosion_factor,
        evaluation="full",
        trajectory=wants_trajectory,
    )
    wall = (time.perf_counter() - start) / len(specs)
    return [
        result_from_replica(problem, config, seed, run, wall_s=wall, model=model)
        for (config, seed, _, _), run in zip(runs, replica_runs, strict=True)
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
    return make_result(
        problem,
        optimizer,
        seed,
        losses=run.losses,
        lrs=run.lrs,
        evals=run.evals,
        grad_evals=run.grad_evals,
        steps=run.steps,
        wall_s=wall_s,
        divergence=run.divergence,
        trajectory=trajectory,
        extra={"batched": True} if run.batched else None,
    )


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
