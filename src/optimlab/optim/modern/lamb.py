"""LAMB (You et al. 2020), matched to ``pytorch_optimizer.Lamb`` (pytorch-optimizer 4.1.0).

Reference: You, Li, Reddi, Hseu, Kumar, Bhojanapalli, Song, Demmel, Keutzer & Hsieh, "Large Batch
Optimization for Deep Learning: Training BERT in 76 minutes", ICLR 2020 (arXiv:1904.00962).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from optimlab.optim.base import NonFinitePolicy, RuleOptimizer, optional_term
from optimlab.optim.distributed import is_distributed
from optimlab.optim.rules import Number, State, _direction, _ema, _l1_step, _sqrt

__all__ = ["Lamb", "NegativeLRError", "lamb", "lamb_statistics"]

#: the weight norm's upper clamp (``pytorch_optimizer.Lamb.clamp``)
CLAMP = 10.0


class NegativeLRError(ValueError):
    """pytorch-optimizer's error for a negative learning rate (same name and message)."""

    def __init__(self, lr: Any, lr_type: str = "") -> None:
        self.note = lr_type if lr_type else "learning rate"
        self.message = f"{self.note} must be positive. ({lr} > 0)"
        super().__init__(self.message)


def _moments(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: Number,
    beta1: Number,
    beta2: Number,
    beta3: Number,
    eps: Number,
    weight_decay: Number | None,
    weight_decouple: bool,
    fixed_decay: bool,
    step_size: Number,
    rectify: bool,
    adaptive: bool,
    grad_scale: Number | None,
    maximize: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor]:
    """(θ after decoupled decay, m, v, √v + ε or None, the tensor whose norm is ‖u‖)."""
    g = grad if grad_scale is None else grad * grad_scale
    g = _direction(g, maximize)
    exp_avg = state["exp_avg"] * beta1 + beta3 * g
    exp_avg_sq = _ema(state["exp_avg_sq"], g * g, beta2)
    if weight_decay is not None and weight_decouple:
        param = param * (1.0 - weight_decay * (1.0 if fixed_decay else lr))
    if rectify:
        if adaptive:
            denom = exp_avg_sq.sqrt() + eps
            return param, exp_avg, exp_avg_sq, denom, param - step_size * (exp_avg / denom)
        return param, exp_avg, exp_avg_sq, None, param - step_size * exp_avg
    denom = exp_avg_sq.sqrt() + eps
    update = exp_avg / denom
    if weight_decay is not None and not weight_decouple:
        update = update + weight_decay * param
    return param, exp_avg, exp_avg_sq, denom, update


def lamb_statistics(param: Tensor, grad: Tensor, state: State, **hyper: Any) -> dict[str, Tensor]:
    """LAMB's per-tensor sums: ‖θ‖² (after decoupled decay) and ‖u‖² of the Adam direction u."""
    hyper = {k: v for k, v in hyper.items() if k not in ("l1", "adam", "move")}
    decayed, _, _, _, update = _moments(param, grad, state, **hyper)
    return {"weight_sq": (decayed * decayed).sum(), "update_sq": (update * update).sum()}


