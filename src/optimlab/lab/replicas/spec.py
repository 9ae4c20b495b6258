"""What a batched run is: the problem it needs, its :class:`ReplicaSpec` and its :class:`ReplicaRun`."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from torch import Tensor, nn
from torch.optim import Optimizer

from optimlab.lab.run import RunRecord, apply_regularization

#: what a run evaluates before the first step and after each epoch: every metric of
#: ``problem.evaluate`` or the loss alone (within epochs: always the loss alone)
Evaluation = Literal["full", "loss"]
#: how :func:`~optimlab.lab.replicas.train_replicas` trains: batches what it can, or insists, or never
Mode = Literal["auto", "batched", "sequential"]


@runtime_checkable
class ReplicaProblem(Protocol):
    """What the engine needs of a problem (a subset of the lab's problem protocol).

    ``build_model(seed)`` gives the model with its initial parameters and ``batches(seed, epoch)``
    one epoch's ``(inputs, target)`` pairs, both reproducible from their arguments alone;
    ``loss(model(inputs), target)`` is the scalar training loss; ``evaluate(model)`` returns
    metrics with at least ``"loss"`` (the full objective).

    Optional fast path: a problem with tensors ``x``, ``y``, an int ``batch_size`` and
    ``epoch_order(seed, epoch) -> Tensor | None`` (the permutation whose consecutive
    ``batch_size`` slices ``idx`` give the batches ``(x[idx], y[idx])``; ``None`` for the natural
    order) lets the engine gather every replica's batch in one indexing operation; and when the
    full objective is ``loss(model(x), y)`` (``evaluate`` is :class:`~optimlab.lab.problems.TensorProblem`'s
    own), evaluations of the loss alone compute it for all replicas at once.
    """

    @property
    def steps_per_epoch(self) -> int: ...

    def build_model(self, seed: int) -> nn.Module: ...

    def batches(self, seed: int, epoch: int) -> Iterable[tuple[Tensor, Tensor]]: ...

    def loss(self, output: Tensor, target: Tensor) -> Tensor: ...

    def evaluate(self, model: nn.Module) -> dict[str, float]: ...


@dataclass(frozen=True)
class Schedule:
    """A learning-rate schedule from any ``torch.optim.lr_scheduler`` factory.

    ``factory(optimizer)`` builds the scheduler; ``interval`` says whether it steps after every
    epoch or every batch (``"step"``); ``needs_metric`` passes the epoch's evaluated loss to
    ``step`` (ReduceLROnPlateau). Same interface as the lab's parsed schedule specs
    (``build``, ``interval``, ``needs_metric``), so either can be given to a :class:`ReplicaSpec`.
    """

    factory: Callable[[Optimizer], Any]
    interval: Literal["epoch", "step"] = "epoch"
    needs_metric: bool = False

    def __post_init__(self) -> None:
        if self.interval not in ("epoch", "step"):
            raise ValueError(f"schedule interval must be 'epoch' or 'step', got {self.interval!r}")

    def build(self, optimizer: Optimizer, *, epochs: int, steps_per_epoch: int) -> Any:
        return self.factory(optimizer)


@dataclass(frozen=True)
class ReplicaSpec:
    """One run: its seed, optimizer (a name or class of :mod:`optimlab.optim`, ``"lbfgs"``, or any
    ``torch.optim`` class for the sequential path), the optimizer's constructor arguments, an
    optional schedule (:class:`Schedule` or the lab's spec) and optional global-norm gradient
    clipping (``torch.nn.utils.clip_grad_norm_`` semantics)."""

    seed: int
    optimizer: str | type[Optimizer]
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    schedule: Any = None
    clip_norm: float | None = None

    def __post_init__(self) -> None:
        if self.clip_norm is not None and not (self.clip_norm > 0 and math.isfinite(self.clip_norm)):
            raise ValueError(f"clip_norm must be a finite number > 0, got {self.clip_norm!r}")


def spec_for(config: Any, seed: int, schedule: Any = None, regularization: Any = None) -> ReplicaSpec:
    """The :class:`ReplicaSpec` of the lab runner's ``train(problem, config, seed, budget, schedule,
    regularization)`` (an ``OptimizerConfig`` and a ``Regularization`` of :mod:`optimlab.lab`):
    weight decay and L1 become the optimizer's own arguments, ``clip_norm`` the spec's.

    L-BFGS with an L1 or weight-decay penalty is refused: the lab's runner adds that penalty to the
    objective, which only its own sequential loop does."""
    penalised = regularization is not None and (regularization.l1 or regularization.weight_decay)
    if getattr(config, "is_lbfgs", False) and penalised:
        raise ValueError("L-BFGS with an l1/weight-decay penalty runs in the lab's runner, not here")
    config = apply_regularization(config, regularization)
    clip = regularization.clip_norm if regularization is not None else None
    return ReplicaSpec(int(seed), config.cls, dict(config.hyper), schedule, clip)


def replicas(
    optimizer: str | type[Optimizer],
    seeds: Sequence[int],
    hyperparameters: Mapping[str, Any] | None = None,
    *,
    schedule: Any = None,
    clip_norm: float | None = None,
) -> list[ReplicaSpec]:
    """R specs of one optimizer, one per seed. A hyperparameter given as a list (or 1-d tensor)
    of R values is per replica; anything else, a tuple included (``betas=(0.9, 0.99)``), is shared.

    >>> specs = replicas("adam", [0, 1], {"lr": [1e-3, 1e-2], "betas": (0.9, 0.99)})
    """
    count = len(seeds)
    per_replica: list[dict[str, Any]] = [{} for _ in range(count)]
    for key, value in (hyperparameters or {}).items():
        if isinstance(value, Tensor) and value.dim() == 1:
            value = value.tolist()
        if isinstance(value, list):
            if len(value) != count:
                raise ValueError(f"hyperparameter {key!r} has {len(value)} values for {count} seeds")
            for hyper, item in zip(per_replica, value, strict=True):
                hyper[key] = tuple(item) if isinstance(item, list) else item
        else:
            for hyper in per_replica:
                hyper[key] = value
    return [
        ReplicaSpec(int(seed), optimizer, hyper, schedule, clip_norm)
        for seed, hyper in zip(seeds, per_replica, strict=True)
    ]


@dataclass(kw_only=True)
class ReplicaRun(RunRecord):
    """What one replica recorded (the same fields whether it ran batched or alone): the lab's
    :class:`~optimlab.lab.run.RunRecord` (a batched run's ``wall_s``, and its evaluations', is its
    batch's time divided by its size; ``trajectory`` the parameter vector after every step) and
    ``spec``, the final parameters by name (``params``), ``skipped_steps`` (steps left out by
    ``nonfinite="skip"``) and whether it ran ``batched``.
    """

    spec: ReplicaSpec
    params: dict[str, Tensor]
    diverged: bool
    skipped_steps: int
    batched: bool

    @property
    def final_loss(self) -> float:
        """The last evaluated full-objective loss; +∞ for a diverged run."""
        return math.inf if self.diverged else float(self.evals[-1]["loss"])
