"""The update rules: one pure function per algorithm, the only place its math is written.

Every rule has the signature ``rule(param, grad, state, **hyper) -> (new_param, new_state)``:

* ``param``, ``grad`` and the tensors in ``state`` are real tensors of one shape (complex
  parameters are passed as ``torch.view_as_real`` views by the caller);
* ``state`` maps torch.optim's state keys to tensors (``step`` is a 0-d counter, incremented by
  the rule); ``new_state`` has the same keys. The rules here also take ``step`` as a Python
  number (their declarations say ``host_step = True``): the eager engine then passes the counter's
  value, as torch.optim's for-loop reads it with ``.item()``, so that the scalar bookkeeping (bias
  corrections, ...) is host arithmetic rather than a string of tiny tensor operations;
* numeric hyperparameters may be Python numbers or 0-d tensors (the fused engine passes tensors
  so that a scheduler never triggers recompilation; the lab's batched replicas pass one value per
  replica under ``torch.vmap``);
* a hyperparameter that is ``None`` switches its term off (``weight_decay=None`` means no weight
  decay) and booleans are structural flags: both are static, everything else is data;
* every rule takes ``l1`` (``None``: off): the proximal step of l1·‖θ‖₁ taken after the update
  in the rule's own diagonal metric, see :func:`l1_proximal`.

In the formulas γ is the learning rate, λ the weight decay, t the step count after the
increment, and ∇ the gradient (its negative with ``maximize=True``). Defaults are torch.optim's
(version 2.13); the rules follow its single-tensor code path, so results agree to rounding
(≤ 1e-9 relative after 40 float64 steps, checked by tests/test_optim_parity.py).

Rules never mutate their arguments and never read a tensor's value on the host, so the eager
path, the fused compiled path and the vmapped replicas all run the same code. Scalar bookkeeping
(bias corrections, NAdam's momentum schedule, RAdam's rectification) is done in float64 like
torch.optim's Python-float arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from optimlab.optim.distributed import is_distributed

State = Mapping[str, Tensor]
Number = float | Tensor

__all__ = [
    "adadelta",
    "adafactor",
    "adagrad",
    "adam",
    "adamax",
    "asgd",
    "l1_proximal",
    "muon",
    "nadam",
    "radam",
    "rmsprop",
    "rprop",
    "sgd",
    "sparse_adam",
]


# --- shared pieces -------------------------------------------------------------------------


def _scalar(step: Tensor | float) -> Tensor | float:
    """The step counter as a float64 scalar, as torch.optim's ``_get_value(step)`` gives it."""
    return step.to(torch.float64) if isinstance(step, Tensor) else float(step)


def _sqrt(value: Number) -> Number:
    return value.sqrt() if isinstance(value, Tensor) else math.sqrt(value)


def _select(condition: Tensor | bool, if_true: Number, if_false: Number) -> Number:
    """``torch.where`` that also takes a host condition (the eager path's bookkeeping)."""
    if isinstance(condition, Tensor):
        return torch.where(condition, if_true, if_false)
    return if_true if condition else if_false


def _direction(grad: Tensor, maximize: bool) -> Tensor:
    """g ← −g when maximizing."""
    return -grad if maximize else grad


def _coupled_decay(grad: Tensor, param: Tensor, weight_decay: Number | None) -> Tensor:
    """Coupled L2: g ← g + λ·θ."""
    return grad if weight_decay is None else grad + weight_decay * param


def _decoupled_decay(param: Tensor, lr: Number, weight_decay: Number | None) -> Tensor:
    """Decoupled decay (Loshchilov & Hutter, 2019): θ ← θ·(1 − γλ)."""
    return param if weight_decay is None else param * (1 - lr * weight_decay)


def _ema(average: Tensor, value: Tensor, beta: Number) -> Tensor:
    """Exponential moving average: a ← β·a + (1 − β)·v (torch's ``lerp``)."""
    return (
        torch.lerp(average, value, 1 - beta)
        if isinstance(beta, float)
        else average + (1 - beta) * (value - average)
    )


def _rounded(value: Number, dtype: torch.dtype, like: Tensor) -> Tensor:
    """``value`` rounded to ``dtype`` (as ``torch.as_tensor`` of a Python float makes it), then stored
    in ``like``'s dtype, as torch.optim's ``state.copy_(torch.as_tensor(...))`` does."""
    if isinstance(value, Tensor):
        return value.to(dtype).to(like.dtype)
    return torch.tensor(value, dtype=dtype).to(like.dtype)  # copied into ``like`` wherever it lives


def _default_if_none(dtype: torch.dtype | None) -> torch.dtype:
    return torch.get_default_dtype() if dtype is None else dtype


def _l1_step(
    param: Tensor, l1: Number | None, scale: Number | Tensor | Callable[[], Number | Tensor]
) -> Tensor:
    """The L1 proximal step with threshold l1·scale, where ``scale`` is how far the rule moves θ
    per unit of a steady gradient (γ for SGD, γ/(√v̂ + ε) for Adam, ...). A ``scale`` that takes
    tensor ops is given as a function of no arguments, called only when ``l1`` is set: without L1 a
    rule computes no threshold (for Adam, two parameter-sized ops fewer)."""
    if l1 is None:
        return param
    return l1_proximal(param, l1 * (scale() if callable(scale) else scale))


