"""Schedule-Free SGD and AdamW (Defazio et al., "The Road Less Scheduled", NeurIPS 2024).

Schedule-Free replaces the learning-rate schedule by an average of the iterates. Three sequences:
z, the base optimizer's iterates (SGD's or AdamW's steps); x, their weighted average (the weights
to evaluate); and y = (1 − β)z + βx, where gradients are taken (β plays the role of momentum):

    y = (1 − β)z + βx;  g = ∇f(y);  z ← z − γₜ·d(g);  x ← (1 − cₜ)x + cₜz,
    cₜ = wₜ / Σᵢ≤ₜ wᵢ,  wₜ = tʳ · (maxᵢ≤ₜ γᵢ)^p  (r, p = weight_lr_power),  γₜ = γ·min(1, t/warmup).

Matched to the authors' package ``schedulefree`` 1.4.1 (``SGDScheduleFree``, ``AdamWScheduleFree``):
as there, the parameters hold y while training and x after :meth:`eval` (``optimizer.train()`` /
``optimizer.eval()`` swap them), the state holds z (and AdamW's ``exp_avg_sq``), x is never stored,
and one step updates y in place as

    y ← (1 − c)y + cz + γ(β(1 − c) − 1)·d;  z ← z − γd,

which is the three-sequence recursion rewritten (tests/test_optim_schedulefree.py checks every
engine against the package to float64 rounding). The group-level counters of the package live
in the param groups under its names — ``k`` (steps taken), ``scheduled_lr`` (γₜ), ``lr_max``,
``weight_sum`` (Σw), ``train_mode`` — and are host bookkeeping (:meth:`begin_group_step`); the
rules below get the step's scalars (γₜ, cₜ, AdamW's bias correction) as hyperparameters and hold
every per-element formula, so the fused engine compiles them (a new cₜ every step is a new operand
value, never a recompilation).

``l1`` (κ): the proximal step is taken on z, the base sequence: z ← prox(z − γd) with
threshold γκ (SGD) or γκ/D (AdamW, D its denominator below), and y follows the proximal z exactly
(y ← (1 − c)y + cz + (1 − β(1 − c))·(z_new − z), which is the formula above when there is no l1).
This is proximal SGD/AdamW as the online learner inside Schedule-Free's online-to-batch
conversion, so x — the average of sparse z's — minimizes f + κ‖·‖₁, but, being an average, x
itself reaches exact zeros only in the limit: z is sparse, x and y are small where z is zero.

Differences from the reference package, all deliberate: the gradient is only read (the package
overwrites ``p.grad`` with the normalized, decayed gradient); ``foreach`` is stored, not used
(both of the package's code paths compute the same numbers as every optimlab engine); a step in
eval mode raises the package's ``Exception`` and message.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

from optimlab.optim.base import NonFinitePolicy, RuleOptimizer, optional_term, scalar_hyperparameter
from optimlab.optim.rules import Number, State, _coupled_decay, _l1_step

__all__ = [
    "AdamWScheduleFree",
    "SGDScheduleFree",
    "adamw_schedulefree",
    "averaged_point",
    "gradient_point",
    "recompute_batchnorm",
    "sgd_schedulefree",
]

#: the reference package's error for ``step()`` in eval mode (it raises a plain ``Exception``)
NOT_IN_TRAIN_MODE = (
    "Optimizer was not in train mode when step is called. "
    "Please insert .train() and .eval() calls on the "
    "optimizer. See documentation for details."
)


# --- the rules -----------------------------------------------------------------------------


def _lerp(start: Tensor, end: Tensor, weight: Number) -> Tensor:
    """``torch.lerp`` for a float weight; for a 0-d tensor weight of any dtype (the fused engine's
    operands) start + w·(end − start), within an ulp of it (a ``torch.where`` on w < 0.5, torch's
    two-sided formula, made the compiled CPU kernel a hundred times slower)."""
    if not isinstance(weight, Tensor):
        return torch.lerp(start, end, weight)
    return start + weight * (end - start)


def _interpolated_step(
    param: Tensor,
    z: Tensor,
    direction: Tensor,
    *,
    lr: Number,
    ckp1: Number,
    beta: Number,
    l1: Number | None,
    scale: Number,
) -> tuple[Tensor, Tensor]:
    """The Schedule-Free step shared by both rules: (new y, new z) from y (``param``), z and the
    base optimizer's direction d (z ← z − γd), with the L1 proximal step on z (threshold l1·scale)."""
    y = _lerp(param, z, ckp1)
    if l1 is None:  # the reference's own arithmetic
        return y + lr * (beta * (1 - ckp1) - 1) * direction, z - lr * direction
    new_z = _l1_step(z - lr * direction, l1, scale)
    return y + (1 - beta * (1 - ckp1)) * (new_z - z), new_z