def lamb(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: Number,
    beta1: Number = 0.9,
    beta2: Number = 0.999,
    beta3: Number = 0.1,
    eps: Number = 1e-6,
    weight_decay: Number | None = None,
    weight_decouple: bool = True,
    fixed_decay: bool = False,
    step_size: Number,
    rectify: bool = False,
    adaptive: bool = True,
    move: bool = True,
    adam: bool = False,
    grad_scale: Number | None = None,
    maximize: bool = False,
    weight_sq: Number,
    update_sq: Number,
    l1: Number | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """LAMB: Adam's direction scaled per tensor by the trust ratio ‖θ‖ / ‖u‖.

    g ← ∇·s (``pre_norm``: s = min(1, max_grad_norm / (‖∇‖_global + ε))), −g with ``maximize``;
    m ← β₁m + β₃g (β₃ = 1 − β₁ with ``grad_averaging``, else 1);  v ← β₂v + (1 − β₂)g²;
    θ ← θ(1 − γλ) (``weight_decouple``; θ(1 − λ) with ``fixed_decay``);
    u = m / (√v + ε) (+ λθ when the decay is coupled);  φ = min(‖θ‖, 10);
    r = φ / (‖u‖ + ε), or 1 if φ or ‖u‖ is 0 (1 always with ``adam=True``);
    θ ← θ − η r u with η = γ / (1 − β₁ᵗ) (``step_size``, computed by the declaration).
    ``rectify``: RAdam's rectified step — η = γ·rₜ/(1 − β₁ᵗ) and θ ← θ − η r m/(√v + ε) once
    ρₜ ≥ ``n_sma_threshold`` (θ − η r m before, with ``degenerated_to_sgd``; no step otherwise,
    ``move=False``); there, as in the reference, ‖u‖ is the norm of θ − η m/(√v + ε) (of the
    moved parameter, not of the direction) and a coupled weight decay is not applied at all.
    ``weight_sq``/``update_sq``: ‖θ‖², ‖u‖², the :func:`lamb_statistics`.
    l1: threshold η·r·l1/(√v + ε).

    State: ``exp_avg`` (m), ``exp_avg_sq`` (v), and ``weight_norm`` (φ), ``adam_norm`` (‖u‖),
    ``trust_ratio`` (r) from the first step that moves. See :class:`Lamb` for the reference's
    deviations from the paper.
    """
    decayed, exp_avg, exp_avg_sq, denom, update = _moments(
        param,
        grad,
        state,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        beta3=beta3,
        eps=eps,
        weight_decay=weight_decay,
        weight_decouple=weight_decouple,
        fixed_decay=fixed_decay,
        step_size=step_size,
        rectify=rectify,
        adaptive=adaptive,
        grad_scale=grad_scale,
        maximize=maximize,
    )
    new_state: dict[str, Tensor] = {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
    if not move:  # rectify before the threshold without degenerated_to_sgd: moments and decay only
        return decayed, new_state
    weight_norm = torch.clamp(
        torch.as_tensor(_sqrt(weight_sq), dtype=param.dtype, device=param.device), 0.0, CLAMP
    )
    adam_norm = torch.as_tensor(_sqrt(update_sq), dtype=param.dtype, device=param.device)
    trust_ratio = torch.where(
        (weight_norm == 0) | (adam_norm == 0), torch.ones_like(weight_norm), weight_norm / (adam_norm + eps)
    )
    new_state.update(weight_norm=weight_norm, adam_norm=adam_norm, trust_ratio=trust_ratio)
    ratio = 1.0 if adam else trust_ratio
    if rectify and not adaptive:
        return _l1_step(decayed - (step_size * ratio) * exp_avg, l1, step_size * ratio), new_state
    new_param = decayed - (step_size * ratio) * (exp_avg / denom if rectify else update)
    return _l1_step(new_param, l1, step_size * ratio / denom), new_state


def _global_grad_scale(groups: list[dict[str, Any]], max_grad_norm: float, eps: float) -> Tensor:
    """``pytorch_optimizer``'s ``Lamb.get_global_gradient_norm``: min(1, max_grad_norm / (‖∇‖ + ε))
    over every gradient of ``groups``, the per-tensor norms squared and summed in float32."""
    params = [p for group in groups for p in group["params"]]
    device = params[0].device if params else torch.device("cpu")
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        total = torch.zeros(1, dtype=torch.float32, device=device)
    else:
        norms = []
        for grad in grads:
            if grad.dtype in (torch.float16, torch.bfloat16):
                grad = grad.float()
            norm = torch.linalg.vector_norm(grad)
            norms.append(norm.full_tensor() if is_distributed(norm) else norm)  # type: ignore[attr-defined]
        total = torch.stack([n.to(device) for n in norms]).float().square_().sum().reshape(1)
    total = total.sqrt_().add_(eps)
    return torch.clamp(max_grad_norm / total, max=1.0).squeeze(0)


class Lamb(RuleOptimizer):
    """LAMB — Adam updates scaled per tensor by a trust ratio, as ``pytorch_optimizer.Lamb``.

    θ ← θ − η·r·m/(√v + ε) with r = min(‖θ‖, 10) / (‖m/(√v + ε)‖ + ε) — see :func:`lamb`.
    Defaults (pytorch-optimizer 4.1.0): γ = 1e-3, β = (0.9, 0.999), λ = 0 decoupled, ε = 1e-6,
    grad_averaging, max_grad_norm = 1 (used only with ``pre_norm``). The trust ratio's norms are
    per-tensor :attr:`statistics` (DTensor shards reduced); ``pre_norm``'s global gradient norm,
    over all param groups, is computed once per step by :meth:`begin_step`. The step counter is the
    param group's ``group["step"]``, as the reference keeps it.

    Deviations of the reference from the paper (You et al., ICLR 2020, Algorithm 2), all kept:
    the weight norm is clamped to [0, 10] (the paper's φ is the identity in its experiments, and a
    clamp to [γ_l, γ_u] in its theory); ε is added to ‖u‖ in the ratio (r = φ/(‖u‖ + ε), the paper
    has φ(‖θ‖)/‖u‖) and r = 1 when either norm is 0; only the first moment is bias-corrected, through
    the step size γ/(1 − β₁ᵗ) (the paper corrects both m and v; ``adam_debias=True``, accepted in
    ``**kwargs`` as by the reference, drops that correction too); m is averaged with weight 1 − β₁
    (``grad_averaging``); decoupled decay multiplies θ by 1 − γλ before the norms are taken instead
    of adding λθ to u (the paper's form is ``weight_decouple=False``). Its ``rectify`` variant is
    RAdam-style and takes the "update" norm of the moved parameter (see :func:`lamb`); a coupled
    decay is then ignored. ``pre_norm``'s scale is rounded to float32. The reference's ``adanorm``
    option (in ``**kwargs``) is refused. Like the reference, ``maximize``, ``pre_norm``,
    ``degenerated_to_sgd`` and ``n_sma_threshold`` are attributes of the optimizer, not of its groups.
    """

    rule = staticmethod(lamb)
    statistics = staticmethod(lamb_statistics)
    statistics_scope = "tensor"
    elementwise = True  # given its statistics: the fused engine compiles it with them as operands
    sparse_gradient_error = "{name} does not support sparse gradient."
    clamp: float = CLAMP

    def __init__(
        self,
        params: Any,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        weight_decay: float = 0.0,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        rectify: bool = False,
        degenerated_to_sgd: bool = False,
        n_sma_threshold: int = 5,
        grad_averaging: bool = True,
        max_grad_norm: float = 1.0,
        adam: bool = False,
        pre_norm: bool = False,
        eps: float = 1e-6,
        foreach: bool | None = None,
        maximize: bool = False,
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
        for name, beta in (("beta1", betas[0]), ("beta2", betas[1])):
            if (name == "beta2" or beta is not None) and not 0.0 <= beta < 1.0:
                raise ValueError(f"{name} must be in the range [0.0, 1.0)")
        for name, value in (("weight_decay", weight_decay), ("max_grad_norm", max_grad_norm), ("eps", eps)):
            if value is not None and value < 0.0:
                raise ValueError(f"{name} must be non-negative")
        if kwargs.get("adanorm"):
            raise ValueError("adanorm=True is not supported by optimlab.optim.Lamb")
        self.degenerated_to_sgd = degenerated_to_sgd
        self.n_sma_threshold = n_sma_threshold
        self.pre_norm = pre_norm
        self.foreach = foreach
        self.maximize = maximize
        self._grad_scale: Tensor | None = None
        defaults = {
            "lr": lr,
            "betas": betas,
            "weight_decay": weight_decay,
            "weight_decouple": weight_decouple,
            "fixed_decay": fixed_decay,
            "rectify": rectify,
            "grad_averaging": grad_averaging,
            "max_grad_norm": max_grad_norm,
            "adam": adam,
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

    def __str__(self) -> str:
        return "Lamb"

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        # The reference stores a Python 1.0 as trust_ratio when a norm is 0: a tensor here.
        for param, param_state in self.state.items():
            for key in ("weight_norm", "adam_norm", "trust_ratio"):
                value = param_state.get(key)
                if value is not None and not isinstance(value, Tensor):
                    param_state[key] = torch.tensor(float(value), dtype=param.dtype, device=param.device)

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        zeros = torch.zeros_like(param, memory_format=torch.preserve_format)
        return {"exp_avg": zeros, "exp_avg_sq": zeros.clone()}

    def begin_step(self, groups: list[dict[str, Any]]) -> None:
        """The reference's once-per-step work: ``pre_norm``'s global gradient scale (over every
        group that steps) and each group's counter."""
        self._grad_scale = None
        if self.pre_norm and self.defaults["max_grad_norm"] != 0.0:
            self._grad_scale = _global_grad_scale(
                groups, self.defaults["max_grad_norm"], self.defaults["eps"]
            )
        for group in groups:
            group["step"] = group.get("step", 0) + 1

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        step = group["step"]
        beta1, beta2 = group["betas"]
        step_size, n_sma = float(group["lr"]), 0.0
        if group["rectify"]:  # RAdam's rectification (BaseOptimizer.get_rectify_step_size)
            n_sma_max = 2.0 / (1.0 - beta2) - 1.0
            beta2_t = beta2**step
            n_sma = n_sma_max - 2 * step * beta2_t / (1.0 - beta2_t)
            if n_sma >= self.n_sma_threshold:
                rt = math.sqrt(
                    (1.0 - beta2_t)
                    * (n_sma - 4)
                    / (n_sma_max - 4)
                    * (n_sma - 2)
                    / n_sma
                    * n_sma_max
                    / (n_sma_max - 2)
                )
            else:
                rt = 1.0 if self.degenerated_to_sgd else -1.0
            step_size = step_size * rt
        if not group.get("adam_debias", False):
            step_size = step_size / (1.0 - math.pow(beta1, step))
        return {
            "l1": optional_term(group["l1"]),
            "lr": group["lr"],
            "beta1": beta1,
            "beta2": beta2,
            "beta3": 1.0 - beta1 if group["grad_averaging"] else 1.0,
            "eps": group["eps"],
            "weight_decay": optional_term(group["weight_decay"]),
            "weight_decouple": bool(group["weight_decouple"]),
            "fixed_decay": bool(group["fixed_decay"]),
            "step_size": step_size,
            "rectify": bool(group["rectify"]),
            "adaptive": bool(n_sma >= self.n_sma_threshold),
            "move": not (group["rectify"] and step_size <= 0),
            "adam": bool(group["adam"]),
            "grad_scale": self._grad_scale,
            "maximize": bool(self.maximize),
        }