def l1_proximal(param: Tensor, threshold: Number) -> Tensor:
    """Proximal operator of τ‖θ‖₁ (soft-thresholding): θ ← sign(θ)·max(|θ| − τ, 0).

    With ``l1`` = κ a rule minimizes f(θ) + κ‖θ‖₁: after its step θ ← θ − γ·D⁻¹·d it applies this
    operator with the per-coordinate threshold τ = γ·κ·D⁻¹, D being the rule's own diagonal
    preconditioner (1 for SGD, √v̂ + ε for Adam, ...; the steady-state gain of a momentum
    buffer included). A coordinate then stays exactly at 0 while its (averaged) gradient is
    below κ in magnitude — the lasso's optimality condition — whatever the optimizer, which a
    subgradient penalty κ·sign(θ) never achieves (it makes weights oscillate around zero).
    Complex parameters are thresholded in their real and imaginary parts separately.

    References: Parikh & Boyd, "Proximal Algorithms", Foundations and Trends in Optimization
    1(3), 2014 (soft thresholding); Yun, Lozano & Yang, "Adaptive Proximal Gradient Methods for
    Structured Neural Networks", NeurIPS 2021 (the proximal step in an adaptive metric).
    """
    return torch.sign(param) * torch.clamp_min(param.abs() - threshold, 0)


# --- the algorithms ------------------------------------------------------------------------