def sgd_schedulefree(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: Number,
    ckp1: Number,
    momentum: Number = 0.9,
    weight_decay: Number | None = None,
    l1: Number | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Schedule-Free SGD, one step of y (the parameter) and z.

    g ← ∇f(y) + λy;  y ← (1 − c)y + cz + γ(β(1 − c) − 1)g;  z ← z − γg.
    γ (``lr``) is the step's scheduled learning rate γₜ and c (``ckp1``) its averaging weight cₜ,
    both computed by the optimizer (:class:`SGDScheduleFree`); β is ``momentum``.
    l1: z ← prox(z − γg) with threshold γ·l1, y following z (see the module's docstring).
    State: ``z``.
    """
    g = _coupled_decay(grad, param, weight_decay)  # weight decay at y, as the package
    new_param, z = _interpolated_step(param, state["z"], g, lr=lr, ckp1=ckp1, beta=momentum, l1=l1, scale=lr)
    return new_param, {"z": z}


def adamw_schedulefree(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: Number,
    ckp1: Number,
    bias_correction2: Number,
    beta1: Number = 0.9,
    beta2: Number = 0.999,
    eps: Number = 1e-8,
    weight_decay: Number | None = None,
    l1: Number | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Schedule-Free AdamW, one step of y (the parameter), z and v.

    v ← β₂v + (1 − β₂)∇²;  D = √(v / (1 − β₂ᵗ)) + ε;  d = ∇/D + λy;
    y ← (1 − c)y + cz + γ(β₁(1 − c) − 1)d;  z ← z − γd.
    γ (``lr``), c (``ckp1``) and 1 − β₂ᵗ (``bias_correction2``) come from the optimizer
    (:class:`AdamWScheduleFree`). l1: z ← prox(z − γd) with threshold γ·l1/D, y following z.
    State: ``z``, ``exp_avg_sq`` (v).
    """
    exp_avg_sq = state["exp_avg_sq"] * beta2 + (1 - beta2) * grad * grad
    denom = (exp_avg_sq / bias_correction2).sqrt() + eps
    d = _coupled_decay(grad / denom, param, weight_decay)  # weight decay at y, after normalizing
    new_param, z = _interpolated_step(
        param, state["z"], d, lr=lr, ckp1=ckp1, beta=beta1, l1=l1, scale=lr / denom
    )
    return new_param, {"z": z, "exp_avg_sq": exp_avg_sq}


def averaged_point(y: Tensor, z: Tensor, beta: Number) -> Tensor:
    """x, the averaged weights to evaluate, from y and z: x = (y − (1 − β)z)/β, computed as
    lerp(y, z, 1 − 1/β) — what :meth:`~_ScheduleFree.eval` does to every parameter."""
    return torch.lerp(y, z, 1 - 1 / beta)


def gradient_point(x: Tensor, z: Tensor, beta: Number) -> Tensor:
    """y, where gradients are taken, from x and z: y = (1 − β)z + βx, computed as lerp(x, z, 1 − β)
    — what :meth:`~_ScheduleFree.train` does to every parameter (y → x → y rounds)."""
    return torch.lerp(x, z, 1 - beta)


# --- the declarations ----------------------------------------------------------------------


class _ScheduleFree(RuleOptimizer):
    """What both Schedule-Free optimizers share: the train/eval swap, the group-level counters
    and the reference's step guard. Subclasses say which group key holds β."""

    parameter_state = ("z",)  # the base sequence (see RuleOptimizer.parameter_state)

    elementwise = True
    hyperparameters_per_step = True  # the bookkeeping only makes γₜ, cₜ and the bias correction

    def _beta(self, group: dict[str, Any]) -> Any:
        raise NotImplementedError

    @torch.no_grad()
    def eval(self) -> None:
        """Switch the parameters to x, the averaged weights to evaluate (and to save): in each group
        in train mode, θ ← lerp(θ, z, 1 − 1/β), i.e. x = (y − (1 − β)z)/β."""
        for group in self.param_groups:
            if group["train_mode"]:
                for p in group["params"]:
                    state = self.state[p]
                    if "z" in state:
                        p.copy_(self.eval_point(p, state, group))
                group["train_mode"] = False

    @torch.no_grad()
    def train(self) -> None:
        """Switch the parameters to y, where gradients are taken: in each group in eval mode,
        θ ← lerp(θ, z, 1 − β), i.e. y = (1 − β)z + βx. Call it before the first step."""
        for group in self.param_groups:
            if not group["train_mode"]:
                for p in group["params"]:
                    state = self.state[p]
                    if "z" in state:
                        p.copy_(self.train_point(p, state, group))
                group["train_mode"] = True

    def eval_point(self, param: Tensor, state: dict[str, Tensor], group: dict[str, Any]) -> Tensor:
        """What :meth:`eval` makes of ``param`` (y) given its ``state`` and ``group``: x, as a new
        tensor (:func:`averaged_point`). The lab's batched replicas evaluate at it too."""
        return averaged_point(param, state["z"].to(param.device), self._beta(group))

    def train_point(self, param: Tensor, state: dict[str, Tensor], group: dict[str, Any]) -> Tensor:
        """What :meth:`train` makes of ``param`` (x): y, as a new tensor (:func:`gradient_point`)."""
        return gradient_point(param, state["z"].to(param.device), self._beta(group))

    @torch._disable_dynamo
    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """One step; raises the package's ``Exception`` in eval mode (checked on the first group)."""
        if not self.param_groups[0]["train_mode"]:
            raise Exception(NOT_IN_TRAIN_MODE)  # the package's exception type
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        super().step()
        return loss

    def begin_group_step(self, group: dict[str, Any]) -> None:
        """The package's group-level bookkeeping, in its order and arithmetic: γₜ (warmup),
        ``lr_max``, the averaging weight's running sum, and ``k`` advanced."""
        k = group["k"]
        warmup_steps = group["warmup_steps"]
        sched = (k + 1) / warmup_steps if k < warmup_steps else 1.0
        lr = group["lr"] * sched
        group["scheduled_lr"] = lr
        lr_max = group["lr_max"] = max(lr, group["lr_max"])
        weight = ((k + 1) ** group["r"]) * (lr_max ** group["weight_lr_power"])
        group["weight_sum"] = group["weight_sum"] + weight
        group["k"] = k + 1

    @staticmethod
    def _ckp1(group: dict[str, Any]) -> Any:
        """cₜ = wₜ / Σw for the step :meth:`begin_group_step` has just counted (0 while Σw = 0)."""
        weight = (group["k"] ** group["r"]) * (group["lr_max"] ** group["weight_lr_power"])
        try:
            return weight / group["weight_sum"]
        except ZeroDivisionError:
            return 0

    def _common_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "l1": optional_term(group["l1"]),
            "lr": scalar_hyperparameter(group["scheduled_lr"]),
            "ckp1": scalar_hyperparameter(self._ckp1(group)),
            "weight_decay": optional_term(group["weight_decay"]),
        }

    def _defaults(self, **values: Any) -> dict[str, Any]:
        return {
            **values,
            "k": 0,
            "train_mode": False,
            "weight_sum": 0.0,
            "lr_max": -1.0,
            "scheduled_lr": 0.0,
        }


class SGDScheduleFree(_ScheduleFree):
    """Schedule-Free SGD — see :func:`sgd_schedulefree` and the module's docstring.

    Call ``optimizer.train()`` before training and ``optimizer.eval()`` before evaluating or saving
    (the parameters hold y, resp. x). Defaults (``schedulefree.SGDScheduleFree`` 1.4.1): γ = 1.0,
    β (momentum) = 0.9, λ = 0, warmup_steps = 0, r = 0, weight_lr_power = 2. State: ``z``.
    Reference: Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, "The Road Less Scheduled",
    NeurIPS 2024 (arXiv:2405.15682), whose Schedule-Free SGD this is (its weights cₜ =
    γₜ²/Σγᵢ² are the package's with r = 0, p = 2, while γₜ never decreases).
    """

    rule = staticmethod(sgd_schedulefree)

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1.0,
        momentum: float = 0.9,
        weight_decay: float = 0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2,
        foreach: bool | None = hasattr(torch, "_foreach_mul_"),
        *,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if momentum <= 0 or momentum >= 1:
            raise ValueError(f"Momentum must be between 0 and 1 exclusive: {momentum}")
        defaults = self._defaults(
            lr=lr,
            momentum=momentum,
            r=r,
            warmup_steps=warmup_steps,
            weight_lr_power=weight_lr_power,
            weight_decay=weight_decay,
            foreach=foreach,
        )
        super().__init__(
            params,
            defaults,
            l1=l1,
            nonfinite=nonfinite,
            engine=engine,
            state_dtype=state_dtype,
            stochastic_rounding=stochastic_rounding,
        )

    def _beta(self, group: dict[str, Any]) -> Any:
        return group["momentum"]

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        return {"z": torch.clone(param, memory_format=torch.preserve_format)}

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        return {**self._common_hyperparameters(group), "momentum": scalar_hyperparameter(group["momentum"])}


class AdamWScheduleFree(_ScheduleFree):
    """Schedule-Free AdamW — see :func:`adamw_schedulefree` and the module's docstring.

    Call ``optimizer.train()`` before training and ``optimizer.eval()`` before evaluating or saving
    (the parameters hold y, resp. x). Defaults (``schedulefree.AdamWScheduleFree`` 1.4.1):
    γ = 0.0025, β = (0.9, 0.999), ε = 1e-8, λ = 0, warmup_steps = 0, r = 0, weight_lr_power = 2.
    The package validates no argument; neither does this class. State: ``z``, ``exp_avg_sq``.

    Reference: Defazio et al., "The Road Less Scheduled", NeurIPS 2024, Algorithm 1. Like the
    package's default class (not its ``AdamWScheduleFreePaper``) this differs from the paper in the
    bias correction: the paper scales the learning rate, γₜ = γ·√(1 − β₂ᵗ)·min(1, t/warmup) with
    D = √v + ε, hence also the decay term γₜλy and the averaging weights γₜ²; the package (and this
    class) divides v instead, D = √(v/(1 − β₂ᵗ)) + ε with γₜ = γ·min(1, t/warmup), so ε is not
    rescaled early on and the first steps weigh more in x. Weight decay is taken at y in both.
    The weights use the largest γₜ so far, (tʳ·max γᵢ)^p, the paper's γₜ² while γₜ never decreases.
    """

    rule = staticmethod(adamw_schedulefree)

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 0.0025,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        warmup_steps: int = 0,
        r: float = 0.0,
        weight_lr_power: float = 2.0,
        foreach: bool | None = hasattr(torch, "_foreach_mul_"),
        *,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        defaults = self._defaults(
            lr=lr,
            betas=betas,
            eps=eps,
            r=r,
            warmup_steps=warmup_steps,
            weight_lr_power=weight_lr_power,
            weight_decay=weight_decay,
            foreach=foreach,
        )
        super().__init__(
            params,
            defaults,
            l1=l1,
            nonfinite=nonfinite,
            engine=engine,
            state_dtype=state_dtype,
            stochastic_rounding=stochastic_rounding,
        )

    def _beta(self, group: dict[str, Any]) -> Any:
        return group["betas"][0]

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        return {
            "z": torch.clone(param, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
        }

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        beta1, beta2 = group["betas"]
        return {
            **self._common_hyperparameters(group),
            "bias_correction2": 1 - beta2 ** group["k"],  # k: the step being taken
            "beta1": scalar_hyperparameter(beta1),
            "beta2": scalar_hyperparameter(beta2),
            "eps": group["eps"],
        }


# --- BatchNorm -----------------------------------------------------------------------------


@torch.no_grad()
def recompute_batchnorm(
    model: nn.Module,
    optimizer: _ScheduleFree,
    batches: Iterable[Any],
    *,
    forward: Callable[[nn.Module, Any], Any] | None = None,
    precise: bool = False,
) -> None:
    """Recompute the BatchNorm running statistics at x before evaluating, as the authors advise.

    While training, a BatchNorm layer's running mean and variance are averages of statistics taken
    at y, the point where gradients are computed; evaluated at x they do not fit. This does what
    the package's README prescribes: ``optimizer.eval()`` (the parameters become x),
    ``model.train()``, then forward passes over ``batches`` (say ``itertools.islice(train_loader,
    50)``) under ``torch.no_grad()``, and ``model.eval()``. The model and the optimizer are left in
    eval mode: call ``model.train()`` and ``optimizer.train()`` before training on.

    ``forward(model, batch)`` runs one batch (default: ``model(batch[0])`` for a tuple or list,
    ``model(batch)`` otherwise). ``precise=True`` resets the statistics first and takes their
    plain average over the batches (as ``torch.optim.swa_utils.update_bn`` and PreciseBN do)
    instead of updating the running averages with each layer's momentum. Raises ``ValueError``
    when ``batches`` is empty (leaving everything as it was).
    """
    iterator = iter(batches)
    first = next(iterator, _NO_BATCH)
    if first is _NO_BATCH:
        raise ValueError("recompute_batchnorm needs at least one batch")
    run = forward if forward is not None else _default_forward
    layers = [
        m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    momenta = {layer: layer.momentum for layer in layers}
    optimizer.eval()
    model.train()
    try:
        if precise:
            for layer in layers:
                layer.reset_running_stats()
                layer.momentum = None  # cumulative average
        for batch in itertools.chain((first,), iterator):
            run(model, batch)
    finally:
        for layer, momentum in momenta.items():
            layer.momentum = momentum
        model.eval()


_NO_BATCH = object()


def _default_forward(model: nn.Module, batch: Any) -> Any:
    return model(batch[0] if isinstance(batch, tuple | list) else batch)
