"""One run after another: the batched engine's reference, and the path of L-BFGS."""

from __future__ import annotations

import torch

from optimlab.lab.loop import StepsCallback, run_steps
from optimlab.lab.replicas.common import build_scheduler, evaluate_model, run_budget
from optimlab.lab.replicas.sizing import optimizer_for
from optimlab.lab.replicas.spec import Evaluation, ReplicaProblem, ReplicaRun, ReplicaSpec
from optimlab.lab.run import EXPLOSION_FACTOR
from optimlab.optim import RuleOptimizer


def train_sequential(
    problem: ReplicaProblem,
    spec: ReplicaSpec,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    explosion_factor: float = EXPLOSION_FACTOR,
    evaluation: Evaluation = "full",
    trajectory: bool = False,
    on_steps: StepsCallback | None = None,
) -> ReplicaRun:
    """One run, step by step with a real optimizer object: the reference the batched engine is
    checked against, and the path of L-BFGS (closure-based) and of foreign optimizer classes.
    ``on_steps(n)`` hears of the steps trained (:func:`optimlab.lab.loop.run_steps`)."""
    total_steps, epoch_count = run_budget(problem, epochs, steps)
    spe = int(problem.steps_per_epoch)
    model = problem.build_model(spec.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    cls = optimizer_for(spec.optimizer)
    kwargs = dict(spec.hyperparameters)
    if issubclass(cls, RuleOptimizer):
        kwargs.setdefault("engine", "eager")
    try:
        opt = cls(params, **kwargs)
    except TypeError as error:
        raise ValueError(f"optimizer {cls.__name__}: {error}") from None
    scheduler = build_scheduler(spec, opt, epoch_count, spe)
    record = run_steps(
        problem,
        model,
        opt,
        spec.seed,
        total_steps=total_steps,
        epochs=epoch_count,
        evaluate=lambda m: evaluate_model(problem, m, evaluation),
        explosion_factor=explosion_factor,
        scheduler=scheduler,
        per_step=scheduler is not None and spec.schedule.interval == "step",
        clip_norm=spec.clip_norm,
        trajectory_point=(lambda m: torch.cat([p.detach().reshape(-1) for p in params]).tolist())
        if trajectory
        else None,
        on_steps=on_steps,
    )
    return ReplicaRun(
        **record.recorded(),
        spec=spec,
        params={name: p.detach().clone() for name, p in model.named_parameters()},
        diverged=record.divergence is not None,
        skipped_steps=sum(int(g.get("skipped_steps", 0)) for g in opt.param_groups),
        batched=False,
    )
