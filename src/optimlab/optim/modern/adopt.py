"""ADOPT (modified Adam), checked against ``adopt.ADOPT`` (torch-adopt 0.1.0)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from optimlab.optim.base import (
    NonFinitePolicy,
    RuleOptimizer,
    check_beta,
    check_nonnegative,
    check_tensor_lr,
    optional_term,
    scalar_hyperparameter,
)
from optimlab.optim.optimizers import _betas, _step, _zeros
from optimlab.optim.rules import (
    Number,
    State,
    _coupled_decay,
    _decoupled_decay,
    _direction,
    _ema,
    _l1_step,
    _scalar,
)

__all__ = ["ADOPT", "adopt", "default_clip"]


def default_clip(step: Number) -> Number:
    """ADOPT's default clipping bound, c(t) = t^¼ (the reference's ``lambda step: step**0.25``)."""
    return step**0.25


def adopt(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: Number = 1e-3,
    beta1: Number = 0.9,
    beta2: Number = 0.9999,
    eps: Number = 1e-6,
    clip_lambda: Callable[[Number], Number] | None = default_clip,
    weight_decay: Number | None = None,
    decouple: bool = False,
    maximize: bool = False,
    l1: Number | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """ADOPT: normalize the gradient by the *previous* second moment, then take momentum.

    g ← ∇ + λθ (coupled; with ``decouple`` θ ← θ(1 − γλ) instead, from the second step on).
    First step (t = 0): v ← g², nothing else.  Then, with t the steps taken so far:
    n = g / max(√v, ε), clipped to [−c(t), c(t)] (c = ``clip_lambda``, t^¼ by default, None: no
    clipping);  m ← β₁m + (1 − β₁)n;  θ ← θ − γm;  v ← β₂v + (1 − β₂)g².  t ← t + 1.
    l1: threshold γ·l1/max(√v, ε) (v before its update; none on the first step).

    Defaults (adopt.ADOPT): γ = 1e-3, β = (0.9, 0.9999), ε = 1e-6, c(t) = t^¼, λ = 0, coupled.
    State: ``step``, ``exp_avg`` (m), ``exp_avg_sq`` (v). Reference: Taniguchi et al., "ADOPT:
    Modified Adam Can Converge with Any β₂ with the Optimal Rate", NeurIPS 2024 (Algorithm 1;
    the clipping, t^¼, is the paper's §4 practical variant, and the paper has no weight decay).
    """
    step = state["step"]
    g = _direction(grad, maximize)
    if not decouple:
        g = _coupled_decay(g, param, weight_decay)
    first = step == 0
    if first is True:  # the eager engine's host counter: the first step only fills v
        first_sq = state["exp_avg_sq"] + g * g
        return param, {"step": step + 1, "exp_avg": state["exp_avg"], "exp_avg_sq": first_sq}
    decayed = _decoupled_decay(param, lr, weight_decay) if decouple else param
    denom = torch.clamp_min(state["exp_avg_sq"].sqrt(), eps)
    normed = g / denom
    if clip_lambda is not None:
        clip = clip_lambda(_scalar(step))  # torch-adopt passes the counter as a Python float
        if isinstance(clip, Tensor):  # clamped in the gradient's dtype, as a Python bound would be
            clip = clip.to(normed.dtype)
        normed = torch.clamp(normed, -clip, clip)
    exp_avg = _ema(state["exp_avg"], normed, beta1)
    new_param = _l1_step(decayed - lr * exp_avg, l1, lr / denom)
    exp_avg_sq = beta2 * state["exp_avg_sq"] + (1 - beta2) * g * g
    if isinstance(first, Tensor):  # a tensor counter (fused engine, functional, replicas): select
        new_param = torch.where(first, param, new_param)
        exp_avg = torch.where(first, state["exp_avg"], exp_avg)
        exp_avg_sq = torch.where(first, state["exp_avg_sq"] + g * g, exp_avg_sq)
    return new_param, {"step": step + 1, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}


class ADOPT(RuleOptimizer):
    """ADOPT — see :func:`adopt`.

    ``clip_lambda`` (a function of the step count, or ``None``) is an attribute of the optimizer, not
    of its param groups, as in torch-adopt. It is called with the counter as a Python float on the
    eager path and as a float64 0-d tensor by the fused engine (a function that only takes floats,
    ``math.pow`` say, then fails to compile and is stepped eagerly). ``foreach=True`` computes what
    the for-loop computes: torch-adopt's foreach path instead reads the first parameter's step for
    the whole group and evaluates ``clip_lambda`` on a float32 tensor. ``fused=True`` raises, as
    torch-adopt does; ``capturable=True`` raises (optimlab's fused engine replaces it).
    """

    rule = staticmethod(adopt)
    host_step = True
    elementwise = True

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float] = (0.9, 0.9999),
        eps: float = 1e-6,
        clip_lambda: Callable[[int], float] | None = default_clip,
        weight_decay: float = 0.0,
        decouple: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        if isinstance(lr, Tensor) and foreach and not capturable:
            raise ValueError("lr as a Tensor is not supported for capturable=False and foreach=True")
        check_tensor_lr(lr)
        check_nonnegative(lr, "Invalid learning rate")
        check_nonnegative(eps, "Invalid epsilon value")
        check_beta(betas, 0)
        check_beta(betas, 1)
        check_nonnegative(weight_decay, "Invalid weight_decay value")
        self.clip_lambda = clip_lambda
        defaults = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "decouple": decouple,
            "maximize": maximize,
            "foreach": foreach,
            "capturable": capturable,
            "differentiable": differentiable,
            "fused": fused,
        }
        try:
            super().__init__(
                params,
                defaults,
                l1=l1,
                nonfinite=nonfinite,
                engine=engine,
                state_dtype=state_dtype,
                stochastic_rounding=stochastic_rounding,
            )
        except RuntimeError:
            if fused:  # torch-adopt refuses fused=True before any other fused check
                raise RuntimeError("`fused` is not currently supported") from None
            raise
        if fused:
            raise RuntimeError("`fused` is not currently supported")

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        return {"step": _step(group, param), "exp_avg": _zeros(param), "exp_avg_sq": _zeros(param)}

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "l1": optional_term(group["l1"]),
            "lr": scalar_hyperparameter(group["lr"]),
            **_betas(group),
            "eps": group["eps"],
            "clip_lambda": self.clip_lambda,
            "weight_decay": optional_term(group["weight_decay"]),
            "decouple": group["decouple"],
            "maximize": group["maximize"],
        }
