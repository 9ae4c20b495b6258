"""The step-by-step training loop of one run, written once.

:func:`optimlab.lab.runner.train` (the lab's runs) and
:func:`optimlab.lab.replicas.train_sequential` (the batched engine's sequential reference and the
path of L-BFGS and of foreign optimizer classes) both set up a model, an optimizer and a scheduler
and hand them to :func:`run_steps`, which records what the lab records of a run:

* the training loss of every step (the mini-batch loss before the update) and its learning rate;
* evaluations at the steps of the run's :class:`~optimlab.lab.run.EvaluationSchedule`: the metrics of
  ``evaluate`` before the first step and after every epoch, the full objective alone
  (:func:`objective`) within epochs, each with the step count, gradient evaluations, wall time and
  epoch so far;
* gradient evaluations: one per step for first-order optimizers, one per closure call for
  closure-based ones (L-BFGS);
* divergence as a result, never an exception: a NaN or ±Inf loss or evaluation (``"nan"``,
  ``"inf"``), a non-finite parameter (``"nan"``), or a loss above
  ``explosion_factor × max(|initial loss|, 1)`` (``"explosion"``) ends the run.

``on_steps(n)``, when given, is told the steps trained: at every evaluation, the steps since the
last call (and the rest when the run ends), so that its calls add up to the steps of the run.

An optimizer with ``train()``/``eval()`` modes (Schedule-Free) trains in train mode and is evaluated
in eval mode, at its averaged weights, as its authors require (:func:`evaluation_mode`); a model
with BatchNorm then gets its statistics recomputed there first, as they advise.

``clip_norm`` clips the gradient's global norm (``torch.nn.utils.clip_grad_norm_``) before each
first-order step; closure-based optimizers get the true gradient (their line search and curvature
pairs need it), and their regularization comes in as a ``penalty`` added to the objective.
The batched replicas (lab/replicas/) follow the same protocol on stacked models (Schedule-Free
replicas evaluated at their x too: ``BatchedRun._evaluation_points``).
"""

from __future__ import annotations

import itertools
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer, lr_scheduler

from optimlab.lab.problems.base import TensorProblem
from optimlab.lab.run import EvaluationSchedule, RunRecord

#: ``on_steps(n)``: told that ``n`` more run-steps were trained (a batched step of R replicas is R)
StepsCallback = Callable[[int], None]

#: training batches over which BatchNorm statistics are recomputed at Schedule-Free's averaged
#: weights before an evaluation, at most (its authors suggest about 50)
BATCHNORM_BATCHES = 50


def has_modes(optimizer: Optimizer) -> bool:
    """Whether ``optimizer`` has train and eval modes (Schedule-Free's ``train()``/``eval()``)."""
    return callable(getattr(optimizer, "train", None)) and callable(getattr(optimizer, "eval", None))


@contextmanager
def evaluation_mode(
    optimizer: Optimizer, model: nn.Module, problem: Any, seed: int, epoch: int
) -> Iterator[None]:
    """Evaluate as the optimizer's authors require: an optimizer with modes is switched to ``eval()``
    (its parameters become the averaged iterate x) and back to ``train()`` afterwards; a model with
    BatchNorm layers first gets their running statistics recomputed at x over up to
    :data:`BATCHNORM_BATCHES` batches of ``epoch`` (Schedule-Free's README; the forward passes
    train nothing). Other optimizers are evaluated as they are."""
    if not has_modes(optimizer):
        yield
        return
    from optimlab.optim.modern.schedulefree import recompute_batchnorm

    training = model.training
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        recompute_batchnorm(
            model, optimizer, itertools.islice(problem.batches(seed, epoch), BATCHNORM_BATCHES)
        )
    else:
        optimizer.eval()
    try:
        yield
    finally:
        optimizer.train()
        model.train(training)


def divergence(value: float, threshold: float) -> str | None:
    """Why a loss ends a run (``"nan"``, ``"inf"``, ``"explosion"`` above ``threshold``), or None."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf"
    if value > threshold:
        return "explosion"
    return None


def explosion_threshold(initial_loss: float, explosion_factor: float) -> float:
    """``explosion_factor × max(|initial loss|, 1)`` (+∞ when the initial loss is not finite)."""
    return explosion_factor * max(abs(initial_loss), 1.0) if math.isfinite(initial_loss) else math.inf


def step_scheduler(scheduler: Any, metric: float | None = None) -> None:
    """Advance ``scheduler`` by one interval (``metric`` for ReduceLROnPlateau, +∞ if not finite)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        if isinstance(scheduler, lr_scheduler.ReduceLROnPlateau):
            scheduler.step(metric if metric is not None and math.isfinite(metric) else math.inf)
        else:
            scheduler.step()


def plain_objective(problem: Any) -> bool:
    """Whether ``problem.evaluate(model)["loss"]`` is ``problem.loss(model(problem.x), problem.y)``:
    the problem has the tensors and evaluates with :class:`TensorProblem`'s own ``evaluate``."""
    return (
        isinstance(getattr(problem, "x", None), Tensor)
        and isinstance(getattr(problem, "y", None), Tensor)
        and getattr(type(problem), "evaluate", None) is TensorProblem.evaluate
    )


def plain_metrics(problem: Any) -> bool:
    """Whether ``problem.evaluate(model)`` is :class:`TensorProblem`'s own, from its tensors alone
    (:func:`plain_objective`, and the default :meth:`~TensorProblem.metrics`): the loss on ``x``,
    the accuracy there for a classification problem, and on the validation split its loss (and
    accuracy) — what the batched replicas evaluate for all replicas at once."""
    return plain_objective(problem) and getattr(type(problem), "metrics", None) is TensorProblem.metrics


