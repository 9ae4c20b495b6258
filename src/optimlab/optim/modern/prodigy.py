"""Prodigy (Mishchenko & Defazio 2024), matched to ``prodigyopt.Prodigy`` (prodigyopt 1.1.2).

Reference: Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free Learner",
ICML 2024 (arXiv:2306.06101).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from optimlab.optim.base import NonFinitePolicy, RuleOptimizer, optional_term
from optimlab.optim.distributed import is_distributed
from optimlab.optim.rules import Number, State, _l1_step, _select

__all__ = ["Prodigy", "prodigy", "prodigy_statistics"]


def _sliced(tensor: Tensor, slice_p: int | None) -> Tensor:
    """Every ``slice_p``-th entry of the flattened tensor (all of them for ``None``)."""
    if is_distributed(tensor):
        return _sliced_distributed(tensor, slice_p)
    flat = tensor.flatten()
    return flat if slice_p is None else flat[::slice_p]


def _sliced_distributed(tensor: Any, slice_p: int | None) -> Any:
    """:func:`_sliced` of a DTensor, as a 1-D DTensor sharded on dim 0 wherever ``tensor`` is sharded.

    The flat view of a tensor sharded evenly on dim 0 keeps each rank's elements. Otherwise (FSDP2
    shards dim 0 unevenly when the mesh does not divide it: (3, 16) on 2 ranks holds 2 and 1 rows,
    while a flat (48,) DTensor holds 24 and 24 entries; or ``slice_p`` > 1) no 1-D DTensor holds the
    same local entries, so the tensor is gathered, flattened (sliced) and split again.
    """
    from torch.distributed.tensor import Replicate, Shard

    placements = tuple(tensor.placements)
    shards = math.prod(
        tensor.device_mesh.size(dim) for dim, placement in enumerate(placements) if placement.is_shard()
    )
    keeps_shards = tensor.dim() <= 1 or tensor.shape[0] % shards == 0
    if slice_p is None and keeps_shards and all(p == Shard(0) or p.is_replicate() for p in placements):
        return tensor.flatten()
    whole = tensor.redistribute(placements=[Replicate()] * len(placements))
    flat = whole.flatten() if slice_p is None else whole.flatten()[::slice_p]
    return flat.redistribute(placements=[Shard(0) if p.is_shard() else p for p in placements])


def _gradient(param: Tensor, grad: Tensor, weight_decay: Number | None, decouple: bool) -> Tensor:
    """g ← ∇ + λθ when the decay is coupled."""
    return grad + weight_decay * param if weight_decay is not None and not decouple else grad


def _new_s(
    s: Tensor,
    sliced_grad: Tensor,
    *,
    d: Number,
    dlr: Number,
    d0: Number,
    beta3: Number,
    safeguard_warmup: bool,
) -> Tensor:
    """s ← β₃s + (d/d₀)·(d if safeguard_warmup else d·γ̂)·g (on the sliced gradient)."""
    return s * beta3 + ((d / d0) * (d if safeguard_warmup else dlr)) * sliced_grad


def prodigy_statistics(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    d: Number,
    dlr: Number,
    d0: Number,
    beta3: Number,
    weight_decay: Number | None = None,
    decouple: bool = True,
    safeguard_warmup: bool = False,
    slice_p: int | None = None,
    active: bool = True,
    **_: Any,
) -> dict[str, Tensor]:
    """Prodigy's additive sums for one parameter (float64): ``numerator`` = (d/d₀)·dγ̂·⟨g, θ₀ − θ⟩ and
    ``denominator`` = Σ|s| of the new s; nothing from a group whose lr is 0 (the reference skips it)."""
    if not active:
        return {}
    g = _sliced(_gradient(param, grad, weight_decay, decouple), slice_p)
    dot = torch.dot(g, state["p0"] - _sliced(param, slice_p))
    s = _new_s(state["s"], g, d=d, dlr=dlr, d0=d0, beta3=beta3, safeguard_warmup=safeguard_warmup)
    return {
        "numerator": dot.to(torch.float64) * ((d / d0) * dlr),
        "denominator": s.abs().sum().to(torch.float64),
    }


def prodigy(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    d: Number,
    dlr: Number,
    d0: Number,
    beta1: Number = 0.9,
    beta2: Number = 0.999,
    beta3: Number,
    eps: Number = 1e-8,
    weight_decay: Number | None = None,
    decouple: bool = True,
    safeguard_warmup: bool = False,
    slice_p: int | None = None,
    active: bool = True,
    d_next: Number,
    move: Number = 1.0,
    l1: Number | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Prodigy: Adam whose step size d·γ is the distance estimate D-adaptation learns.

    With the current estimate d, γ̂ = γ·(√(1 − β₂ᵏ⁺¹)/(1 − β₁ᵏ⁺¹) with ``use_bias_correction``, else 1)
    and dγ̂ = d·γ̂ (``dlr``), g ← ∇ + λθ (coupled decay):
    m ← β₁m + d(1 − β₁)g;  v ← β₂v + d²(1 − β₂)g²;  s ← β₃s + (d/d₀)·dγ̂·g (d·d/d₀ with
    ``safeguard_warmup``) — on every ``slice_p``-th entry; skipped in a group whose γ is 0.
    Over all groups: r ← β₃r + Σ (d/d₀)·dγ̂·⟨g, θ₀ − θ⟩;  d̂ = d_coef·r/Σ|s|;  d' = min(d_max, d·growth)
    with d_max ← max(d_max, d̂) (and d ← max(d, d̂) first while d = d₀) — the group-level
    bookkeeping of :meth:`Prodigy.step_statistics`, whose ``d'`` arrives as ``d_next``. Then
    θ ← θ(1 − λ·dγ̂) (decoupled decay);  θ ← θ − dγ̂·m/(√v + d'ε) (θ − dγ̂·d'·g/(√v + d'ε) if β₁ = 0).
    ``move`` = 0 (no gradient mass anywhere: Σ|s| = 0) updates m, v, s only, as the reference's early
    return. l1: threshold dγ̂·l1/(√v + d'ε).

    State: ``step``, ``s``, ``p0`` (θ₀, sliced; a 0-d zero for an all-zero parameter), ``exp_avg``
    (m, only if β₁ > 0), ``exp_avg_sq`` (v).
    """
    g = _gradient(param, grad, weight_decay, decouple)
    new_state: dict[str, Tensor] = {"s": state["s"], "p0": state["p0"]}
    exp_avg = state.get("exp_avg")
    exp_avg_sq = state["exp_avg_sq"]
    if active:
        if exp_avg is not None:
            exp_avg = exp_avg * beta1 + (d * (1 - beta1)) * g
        exp_avg_sq = exp_avg_sq * beta2 + (d * d * (1 - beta2)) * (g * g)
        sliced = _sliced(g, slice_p)
        new_state["s"] = _new_s(
            state["s"], sliced, d=d, dlr=dlr, d0=d0, beta3=beta3, safeguard_warmup=safeguard_warmup
        )
    if exp_avg is not None:
        new_state["exp_avg"] = exp_avg
    new_state["exp_avg_sq"] = exp_avg_sq
    denom = exp_avg_sq.sqrt() + d_next * eps
    stepped = param
    if weight_decay is not None and decouple:
        stepped = stepped + (-weight_decay * dlr) * stepped
    if exp_avg is not None:
        stepped = stepped - dlr * (exp_avg / denom)
        scale = dlr / denom
    else:
        stepped = stepped - (dlr * d_next) * (g / denom)
        scale = dlr * d_next / denom
    stepped = _l1_step(stepped, l1, scale)
    moves = move > 0
    new_state["step"] = _select(moves, state["step"] + 1, state["step"])
    return _select(moves, stepped, param), new_state


