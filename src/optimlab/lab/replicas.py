"""Train many small replicas of one problem at once: a sweep at the speed of one run.

A fair comparison is many small runs (optimizers × learning rates × seeds). Run one after another,
each tiny run is almost all Python overhead. Here R runs that share a model's *structure* are
stacked and stepped together:

* the R parameter vectors are one ``[R, P]`` tensor; every replica's loss comes from
  ``torch.func.functional_call`` under ``torch.vmap`` on its own mini-batch, and one backward pass
  of the summed losses gives every replica's own gradient (replicas never mix);
* the update is the optimizer's pure rule from :mod:`optimlab.optim.rules` — the same function
  the eager optimizers run — applied with ``torch.vmap`` over the replicas of each optimizer
  structure, with per-replica hyperparameters (lr, weight decay, betas, …) passed as tensors of
  shape ``[R]`` (0-d under ``vmap``); values shared by a whole group stay Python numbers, so the
  update's arithmetic is the eager path's (the gradients differ from a lone run's only by the
  summation order of batched matrix products);
* replicas of different optimizers share the forward and backward pass: each group of replicas
  with one rule and one structure (e.g. Adam without AMSGrad) gets one vmapped rule call per step;
* the vmap transform is entered directly (:func:`vmap_flat`), without torch.func.vmap's handling
  of argument trees, which would otherwise cost more than a small rule's arithmetic.

A run is defined by its :class:`ReplicaSpec` (seed, optimizer, hyperparameters, schedule, gradient
clipping) and the problem. Everything random comes from the problem —
``problem.build_model(seed)`` and ``problem.batches(seed, epoch)`` (or its fast form
``problem.epoch_order(seed, epoch)``, see :class:`ReplicaProblem`) — so a batched replica sees
the same initialization and data order as the sequential run of the same seed by construction.
:func:`train_sequential` is that sequential run (and the path of L-BFGS); the tests check that
both agree to float rounding.

What a run records, as the lab's runner does: the mini-batch loss of each step (before its
update) and the lr it used; after every epoch (and before the first step) an evaluation of the
full objective; divergence as a result, never an exception — a NaN or ±Inf loss (``"nan"``,
``"inf"``) or a loss above ``explosion_factor · max(|initial loss|, 1)`` (``"explosion"``) ends
that replica (its parameters and state stop changing; the others go on untouched).

Schedules are torch's own: each replica gets its scheduler over a one-group stand-in optimizer
holding its hyperparameters, and the engine reads back the lr it sets (and the momentum/betas of
``cycle_momentum`` schedules) — ReduceLROnPlateau on each replica's own evaluated loss.

:func:`train_replicas` is the entry point: it batches what can be batched (first-order optimizers
of :mod:`optimlab.optim`, models without buffers or random layers), in chunks that fit
``memory_budget`` bytes (:func:`replica_chunks`), and runs the rest one after another.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.optim import Optimizer

try:  # the functorch transform behind torch.func.vmap, called without its pytree layer
    from torch._C._functorch import (
        _add_batch_dim,
        _remove_batch_dim,
        _vmap_decrement_nesting,
        _vmap_increment_nesting,
    )
    from torch._functorch.vmap import lazy_load_decompositions
except ImportError:  # pragma: no cover - a torch without these internals: use torch.func.vmap
    LEAN_VMAP = False
else:
    LEAN_VMAP = True

from optimlab.lab.loop import divergence as _divergence
from optimlab.lab.loop import explosion_threshold as _threshold
from optimlab.lab.loop import run_steps
from optimlab.lab.loop import step_scheduler as _step_scheduler
from optimlab.lab.run import EXPLOSION_FACTOR, apply_regularization
from optimlab.optim import LBFGS, RuleOptimizer
from optimlab.optim.functional import OPTIMIZERS

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "EXPLOSION_FACTOR",
    "LEAN_VMAP",
    "ReplicaProblem",
    "ReplicaRun",
    "ReplicaSpec",
    "Schedule",
    "batchable_optimizer",
    "can_batch",
    "model_batchable",
    "optimizer_for",
    "replica_bytes",
    "replica_chunks",
    "replicas",
    "spec_for",
    "train_batched",
    "train_replicas",
    "train_sequential",
    "vmap_flat",
]

#: default memory budget of one batched chunk (parameters, state, activations, histories)
DEFAULT_MEMORY_BUDGET = 1 << 30
#: replicas per vmapped evaluation on the whole data set
EVALUATION_CHUNK = 128
#: the fast data path gathers a whole epoch for all replicas at once below this many bytes
EPOCH_GATHER_BYTES = 32 << 20

Evaluation = Literal["full", "loss"]
Mode = Literal["auto", "batched", "sequential"]


# --- what a run is --------------------------------------------------------------------------


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
    order) lets the engine gather every replica's batch in one indexing operation, and
    ``evaluation="loss"`` computes ``loss(model(x), y)`` for all replicas at once.
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


@dataclass
class ReplicaRun:
    """What one replica recorded (the same fields whether it ran batched or alone).

    ``losses[k]``/``lrs[k]``: the mini-batch loss of step k (before its update) and its lr;
    ``evals``: ``{"epoch", "step", "grad_evals", "wall_s", "loss", ...}`` before the first step
    and after each epoch (a batched run's ``wall_s`` is its batch's time divided by its size);
    ``params``: the final parameters by name; ``divergence``: ``"nan"``, ``"inf"``,
    ``"explosion"`` or ``None``; ``skipped_steps``: steps left out by ``nonfinite="skip"``.
    """

    spec: ReplicaSpec
    losses: list[float]
    lrs: list[float]
    evals: list[dict[str, float]]
    params: dict[str, Tensor]
    steps: int
    grad_evals: int
    diverged: bool
    divergence: str | None
    skipped_steps: int
    batched: bool
    trajectory: list[list[float]] | None = None

    @property
    def final_loss(self) -> float:
        """The last evaluated full-objective loss; +∞ for a diverged run."""
        return math.inf if self.diverged else float(self.evals[-1]["loss"])


# --- deciding what can be batched -----------------------------------------------------------


def optimizer_for(optimizer: str | type[Optimizer]) -> type[Optimizer]:
    """The optimizer class: a name of :mod:`optimlab.optim` (``"adam"``, ``"lbfgs"``) or a class."""
    if isinstance(optimizer, type):
        if issubclass(optimizer, Optimizer):
            return optimizer
        raise ValueError(f"{optimizer!r} is not a torch.optim.Optimizer class")
    name = str(optimizer).lower()
    if name == "lbfgs":
        return LBFGS
    cls = OPTIMIZERS.get(name)
    if cls is None:
        raise ValueError(f"Unknown optimizer {optimizer!r}; expected one of {[*sorted(OPTIMIZERS), 'lbfgs']}")
    return cls


def batchable_optimizer(optimizer: str | type[Optimizer]) -> bool:
    """Whether runs of ``optimizer`` can be batched: a first-order optimizer of :mod:`optimlab.optim`
    (L-BFGS, which needs closures, and foreign classes run one after another)."""
    cls = optimizer_for(optimizer)
    return issubclass(cls, RuleOptimizer) and not issubclass(cls, LBFGS)


def model_batchable(model: nn.Module) -> bool:
    """Whether replicas of ``model`` can share a vmapped forward pass: floating-point parameters
    that all train, no buffers (running statistics change inside the forward pass) and no random
    layers (their draws could not match the sequential run's)."""
    params = list(model.parameters())
    if not params or any(not p.requires_grad or not p.is_floating_point() or p.is_complex() for p in params):
        return False
    if len({p.dtype for p in params}) != 1 or len({p.device for p in params}) != 1:
        return False
    if any(True for _ in model.buffers()):
        return False
    random_layers = (nn.modules.dropout._DropoutNd, nn.AlphaDropout, nn.FeatureAlphaDropout)
    return not any(isinstance(m, random_layers) for m in model.modules())


def _state_slots(optimizer: str | type[Optimizer], hyperparameters: Mapping[str, Any] | None = None) -> int:
    """How many parameter-sized state tensors the optimizer keeps."""
    cls = optimizer_for(optimizer)
    if not issubclass(cls, RuleOptimizer):
        return 0
    probe = cls([torch.zeros(1)], engine="eager", **dict(hyperparameters or {}))
    group = probe.param_groups[0]
    slots = sum(1 for v in probe.init_state(torch.zeros(1), group).values() if v.dim() > 0)
    if cls.__name__ == "SGD" and group["momentum"] != 0:
        slots += 1  # the momentum buffer the rule creates on the first step
    return slots


def replica_bytes(
    n_params: int,
    optimizer: str | type[Optimizer] = "adam",
    *,
    itemsize: int = 4,
    activation_bytes: int = 0,
    steps: int = 0,
) -> int:
    """Estimated memory of one replica in a batched run: parameters, gradient, optimizer state and
    the rule's temporaries (≈ 8 vectors besides the state), activations of one step, and the
    per-step loss/lr history."""
    vectors = 3 + _state_slots(optimizer) + 8
    return n_params * itemsize * vectors + activation_bytes + steps * 16


def replica_chunks(
    replica_count: int, per_replica: int, memory_budget: int = DEFAULT_MEMORY_BUDGET
) -> list[int]:
    """Split ``replica_count`` replicas into near-equal chunks of at most ``memory_budget`` bytes."""
    if replica_count <= 0:
        return []
    fit = max(1, memory_budget // max(1, per_replica))
    pieces = math.ceil(replica_count / fit)
    base, extra = divmod(replica_count, pieces)
    return [base + (1 if i < extra else 0) for i in range(pieces)]


def can_batch(
    optimizer: str | type[Optimizer],
    n_params: int,
    replicas: int,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    *,
    activation_bytes: int = 0,
    itemsize: int = 4,
) -> bool:
    """Whether ``replicas`` runs of ``optimizer`` on a model of ``n_params`` parameters should be
    batched: a first-order optimizer of :mod:`optimlab.optim` (L-BFGS and foreign classes run
    sequentially), at least two replicas, and at least two per chunk within the memory budget."""
    if replicas < 2 or not batchable_optimizer(optimizer):
        return False
    per = replica_bytes(n_params, optimizer, itemsize=itemsize, activation_bytes=activation_bytes)
    return max(replica_chunks(replicas, per, memory_budget_bytes)) >= 2


# --- shared run semantics -------------------------------------------------------------------


def vmap_flat(
    fn: Callable[..., Sequence[Tensor]], size: int, args: Sequence[Tensor], batched: Sequence[bool]
) -> list[Tensor]:
    """``torch.func.vmap(fn, in_dims=...)(*args)`` for a flat list of tensor arguments (``batched[i]``:
    ``args[i]`` has the replica dimension first) and a list of tensor results (replica dimension first).

    This is the transform torch.func.vmap applies — the same batching rules, so the same numbers —
    entered directly: torch.func.vmap's flattening and checking of arbitrary argument trees costs
    more than a small rule's arithmetic, and a batched step makes a dozen such calls. Falls back to
    torch.func.vmap when ``LEAN_VMAP`` is off (or torch lacks the internals)."""
    if not LEAN_VMAP:
        return list(vmap(fn, in_dims=tuple(0 if b else None for b in batched))(*args))
    level = _vmap_increment_nesting(size, "error")
    try:
        inputs = [_add_batch_dim(a, 0, level) if b else a for a, b in zip(args, batched, strict=True)]
        return [_remove_batch_dim(out, level, size, 0) for out in fn(*inputs)]
    finally:
        _vmap_decrement_nesting()


def _budget(problem: Any, epochs: int | None, steps: int | None) -> tuple[int, int]:
    """(total steps, epochs spanned) of a run."""
    spe = int(problem.steps_per_epoch)
    if spe < 1:
        raise ValueError(f"problem has {spe} steps per epoch; need at least 1")
    if epochs is not None and steps is not None:
        raise ValueError("give epochs or steps, not both")
    if epochs is None and steps is None:
        budget = getattr(problem, "default_budget", None)
        if budget is None:
            raise ValueError("the problem has no default_budget: give epochs or steps")
        total = int(budget.total_steps(spe))
    elif epochs is not None:
        if epochs < 1:
            raise ValueError(f"epochs must be ≥ 1, got {epochs}")
        total = epochs * spe
    else:
        if steps is None or steps < 1:
            raise ValueError(f"steps must be ≥ 1, got {steps}")
        total = steps
    return total, math.ceil(total / spe)


def _build_scheduler(spec: ReplicaSpec, optimizer: Optimizer, epochs: int, steps_per_epoch: int) -> Any:
    if spec.schedule is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return spec.schedule.build(optimizer, epochs=epochs, steps_per_epoch=steps_per_epoch)


def _cycles_momentum(scheduler: Any) -> bool:
    """Whether a scheduler (or one it chains) changes momentum/betas as well as the lr."""
    if scheduler is None:
        return False
    if getattr(scheduler, "cycle_momentum", False):
        return True
    return any(_cycles_momentum(s) for s in getattr(scheduler, "_schedulers", ()))


def _owner(cls: type, name: str) -> int | None:
    """The position in ``cls``'s MRO of the class that defines ``name``."""
    return next((i for i, base in enumerate(cls.__mro__) if name in vars(base)), None)


def _fast_data(problem: Any) -> bool:
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


def _has_full_data(problem: Any) -> bool:
    return isinstance(getattr(problem, "x", None), Tensor) and isinstance(getattr(problem, "y", None), Tensor)


@torch.no_grad()
def _evaluate_model(problem: Any, model: nn.Module, evaluation: Evaluation) -> dict[str, float]:
    if evaluation == "loss" and _has_full_data(problem):
        return {"loss": float(problem.loss(model(problem.x), problem.y))}
    metrics = problem.evaluate(model)
    return (
        {k: float(v) for k, v in metrics.items()}
        if evaluation == "full"
        else {"loss": float(metrics["loss"])}
    )


# --- one run after another ------------------------------------------------------------------


def train_sequential(
    problem: ReplicaProblem,
    spec: ReplicaSpec,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    explosion_factor: float = EXPLOSION_FACTOR,
    evaluation: Evaluation = "full",
    trajectory: bool = False,
) -> ReplicaRun:
    """One run, step by step with a real optimizer object: the reference the batched engine is
    checked against, and the path of L-BFGS (closure-based) and of foreign optimizer classes."""
    total_steps, epoch_count = _budget(problem, epochs, steps)
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
    scheduler = _build_scheduler(spec, opt, epoch_count, spe)
    record = run_steps(
        problem,
        model,
        opt,
        spec.seed,
        total_steps=total_steps,
        epochs=epoch_count,
        evaluate=lambda m: _evaluate_model(problem, m, evaluation),
        explosion_factor=explosion_factor,
        scheduler=scheduler,
        per_step=scheduler is not None and spec.schedule.interval == "step",
        clip_norm=spec.clip_norm,
        trajectory_point=(lambda m: torch.cat([p.detach().reshape(-1) for p in params]).tolist())
        if trajectory
        else None,
    )
    return ReplicaRun(
        spec=spec,
        losses=record.losses,
        lrs=record.lrs,
        evals=record.evals,
        params={name: p.detach().clone() for name, p in model.named_parameters()},
        steps=record.steps,
        grad_evals=record.grad_evals,
        diverged=record.divergence is not None,
        divergence=record.divergence,
        skipped_steps=sum(int(g.get("skipped_steps", 0)) for g in opt.param_groups),
        batched=False,
        trajectory=record.trajectory,
    )


# --- all replicas at once -------------------------------------------------------------------


def _kind(value: Any) -> Any:
    """The structural part of a rule argument: ``None`` and booleans are static, numbers data."""
    if value is None:
        return "off"
    if isinstance(value, bool):
        return ("flag", value)
    if isinstance(value, int | float | Tensor):
        return "value"
    return ("static", value)


def _number(value: Any) -> float:
    return float(value.item()) if isinstance(value, Tensor) else float(value)


class _Group:
    """Replicas ``[start, stop)`` (in engine order) that share one rule and one structure."""

    def __init__(
        self,
        start: int,
        stop: int,
        optimizers: list[RuleOptimizer],
        hypers: list[dict[str, Any]],
        dynamic: set[str],
        device: torch.device,
        cycling: bool = False,
    ) -> None:
        self.start, self.stop = start, stop
        self.cycling = cycling  # a schedule changes momentum/betas: re-read them after each step
        self.optimizers = optimizers
        first = optimizers[0]
        self.rule = type(first).rule
        self.nonfinite: str = first.param_groups[0]["nonfinite"]
        self.static: dict[str, Any] = {}
        self.values: dict[str, list[float]] = {}
        for key, value in hypers[0].items():
            if _kind(value) != "value":
                self.static[key] = value
                continue
            column = [_number(h[key]) for h in hypers]
            if key in dynamic or any(v != column[0] for v in column):
                self.values[key] = column
            else:
                self.static[key] = value.item() if isinstance(value, Tensor) else value
        self.dynamic: dict[str, Tensor] = {
            key: torch.tensor(column, dtype=torch.float64, device=device)
            for key, column in self.values.items()
        }
        self.state: dict[str, Tensor] = {}
        self._out_keys: list[str] = []

    def step(self, param: Tensor, grad: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The rule (its L1 proximal step included) for every replica of the group, vmapped."""
        state_keys, dynamic_keys = list(self.state), list(self.dynamic)
        n_state = len(state_keys)

        def one(param: Tensor, grad: Tensor, *values: Tensor) -> list[Tensor]:
            state = dict(zip(state_keys, values[:n_state], strict=True))
            hyper = {**self.static, **dict(zip(dynamic_keys, values[n_state:], strict=True))}
            new_param, changed = self.rule(param, grad, state, **hyper)
            new_state = {**state, **changed}
            self._out_keys = list(new_state)
            return [new_param, *new_state.values()]

        args = [param, grad, *self.state.values(), *self.dynamic.values()]
        out = vmap_flat(one, self.stop - self.start, args, [True] * len(args))
        return out[0], dict(zip(self._out_keys, out[1:], strict=True))

    def refresh(self, local: Sequence[int] | None = None) -> None:
        """Re-read the rule arguments of the stand-in optimizers (after a schedule changed them)."""
        indices = range(len(self.optimizers)) if local is None else local
        for i in indices:
            opt = self.optimizers[i]
            hyper = _rule_arguments(opt)
            for key, value in hyper.items():
                if key in self.values:
                    if _kind(value) != "value":
                        raise ValueError(f"a schedule switched {key!r} off mid-run; this cannot be batched")
                    self.values[key][i] = _number(value)
                elif _kind(value) != _kind(self.static.get(key)) or (
                    _kind(value) == "value" and _number(value) != _number(self.static[key])
                ):
                    raise ValueError(f"a schedule changed {key!r}, which this group holds fixed")
        for key, tensor in self.dynamic.items():
            if key != "lr":
                tensor.copy_(torch.tensor(self.values[key], dtype=torch.float64))


def _rule_arguments(opt: RuleOptimizer) -> dict[str, Any]:
    return dict(opt.hyperparameters(opt.param_groups[0]))


class _BatchedRun:
    """The engine behind :func:`train_batched` (one chunk of replicas)."""

    def __init__(
        self,
        problem: ReplicaProblem,
        specs: Sequence[ReplicaSpec],
        total_steps: int,
        epochs: int,
        explosion_factor: float,
        evaluation: Evaluation,
        trajectory: bool,
    ) -> None:
        self.problem = problem
        self.total_steps, self.epochs = total_steps, epochs
        self.spe = int(problem.steps_per_epoch)
        self.explosion_factor = explosion_factor
        self.evaluation = evaluation
        self.record_path = trajectory

        # Optimizers first (validation), then group replicas by rule and structure.
        optimizers: list[RuleOptimizer] = []
        signatures: list[Any] = []
        hypers: list[dict[str, Any]] = []
        for spec in specs:
            cls = optimizer_for(spec.optimizer)
            if not batchable_optimizer(cls):
                raise ValueError(
                    f"{cls.__name__} cannot be batched (it needs closures); run it with train_sequential"
                )
            try:
                opt = cls([torch.empty(0)], engine="eager", **dict(spec.hyperparameters))
            except TypeError as error:
                raise ValueError(f"optimizer {cls.__name__}: {error}") from None
            hyper = _rule_arguments(opt)  # type: ignore[arg-type]
            policy = opt.param_groups[0]["nonfinite"]
            structure = tuple(sorted((k, _kind(v)) for k, v in hyper.items()))
            signatures.append((cls.rule, structure, policy, spec.clip_norm is not None))
            optimizers.append(opt)  # type: ignore[arg-type]
            hypers.append(hyper)
        buckets: dict[Any, list[int]] = {}
        for index, signature in enumerate(signatures):
            buckets.setdefault(signature, []).append(index)
        self.order = [i for members in buckets.values() for i in members]  # engine position → spec index
        self.specs = [specs[i] for i in self.order]
        count = len(self.specs)

        # Models: one per replica from the problem (its seeded initialization), stacked flat.
        models = [problem.build_model(spec.seed) for spec in self.specs]
        self.base = models[0]
        if not model_batchable(self.base):
            raise ValueError("this model cannot be batched (buffers, random layers or frozen parameters)")
        named = list(self.base.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        for model in models[1:]:
            other = [(n, p.shape) for n, p in model.named_parameters()]
            if other != list(zip(self.names, self.shapes, strict=True)):
                raise ValueError("replicas must share the model's structure (parameter names and shapes)")
        with torch.no_grad():
            self.flat = torch.stack([torch.cat([p.reshape(-1) for p in m.parameters()]) for m in models])
        self.dtype, self.device = self.flat.dtype, self.flat.device

        # Schedules: each replica's own torch scheduler over its stand-in optimizer.
        self.schedulers: list[Any] = []
        for position, spec in enumerate(self.specs):
            self.schedulers.append(_build_scheduler(spec, optimizers[self.order[position]], epochs, self.spe))
        self.lr_values = [float(optimizers[i].param_groups[0]["lr"]) for i in self.order]
        self.lr_all = torch.tensor(self.lr_values, dtype=torch.float64, device=self.device)

        self.groups: list[_Group] = []
        start = 0
        for members in buckets.values():
            stop = start + len(members)
            positions = range(start, stop)
            dynamic: set[str] = set()
            if any(self.schedulers[p] is not None for p in positions):
                dynamic.add("lr")
            cycling = any(_cycles_momentum(self.schedulers[p]) for p in positions)
            if cycling:
                dynamic |= {k for k, v in hypers[members[0]].items() if _kind(v) == "value"}
            group = _Group(
                start,
                stop,
                [optimizers[i] for i in members],
                [hypers[i] for i in members],
                dynamic,
                self.device,
                cycling,
            )
            if "lr" in group.dynamic:
                group.dynamic["lr"] = self.lr_all[start:stop]
            states: dict[str, list[Tensor]] = {}
            for i, opt in zip(positions, group.optimizers, strict=True):
                for key, value in opt.init_state(self.flat[i], opt.param_groups[0]).items():
                    states.setdefault(key, []).append(value)
            group.state = {key: torch.stack(values) for key, values in states.items()}
            if cycling:
                group.refresh()
            self.groups.append(group)
            start = stop

        clips = [spec.clip_norm for spec in self.specs]
        self.clip = None
        if any(c is not None for c in clips):
            self.clip = (
                torch.tensor(
                    [c if c is not None else math.inf for c in clips], dtype=torch.float64, device=self.device
                ),
                torch.tensor([c is not None for c in clips], device=self.device),
            )

        self.fast = _fast_data(problem)
        self.count = count
        if LEAN_VMAP:
            lazy_load_decompositions()

    def _losses(self, flat: Tensor, inputs: Tensor, target: Tensor, shared_data: bool = False) -> Tensor:
        """Every replica's loss on its own batch (``shared_data``: one batch for all)."""
        size = flat.shape[0]
        return vmap_flat(
            lambda p, x, y: [self._replica_loss(p, x, y)],
            size,
            [flat, inputs, target],
            [True, not shared_data, not shared_data],
        )[0]

    # -- the per-replica functions (run under vmap) --

    def _unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        return {n: t.view(s) for n, t, s in zip(self.names, flat.split(self.sizes), self.shapes, strict=True)}

    def _replica_loss(self, flat: Tensor, inputs: Tensor, target: Tensor) -> Tensor:
        return self.problem.loss(functional_call(self.base, self._unflatten(flat), (inputs,)), target)

    # -- data --

    def _epoch_batches(self, epoch: int) -> Iterator[tuple[Tensor, Tensor]]:
        problem = self.problem
        if self.fast:
            n = len(problem.x)  # type: ignore[attr-defined]
            orders = []
            for spec in self.specs:
                order = problem.epoch_order(spec.seed, epoch)  # type: ignore[attr-defined]
                orders.append(torch.arange(n) if order is None else order)
            stacked = torch.stack(orders).to(problem.x.device)  # type: ignore[attr-defined]
            size = problem.batch_size  # type: ignore[attr-defined]
            x, y = problem.x, problem.y  # type: ignore[attr-defined]
            epoch_bytes = stacked.numel() * (
                x[0].numel() * x.element_size() + y[0].numel() * y.element_size()
            )
            if epoch_bytes <= EPOCH_GATHER_BYTES:  # the whole epoch at once; batches are views of it
                inputs, targets = x[stacked], y[stacked]
                for begin in range(0, n, size):
                    yield inputs[:, begin : begin + size], targets[:, begin : begin + size]
            else:
                for begin in range(0, n, size):
                    idx = stacked[:, begin : begin + size]
                    yield x[idx], y[idx]
            return
        streams = [iter(problem.batches(spec.seed, epoch)) for spec in self.specs]
        while True:
            try:
                pairs = [next(stream) for stream in streams]
            except StopIteration:
                return
            yield torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    # -- evaluation --

    def _evaluate(self, positions: list[int]) -> list[dict[str, float]]:
        problem = self.problem
        if not positions:
            return []
        if self.evaluation == "loss" and _has_full_data(problem):
            # in chunks of replicas, so that the activations on the whole data set stay in cache
            x, y = problem.x, problem.y  # type: ignore[attr-defined]
            values: list[float] = []
            with torch.no_grad():
                for begin in range(0, len(positions), EVALUATION_CHUNK):
                    chunk = self.flat[positions[begin : begin + EVALUATION_CHUNK]]
                    values.extend(self._losses(chunk, x, y, shared_data=True).tolist())
            return [{"loss": v} for v in values]
        holder = self.base
        results = []
        with torch.no_grad():
            saved = [p.detach().clone() for p in holder.parameters()]
            for position in positions:
                for p, chunk in zip(holder.parameters(), self.flat[position].split(self.sizes), strict=True):
                    p.copy_(chunk.view_as(p))
                results.append(_evaluate_model(problem, holder, self.evaluation))
            for p, value in zip(holder.parameters(), saved, strict=True):
                p.copy_(value)
        return results

    # -- schedules --

    def _read_schedules(self, positions: Iterable[int]) -> None:
        touched = False
        for position in positions:
            if self.schedulers[position] is None:
                continue
            touched = True
            group = self._group_of(position)
            opt = group.optimizers[position - group.start]
            self.lr_values[position] = float(opt.param_groups[0]["lr"])
        if touched:
            self.lr_all.copy_(torch.tensor(self.lr_values, dtype=torch.float64))
            for group in self.groups:
                if group.cycling:
                    group.refresh()

    def _group_of(self, position: int) -> _Group:
        for group in self.groups:
            if group.start <= position < group.stop:
                return group
        raise IndexError(position)

    # -- the loop --

    def _clip(self, grads: Tensor) -> Tensor:
        assert self.clip is not None
        limit, active = self.clip
        norms = torch.stack(
            [torch.linalg.vector_norm(g, dim=1) for g in grads.split(self.sizes, dim=1)], dim=1
        )
        total = torch.linalg.vector_norm(norms, dim=1)
        coef = torch.clamp(limit.to(total.dtype) / (total + 1e-6), max=1.0)  # clip_grad_norm_'s formula
        return torch.where(active[:, None], grads * coef[:, None], grads)

    def _update(self, grads: Tensor, alive: Tensor, alive_list: list[bool]) -> Tensor | None:
        """Apply every group's rule; returns the per-replica 'skipped' mask (nonfinite='skip').

        A group whose replicas have all diverged is left as it is (what masking every one of
        them would give), and a group whose replicas are all alive needs no mask."""
        skipped = None
        for group in self.groups:
            s, e = group.start, group.stop
            live_list = alive_list[s:e]
            if not any(live_list):
                continue
            param, grad = self.flat[s:e], grads[s:e]
            allowed = None if all(live_list) else alive[s:e]
            if group.nonfinite != "propagate":
                finite = torch.isfinite(grad).all(dim=1)
                live = alive[s:e]
                if group.nonfinite == "raise" and bool((~finite & live).any()):
                    bad = int(torch.nonzero(~finite & live)[0, 0]) + s
                    raise FloatingPointError(
                        f"non-finite gradient in replica seed={self.specs[bad].seed} (nonfinite='raise')"
                    )
                if group.nonfinite == "skip":
                    allowed = finite if allowed is None else allowed & finite
                    if skipped is None:
                        skipped = torch.zeros(self.count, dtype=torch.bool, device=self.device)
                    skipped[s:e] = ~finite & live
            new_param, new_state = group.step(param, grad)
            if allowed is not None:
                new_param = torch.where(allowed[:, None], new_param, param)
                old = group.state
                new_state = {
                    k: torch.where(allowed.view(-1, *([1] * (v.dim() - 1))), v, old[k]) if k in old else v
                    for k, v in new_state.items()
                }
            self.flat[s:e] = new_param
            group.state = new_state
        return skipped

    def run(self) -> list[ReplicaRun]:
        count, total = self.count, self.total_steps
        loss_hist = torch.empty(total, count, dtype=self.dtype, device=self.device)
        lr_hist = torch.empty(total, count, dtype=torch.float64, device=self.device)
        steps_done = [0] * count
        skipped = torch.zeros(count, dtype=torch.int64, device=self.device)
        divergence: list[str | None] = [None] * count
        evals: list[list[dict[str, float]]] = [[] for _ in range(count)]
        path = [self.flat.clone()] if self.record_path else None
        alive_list = [True] * count
        start = time.perf_counter()

        def evaluate(positions: list[int], step: int) -> list[dict[str, float]]:
            results = self._evaluate(positions)
            wall = (time.perf_counter() - start) / count
            for position, metrics in zip(positions, results, strict=True):
                record = {"epoch": len(evals[position]), "step": step, "grad_evals": step, "wall_s": wall}
                evals[position].append({**record, **metrics})
            return results

        initial = evaluate(list(range(count)), 0)
        thresholds = [_threshold(m["loss"], self.explosion_factor) for m in initial]
        threshold = torch.tensor(thresholds, dtype=torch.float64, device=self.device)
        for position, metrics in enumerate(initial):
            divergence[position] = _divergence(metrics["loss"], math.inf)
            alive_list[position] = divergence[position] is None
        alive = torch.tensor(alive_list, device=self.device)
        per_step = [
            p
            for p, s in enumerate(self.schedulers)
            if s is not None and self.specs[p].schedule.interval == "step"
        ]
        per_epoch = [
            p
            for p, s in enumerate(self.schedulers)
            if s is not None and self.specs[p].schedule.interval != "step"
        ]

        step = 0
        for epoch in range(self.epochs):
            if not any(alive_list):
                break
            for inputs, target in self._epoch_batches(epoch):
                if step >= total:
                    break
                lr_hist[step] = self.lr_all
                point = self.flat.detach().requires_grad_()
                losses = self._losses(point, inputs, target)
                (grads,) = torch.autograd.grad(losses.sum(), point)
                losses = losses.detach()
                if self.clip is not None:
                    grads = self._clip(grads)
                with torch.no_grad():
                    skip = self._update(grads, alive, alive_list)
                if skip is not None:
                    skipped += skip
                loss_hist[step] = losses
                step += 1
                if path is not None:
                    path.append(self.flat.clone())
                bad = (~torch.isfinite(losses) | (losses > threshold)) & alive
                if bool(bad.any()):
                    for position in torch.nonzero(bad).flatten().tolist():
                        value = float(losses[position])
                        divergence[position] = _divergence(value, thresholds[position])
                        alive_list[position] = False
                        steps_done[position] = step
                    alive = torch.tensor(alive_list, device=self.device)
                if per_step:
                    live = [p for p in per_step if alive_list[p]]
                    for position in live:
                        _step_scheduler(self.schedulers[position])
                    self._read_schedules(live)
            # the end of an epoch (or of the budget): evaluate the replicas still training
            live = [p for p in range(count) if alive_list[p]]
            results = evaluate(live, step)
            finite = torch.isfinite(self.flat).all(dim=1).tolist()
            for position, metrics in zip(live, results, strict=True):
                kind = _divergence(metrics["loss"], thresholds[position])
                if kind is None and not finite[position]:
                    kind = "nan"
                if kind is not None:
                    divergence[position] = kind
                    alive_list[position] = False
                    steps_done[position] = step
            alive = torch.tensor(alive_list, device=self.device)
            stepped = []
            for position in per_epoch:
                if alive_list[position]:
                    metric = evals[position][-1]["loss"]
                    _step_scheduler(self.schedulers[position], metric)
                    stepped.append(position)
            self._read_schedules(stepped)
            if step >= total:
                break
        for position in range(count):
            if alive_list[position]:
                steps_done[position] = step

        runs: list[ReplicaRun | None] = [None] * count
        loss_rows = loss_hist.t().tolist()
        lr_rows = lr_hist.t().tolist()
        skipped_list = skipped.tolist()
        paths = torch.stack(path, dim=1).tolist() if path is not None else None
        for position, spec in enumerate(self.specs):
            done = steps_done[position]
            runs[self.order[position]] = ReplicaRun(
                spec=spec,
                losses=loss_rows[position][:done],
                lrs=lr_rows[position][:done],
                evals=evals[position],
                params={
                    n: t.view(s).clone()
                    for n, t, s in zip(
                        self.names, self.flat[position].split(self.sizes), self.shapes, strict=True
                    )
                },
                steps=done,
                grad_evals=done,
                diverged=divergence[position] is not None,
                divergence=divergence[position],
                skipped_steps=int(skipped_list[position]),
                batched=True,
                trajectory=paths[position][: done + 1] if paths is not None else None,
            )
        return runs  # type: ignore[return-value]


def train_batched(
    problem: ReplicaProblem,
    specs: Sequence[ReplicaSpec],
    *,
    epochs: int | None = None,
    steps: int | None = None,
    explosion_factor: float = EXPLOSION_FACTOR,
    evaluation: Evaluation = "full",
    trajectory: bool = False,
    threads: int | None = 1,
) -> list[ReplicaRun]:
    """All of ``specs`` in one batched run (no memory check: see :func:`train_replicas`).

    Every spec needs a first-order optimizer of :mod:`optimlab.optim`; results come back in the
    order of ``specs``. ``threads``: torch's intra-op threads while training (restored after);
    the default 1 suits the replicas' small tensors — more threads cost more than they give,
    and many times more on a machine whose cores are busy; ``None`` keeps torch's setting."""
    if not specs:
        return []
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be ≥ 1, got {threads}")
    total_steps, epoch_count = _budget(problem, epochs, steps)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        engine = _BatchedRun(
            problem, specs, total_steps, epoch_count, explosion_factor, evaluation, trajectory
        )
        return engine.run()
    finally:
        torch.set_num_threads(previous)


def _activation_bytes(problem: ReplicaProblem, model: nn.Module, seed: int) -> int:
    """Bytes of the module outputs of one forward pass on the first batch (× 3: saved for the
    backward pass, their gradients, and vmap's temporaries)."""
    total = 0

    def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal total
        if isinstance(output, Tensor):
            total += output.numel() * output.element_size()

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        inputs, target = next(iter(problem.batches(seed, 0)))
        with torch.no_grad():
            model(inputs)
        total += (inputs.numel() * inputs.element_size() + target.numel() * target.element_size()) // 3
    except StopIteration:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return 3 * total


def train_replicas(
    problem: ReplicaProblem,
    specs: Sequence[ReplicaSpec],
    *,
    epochs: int | None = None,
    steps: int | None = None,
    mode: Mode = "auto",
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    explosion_factor: float = EXPLOSION_FACTOR,
    evaluation: Evaluation = "full",
    trajectory: bool = False,
    threads: int | None = 1,
) -> list[ReplicaRun]:
    """Train every run of ``specs`` on ``problem``; results in the order of ``specs``.

    ``mode="auto"`` batches the first-order runs (in chunks under ``memory_budget`` bytes) when the
    model allows it (:func:`model_batchable`) and runs the rest — L-BFGS, foreign optimizer
    classes, models with buffers or dropout — one after another; ``"batched"`` insists (and raises
    ``ValueError`` for what cannot be batched), ``"sequential"`` never batches.

    ``evaluation="full"`` records ``problem.evaluate(model)`` after each epoch (all its metrics);
    ``"loss"`` records only the full objective, computed for all replicas at once when the problem
    has ``x`` and ``y``. ``trajectory`` records the parameter vector after every step. ``threads``
    applies to the batched chunks (see :func:`train_batched`).
    """
    if mode not in ("auto", "batched", "sequential"):
        raise ValueError(f"mode must be 'auto', 'batched' or 'sequential', got {mode!r}")
    if evaluation not in ("full", "loss"):
        raise ValueError(f"evaluation must be 'full' or 'loss', got {evaluation!r}")
    total_steps, _ = _budget(problem, epochs, steps)
    options = {
        "epochs": epochs,
        "steps": steps,
        "explosion_factor": explosion_factor,
        "evaluation": evaluation,
        "trajectory": trajectory,
    }
    if not specs:
        return []
    if mode == "sequential":
        return [train_sequential(problem, spec, **options) for spec in specs]  # type: ignore[arg-type]

    probe = problem.build_model(specs[0].seed)
    batchable = [i for i, spec in enumerate(specs) if batchable_optimizer(spec.optimizer)]
    if mode == "batched":
        if len(batchable) != len(specs):
            other = optimizer_for(
                specs[next(i for i in range(len(specs)) if i not in set(batchable))].optimizer
            )
            raise ValueError(f"{other.__name__} cannot be batched; use mode='auto' or 'sequential'")
        if not model_batchable(probe):
            raise ValueError("this model cannot be batched (buffers, random layers or frozen parameters)")
    elif not model_batchable(probe) or len(batchable) < 2:
        batchable = []

    results: list[ReplicaRun | None] = [None] * len(specs)
    if batchable:
        n_params = sum(p.numel() for p in probe.parameters())
        itemsize = next(probe.parameters()).element_size()
        activations = _activation_bytes(problem, probe, specs[0].seed)
        per = max(
            replica_bytes(
                n_params,
                specs[i].optimizer,
                itemsize=itemsize,
                activation_bytes=activations,
                steps=total_steps,
            )
            for i in {specs[i].optimizer: i for i in batchable}.values()
        )
        start = 0
        for size in replica_chunks(len(batchable), per, memory_budget):
            chunk = batchable[start : start + size]
            start += size
            if size == 1 and mode == "auto":
                results[chunk[0]] = train_sequential(problem, specs[chunk[0]], **options)  # type: ignore[arg-type]
                continue
            runs = train_batched(problem, [specs[i] for i in chunk], threads=threads, **options)  # type: ignore[arg-type]
            for i, run in zip(chunk, runs, strict=True):
                results[i] = run
    for i, spec in enumerate(specs):
        if results[i] is None:
            results[i] = train_sequential(problem, spec, **options)  # type: ignore[arg-type]
    return results  # type: ignore[return-value]