def sgd(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: Number,
    momentum: Number | None = None,
    dampening: Number = 0.0,
    weight_decay: Number | None = None,
    nesterov: bool = False,
    maximize: bool = False,
    l1: Number | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Stochastic gradient descent with optional (Nesterov) momentum.

    g ← ∇ + λθ;  with momentum μ > 0: b ← μb + (1 − τ)g (b ← g on the first step),
    d ← g + μb if nesterov else b (without momentum d ← g);  θ ← θ − γd.
    l1: threshold γ·l1·(1 − τ)/(1 − μ), the momentum buffer's steady-state gain included.

    Defaults (torch.optim.SGD): γ = 1e-3, μ = 0, τ (dampening) = 0, λ = 0, nesterov = False.
    State: ``momentum_buffer`` (only with momentum, created by the first step). References:
    Polyak, "Some methods of speeding up the convergence of iteration methods", 1964;
    Sutskever et al., "On the importance of initialization and momentum in deep learning",
    ICML 2013 (Nesterov momentum, in torch's formulation).
    """
    g = _coupled_decay(_direction(grad, maximize), param, weight_decay)
    new_state: dict[str, Tensor] = {}
    if momentum is not None:
        previous = state.get("momentum_buffer")
        # The first buffer is a detached copy of g, as torch.optim makes it: with differentiable=True
        # that step's update carries no gradient back to g (torch's semantics, kept for parity).
        # (1 − τ)·g is g itself when τ = 0 (a host 0): no parameter-sized multiplication by 1
        damped = g if isinstance(dampening, int | float) and dampening == 0 else (1 - dampening) * g
        buf = g.detach().clone() if previous is None else momentum * previous + damped
        new_state["momentum_buffer"] = buf
        g = g + momentum * buf if nesterov else buf
    # A steady gradient g moves θ by γ(1 − τ)/(1 − μ)·g once the momentum buffer has filled.
    gain = 1.0 if momentum is None else (1 - dampening) / (1 - momentum)
    return _l1_step(param - lr * g, l1, lr * gain), new_state


def adagrad(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: Number,
    lr_decay: Number = 0.0,
    weight_decay: Number | None = None,
    eps: Number = 1e-10,
    maximize: bool = False,
    l1: Number | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Adagrad: per-coordinate steps shrinking with the sum of squared gradients.

    t ← t + 1;  g ← ∇ + λθ;  γₜ = γ / (1 + (t − 1)η);  s ← s + g²;  θ ← θ − γₜ g / (√s + ε).
    l1: threshold γₜ·l1/(√s + ε).

    Defaults (torch.optim.Adagrad): γ = 1e-2, η (lr_decay) = 0, λ = 0,
    s₀ (initial_accumulator_value) = 0, ε = 1e-10. State: ``step``, ``sum`` (s).
    Reference: Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and
    Stochastic Optimization", JMLR 12, 2011.
    """
    step = state["step"] + 1
    g = _coupled_decay(_direction(grad, maximize), param, weight_decay)
    clr = lr / (1 + (_scalar(step) - 1) * lr_decay)
    total = state["sum"] + g * g
    std = total.sqrt() + eps
    return _l1_step(param - clr * g / std, l1, lambda: clr / std), {"step": step, "sum": total}


def rmsprop(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: Number,
    alpha: Number = 0.99,
    eps: Number = 1e-8,
    weight_decay: Number | None = None,
    momentum: Number | None = None,
    centered: bool = False,
    maximize: bool = False,
    l1: Number | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """RMSprop: divide the gradient by a running root mean square.

    t ← t + 1;  g ← ∇ + λθ;  v ← αv + (1 − α)g²;  v̂ = v, or centered: m ← αm + (1 − α)g,
    v̂ = v − m²;  with momentum μ > 0: b ← μb + g / (√v̂ + ε), θ ← θ − γb;
    without: θ ← θ − γ g / (√v̂ + ε).  l1: threshold γ·l1 / ((1 − μ)(√v̂ + ε)).

    Defaults (torch.optim.RMSprop): γ = 1e-2, α = 0.99, ε = 1e-8, λ = 0, μ = 0,
    centered = False. State: ``step``, ``square_avg`` (v), ``momentum_buffer`` (b, when μ > 0),
    ``grad_avg`` (m, when centered). References: Tieleman & Hinton, "Neural Networks for Machine
    Learning", lecture 6e, 2012; Graves, "Generating Sequences With Recurrent Neural Networks",
    arXiv:1308.0850, 2013 (centered).
    """
    step = state["step"] + 1
    g = _coupled_decay(_direction(grad, maximize), param, weight_decay)
    square_avg = alpha * state["square_avg"] + (1 - alpha) * g * g
    new_state = {"step": step, "square_avg": square_avg}
    if centered:
        grad_avg = _ema(state["grad_avg"], g, alpha)
        new_state["grad_avg"] = grad_avg
        denom = (square_avg - grad_avg * grad_avg).sqrt() + eps
    else:
        denom = square_avg.sqrt() + eps
    if momentum is not None:
        buf = momentum * state["momentum_buffer"] + g / denom
        new_state["momentum_buffer"] = buf
        return _l1_step(param - lr * buf, l1, lambda: lr / ((1 - momentum) * denom)), new_state
    return _l1_step(param - lr * g / denom, l1, lambda: lr / denom), new_state


def adadelta(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: Number = 1.0,
    rho: Number = 0.9,
    eps: Number = 1e-6,
    weight_decay: Number | None = None,
    maximize: bool = False,
    l1: Number | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Adadelta: steps in units of the parameter, from two running averages.

    t ← t + 1;  g ← ∇ + λθ;  v ← ρv + (1 − ρ)g²;  Δ = √(u + ε) / √(v + ε) · g;
    u ← ρu + (1 − ρ)Δ²;  θ ← θ − γΔ.  l1: threshold γ·l1·√(u + ε)/√(v + ε) (u before its update).

    Defaults (torch.optim.Adadelta): γ = 1.0, ρ = 0.9, ε = 1e-6, λ = 0.
    State: ``step``, ``square_avg`` (v), ``acc_delta`` (u). Reference: Zeiler, "ADADELTA: An
    Adaptive Learning Rate Method", arXiv:1212.5701, 2012 (which has no γ, i.e. γ = 1).
    """
    step = state["step"] + 1
    g = _coupled_decay(_direction(grad, maximize), param, weight_decay)
    square_avg = rho * state["square_avg"] + (1 - rho) * g * g
    scale = (state["acc_delta"] + eps).sqrt() / (square_avg + eps).sqrt()
    delta = scale * g
    acc_delta = rho * state["acc_delta"] + (1 - rho) * delta * delta
    new_state = {"step": step, "square_avg": square_avg, "acc_delta": acc_delta}
    return _l1_step(param - lr * delta, l1, lambda: lr * scale), new_state


def adam(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: Number = 1e-3,
    beta1: Number = 0.9,
    beta2: Number = 0.999,
    eps: Number = 1e-8,
    weight_decay: Number | None = None,
    amsgrad: bool = False,
    maximize: bool = False,
    decoupled_weight_decay: bool = False,
    l1: Number | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Adam (and AdamW with ``decoupled_weight_decay``).

    t ← t + 1;  g ← ∇ + λθ, or with decoupled weight decay θ ← θ(1 − γλ) instead;
    m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²;  v̂ = v, or with amsgrad v̂ ← max(v̂, v);
    D = √v̂ / √(1 − β₂ᵗ) + ε;  θ ← θ − γ/(1 − β₁ᵗ) · m / D.  l1: threshold γ·l1/D.

    Defaults (torch.optim.Adam): γ = 1e-3, β = (0.9, 0.999), ε = 1e-8, λ = 0, amsgrad = False,
    decoupled_weight_decay = False (torch.optim.AdamW: λ = 1e-2 and decoupled).
    State: ``step``, ``exp_avg`` (m), ``exp_avg_sq`` (v), ``max_exp_avg_sq`` (v̂, amsgrad only).
    References: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015; Reddi,
    Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018 (AMSGrad); Loshchilov &
    Hutter, "Decoupled Weight Decay Regularization", ICLR 2019 (AdamW).
    """
    step = state["step"] + 1
    t = _scalar(step)
    g = _direction(grad, maximize)
    if decoupled_weight_decay:
        param = _decoupled_decay(param, lr, weight_decay)
    else:
        g = _coupled_decay(g, param, weight_decay)
    exp_avg = _ema(state["exp_avg"], g, beta1)
    exp_avg_sq = beta2 * state["exp_avg_sq"] + (1 - beta2) * g * g
    new_state = {"step": step, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
    second = exp_avg_sq
    if amsgrad:
        second = torch.maximum(state["max_exp_avg_sq"], exp_avg_sq)
        new_state["max_exp_avg_sq"] = second
    step_size = lr / (1 - beta1**t)
    denom = second.sqrt() / _sqrt(1 - beta2**t) + eps
    return _l1_step(param - step_size * exp_avg / denom, l1, lambda: lr / denom), new_state


def adamax(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: Number = 2e-3,
    beta1: Number = 0.9,
    beta2: Number = 0.999,
    eps: Number = 1e-8,
    weight_decay: Number | None = None,
    maximize: bool = False,
    l1: Number | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Adamax: Adam with the infinity norm in place of the second moment.

    t ← t + 1;  g ← ∇ + λθ;  m ← β₁m + (1 − β₁)g;  u ← max(β₂u, |g| + ε);
    θ ← θ − γ/(1 − β₁ᵗ) · m / u.  l1: threshold γ·l1/u.

    Defaults (torch.optim.Adamax): γ = 2e-3, β = (0.9, 0.999), ε = 1e-8, λ = 0.
    State: ``step``, ``exp_avg`` (m), ``exp_inf`` (u). Reference: Kingma & Ba, "Adam: A Method
    for Stochastic Optimization", ICLR 2015, §7.1 (there without ε).
    """
    step = state["step"] + 1
    g = _coupled_decay(_direction(grad, maximize), param, weight_decay)
    exp_avg = _ema(state["exp_avg"], g, beta1)
    exp_inf = torch.maximum(beta2 * state["exp_inf"], g.abs() + eps)
    clr = lr / (1 - beta1 ** _scalar(step))
    new_state = {"step": step, "exp_avg": exp_avg, "exp_inf": exp_inf}
    return _l1_step(param - clr * exp_avg / exp_inf, l1, lambda: lr / exp_inf), new_state


def nadam(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: Number = 2e-3,
    beta1: Number = 0.9,
    beta2: Number = 0.999,
    eps: Number = 1e-8,
    weight_decay: Number | None = None,
    momentum_decay: Number = 4e-3,
    decoupled_weight_decay: bool = False,
    maximize: bool = False,
    l1: Number | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """NAdam: Adam with Nesterov momentum and Dozat's momentum schedule.

    t ← t + 1;  μₜ = β₁(1 − ½·0.96^(tψ));  Πₜ = Πₜ₋₁μₜ;  g ← ∇ + λθ, or with decoupled
    weight decay θ ← θ(1 − γλ) instead;  m ← β₁m + (1 − β₁)g;  v ← β₂v + (1 − β₂)g²;
    D = √(v / (1 − β₂ᵗ)) + ε;  θ ← θ − γ(1 − μₜ)/(1 − Πₜ) · g/D − γμₜ₊₁/(1 − Πₜμₜ₊₁) · m/D.
    l1: threshold γ·l1/D.

    Defaults (torch.optim.NAdam): γ = 2e-3, β = (0.9, 0.999), ε = 1e-8, λ = 0,
    ψ (momentum_decay) = 4e-3, decoupled_weight_decay = False. State: ``step``,
    ``mu_product`` (Π, a 0-d tensor kept in the state's precision as torch keeps it),
    ``exp_avg`` (m), ``exp_avg_sq`` (v). References: Dozat, "Incorporating Nesterov Momentum
    into Adam", ICLR 2016 workshop; Loshchilov & Hutter, ICLR 2019 (decoupled weight decay).
    """
    step = state["step"] + 1
    t = _scalar(step)
    g = _direction(grad, maximize)
    if decoupled_weight_decay:
        param = _decoupled_decay(param, lr, weight_decay)
    else:
        g = _coupled_decay(g, param, weight_decay)
    mu = beta1 * (1.0 - 0.5 * 0.96 ** (t * momentum_decay))
    mu_next = beta1 * (1.0 - 0.5 * 0.96 ** ((t + 1) * momentum_decay))
    # Π is kept in the state's own precision (float32 by default), as torch.optim keeps it.
    stored = state["mu_product"]
    mu_product = stored * (mu.to(stored.dtype) if isinstance(mu, Tensor) else mu)
    product = _scalar(mu_product)
    exp_avg = _ema(state["exp_avg"], g, beta1)
    exp_avg_sq = beta2 * state["exp_avg_sq"] + (1 - beta2) * g * g
    denom = (exp_avg_sq / (1 - beta2**t)).sqrt() + eps
    grad_weight = lr * (1.0 - mu) / (1.0 - product)
    avg_weight = lr * mu_next / (1.0 - product * mu_next)
    new_param = _l1_step(
        param - grad_weight * g / denom - avg_weight * exp_avg / denom, l1, lambda: lr / denom
    )
    return new_param, {"step": step, "mu_product": mu_product, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}


def radam(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: Number = 1e-3,
    beta1: Number = 0.9,
    beta2: Number = 0.999,
    eps: Number = 1e-8,
    weight_decay: Number | None = None,
    decoupled_weight_decay: bool = False,
    maximize: bool = False,
    l1: Number | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """RAdam: Adam whose adaptive step is switched on once its variance is tractable.

    t ← t + 1;  g, m, v as in Adam (coupled or decoupled weight decay);  ρ∞ = 2/(1 − β₂) − 1;
    ρₜ = ρ∞ − 2tβ₂ᵗ/(1 − β₂ᵗ);  if ρₜ > 5: rₜ = √((ρₜ − 4)(ρₜ − 2)ρ∞ / ((ρ∞ − 4)(ρ∞ − 2)ρₜ)),
    A = rₜ√(1 − β₂ᵗ)/(√v + ε), θ ← θ − γ · m/(1 − β₁ᵗ) · A;  else A = 1, θ ← θ − γ · m/(1 − β₁ᵗ).
    l1: threshold γ·l1·A.

    Defaults (torch.optim.RAdam): γ = 1e-3, β = (0.9, 0.999), ε = 1e-8, λ = 0,
    decoupled_weight_decay = False. State: ``step``, ``exp_avg`` (m), ``exp_avg_sq`` (v).
    References: Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond",
    ICLR 2020; Loshchilov & Hutter, ICLR 2019 (decoupled weight decay).
    """
    step = state["step"] + 1
    t = _scalar(step)
    g = _direction(grad, maximize)
    if decoupled_weight_decay:
        param = _decoupled_decay(param, lr, weight_decay)
    else:
        g = _coupled_decay(g, param, weight_decay)
    exp_avg = _ema(state["exp_avg"], g, beta1)
    exp_avg_sq = beta2 * state["exp_avg_sq"] + (1 - beta2) * g * g
    bias_correction1 = 1 - beta1**t
    bias_correction2 = 1 - beta2**t
    rho_inf = 2 / (1 - beta2) - 1
    rho_t = rho_inf - 2 * t * beta2**t / bias_correction2
    # Clamped so the unused branch of the `where` below stays finite while ρₜ ≤ 5.
    rho_safe = torch.clamp_min(rho_t, 5.0) if isinstance(rho_t, Tensor) else max(rho_t, 5.0)
    rect = _sqrt((rho_safe - 4) * (rho_safe - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_safe))
    adaptive = rect * bias_correction2**0.5 / (exp_avg_sq.sqrt() + eps)
    update = exp_avg / bias_correction1 * lr
    rectified = rho_t > 5.0
    update = _select(rectified, update * adaptive, update)
    new_param = _l1_step(param - update, l1, lr * _select(rectified, adaptive, 1.0) if l1 is not None else 0)
    return new_param, {"step": step, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}


def _minimum(a: Number, b: Number) -> Number:
    """min(a, b) of Python numbers or 0-d tensors (torch.optim's ``min`` on host values)."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return torch.minimum(a, b)
    if isinstance(a, Tensor):
        return torch.clamp_max(a, b)
    if isinstance(b, Tensor):
        return torch.clamp_max(b, a)
    return min(a, b)


def _rms(tensor: Tensor) -> Tensor:
    """‖x‖₂ / √n as a float64 0-d tensor, as torch.optim computes it from ``x.norm(2).item()``."""
    return tensor.norm(2).to(torch.float64) / tensor.numel() ** 0.5


def adafactor(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: Number = 1e-2,
    beta2_decay: Number = -0.8,
    eps1: Number | None = None,
    eps2: Number = 1e-3,
    d: Number = 1.0,
    weight_decay: Number | None = None,
    maximize: bool = False,
    l1: Number | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Adafactor: Adam-like steps from a factored second moment, relative to the parameter's scale.

    Not elementwise (row and column means, norms): the engines apply it to whole tensors.
    t ← t + 1;  β̂₂ = 1 − t^τ;  ρ = min(γ, 1/√t);  α = max(ε₂, RMS(θ))·ρ (θ before decay);
    θ ← θ(1 − γλ);  for ≥ 2-D tensors, factored over the last two dims (rows i, columns j):
    R ← β̂₂R + (1 − β̂₂)·mean_j g²,  C ← β̂₂C + (1 − β̂₂)·mean_i g²,
    V̂ = R·C / max(mean_i R, ε₁);  for 0-D/1-D tensors V̂ ← β̂₂V̂ + (1 − β̂₂)g²;
    U = g / max(√V̂, ε₁);  θ ← θ − α/max(1, RMS(U)/d) · U.  l1: threshold α/max(1, RMS(U)/d)·l1/max(√V̂, ε₁).

    Defaults (torch.optim.Adafactor): γ = 1e-2, τ (beta2_decay) = −0.8, ε = (ε₁, ε₂) = (None: the
    dtype's machine epsilon, 1e-3), d = 1, λ = 0 (decoupled, scaled by γ). State: ``step``, and
    ``row_var`` (R, the gradient's shape with the last dim 1) and ``col_var`` (C, with the
    second-to-last dim 1) for tensors of 2 or more dims, ``variance`` (V̂) otherwise.
    Reference: Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
    ICML 2018 (torch's variant: γ caps ρ and scales the decay, ε₁ applies to V̂ and U).
    """
    step = state["step"] + 1
    t = _scalar(step)
    g = _direction(grad, maximize)
    if eps1 is None:
        eps1 = torch.finfo(param.dtype).eps
    weight = t**beta2_decay  # 1 − β̂₂
    rho = _minimum(lr, 1 / t**0.5)
    alpha = torch.clamp_min(_rms(param), eps2) * rho
    param = _decoupled_decay(param, lr, weight_decay)
    new_state: dict[str, Tensor] = {"step": step}
    if g.dim() > 1:
        row_mean = torch.norm(g, dim=-1, keepdim=True).square() / g.size(-1)
        col_mean = torch.norm(g, dim=-2, keepdim=True).square() / g.size(-2)
        row_var = _lerp(state["row_var"], row_mean, weight)
        col_var = _lerp(state["col_var"], col_mean, weight)
        var_estimate = (row_var @ col_var) / torch.clamp_min(row_var.mean(dim=-2, keepdim=True), eps1)
        new_state.update(row_var=row_var, col_var=col_var)
    else:
        var_estimate = _lerp(state["variance"], g * g, weight)
        new_state["variance"] = var_estimate
    inverse = torch.clamp_min(var_estimate, eps1 * eps1).rsqrt()
    update = inverse * g
    size = alpha / torch.clamp_min(_rms(update) / d, 1.0)
    return _l1_step(param - size * update, l1, lambda: size * inverse), new_state


def _lerp(start: Tensor, end: Tensor, weight: Number) -> Tensor:
    """torch.lerp with a Python or 0-d tensor weight (cast to the tensors' dtype, as lerp needs)."""
    return torch.lerp(start, end, weight.to(start.dtype) if isinstance(weight, Tensor) else weight)


def sparse_adam(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: Number = 1e-3,
    beta1: Number = 0.9,
    beta2: Number = 0.999,
    eps: Number = 1e-8,
    maximize: bool = False,
    l1: Number | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """SparseAdam: Adam's update at the entries a sparse gradient touches, and nowhere else.

    The rule itself is elementwise Adam (ε outside the bias correction, as torch.optim.SparseAdam);
    the engines call it on the touched entries only — ``param``, ``grad`` and the moments gathered at
    the coalesced gradient's indices (duplicates summed) — and scatter the results back, so
    untouched entries keep their parameter and moments (see ``engine/sparse.py``).
    t ← t + 1 (once per parameter and step, even for an empty gradient);  m ← m + (1 − β₁)(g − m);
    v ← v + (1 − β₂)(g² − v);  θ ← θ − γ√(1 − β₂ᵗ)/(1 − β₁ᵗ) · m / (√v + ε).
    l1 (touched entries only): threshold γ√(1 − β₂ᵗ)·l1/(√v + ε).

    Defaults (torch.optim.SparseAdam): γ = 1e-3, β = (0.9, 0.999), ε = 1e-8. State: ``step`` (a
    Python int, as torch.optim keeps it), ``exp_avg`` (m), ``exp_avg_sq`` (v). Reference: Kingma &
    Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015 (lazy, masked moments).
    """
    step = state["step"] + 1
    t = _scalar(step)
    g = _direction(grad, maximize)
    old_avg, old_sq = state["exp_avg"], state["exp_avg_sq"]
    exp_avg = old_avg + (g - old_avg) * (1 - beta1)
    exp_avg_sq = old_sq + (g * g - old_sq) * (1 - beta2)
    denom = exp_avg_sq.sqrt() + eps
    root = _sqrt(1 - beta2**t)
    step_size = lr * root / (1 - beta1**t)
    new_param = _l1_step(param - step_size * (exp_avg / denom), l1, lambda: lr * root / denom)
    return new_param, {"step": step, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}


def rprop(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    etaminus: Number = 0.5,
    etaplus: Number = 1.2,
    step_size_min: Number = 1e-6,
    step_size_max: Number = 50.0,
    maximize: bool = False,
    l1: Number | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Rprop (resilient backpropagation): a step size per coordinate, grown while the gradient keeps
    its sign and shrunk when it flips; the step uses the gradient's sign only.

    t ← t + 1;  s = sign(∇·∇ₚ);  η ← clamp(η·η₊, Γmin, Γmax) where s > 0, clamp(η·η₋, Γmin, Γmax)
    where s < 0 (and there ∇ ← 0: no step, and no flip seen next time), η unchanged where s = 0;
    θ ← θ − η·sign(∇);  ∇ₚ ← ∇.  l1: threshold η·l1 — the step size itself, since Rprop moves
    θ by η whatever the gradient's magnitude (a steady gradient of any size moves it η per step).
    So l1 is measured against the gradient's sign, not its size: every step is shortened by l1·η
    towards 0, a weight at 0 stays there exactly when l1 ≥ 1, and Rprop with l1 does not reach the
    lasso solution that the other rules' l1 reaches.

    Defaults (torch.optim.Rprop): γ = 1e-2 (the initial step size η₀), (η₋, η₊) (etas) = (0.5, 1.2),
    (Γmin, Γmax) (step_sizes) = (1e-6, 50). State: ``step``, ``prev`` (∇ₚ, the last gradient with
    its flipped coordinates zeroed), ``step_size`` (η, per coordinate). Reference: Riedmiller &
    Braun, "A Direct Adaptive Method for Faster Backpropagation Learning: The RPROP Algorithm",
    IEEE International Conference on Neural Networks, 1993.
    """
    g = _direction(grad, maximize)
    # torch.optim's capturable path, written with torch.where (a NaN product keeps its NaN factor).
    factor = (g * state["prev"]).sign()
    flipped = factor < 0
    factor = torch.where(factor > 0, etaplus, factor)
    factor = torch.where(flipped, etaminus, factor)
    factor = torch.where(factor == 0, 1.0, factor)
    step_size = torch.clamp(state["step_size"] * factor, step_size_min, step_size_max)
    g = torch.where(flipped, 0.0, g)
    new_param = _l1_step(param - g.sign() * step_size, l1, step_size)
    return new_param, {"step": state["step"] + 1, "prev": g, "step_size": step_size}


def asgd(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: Number,
    lambd: Number = 1e-4,
    alpha: Number = 0.75,
    t0: Number = 1e6,
    weight_decay: Number | None = None,
    maximize: bool = False,
    eta_dtype: torch.dtype | None = None,
    mu_dtype: torch.dtype | None = None,
    l1: Number | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Averaged SGD: SGD with a decaying step size and a Polyak–Ruppert average of the iterates.

    t ← t + 1;  g ← ∇ + λθ;  θ ← θ(1 − ζη) − ηg;  ā ← θ while μ = 1, else ā ← ā + μ(θ − ā);
    then η ← γ / (1 + ζγt)^α and μ ← 1 / max(1, t − t₀).  l1: threshold η·l1.

    Defaults (torch.optim.ASGD): γ = 1e-2, ζ (lambd) = 1e-4, α = 0.75, t₀ = 1e6, λ = 0.
    State: ``step``, ``eta`` (η), ``mu`` (μ), ``ax`` (ā). torch.optim rounds the new η and μ
    through ``torch.as_tensor``: to the default dtype, η to a tensor lr's own dtype
    (``eta_dtype``, ``mu_dtype``; ``None``: the default dtype), then to the state's.
    Reference: Polyak & Juditsky, "Acceleration of Stochastic Approximation by Averaging",
    SIAM J. Control Optim. 30(4), 1992.
    """
    step = state["step"] + 1
    eta, mu = _scalar(state["eta"]), _scalar(state["mu"])  # torch reads them as Python floats
    g = _coupled_decay(_direction(grad, maximize), param, weight_decay)
    new_param = _l1_step(param * (1 - lambd * eta) - eta * g, l1, eta)
    # torch's `if mu.item() != 1` as a where: ā + (θ − ā)·1 is not always exactly θ in floating point
    ax = torch.where(mu == 1, new_param, state["ax"] + (new_param - state["ax"]) * mu)
    t = _scalar(step)
    later = t - t0
    new_eta = lr / (1 + lambd * lr * t) ** alpha
    new_mu = 1 / (torch.clamp_min(later, 1.0) if isinstance(later, Tensor) else max(1.0, later))
    new_eta = _rounded(new_eta, _default_if_none(eta_dtype), state["eta"])
    new_mu = _rounded(new_mu, _default_if_none(mu_dtype), state["mu"])
    return new_param, {"step": step, "eta": new_eta, "mu": new_mu, "ax": ax}


# --- Muon ----------------------------------------------------------------------------------------

#: torch.optim.Muon's Newton–Schulz coefficients, steps and ε (Keller Jordan's constants)
MUON_NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
MUON_NS_STEPS = 5
MUON_EPS = 1e-7


def _lerp(start: Tensor, end: Tensor, weight: Number) -> Tensor:
    """``torch.lerp`` (torch's op for a Python-float weight), written out for a tensor weight."""
    return (
        torch.lerp(start, end, weight) if isinstance(weight, float | int) else start + weight * (end - start)
    )


def _addmm(input: Tensor, left: Tensor, right: Tensor, *, beta: float, alpha: float = 1.0) -> Tensor:
    """β·input + α·left @ right: ``torch.addmm`` for one matrix (torch.optim.Muon's op, so that one
    matrix at a time gives its bits), ``torch.baddbmm`` for a stack of them."""
    if input.dim() == 2:
        return torch.addmm(input, left, right, beta=beta, alpha=alpha)
    return torch.baddbmm(input, left, right, beta=beta, alpha=alpha)


def _add_scaled(param: Tensor, update: Tensor, alpha: Number) -> Tensor:
    """θ + α·u as torch's ``param.add_(update, alpha=α)`` computes it: one fused multiply-add in the
    parameter's precision (α rounded to it). A tensor α (a scheduled or vmapped lr) cannot be the
    ``alpha`` argument without a host read, so its multiply-add is carried out in float64 — exact for
    float32 parameters, within an ulp for float64 ones."""
    if not isinstance(alpha, Tensor):
        return torch.add(param, update, alpha=alpha)
    if param.dtype == torch.float64:
        return param + alpha.to(torch.float64) * update.to(torch.float64)
    opmath = alpha.to(torch.float32).to(torch.float64)  # the kernel's float32 alpha
    return (param.to(torch.float64) + opmath * update.to(torch.float64)).to(param.dtype)


def _distributed_like(whole: Tensor, like: Any) -> Any:
    """``whole`` (the same on every rank) as a DTensor laid out as ``like``: each rank keeps its
    own part, without communication."""
    from torch.distributed.tensor import DTensor, Replicate

    mesh = like.device_mesh
    replicated = DTensor.from_local(whole, mesh, [Replicate()] * mesh.ndim, run_check=False)
    return replicated.redistribute(placements=like.placements)


def newton_schulz(
    matrix: Tensor,
    coefficients: tuple[float, float, float] = MUON_NS_COEFFICIENTS,
    steps: int = MUON_NS_STEPS,
    eps: float = MUON_EPS,
) -> Tensor:
    """The quintic Newton–Schulz iteration of torch.optim.Muon, X ← aX + (bA + cA²)X with A = XXᵀ,
    in bfloat16: an approximate orthogonalization U·S'·Vᵀ (S' ≈ Uniform(0.5, 1.5)) of G = U·S·Vᵀ.

    ``matrix`` is one matrix (m, n) or a stack (k, m, n) (norms over the last two dims). Tall
    matrices are iterated transposed, as torch does. Returns a bfloat16 tensor of ``matrix``'s shape.
    """
    if steps >= 100:
        raise ValueError("Number of steps must be less than 100 for computational efficiency")
    if matrix.dim() not in (2, 3):
        raise ValueError("Input tensor gradient must be a 2D matrix")
    if len(coefficients) != 3:
        raise ValueError("Coefficients must be a tuple of exactly 3 values")
    a, b, c = coefficients
    tall = matrix.size(-2) > matrix.size(-1)
    x = matrix.bfloat16()
    if tall:
        x = x.transpose(-2, -1)
    # the spectral norm at most 1 (the Frobenius norm bounds it); x.norm() is torch's reduction
    norm = x.norm() if x.dim() == 2 else x.norm(dim=(-2, -1), keepdim=True)
    x = x / norm.clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.transpose(-2, -1)
        gram_update = _addmm(gram, gram, gram, beta=b, alpha=c)
        x = _addmm(x, gram_update, x, beta=a)
    return x.transpose(-2, -1) if tall else x


def muon_lr_ratio(rows: int, cols: int, adjust_lr_fn: str | None) -> float:
    """torch.optim.Muon's learning-rate adjustment for an (rows, cols) matrix: √max(1, rows/cols)
    ("original", Keller Jordan's, and ``None``), 0.2·√max(rows, cols) ("match_rms_adamw", Moonshot's:
    the update's RMS that of AdamW's), 1 for anything else."""
    if adjust_lr_fn is None or adjust_lr_fn == "original":
        return math.sqrt(max(1, rows / cols))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(rows, cols))
    return 1.0


def muon(
    param: Tensor,
    grad: Tensor,
    state: State,
    *,
    lr: Number = 1e-3,
    weight_decay: Number | None = None,
    momentum: Number = 0.95,
    nesterov: bool = True,
    ns_coefficients: tuple[float, float, float] = MUON_NS_COEFFICIENTS,
    eps: float = MUON_EPS,
    ns_steps: int = MUON_NS_STEPS,
    adjust_lr_fn: str | None = None,
    flatten: bool = False,
    l1: Number | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Muon: momentum, orthogonalized by Newton–Schulz, for the matrices of hidden layers.

    b ← μb + (1 − μ)∇ (torch's ``lerp``);  u = ∇ + μ(b − ∇) with nesterov (``lerp``), else u = b;
    O = NS(u) (:func:`newton_schulz`, in bfloat16);  θ ← θ(1 − γλ) − γ·r·O, r = :func:`muon_lr_ratio`
    of the matrix's shape.  l1: threshold γ·r·l1 (the update has no per-coordinate metric: the
    threshold of SGD with step γ·r).

    ``param`` is one matrix (m, n) or a stack (k, m, n) of same-shape matrices, each orthogonalized
    on its own (the engines' :attr:`~optimlab.optim.base.RuleOptimizer.matrix` stacks). With
    ``flatten=True`` it is one parameter of any ndim ≥ 2 (a convolution's (out, in, kh, kw)),
    orthogonalized as the (out, in·kh·kw) matrix, r computed from that shape; never a stack.
    Under FSDP2 the engine steps each sharded matrix whole, as plain tensors, on one rank, and spreads
    the matrices over the ranks (:mod:`optimlab.optim.engine.spread`). A DTensor ``param`` that
    reaches the rule itself (a layout the engine does not spread: a 2-D mesh, ``Replicate``) is
    orthogonalized whole on every rank (``full_tensor()``), each keeping its shard of O: one
    process's numbers either way, where sharded bfloat16 products would round differently.

    Defaults (torch.optim.Muon): γ = 1e-3, λ = 0.1, μ = 0.95, nesterov = True, NS coefficients
    (3.4445, −4.7750, 2.0315), 5 steps, ε = 1e-7, adjust_lr_fn = None ("original").
    State: ``momentum_buffer`` (b). References: Jordan et al., "Muon: An optimizer for hidden layers
    in neural networks", 2024 (kellerjordan.github.io/posts/muon); Liu et al., "Muon is Scalable for
    LLM Training", arXiv:2502.16982, 2025 (match_rms_adamw).
    """
    buf = _lerp(state["momentum_buffer"], grad, 1 - momentum)
    update = _lerp(grad, buf, momentum) if nesterov else buf
    sharded = update if is_distributed(update) else None
    if sharded is not None:  # NS of the whole matrix, as one process: a sharded DTensor's matrix
        update = sharded.full_tensor()  # products would round differently (bfloat16 partial sums);
        # only for layouts the engine does not spread over the ranks (engine/spread.py)
    if flatten and update.dim() > 2:
        update = update.reshape(update.shape[0], -1)
    rows, cols = update.shape[-2:]
    ortho = newton_schulz(update, ns_coefficients, ns_steps, eps).reshape(param.shape)
    if sharded is not None:
        ortho = _distributed_like(ortho, sharded)
    adjusted_lr = lr * muon_lr_ratio(rows, cols, adjust_lr_fn)
    new_param = _decoupled_decay(param, lr, weight_decay)
    new_param = _add_scaled(new_param, ortho, -adjusted_lr)
    return _l1_step(new_param, l1, adjusted_lr), {"momentum_buffer": buf}