@torch.no_grad()
def objective(problem: Any, model: nn.Module) -> float:
    """The full objective alone, ``problem.evaluate(model)["loss"]`` — without computing the other
    metrics when the problem allows it (:func:`plain_objective`)."""
    if plain_objective(problem):
        return float(problem.loss(model(problem.x), problem.y))
    return float(problem.evaluate(model)["loss"])


def run_steps(
    problem: Any,
    model: nn.Module,
    optimizer: Optimizer,
    seed: int,
    *,
    total_steps: int,
    epochs: int,
    evaluate: Callable[[nn.Module], dict[str, float]],
    explosion_factor: float,
    scheduler: Any = None,
    per_step: bool = False,
    clip_norm: float | None = None,
    penalty: Callable[[], Tensor] | None = None,
    trajectory_point: Callable[[nn.Module], list[float] | None] | None = None,
    on_steps: StepsCallback | None = None,
) -> RunRecord:
    """Train ``model`` on ``problem.batches(seed, epoch)`` with ``optimizer`` for at most
    ``total_steps`` steps over ``epochs`` epochs; ``evaluate(model)`` gives the metrics recorded
    before the first step and after each epoch (``"loss"`` among them), :func:`objective` the loss
    recorded within epochs (:class:`~optimlab.lab.run.EvaluationSchedule`), ``scheduler`` steps per
    step or per epoch (``per_step``), ``trajectory_point(model)`` (when it gives a point) records
    the path, ``on_steps`` hears of the steps trained (see the module docstring)."""
    schedule = EvaluationSchedule(total_steps, int(problem.steps_per_epoch))
    params = [p for p in model.parameters() if p.requires_grad]
    closure_based = isinstance(optimizer, torch.optim.LBFGS)
    group = optimizer.param_groups[0]
    losses: list[float] = []
    lrs: list[float] = []
    evals: list[dict[str, float]] = []
    path: list[list[float]] | None = None
    if trajectory_point is not None:
        first = trajectory_point(model)
        path = [first] if first is not None else None
    grad_evals = 0
    step = 0
    reported = 0  # the steps on_steps has heard of
    start = time.perf_counter()

    def record_evaluation(epoch: float, metrics: dict[str, float]) -> float:
        nonlocal reported
        wall_s = time.perf_counter() - start
        evals.append({"epoch": epoch, "step": step, "grad_evals": grad_evals, "wall_s": wall_s, **metrics})
        if on_steps is not None and step > reported:
            on_steps(step - reported)
            reported = step
        return metrics["loss"]

    def diverged(loss_now: float) -> str | None:
        """Why an evaluated loss (or the parameters) ends the run, or None."""
        kind = divergence(loss_now, threshold)
        if kind is None and not all(bool(torch.isfinite(p).all()) for p in params):
            kind = "nan"
        return kind

    if has_modes(optimizer):
        optimizer.train()  # Schedule-Free steps only in train mode

    def evaluated(epoch: int) -> dict[str, float]:
        with evaluation_mode(optimizer, model, problem, seed, epoch):
            return evaluate(model)

    def evaluated_objective(epoch: int) -> float:
        with evaluation_mode(optimizer, model, problem, seed, epoch):
            return objective(problem, model)

    initial = record_evaluation(0, evaluated(0))
    threshold = explosion_threshold(initial, explosion_factor)
    stop = divergence(initial, math.inf)
    for epoch in range(epochs):
        if stop:
            break
        for inputs, target in problem.batches(seed, epoch):
            if step >= total_steps:
                break
            lrs.append(float(group["lr"]))
            if closure_based:
                count = [0]

                def closure(
                    inputs: Tensor = inputs, target: Tensor = target, count: list[int] = count
                ) -> Tensor:
                    count[0] += 1
                    for p in params:  # zero_grad(set_to_none=True) without its profiler scope
                        p.grad = None
                    loss = problem.loss(model(inputs), target)
                    if penalty is not None:
                        loss = loss + penalty()
                    loss.backward()
                    return loss.detach()

                loss = optimizer.step(closure)
                grad_evals += count[0]
            else:
                for p in params:
                    p.grad = None
                loss = problem.loss(model(inputs), target)
                loss.backward()
                if clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, clip_norm)
                optimizer.step()
                grad_evals += 1
            value = float(loss.detach())
            losses.append(value)
            step += 1
            if path is not None and trajectory_point is not None:
                path.append(trajectory_point(model))  # type: ignore[arg-type]
            stop = divergence(value, threshold)
            if stop:
                break
            if per_step:
                step_scheduler(scheduler)
            if schedule.within_epoch(step):
                value = {"loss": evaluated_objective(epoch)}
                stop = diverged(record_evaluation(step / schedule.steps_per_epoch, value))
                if stop:
                    break
        if stop:
            break
        loss_now = record_evaluation(epoch + 1, evaluated(epoch))
        stop = diverged(loss_now)
        if scheduler is not None and not per_step and not stop:
            step_scheduler(scheduler, loss_now)
        if step >= total_steps:
            break
    if on_steps is not None and step > reported:
        on_steps(step - reported)
    return RunRecord(
        losses=losses,
        lrs=lrs,
        evals=evals,
        grad_evals=grad_evals,
        steps=step,
        divergence=stop,
        trajectory=path,
        wall_s=time.perf_counter() - start,
    )


__all__ = [
    "StepsCallback",
    "divergence",
    "explosion_threshold",
    "objective",
    "plain_metrics",
    "plain_objective",
    "run_steps",
    "step_scheduler",
]
