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
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
from torch import Tensor, nn

from optimlab.lab.presets import OptimizerConfig
from optimlab.lab.problems import Budget, Problem
from optimlab.lab.schedules import ScheduleSpec, step_scheduler

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


def _check(value: float, threshold: float) -> str | None:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf"
    if value > threshold:
        return "explosion"
    return None


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
    total_steps = budget.total_steps(steps_per_epoch)
    epochs = budget.epochs_needed(steps_per_epoch)
    config = apply_regularization(optimizer, regularization)
    model = problem.build_model(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = config.build(params)
    scheduler = schedule.build(opt, epochs=epochs, steps_per_epoch=steps_per_epoch) if schedule else None
    per_step = scheduler is not None and schedule is not None and schedule.interval == "step"
    penalty = _penalty(model, regularization) if config.is_lbfgs else None
    clip = regularization.clip_norm if regularization else None
    record_point = getattr(problem, "trajectory_point", None)
    group = opt.param_groups[0]

    losses: list[float] = []
    lrs: list[float] = []
    evals: list[dict[str, float]] = []
    trajectory: list[list[float]] | None = None
    if record_point is not None and record_point(model) is not None:
        trajectory = [record_point(model)]
    grad_evals = 0
    divergence: str | None = None
    start = time.perf_counter()

    def evaluate(step: int) -> dict[str, float]:
        metrics = problem.evaluate(model)
        evals.append(
            {
                "epoch": len(evals),
                "step": step,
                "grad_evals": grad_evals,
                "wall_s": time.perf_counter() - start,
                **metrics,
            }
        )
        return metrics

    initial = evaluate(0)
    threshold = (
        explosion_factor * max(abs(initial["loss"]), 1.0) if math.isfinite(initial["loss"]) else math.inf
    )
    divergence = _check(initial["loss"], math.inf)
    step = 0
    for epoch in range(epochs):
        if divergence:
            break
        for inputs, target in problem.batches(seed, epoch):
            if step >= total_steps:
                break
            lrs.append(float(group["lr"]))
            if config.is_lbfgs:
                count = [0]

                def closure(
                    inputs: Tensor = inputs, target: Tensor = target, count: list[int] = count
                ) -> Tensor:
                    count[0] += 1
                    opt.zero_grad(set_to_none=True)
                    loss = problem.loss(model(inputs), target)
                    if penalty is not None:
                        loss = loss + penalty()
                    loss.backward()
                    return loss.detach()

                loss = opt.step(closure)
                grad_evals += count[0]
            else:
                opt.zero_grad(set_to_none=True)
                loss = problem.loss(model(inputs), target)
                loss.backward()
                if clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, clip)
                opt.step()
                grad_evals += 1
            value = float(loss.detach())
            losses.append(value)
            step += 1
            if trajectory is not None and record_point is not None:
                trajectory.append(record_point(model))
            divergence = _check(value, threshold)
            if divergence:
                break
            if per_step:
                step_scheduler(scheduler)
        if divergence:
            break
        metrics = evaluate(step)
        divergence = _check(metrics["loss"], threshold)
        if divergence is None and not all(bool(torch.isfinite(p).all()) for p in params):
            divergence = "nan"
        if scheduler is not None and not per_step and not divergence:
            step_scheduler(scheduler, metrics["loss"])
        if step >= total_steps:
            break

    wall = time.perf_counter() - start
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
        steps=step,
        wall_s=wall,
        diverged=divergence is not None,
        divergence=divergence,
        target_loss=target,
        steps_to_target=math.inf if reached is None else float(reached["step"]),
        evals_to_target=math.inf if reached is None else float(reached["grad_evals"]),
        trajectory=trajectory,
    )
