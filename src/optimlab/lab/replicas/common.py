"""Run semantics both paths share: the budget, the schedule, the data path and the evaluation."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from optimlab.lab.loop import objective
from optimlab.lab.problems.base import Budget
from optimlab.lab.replicas.spec import Evaluation, ReplicaSpec


def run_budget(problem: Any, epochs: int | None, steps: int | None) -> tuple[int, int]:
    """(total steps, epochs spanned) of a run of ``epochs`` or ``steps`` (the problem's default
    budget when neither is given), as :class:`~optimlab.lab.problems.Budget` counts them."""
    spe = int(problem.steps_per_epoch)
    if spe < 1:
        raise ValueError(f"problem has {spe} steps per epoch; need at least 1")
    if epochs is None and steps is None:
        budget = getattr(problem, "default_budget", None)
        if budget is None:
            raise ValueError("the problem has no default_budget: give epochs or steps")
    elif epochs is not None and steps is not None:
        raise ValueError("give epochs or steps, not both")
    else:
        budget = Budget(epochs=epochs, steps=steps)
    return budget.total_steps(spe), budget.epochs_needed(spe)


def build_scheduler(spec: ReplicaSpec, optimizer: Optimizer, epochs: int, steps_per_epoch: int) -> Any:
    if spec.schedule is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return spec.schedule.build(optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch)


def cycles_momentum(scheduler: Any) -> bool:
    """Whether a scheduler (or one it chains) changes momentum/betas as well as the lr."""
    if scheduler is None:
        return False
    if getattr(scheduler, "cycle_momentum", False):
        return True
    return any(cycles_momentum(s) for s in getattr(scheduler, "_schedulers", ()))


def _owner(cls: type, name: str) -> int | None:
    """The position in ``cls``'s MRO of the class that defines ``name``."""
    return next((i for i, base in enumerate(cls.__mro__) if name in vars(base)), None)


def fast_data(problem: Any) -> bool:
    """Whether the problem's batches are its ``epoch_order`` cut into ``batch_size`` slices of
    ``x``/``y``: it has them all, and ``batches`` is not overridden below ``epoch_order``."""
    if not (
        callable(getattr(problem, "epoch_order", None))
        and isinstance(getattr(problem, "x", None), Tensor)
        and isinstance(getattr(problem, "y", None), Tensor)
        and isinstance(getattr(problem, "batch_size", None), int)
    ):
        return False
    order, batches = _owner(type(problem), "epoch_order"), _owner(type(problem), "batches")
    return order is not None and batches is not None and batches >= order


@torch.no_grad()
def evaluate_model(problem: Any, model: nn.Module, evaluation: Evaluation) -> dict[str, float]:
    """``"full"``: everything ``problem.evaluate`` gives; ``"loss"``: the full objective alone
    (:func:`optimlab.lab.loop.objective`)."""
    if evaluation == "loss":
        return {"loss": objective(problem, model)}
    return {k: float(v) for k, v in problem.evaluate(model).items()}
