"""AdEMAMix (Adam with a mixture of two EMAs), checked against ``pytorch_optimizer.AdEMAMix``
(pytorch-optimizer 4.1.0)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from optimlab.optim.base import NonFinitePolicy, RuleOptimizer, optional_term, scalar_hyperparameter
from optimlab.optim.modern.errors import NegativeLRError, NoComplexParameterError, NoSparseGradientError
from optimlab.optim.optimizers import _zeros
from optimlab.optim.rules import (
    Number,
    State,
    _coupled_decay,
    _decoupled_decay,
    _direction,
    _ema,
    _l1_step,
    _select,
    _sqrt,
)

__all__ = ["AdEMAMix", "ademamix", "ademamix_schedule"]

#: pytorch-optimizer's options that AdEMAMix reads from ``**kwargs``; both use a norm of the whole
#: tensor (not elementwise), which this rule does not implement
_UNSUPPORTED_KWARGS = ("cautious", "stable_adamw")


def _log(value: Number) -> Number:
    return value.log() if isinstance(value, Tensor) else math.log(value)


def _exp(value: Number) -> Number:
    return value.exp() if isinstance(value, Tensor) else math.exp(value)


def ademamix_schedule(
    step: Number, alpha: Number, beta1: Number, beta3: Number, t_alpha_beta3: Number | None
) -> tuple[Number, Number]:
    """(α(t), β₃(t)): the linear warm-up of α and the half-life-linear warm-up of β₃ over T steps,
    α(t) = min(tα/T, α),  β₃(t) = min(exp(ln β₁ ln β₃ / ((1 − t/T) ln β₃ + (t/T) ln β₁)), β₃);
    (α, β₃) when T is ``None``."""
    if t_alpha_beta3 is None:
        return alpha, beta3
    scaled = step * alpha / t_alpha_beta3
    alpha_t = _select(scaled < alpha, scaled, alpha)
    log_beta1, log_beta3 = _log(beta1), _log(beta3)
    fraction = step / t_alpha_beta3
    warm = _exp(log_beta1 * log_beta3 / ((1.0 - fraction) * log_beta3 + fraction * log_beta1))
    return alpha_t, _select(warm < beta3, warm, beta3)


def ademamix(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    step: Number,
    lr: Number = 1e-3,
    beta1: Number = 0.9,
    beta2: Number = 0.999,
    beta3: Number = 0.9999,
    alpha: Number = 5.0,
    t_alpha_beta3: Number | None = None,
    eps: Number = 1e-8,
    weight_decay: Number | None = None,
    weight_decouple: bool = False,
    fixed_decay: bool = False,
    maximize: bool = False,
    l1: Number | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """AdEMAMix: Adam's fast momentum plus α times a slow one (β₃ ≈ 1) that remembers old gradients.

    t is the param group's step count (after its increment, a hyperparameter here: the reference
    keeps it in the group).  g ← ∇ + λθ, or with ``weight_decouple`` θ ← θ(1 − γλ) instead
    (θ ← θ(1 − λ) with ``fixed_decay``);  α(t), β₃(t) from :func:`ademamix_schedule`;
    m₁ ← β₁m₁ + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²;  m₂ ← β₃(t)m₂ + (1 − β₃(t))g;
    D = √v/√(1 − β₂ᵗ) + ε;  θ ← θ − γ(m₁/(1 − β₁ᵗ) + α(t)m₂)/D.
    l1: threshold γ·l1·(1 + α(t))/D (both momenta's steady-state gain).

    Defaults (pytorch_optimizer.AdEMAMix): γ = 1e-3, β = (0.9, 0.999, 0.9999), α = 5, T = None
    (no warm-up), ε = 1e-8, λ = 0, coupled. State: ``exp_avg`` (m₁), ``exp_avg_sq`` (v),
    ``exp_avg_slow`` (m₂); the group's ``step``. Reference: Pagliardini, Ablin & Grangier, "The
    AdEMAMix Optimizer: Better, Faster, Older", arXiv:2409.03137, 2024 (Algorithm 1, which decays
    decoupled, AdamW's way: the reference's default is coupled L2, ``weight_decouple=True`` is the
    paper's).
    """
    g = _direction(grad, maximize)
    if weight_decouple:
        param = _decoupled_decay(param, 1.0 if fixed_decay else lr, weight_decay)
    else:
        g = _coupled_decay(g, param, weight_decay)
    alpha_t, beta3_t = ademamix_schedule(step, alpha, beta1, beta3, t_alpha_beta3)
    exp_avg = _ema(state["exp_avg"], g, beta1)
    exp_avg_sq = beta2 * state["exp_avg_sq"] + (1 - beta2) * g * g
    exp_avg_slow = _ema(state["exp_avg_slow"], g, beta3_t)
    denom = exp_avg_sq.sqrt() / _sqrt(1 - beta2**step) + eps
    update = exp_avg / (1 - beta1**step) + alpha_t * exp_avg_slow
    new_param = _l1_step(param - lr * (update / denom), l1, lr * (1 + alpha_t) / denom)
    return new_param, {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq, "exp_avg_slow": exp_avg_slow}


def _check_range(value: Any, name: str, closed: bool) -> None:
    """pytorch-optimizer's ``validate_range`` on [0, 1) (or [0, 1] when ``closed``)."""
    if not (0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0):
        raise ValueError(f"{name} must be in the range [0.0, 1.0{']' if closed else ')'}")


def _check_non_negative(value: Any, name: str) -> None:
    if value is not None and value < 0.0:
        raise ValueError(f"{name} must be non-negative")


class AdEMAMix(RuleOptimizer):
    """AdEMAMix — see :func:`ademamix`.

    As in pytorch-optimizer, the step count is each param group's ``group["step"]`` (a Python int,
    created by the first step and saved in ``state_dict``'s param groups), advanced for every group
    at every step, with or without gradients; a group that ``nonfinite="skip"`` skips keeps its
    count. ``maximize`` is an attribute of the optimizer, not of its groups, and ``foreach`` is
    accepted and changes nothing, as there. Extra keyword arguments go into the param groups, as
    there, but ``cautious`` and ``stable_adamw`` (pytorch-optimizer's whole-tensor rescalings) are
    refused. Unlike the reference, the gradient is only read (pytorch-optimizer negates it and adds
    the coupled decay to it in place). Errors: pytorch-optimizer's messages and exception names
    (:mod:`optimlab.optim.modern.errors`). ``functional.update("ademamix", ...)`` needs the count:
    pass ``step=t`` (1 on the first step).
    """

    rule = staticmethod(ademamix)
    elementwise = True
    hyperparameters_per_step = True  # the group's step count only reaches the rule as ``step``

    def __init__(
        self,
        params: Any,
        lr: float | Tensor = 1e-3,
        betas: tuple[float, float, float] = (0.9, 0.999, 0.9999),
        weight_decay: float = 0.0,
        weight_decouple: bool = False,
        fixed_decay: bool = False,
        alpha: float = 5.0,
        t_alpha_beta3: float | None = None,
        eps: float = 1e-8,
        maximize: bool = False,
        foreach: bool | None = None,
        *,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
        **kwargs: Any,
    ) -> None:
        if lr is not None and lr < 0.0:
            raise NegativeLRError(lr)
        if betas[0] is not None:
            _check_range(betas[0], "beta1", closed=False)
        _check_range(betas[1], "beta2", closed=False)
        if len(betas) > 2 and betas[2] is not None:
            _check_range(betas[2], "beta3", closed=True)
        _check_non_negative(alpha, "alpha")
        _check_non_negative(t_alpha_beta3, "t_alpha_beta3")
        _check_non_negative(weight_decay, "weight_decay")
        _check_non_negative(eps, "eps")
        _refuse_unsupported(kwargs)
        self.maximize = maximize
        self.foreach = foreach
        defaults = {
            "lr": lr,
            "betas": betas,
            "weight_decay": weight_decay,
            "weight_decouple": weight_decouple,
            "fixed_decay": fixed_decay,
            "alpha": alpha,
            "t_alpha_beta3": t_alpha_beta3,
            "eps": eps,
            "foreach": foreach,
            **kwargs,
        }
        super().__init__(
            params,
            defaults,
            l1=l1,
            nonfinite=nonfinite,
            engine=engine,
            state_dtype=state_dtype,
            stochastic_rounding=stochastic_rounding,
        )

    def begin_group_step(self, group: dict[str, Any]) -> None:
        """The group's step count advances, as in pytorch-optimizer (not for a group that
        ``nonfinite`` skips)."""
        group["step"] = group.get("step", 0) + 1

    def params_with_grad(self, group: dict[str, Any]) -> tuple[list[Tensor], list[Tensor]]:
        for p in group["params"]:
            if p.grad is not None:
                if p.grad.is_sparse:
                    raise NoSparseGradientError(type(self).__name__)
                if torch.is_complex(p):
                    raise NoComplexParameterError(type(self).__name__)
        return super().params_with_grad(group)

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        return {"exp_avg": _zeros(param), "exp_avg_sq": _zeros(param), "exp_avg_slow": _zeros(param)}

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        _refuse_unsupported(group)
        if "step" not in group:
            raise ValueError(
                "AdEMAMix keeps its step count in the param group: step() advances it; "
                "functional.update('ademamix', ...) needs step=t (1 on the first step)"
            )
        beta1, beta2, beta3 = group["betas"]
        return {
            "l1": optional_term(group["l1"]),
            "step": group["step"],
            "lr": scalar_hyperparameter(group["lr"]),
            "beta1": scalar_hyperparameter(beta1),
            "beta2": scalar_hyperparameter(beta2),
            "beta3": scalar_hyperparameter(beta3),
            "alpha": group["alpha"],
            "t_alpha_beta3": group["t_alpha_beta3"],
            "eps": group["eps"],
            "weight_decay": optional_term(group["weight_decay"]),
            "weight_decouple": group["weight_decouple"],
            "fixed_decay": group["fixed_decay"],
            "maximize": self.maximize,
        }


def _refuse_unsupported(options: dict[str, Any]) -> None:
    for name in _UNSUPPORTED_KWARGS:
        if options.get(name):
            raise ValueError(
                f"AdEMAMix({name}=True) is not supported by optimlab.optim: it rescales the update by a "
                "norm of the whole tensor, which this elementwise rule does not compute"
            )
