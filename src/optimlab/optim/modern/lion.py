"""Lion (EvoLved Sign Momentum), checked against ``lion_pytorch.Lion`` (lion-pytorch 0.2.5)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from optimlab.optim.base import NonFinitePolicy, RuleOptimizer, optional_term, scalar_hyperparameter
from optimlab.optim.optimizers import _zeros
from optimlab.optim.rules import Number, State, _decoupled_decay, _l1_step

__all__ = ["Lion", "lion"]


def lion(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: Number = 1e-4,
    beta1: Number = 0.9,
    beta2: Number = 0.99,
    weight_decay: Number | None = None,
    l1: Number | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Lion: the sign of an interpolated momentum, with decoupled weight decay.

    c = β₁m + (1 − β₁)∇;  θ ← θ(1 − γλ) − γ·sign(c);  m ← β₂m + (1 − β₂)∇.
    Every coordinate moves by exactly γ (or 0), so l1: threshold γ·l1.

    Defaults (lion_pytorch.Lion): γ = 1e-4, β = (0.9, 0.99), λ = 0. State: ``exp_avg`` (m), no
    step counter. Reference: Chen et al., "Symbolic Discovery of Optimization Algorithms",
    NeurIPS 2023 (Algorithm 2; the paper suggests a γ 3–10× smaller and a λ 3–10× larger than
    AdamW's).
    """
    update = (beta1 * state["exp_avg"] + (1 - beta1) * grad).sign()
    new_param = _decoupled_decay(param, lr, weight_decay) - lr * update
    exp_avg = beta2 * state["exp_avg"] + (1 - beta2) * grad
    return _l1_step(new_param, l1, lr), {"exp_avg": exp_avg}


class Lion(RuleOptimizer):
    """Lion — see :func:`lion`.

    As in lion_pytorch, ``decoupled_weight_decay=True`` divides every group's ``weight_decay`` by the
    constructor's ``lr`` (θ ← θ(1 − γ·λ/γ₀), so that a schedule scales the decay but the base
    learning rate does not); it and ``use_triton`` are attributes of the optimizer, not of its param
    groups, as there. ``use_triton=True`` (lion_pytorch's hand-written CUDA kernel) selects the fused
    engine, whose compiled kernel is Triton on a GPU and C++ on the CPU. No ``maximize`` (lion_pytorch
    has none). Invalid ``lr`` (≤ 0) or ``betas`` (outside [0, 1]) raise a bare ``AssertionError``, as
    there; a negative ``weight_decay`` is accepted, as there.
    """

    rule = staticmethod(lion)
    elementwise = True

    def __init__(
        self,
        params: Any,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        use_triton: bool = False,
        decoupled_weight_decay: bool = False,
        *,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        if not lr > 0.0:
            raise AssertionError  # lion_pytorch: ``assert lr > 0.``
        if not all(0.0 <= beta <= 1.0 for beta in betas):
            raise AssertionError
        self._init_lr = lr
        self.decoupled_wd = decoupled_weight_decay
        self.use_triton = use_triton
        if use_triton and engine is None:
            engine = "fused"
        defaults = {"lr": lr, "betas": betas, "weight_decay": weight_decay}
        super().__init__(
            params,
            defaults,
            l1=l1,
            nonfinite=nonfinite,
            engine=engine,
            state_dtype=state_dtype,
            stochastic_rounding=stochastic_rounding,
        )

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        return {"exp_avg": _zeros(param)}

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        beta1, beta2 = group["betas"]
        weight_decay = group["weight_decay"]
        if self.decoupled_wd:
            weight_decay = weight_decay / self._init_lr
        return {
            "l1": optional_term(group["l1"]),
            "lr": scalar_hyperparameter(group["lr"]),
            "beta1": scalar_hyperparameter(beta1),
            "beta2": scalar_hyperparameter(beta2),
            "weight_decay": optional_term(weight_decay),
        }