class Prodigy(RuleOptimizer):
    """Prodigy — Adam with D-adaptation's learned step size, as ``prodigyopt.Prodigy``.

    θ ← θ − d·γ·m/(√v + dε), d learned from ⟨g, θ₀ − θ⟩ and Σ|s| — see :func:`prodigy`.
    Defaults (prodigyopt 1.1.2): γ = 1, β = (0.9, 0.999), β₃ = √β₂, ε = 1e-8, λ = 0 decoupled,
    d₀ = 1e-6, d_coef = 1, growth_rate = ∞, slice_p = 1.

    As in the reference, the estimate d is one for the whole optimizer: its dot products and Σ|s| are
    summed over *all* param groups (:attr:`statistics` with scope ``"step"``) before any parameter
    moves, and ``d``, ``d_max``, ``d_numerator``, ``d_denom``, ``d_hat`` are written to every group
    (``k`` counted per group); β, β₃, d, d_max, d_coef, growth_rate, decouple, use_bias_correction
    and k are read from the first group, d₀ for "d = d₀" from the last; all groups must share one lr
    or have lr 0 (a group with lr 0 adds nothing to the estimate and keeps m, v and s, but still
    takes the step d·γ·m/(√v + dε) and the decay, as in the reference). Where the reference mutates
    ``p.grad`` (the coupled decay) this reads it only; the estimate's bookkeeping is host arithmetic
    in :meth:`step_statistics`, as the reference's ``.item()`` reads. ``fsdp_in_use``: the sums are
    all-reduced over the default process group when the parameters are not DTensors (FSDP2 DTensor
    statistics are already whole-tensor sums); with it a rank never returns early. ``step`` is a 0-d
    tensor (an int in the reference; loading converts it). ``slice_p`` > 1 keeps s and θ₀ on every
    p-th entry, which the fused engine leaves to the eager one.

    Deviations of the reference from the paper (Mishchenko & Defazio 2024, Algorithm 3, Adam
    version): ε is scaled by d (√v + dε), bias correction is off by default (``use_bias_correction``),
    the numerator and s are scaled by d/d₀ (for floating-point range; it cancels in d̂), and the
    ``d = max(d, d̂)`` jump while d = d₀, ``growth_rate``, ``safeguard_warmup``, ``d_coef`` and
    ``slice_p`` are the reference's additions; all are kept as the reference has them.
    """

    parameter_state = ("p0",)  # the initial point (see RuleOptimizer.parameter_state)

    rule = staticmethod(prodigy)
    statistics = staticmethod(prodigy_statistics)
    statistics_scope = "step"
    elementwise = True  # given its statistics (and slice_p = 1)

    def __init__(
        self,
        params: Any,
        lr: float = 1.0,
        betas: tuple[float, float] = (0.9, 0.999),
        beta3: float | None = None,
        eps: float = 1e-8,
        weight_decay: float = 0,
        decouple: bool = True,
        use_bias_correction: bool = False,
        safeguard_warmup: bool = False,
        d0: float = 1e-6,
        d_coef: float = 1.0,
        growth_rate: float = float("inf"),
        fsdp_in_use: bool = False,
        slice_p: int = 1,
        *,
        l1: float = 0.0,
        nonfinite: NonFinitePolicy = "propagate",
        engine: str | None = None,
        state_dtype: torch.dtype | None = None,
        stochastic_rounding: bool = False,
    ) -> None:
        if not d0 > 0.0:
            raise ValueError(f"Invalid d0 value: {d0}")
        if not lr > 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not eps > 0.0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0.0 <= betas[0] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
        if not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
        defaults = {
            "lr": lr,
            "betas": betas,
            "beta3": beta3,
            "eps": eps,
            "weight_decay": weight_decay,
            "d": d0,
            "d0": d0,
            "d_max": d0,
            "d_numerator": 0.0,
            "d_coef": d_coef,
            "k": 0,
            "growth_rate": growth_rate,
            "use_bias_correction": use_bias_correction,
            "decouple": decouple,
            "safeguard_warmup": safeguard_warmup,
            "fsdp_in_use": fsdp_in_use,
            "slice_p": slice_p,
        }
        self.d0 = d0
        self._shared: dict[str, Any] = {}
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
        sliced = _sliced(param.detach(), None if group["slice_p"] == 1 else group["slice_p"])
        state = {
            "step": torch.tensor(0.0, dtype=_scalar_dtype()),
            "s": torch.zeros_like(sliced),
            # the reference keeps a 0-d zero for an all-zero parameter (host bookkeeping, as there)
            "p0": sliced.clone()
            if bool(param.any())
            else torch.tensor(0, device=param.device, dtype=param.dtype),
        }
        if self.param_groups[0]["betas"][0] > 0:
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        for group in self.param_groups:  # a checkpoint of the reference's fsdp path holds tensors
            for key in ("d", "d_max", "d_numerator", "d_denom", "d_hat"):
                if isinstance(group.get(key), Tensor):
                    group[key] = group[key].item()

    def begin_step(self, groups: list[dict[str, Any]]) -> None:
        """The step's shared values, read as the reference reads them: d·γ̂ from the first group."""
        first = self.param_groups[0]
        beta1, beta2 = first["betas"]
        beta3 = first["beta3"] if first["beta3"] is not None else math.sqrt(beta2)
        k, d = first["k"], first["d"]
        lr = max(group["lr"] for group in self.param_groups)
        for group in self.param_groups:
            if group["lr"] not in [lr, 0.0]:
                raise RuntimeError(
                    "Setting different lr values in different parameter groups "
                    "is only supported for values of 0"
                )
        bias_correction = (
            ((1 - beta2 ** (k + 1)) ** 0.5) / (1 - beta1 ** (k + 1)) if first["use_bias_correction"] else 1
        )
        self._shared = {
            "d": d,
            "dlr": d * lr * bias_correction,
            "lr": lr,
            "beta1": beta1,
            "beta2": beta2,
            "beta3": beta3,
            "decouple": bool(first["decouple"]),
        }

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        shared = self._shared
        return {
            "l1": optional_term(group["l1"]),
            "d": shared["d"],
            "dlr": shared["dlr"],
            "d0": group["d0"],
            "beta1": shared["beta1"],
            "beta2": shared["beta2"],
            "beta3": shared["beta3"],
            "eps": group["eps"],
            "weight_decay": optional_term(group["weight_decay"]),
            "decouple": shared["decouple"],
            "safeguard_warmup": bool(group["safeguard_warmup"]),
            "slice_p": None if group["slice_p"] == 1 else group["slice_p"],  # static: a slice step
            "active": group["lr"] > 0.0,
        }

    def step_statistics(self, groups: list[dict[str, Any]], totals: dict[str, Tensor]) -> dict[str, Any]:
        """The reference's update of the shared estimate, on the host: d̂, d, d_max written to every
        group, k counted in every group that steps; ``d_next`` and ``move`` for the rules."""
        first, shared = self.param_groups[0], self._shared
        d, lr = shared["d"], shared["lr"]
        d_max = first["d_max"]
        d_numerator = first["d_numerator"] * shared["beta3"]
        fsdp_in_use = bool(first["fsdp_in_use"]) or any(
            hasattr(p, "_fsdp_flattened") for group in groups for p in group["params"] if p.grad is not None
        )
        numerator = totals.get("numerator")
        denominator = totals.get("denominator")
        delta_numerator = 0.0 if numerator is None else numerator.item()
        d_denom = 0.0 if denominator is None else denominator.item()
        params = [p for group in self.param_groups for p in group["params"]]
        if fsdp_in_use and torch.distributed.is_initialized() and not any(map(is_distributed, params)):
            sums = torch.tensor([delta_numerator, d_denom], dtype=torch.float64, device=params[0].device)
            torch.distributed.all_reduce(sums)
            delta_numerator, d_denom = sums.tolist()
        if d_denom == 0 and not fsdp_in_use:
            return {"d_next": d, "move": 0.0}  # the reference returns before any parameter moves
        d_hat = d
        global_d_numerator, global_d_denom = d_numerator, d_denom
        if lr > 0.0:
            global_d_numerator = d_numerator + delta_numerator
            d_hat = first["d_coef"] * global_d_numerator / global_d_denom
            if d == self.param_groups[-1]["d0"]:
                d = max(d, d_hat)
            d_max = max(d_max, d_hat)
            d = min(d_max, d * first["growth_rate"])
        stepping = {id(group) for group in groups}
        for group in self.param_groups:
            group["d_numerator"] = global_d_numerator
            group["d_denom"] = global_d_denom
            group["d"] = d
            group["d_max"] = d_max
            group["d_hat"] = d_hat
            if id(group) in stepping:
                group["k"] = group["k"] + 1
        return {"d_next": d, "move": 1.0}


def _scalar_dtype() -> torch.dtype:
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
