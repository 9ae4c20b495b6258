"""``errata``: every place the five seed posts are wrong or loose — the passage, the correct statement,
how it is shown and a reference.

Not a training run: a list. Each erratum is a :class:`Claim` (the post's file, the passage as written,
its translation) and a :class:`Verdict` (``wrong`` or ``partly``, with the correct statement and a
reference). Where it is cheap the evidence is computed here, in well under a second, with the rules of
:mod:`optimlab.optim` (torch's) against the posts' own formulas run literally on f(x) = ½x²:

* seed 000's Adadelta, ΔW = −ΔW_AdaGrad / ΔW_RMSprop, is a ratio of two step sizes: always > 0, so the
  point walks one way whatever the gradient (Zeiler 2012, Algorithm 1 has Δx = −RMS[Δx]/RMS[g]·g);
* seed 000's Adam, m ← β₁m − (1 − β₁)g then W ← W − α·m/√v, climbs the gradient (Kingma & Ba 2015,
  Algorithm 1: m ← β₁m + (1 − β₁)g);
* seed 004's Nesterov code adds μ²·v with the *new* velocity: x ← x + μ³v − (1 + μ + μ²)ηg, stable on a
  quadratic of curvature L only for ηL < 2(1 + μ)/(1 + 2μ + 2μ²) ≈ 0.86 at μ = 0.9, where torch's NAG
  (Bengio et al. 2013, §3.5: μ²·v_{t−1}) is stable up to 2(1 + μ)/(1 + 2μ) ≈ 1.36;

and torch 2.13's own API (defaults read off the signatures, schedulers, ``ReduceLROnPlateau``,
``LambdaLR``, ``nn.Linear``), the momentum buffer under a constant gradient, Adagrad's and Adadelta's
learning rate, a saddle, a rippled 1-D landscape, L1 by SGD, and weight decay against L2.
Other errata point to the demonstration that shows them (``optimlab learn NAME``).
"""

from __future__ import annotations

import inspect
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.optim import lr_scheduler

from optimlab.learn.demo import Claim, Demo, Figure, Outcome, Text, Verdict, VerdictKind, text
from optimlab.learn.demos import seed_formulas
from optimlab.learn.demos.schedules import torch_schedulers
from optimlab.optim import SGD, Adadelta, Adagrad, Adam, AdamW
from optimlab.optim import functional as F
from optimlab.reports.figures.lines import Lines, Panel, Series

__all__ = [
    "CLAIMS",
    "DEMO",
    "Erratum",
    "errata",
    "measure",
    "post_adadelta",
    "post_adam",
    "post_nesterov",
]

P000 = "000_e26eedcb58e8e554.txt"
P001 = "001_8a28b8e74910af88.txt"
P002 = "002_795ce8fce5229f80.txt"
P003 = "003_2ca240df3290a5bb.txt"
P004 = "004_91ae9b067697a3ae.txt"

MU = 0.9  # the momentum of every momentum run here (the posts' "一般取0.9")
FORMULA_STEPS = 50  # steps of the posts' Adadelta and Adam on ½x²
ADAM_LR = 0.1
NESTEROV_LR = 0.95  # between the post's limit 0.86 and torch NAG's 1.36 (curvature 1)
NESTEROV_STEPS = 60
LARGE_LR = 2.0  # NAG's limit 1.36 < 2 < the heavy ball's 3.8
TOLERANCE = 1e-12


def _doubles(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=float)


# --- the posts' formulas, run literally (not optimizers: what the posts wrote) ----------------------


def post_adadelta(steps: int = FORMULA_STEPS, gamma: float = 0.9, eps: float = 1e-6) -> np.ndarray:
    """Seed 000's Adadelta on ½x² from x = 1, as written: cache ← cache + g², E ← γE + (1 − γ)g²,
    ΔW_AdaGrad = −α g/√(cache + ε), ΔW_RMSprop = −α g/√(E + ε), ΔW = −ΔW_AdaGrad/ΔW_RMSprop (α cancels),
    W ← W + ΔW. Returns x₀ … x_steps."""
    x, cache, avg = 1.0, 0.0, 0.0
    xs = [x]
    for _ in range(steps):
        g = x
        cache += g * g
        avg = gamma * avg + (1 - gamma) * g * g
        adagrad_step = -g / math.sqrt(cache + eps)
        rmsprop_step = -g / math.sqrt(avg + eps)
        x += -adagrad_step / rmsprop_step
        xs.append(x)
    return _doubles(xs)


def post_adam(
    steps: int = FORMULA_STEPS,
    lr: float = ADAM_LR,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> np.ndarray:
    """Seed 000's Adam on ½x² from x = 1, as written: m ← β₁m − (1 − β₁)g, cache ← β₂cache + (1 − β₂)g²,
    W ← W − α·m/√(cache + ε)."""
    x, m, cache = 1.0, 0.0, 0.0
    xs = [x]
    for _ in range(steps):
        g = x
        m = betas[0] * m - (1 - betas[0]) * g
        cache = cache * betas[1] + (1 - betas[1]) * g * g
        x = x - lr / math.sqrt(cache + eps) * m
        xs.append(x)
    return _doubles(xs)


def post_nesterov(steps: int = NESTEROV_STEPS, lr: float = NESTEROV_LR, mu: float = MU) -> np.ndarray:
    """Seed 004's Nesterov code on ½x² from x = 1: v ← μv − ηg; x ← x + μ²v − (1 + μ)ηg (the new v)."""
    x, v = 1.0, 0.0
    xs = [x]
    for _ in range(steps):
        g = x
        v = mu * v - lr * g
        x = x + mu * mu * v - (1 + mu) * lr * g
        xs.append(x)
    return _doubles(xs)


# --- torch's rules, by optimlab.optim ----------------------------------------------------------------


def _half_square(make: Callable[[list[torch.Tensor]], torch.optim.Optimizer], steps: int) -> np.ndarray:
    """x₀ = 1 … x_steps of an optimizer on ½x² (float64, autograd's gradient)."""
    x = torch.ones(1, dtype=torch.float64, requires_grad=True)
    optimizer = make([x])
    xs = [1.0]
    for _ in range(steps):
        optimizer.zero_grad()
        (0.5 * x.pow(2)).sum().backward()
        optimizer.step()
        xs.append(float(x.detach()))
    return _doubles(xs)


def _adagrad(lr: float) -> Callable[[list[torch.Tensor]], torch.optim.Optimizer]:
    return lambda params: Adagrad(params, lr=lr)


def _momentum_buffer(steps: int, dampening: float) -> float:
    """torch's momentum buffer (μ = 0.9) after ``steps`` constant gradients 1, by SGD's own rule."""
    params, state = {"x": torch.zeros((), dtype=torch.float64)}, None
    for _ in range(steps):
        grads = {"x": torch.ones((), dtype=torch.float64)}
        _, state = F.update("sgd", params, grads, state, lr=0.0, momentum=MU, dampening=dampening)
    assert state is not None
    return float(state["x"]["momentum_buffer"])


def _plateau(steps: int = 100, slope: float = 0.01, lr: float = 0.1) -> dict[str, float]:
    """Distance travelled down a gentle slope f = slope·x, by SGD and SGD + momentum 0.9."""
    moved = {}
    for name, mu in (("sgd", 0.0), ("momentum", MU)):
        x = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        optimizer = SGD([x], lr=lr, momentum=mu)
        for _ in range(steps):
            optimizer.zero_grad()
            (slope * x).sum().backward()
            optimizer.step()
        moved[name] = float(-x.detach())
    return {**moved, "ratio": moved["momentum"] / moved["sgd"], "slope": slope, "lr": lr, "steps": steps}


def _ripples(steps: int = 300, lr: float = 0.01) -> dict[str, Any]:
    """f(x) = x² + 2(1 − cos 2πx) from 19 starts in [−4.5, 4.5] (one tensor: the coordinates are
    independent): how many end in the global valley |x| < ½, by SGD and by SGD + momentum 0.9."""
    starts = torch.linspace(-4.5, 4.5, 19, dtype=torch.float64)
    ends = {}
    for name, mu in (("sgd", 0.0), ("momentum", MU)):
        x = starts.clone().requires_grad_(True)
        optimizer = SGD([x], lr=lr, momentum=mu)
        for _ in range(steps):
            optimizer.zero_grad()
            (x.pow(2) + 2 * (1 - torch.cos(2 * math.pi * x))).sum().backward()
            optimizer.step()
        ends[name] = int((x.detach().abs() < 0.5).sum())
    return {"starts": len(starts), "global": ends, "lr": lr, "steps": steps}


def _saddle(steps: int = 400, lr: float = 0.02) -> dict[str, Any]:
    """f = x² − y² from (1, 0.001) and from (1, 0) exactly: the first step with f ≤ −1 (left the saddle
    by a unit distance), by SGD and SGD + momentum 0.9; None when it never does."""
    escape: dict[str, dict[str, int | None]] = {}
    for name, mu in (("sgd", 0.0), ("momentum", MU)):
        points = torch.tensor([[1.0, 1e-3], [1.0, 0.0]], dtype=torch.float64, requires_grad=True)
        optimizer = SGD([points], lr=lr, momentum=mu)
        first: list[int | None] = [None, None]
        for step in range(1, steps + 1):
            optimizer.zero_grad()
            (points[:, 0].pow(2) - points[:, 1].pow(2)).sum().backward()
            optimizer.step()
            with torch.no_grad():
                losses = points[:, 0].pow(2) - points[:, 1].pow(2)
            for i in range(2):
                if first[i] is None and float(losses[i]) <= -1:
                    first[i] = step
        escape[name] = {"near": first[0], "ridge": first[1]}
    return {"escape_step": escape, "lr": lr, "steps": steps}


def _l1(size: int = 20, lam: float = 0.5, lr: float = 0.1, steps: int = 300) -> dict[str, Any]:
    """½‖w − a‖² + λ‖w‖₁ (a ~ N(0, 1), seed 0): the exact minimizer's zeros (soft thresholding, the
    closed-form minimum) against SGD's, through autograd's subgradient of |w|."""
    a = torch.randn(size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w = a.clone().requires_grad_(True)
    optimizer = SGD([w], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        (0.5 * (w - a).pow(2).sum() + lam * w.abs().sum()).backward()
        optimizer.step()
    exact = torch.sign(a) * torch.clamp(a.abs() - lam, min=0.0)
    zero = exact == 0
    final = w.detach()
    return {
        "size": size,
        "lambda": lam,
        "solution_zeros": int(zero.sum()),
        "sgd_zeros": int((final == 0).sum()),
        "sgd_largest_should_be_zero": float(final[zero].abs().max()),
        "lr": lr,
        "steps": steps,
    }


def _decay(steps: int = 200, lam: float = 0.1, lr: float = 0.01) -> dict[str, float]:
    """On ½(w₁² + 100w₂²) from (1, 1): the largest gap between weight decay and an L2 term λ/2‖w‖² in
    the loss, for SGD and Adam, and between AdamW and Adam(weight_decay)."""
    curvature = torch.tensor([1.0, 100.0], dtype=torch.float64)

    def train(cls: type[torch.optim.Optimizer], l2: float = 0.0, **hyper: float) -> torch.Tensor:
        w = torch.ones(2, dtype=torch.float64, requires_grad=True)
        optimizer = cls([w], lr=lr, **hyper)
        for _ in range(steps):
            optimizer.zero_grad()
            (0.5 * (curvature * w * w).sum() + 0.5 * l2 * (w * w).sum()).backward()
            optimizer.step()
        return w.detach()

    adam_decay = train(Adam, weight_decay=lam)
    return {
        "sgd_vs_l2": float((train(SGD, weight_decay=lam) - train(SGD, l2=lam)).abs().max()),
        "adam_vs_l2": float((adam_decay - train(Adam, l2=lam)).abs().max()),
        "adamw_vs_adam": float((train(AdamW, weight_decay=lam) - adam_decay).abs().max()),
        "lambda": lam,
        "lr": lr,
        "steps": steps,
    }


def _gradient_direction(lr: float = 0.01) -> dict[str, float]:
    """f = ½(x² + 10y²) at (1, 1): one SGD step against the gradient and one along it (maximize=True)."""
    curvature = torch.tensor([1.0, 10.0], dtype=torch.float64)
    after = {}
    for name, maximize in (("descent", False), ("ascent", True)):
        p = torch.ones(2, dtype=torch.float64, requires_grad=True)
        optimizer = SGD([p], lr=lr, maximize=maximize)
        optimizer.zero_grad()
        (0.5 * (curvature * p * p).sum()).backward()
        optimizer.step()
        after[name] = float(0.5 * (curvature * p.detach() ** 2).sum())
    return {"loss": 5.5, **after, "lr": lr}


def _autograd() -> dict[str, Any]:
    """Who computes the gradient: backward() fills .grad before any optimizer exists; step() without a
    backward() changes nothing."""
    p = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    (0.5 * p.pow(2)).sum().backward()
    assert p.grad is not None
    grad = float(p.grad)
    q = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    SGD([q], lr=0.1).step()
    return {"grad_from_backward": grad, "step_without_backward_moved": bool(float(q.detach()) != 3.0)}


def _api() -> dict[str, Any]:
    """torch's API, read off the installed torch."""

    def default(cls: type, name: str) -> Any:
        return inspect.signature(cls.__init__).parameters[name].default

    params = torch.zeros(1, requires_grad=True)
    try:
        lr_scheduler.ReduceLROnPlateau(SGD([params], lr=0.1), verbose=True)  # type: ignore[call-arg]
        verbose = True
    except TypeError:
        verbose = False
    optimizer = SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = lr_scheduler.LambdaLR(optimizer, lr_lambda=[lambda epoch: epoch // 30])
    lrs = []
    for _ in range(100):  # seed 001's loop; the lr each epoch trains with
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    clip_args = sorted(
        {
            f"{name}.{arg}"
            for name in dir(torch.optim)
            if inspect.isclass(cls := getattr(torch.optim, name)) and issubclass(cls, torch.optim.Optimizer)
            for arg in inspect.signature(cls.__init__).parameters
            if "clip" in arg
        }
    )
    return {
        "torch": torch.__version__.split("+")[0],
        "adam_betas": list(default(torch.optim.Adam, "betas")),
        "adam_eps": default(torch.optim.Adam, "eps"),
        "ten_e_minus_8": float("10e-8"),
        "adadelta_lr": default(torch.optim.Adadelta, "lr"),
        "adagrad_lr": default(torch.optim.Adagrad, "lr"),
        "nadam": {
            "in_torch": hasattr(torch.optim, "NAdam"),
            "in_optimlab": "nadam" in F.OPTIMIZERS,
            "lr": default(torch.optim.NAdam, "lr"),
        },
        "schedulers": torch_schedulers(),
        "reduce_lr_on_plateau": {
            "class_ReduceLROnPlateauLR": hasattr(lr_scheduler, "ReduceLROnPlateauLR"),
            "verbose_accepted": verbose,
            "parameters": [
                p
                for p in inspect.signature(lr_scheduler.ReduceLROnPlateau.__init__).parameters
                if p != "self"
            ],
        },
        "lambda_lr": {
            "zero_epochs": sum(1 for lr in lrs if lr == 0.0),
            "lr": {str(e): lrs[e] for e in (0, 29, 30, 60, 90, 99)},
        },
        "linear_shapes": {
            "1-D (1,)": list(torch.nn.Linear(1, 10)(torch.zeros(1)).shape),
            "3-D (4, 7, 1)": list(torch.nn.Linear(1, 10)(torch.zeros(4, 7, 1)).shape),
        },
        "clip_arguments": clip_args,
    }


def measure() -> dict[str, Any]:
    """Every computed piece of evidence (deterministic; float64 where it matters)."""
    torch_adadelta = _half_square(lambda p: Adadelta(p), FORMULA_STEPS)
    adadelta_tenth = _half_square(lambda p: Adadelta(p, lr=0.1), FORMULA_STEPS)
    post_dd = post_adadelta()
    post_am = post_adam()
    torch_adam = _half_square(lambda p: Adam(p, lr=ADAM_LR), FORMULA_STEPS)
    post_nag = post_nesterov()
    nag = _half_square(lambda p: SGD(p, lr=NESTEROV_LR, momentum=MU, nesterov=True), NESTEROV_STEPS)
    heavy = _half_square(lambda p: SGD(p, lr=NESTEROV_LR, momentum=MU), NESTEROV_STEPS)
    nag_large = _half_square(lambda p: SGD(p, lr=LARGE_LR, momentum=MU, nesterov=True), NESTEROV_STEPS)
    heavy_large = _half_square(lambda p: SGD(p, lr=LARGE_LR, momentum=MU), NESTEROV_STEPS)
    adagrad = {str(lr): float(abs(_half_square(_adagrad(lr), 100)[-1])) for lr in (0.01, 0.1, 0.5)}
    buffer_steps = 50
    return {
        "adadelta": {
            "steps": FORMULA_STEPS,
            "post_x": float(post_dd[-1]),
            "post_moves_one_way": bool(np.all(np.diff(post_dd) < 0)),
            "torch_x": float(torch_adadelta[-1]),
            "torch_x_lr_0.1": float(adadelta_tenth[-1]),
        },
        "adam": {
            "steps": FORMULA_STEPS,
            "lr": ADAM_LR,
            "post_x": float(post_am[-1]),
            "torch_x": float(torch_adam[-1]),
        },
        "nesterov_004": {
            "steps": NESTEROV_STEPS,
            "lr": NESTEROV_LR,
            "post_x": float(abs(post_nag[-1])),
            "nesterov_x": float(abs(nag[-1])),
            "heavy_ball_x": float(abs(heavy[-1])),
            "post_limit": 2 * (1 + MU) / (1 + 2 * MU + 2 * MU**2),
            "nesterov_limit": 2 * (1 + MU) / (1 + 2 * MU),
            "heavy_ball_limit": 2 * (1 + MU),
        },
        "nesterov_large_lr": {
            "lr": LARGE_LR,
            "steps": NESTEROV_STEPS,
            "nesterov_x": float(abs(nag_large[-1])),
            "heavy_ball_x": float(abs(heavy_large[-1])),
        },
        "momentum_buffer": {
            "steps": buffer_steps,
            "dampening_0": _momentum_buffer(buffer_steps, 0.0),
            "dampening_0.9": _momentum_buffer(buffer_steps, MU),
            "post_002_s2": 0.9 + 1.0 + 1.0 * 0.1,  # the post's s2 = 0.9 + s1 + d2·0.1 with d1 = d2 = 1
            "average_s2": _momentum_buffer(2, MU),  # 0.9·s1 + 0.1·d2 by SGD's buffer (dampening 0.9)
        },
        "plateau": _plateau(),
        "ripples": _ripples(),
        "saddle": _saddle(),
        "adagrad_lr": adagrad,
        "l1": _l1(),
        "weight_decay": _decay(),
        "gradient_direction": _gradient_direction(),
        "autograd": _autograd(),
        "api": _api(),
        "_curves": {
            "adadelta": (post_dd, torch_adadelta),
            "adam": (post_am, torch_adam),
            "nesterov": (post_nag, nag, heavy),
        },
    }


# --- the errata ----------------------------------------------------------------------------------------

CLAIMS: dict[str, Claim] = {
    "gd-per-sample": Claim(
        P000, "GD:ΔT会在每输入一个样本就更新一次", "GD: ΔT is updated after every single input sample."
    ),
    "momentum-global": Claim(
        P000,
        "反之方向相反就要减速最好是直接跳过局部最优解的山谷,前往全部最优解的山谷",
        "Conversely, when the direction reverses it slows down — ideally jumping straight over the valley of "
        "a local optimum and on to the valley of the global optimum.",
    ),
    "nag-safer": Claim(P000, "这样就会比纯动量更加保险", "This makes it safer than plain momentum."),
    "dampening": Claim(
        P000,
        "dampening:阻尼(dampening),用于防止动量的发散(η)",
        "dampening: used to keep the momentum from diverging (η).",
    ),
    "adagrad-no-lr": Claim(
        P000,
        "优点:不需要人为的调节学习率,它可以自动调节",
        "Advantage: the learning rate needs no tuning by hand; it adjusts itself.",
    ),
    "adadelta-formula": seed_formulas.ADADELTA,  # the same passage seed-formulas runs literally
    "adam-sign": seed_formulas.ADAM000,  # the same passage seed-formulas runs literally
    "adam-beta2": Claim(
        P000,
        "在Adam的论文中,建议的参数beta_1为0.9,beta_2为0.99,epsilon为1e-08",
        "In the Adam paper the suggested parameters are beta_1 = 0.9, beta_2 = 0.99, epsilon = 1e-08.",
    ),
    "adam-eps": Claim(
        P000,
        "代码部分(一般 β1 = 0.9,β2 = 0.999,ϵ = 10e−8)",
        "Code part (usually β1 = 0.9, β2 = 0.999, ϵ = 10e−8).",
    ),
    "nadam": Claim(
        P000, "代码部分(该优化器貌似没有内置", "Code part (this optimizer does not seem to be built in …"
    ),
    "gradient-direction": Claim(
        P001,
        "梯度方向是模型代价函数下降最快的方向",
        "The gradient direction is the direction in which the model's cost function decreases fastest.",
    ),
    "six-schedulers": Claim(
        P001,
        "pytorch也提供了六种学习率调度策略,分别是等间隔法,给定间隔法,指数衰减法,余弦下降法,监控指标调整法,"
        "LambdaLR自定义调整策略。",
        "PyTorch provides six learning-rate scheduling strategies: fixed interval, given milestones, "
        "exponential decay, cosine, metric-monitoring, and LambdaLR custom adjustment.",
    ),
    "l1-zeros": Claim(
        P001,
        "L1正则化的作用是使得大部分模型参数的值等于0",
        "L1 regularization makes most of the model's parameters exactly 0.",
    ),
    "l2-is-decay": Claim(
        P001,
        "L2正则化:又称weight decay(权值衰减),知道带上权值衰减就是L2正则化就行了",
        "L2 regularization, also called weight decay: just know that adding weight decay is L2 "
        "regularization.",
    ),
    "momentum-potential": Claim(
        P001,
        "动量:用势能来理解。避免模型陷入局部最优点。",
        "Momentum: understand it as potential energy. It keeps the model from getting stuck in local optima.",
    ),
    "plateau-verbose": Claim(
        P001,
        "verbose:是否打印日志",
        "[ReduceLROnPlateauLR's parameters: …] verbose: whether to print a log.",
    ),
    "lambda-lr": Claim(
        P001,
        "自定义调整策略",
        "Custom adjustment strategy — its example: learning_rate = 0.1, lambda1 = lambda epoch: epoch // 30, "
        "LambdaLR(optimizer, lr_lambda=[lambda1]), 100 epochs.",
    ),
    "two-d": Claim(P001, "torch只能处理二维的数据", "torch can only handle two-dimensional data."),
    "saddle-stuck": Claim(
        P002,
        "碰到 “鞍点” ,梯度为 0,参数无法优化",
        "At a “saddle point” the gradient is 0 and the parameters cannot be optimized.",
    ),
    "momentum-saddle": Claim(
        P002,
        "但是 Momentum 动量梯度下降算法已经在先前积累了一些梯度值,很有可能使得跨过鞍点。",
        "But gradient descent with momentum has already accumulated some gradient values before, which will "
        "very likely carry it across the saddle point.",
    ),
    "s2-formula": Claim(
        P002,
        "第二次梯度值:s2 = 0.9 + s1 + d2 * 0.1",
        "Second gradient value: s2 = 0.9 + s1 + d2 * 0.1 (and above it: “Dt = β * St-1 + (1- β) * Dt”).",
    ),
    "rmsprop-proven": Claim(
        P002,
        "被证明在神经网络非凸条件下的优化更好",
        "[RMSProp] has been proven to optimize better under the non-convex conditions of neural networks.",
    ),
    "optimizer-gradients": Claim(
        P003,
        "根据优化器计算得到的参数梯度",
        "[Parameter update: the network's weights and biases are updated] with the parameter gradients the "
        "optimizer computed.",
    ),
    "clipping": Claim(
        P003,
        "优化器通过适当的学习率调整和梯度裁剪等技巧,可以缓解这些问题,保证模型的稳定训练。",
        "Through techniques such as suitable learning-rate adjustment and gradient clipping, optimizers can "
        "mitigate these problems [vanishing or exploding gradients] and guarantee stable training.",
    ),
    "overfitting": Claim(
        P003,
        "优化器通过在训练过程中更新参数,可以在一定程度上防止模型在训练数据上过度拟合",
        "By updating the parameters during training, the optimizer can to some extent keep the model from "
        "overfitting the training data.",
    ),
    "momentum-flat": Claim(
        P003,
        "缺点:可能会在平坦区域陷入局部最优。",
        "[Momentum's] drawback: it may get stuck in a local optimum in flat regions.",
    ),
    "nag-stabler": Claim(
        P003,
        "通过提前考虑动量项,可以更准确地估计参数更新,提高参数更新的准确性和稳定性。",
        "By taking the momentum term into account in advance, it estimates the update more accurately, "
        "improving the accuracy and stability of the updates.",
    ),
    "adamw": Claim(
        P003,
        "在Adam的基础上加入权重衰减,提高模型的泛化性能。",
        "[AdamW] adds weight decay on top of Adam, improving the model's generalization.",
    ),
    "nesterov-004": seed_formulas.NESTEROV,  # the same passage seed-formulas runs literally
}


@dataclass(frozen=True)
class Erratum:
    """One erratum: its :class:`Claim`, what is wrong (``kind``), whether the computation here shows it
    (``holds``: None when the evidence is a definition or a reference, not a measurement), the evidence,
    the correct statement (``correction``, and ``fix``: a short language-neutral line for the table),
    the reference and what shows it (``shown_by``)."""

    key: str
    kind: VerdictKind
    holds: bool | None
    evidence: Text
    correction: Text
    reference: str
    shown_by: str
    fix: str

    @property
    def claim(self) -> Claim:
        return CLAIMS[self.key]

    def verdict(self) -> Verdict:
        """The verdict: ``kind``, unless the measurement contradicts the erratum (then ``confirmed``)."""
        kind: VerdictKind = "confirmed" if self.holds is False else self.kind
        return Verdict(self.claim, kind, self.evidence, self.correction, self.reference)


HERE = "computed here"


def _g(x: float) -> str:
    return f"{x:.3g}"


def errata(m: dict[str, Any]) -> list[Erratum]:
    """The errata, in the order of the posts, their evidence read off the measurements ``m``."""
    api = m["api"]
    dd, adam, nag4, large = m["adadelta"], m["adam"], m["nesterov_004"], m["nesterov_large_lr"]
    buf, plateau, ripples, saddle = m["momentum_buffer"], m["plateau"], m["ripples"], m["saddle"]
    n_starts, in_global = ripples["starts"], ripples["global"]
    escape = saddle["escape_step"]
    l1, wd, gd, ag = m["l1"], m["weight_decay"], m["gradient_direction"], m["adagrad_lr"]
    extra = [s for s in api["schedulers"] if s not in _SIX]
    plateau_api = api["reduce_lr_on_plateau"]
    moved = m["autograd"]["step_without_backward_moved"]
    large_holds = large["nesterov_x"] > 1e3 and large["heavy_ball_x"] < 0.5
    ripples_text = text(
        f"On f(x) = x² + 2(1 − cos 2πx) (the global minimum at 0, a local one near every integer), from "
        f"{n_starts} starts in [−4.5, 4.5] and {ripples['steps']} steps at lr {ripples['lr']}: SGD ends in "
        f"the global valley from {in_global['sgd']} starts, SGD + momentum 0.9 from {in_global['momentum']}; "
        f"from the other {n_starts - in_global['momentum']} momentum still stops in a local minimum.",
        f"在 f(x) = x² + 2(1 − cos 2πx) 上（全局最小值在 0，每个整数附近都有一个局部最小值），从 [−4.5, 4.5] "
        f"中的 {n_starts} 个起点出发、学习率 {ripples['lr']}、{ripples['steps']} 步：SGD 只有 "
        f"{in_global['sgd']} 个起点到达全局最小值所在的谷，加上 0.9 的动量后有 {in_global['momentum']} 个；"
        f"其余 {n_starts - in_global['momentum']} 个起点带着动量依然停在局部最小值。",
    )
    large_text = text(
        f"On ½x² at lr {large['lr']} (lr × curvature = {large['lr']}), μ = 0.9, after {large['steps']} "
        f"steps: the heavy ball is at |x| = {large['heavy_ball_x']:.1e}, NAG (SGD(nesterov=True)) at "
        f"{large['nesterov_x']:.1e}. On a quadratic NAG is stable only for lr·L < 2(1 + μ)/(1 + 2μ) = "
        f"{nag4['nesterov_limit']:.2f}, the heavy ball up to 2(1 + μ) = {nag4['heavy_ball_limit']:.1f}.",
        f"在 ½x² 上取学习率 {large['lr']}（学习率 × 曲率 = {large['lr']}），μ = 0.9，{large['steps']} 步后："
        f"重球动量到了 |x| = {large['heavy_ball_x']:.1e}，NAG（SGD(nesterov=True)）却到了 "
        f"{large['nesterov_x']:.1e}。在二次函数上 NAG 只在 学习率·L < 2(1 + μ)/(1 + 2μ) = "
        f"{nag4['nesterov_limit']:.2f} 时稳定，重球动量则可以到 2(1 + μ) = {nag4['heavy_ball_limit']:.1f}。",
    )
    return [
        Erratum(
            "gd-per-sample",
            "wrong",
            None,
            text(
                "By definition (no measurement): gradient descent averages the gradient over the whole "
                "training set before each update; an update after every sample is stochastic gradient "
                "descent. The post gives GD the per-sample update that defines SGD.",
                "按定义（无需测量）：梯度下降（GD）每次更新前要在整个训练集上求平均梯度；每个样本更新一次的是"
                "随机梯度下降（SGD）。原文把定义 SGD 的“每个样本更新一次”安在了 GD 头上。",
            ),
            text(
                "GD (full-batch): one update per pass over the whole training set, with the exact gradient. "
                "SGD: one update per randomly drawn sample; mini-batch SGD (what batch_size sets): one "
                "update "
                "per random batch of B samples.",
                "GD（全批量）：每遍历一次整个训练集更新一次，用的是精确梯度。SGD：每随机抽一个样本更新一次；"
                "小批量 SGD（batch_size 控制的就是它）：每随机抽 B 个样本更新一次。",
            ),
            "Goodfellow, Bengio & Courville 2016, Deep Learning §8.1.3; Bottou, Curtis & Nocedal 2018 §3",
            "batch-size",
            "GD: 1 update / whole data set; SGD: 1 update / sample or mini-batch",
        ),
        Erratum(
            "momentum-global",
            "partly",
            in_global["momentum"] < n_starts,
            ripples_text,
            text(
                "Momentum can roll over small barriers, which sometimes lands the point in a better valley, "
                "but it knows nothing of the global optimum and guarantees nothing; it can as well carry the "
                "point out of a good valley.",
                "动量能冲过小的障碍，有时因此落到更好的谷里；但它并不知道全局最优在哪里，也没有任何保证，"
                "同样可能把参数从好的谷里带出去。",
            ),
            "Goodfellow et al. 2016 §8.2.2 and §8.3.2; Sutskever, Martens, Dahl & Hinton 2013",
            f"{HERE}; local-minima",
            "momentum may cross small barriers; no guarantee of the global optimum",
        ),
        Erratum(
            "nag-safer",
            "partly",
            large_holds,
            large_text,
            text(
                "NAG overshoots less at a small step, but it tolerates a smaller learning rate than the "
                "heavy "
                "ball: at a large step it is the one that diverges.",
                "在小步长下 NAG 的过冲确实更小，但它能承受的学习率比重球动量小：步长大时先发散的反而是它。",
            ),
            "Sutskever, Martens, Dahl & Hinton 2013, §2; torch 2.13 docs: torch.optim.SGD (nesterov)",
            f"{HERE}; nesterov",
            "NAG: less overshoot, but stable only for lr·L < 2(1+μ)/(1+2μ)",
        ),
        Erratum(
            "dampening",
            "wrong",
            abs(buf["dampening_0"] - buf["dampening_0.9"]) > 1,
            text(
                f"Under a constant gradient 1, torch's momentum buffer (μ = 0.9) reaches "
                f"{buf['dampening_0']:.3f} after {buf['steps']} steps with dampening 0 and stays at "
                f"{buf['dampening_0.9']:.3f} with dampening 0.9: dampening only scales the gradient's share "
                "of the buffer. The post's η is the momentum coefficient — torch's momentum.",
                f"在恒定梯度 1 下，torch 的动量缓冲（μ = 0.9）在 dampening = 0 时 {buf['steps']} 步后达到 "
                f"{buf['dampening_0']:.3f}，dampening = 0.9 时一直是 {buf['dampening_0.9']:.3f}："
                "dampening 只是缩放新梯度在缓冲中的份额。原文的 η 是动量系数，对应 torch 的 momentum。",
            ),
            text(
                "dampening τ scales the new gradient in the buffer: b ← μ·b + (1 − τ)·g (from the second "
                "step). It is not the momentum coefficient η (that is momentum = μ) and guards against no "
                "divergence; with τ = μ the buffer is an exponential average and steps shrink by (1 − μ).",
                "dampening τ 缩放缓冲中的新梯度：b ← μ·b + (1 − τ)·g（从第二步起）。它不是动量系数 η"
                "（那是 momentum = μ），也不防止发散；取 τ = μ 时缓冲变成指数平均，步长缩小为原来的 (1 − "
                "μ)。",
            ),
            "torch 2.13 docs: torch.optim.SGD (algorithm: b_t ← μ b_{t−1} + (1 − τ) g_t)",
            HERE,
            "b ← μb + (1 − dampening)·g; η is momentum",
        ),
        Erratum(
            "adagrad-no-lr",
            "partly",
            ag["0.01"] > 10 * ag["0.5"],
            text(
                f"Adagrad on ½x² from x = 1, 100 steps: |x| = {_g(ag['0.01'])} at lr 0.01 (torch's default), "
                f"{_g(ag['0.1'])} at lr 0.1, {_g(ag['0.5'])} at lr 0.5 — the global lr still decides how far "
                "it gets.",
                f"Adagrad 在 ½x² 上从 x = 1 出发走 100 步：lr = 0.01（torch 默认）时 |x| = {_g(ag['0.01'])}，"
                f"lr = 0.1 时 {_g(ag['0.1'])}，lr = 0.5 时 {_g(ag['0.5'])}——全局学习率依然决定能走多远。",
            ),
            text(
                "Adagrad adapts each parameter's scale (α/√Σg²), but the global learning rate α remains a "
                "hyperparameter to tune (torch's default 0.01), and its steps shrink like 1/√t.",
                "Adagrad 自适应的是每个参数的相对尺度（α/√Σg²），全局学习率 α 仍是需要调的超参数"
                "（torch 默认 0.01），而且它的步长大约按 1/√t 衰减。",
            ),
            "Duchi, Hazan & Singer 2011; torch 2.13 docs: torch.optim.Adagrad",
            HERE,
            "the global lr α still needs tuning",
        ),
        Erratum(
            "adadelta-formula",
            "wrong",
            dd["post_moves_one_way"] and abs(dd["post_x"]) > 1 and abs(dd["torch_x"]) < 1,
            text(
                "Run literally on ½x² from x = 1 (γ = 0.9, ε = 1e-6), ΔW is minus a ratio of two step "
                "sizes, "
                f"√(E[g²] + ε)/√(Σg² + ε) > 0, so x falls at every step whatever the gradient's sign: "
                f"x = {dd['post_x']:.2f} after {dd['steps']} steps (loss {0.5 * dd['post_x'] ** 2:.1f}, from "
                f"0.5). optimlab.optim.Adadelta (torch's rule) moves towards 0: x = {dd['torch_x']:.3f}.",
                f"在 ½x² 上从 x = 1 出发照原文公式计算（γ = 0.9，ε = 1e-6）：ΔW 等于两个步长之比取负，"
                f"√(E[g²] + ε)/√(Σg² + ε) > 0，所以不管梯度正负 x 每一步都在减小：{dd['steps']} 步后 x = "
                f"{dd['post_x']:.2f}（损失从 0.5 变成 {0.5 * dd['post_x'] ** 2:.1f}）。"
                "optimlab.optim.Adadelta"
                f"（torch 的规则）则朝 0 移动：x = {dd['torch_x']:.3f}。",
            ),
            text(
                "Adadelta: E[g²] ← ρE[g²] + (1 − ρ)g²; Δx = −√(E[Δx²] + ε)/√(E[g²] + ε)·g; "
                "E[Δx²] ← ρE[Δx²] + (1 − ρ)Δx²; x ← x + Δx. The numerator is a running RMS of past updates "
                "(it gives Δx the units of x), not Adagrad's step.",
                "Adadelta：E[g²] ← ρE[g²] + (1 − ρ)g²；Δx = −√(E[Δx²] + ε)/√(E[g²] + ε)·g；"
                "E[Δx²] ← ρE[Δx²] + (1 − ρ)Δx²；x ← x + Δx。分子是过去更新量的滑动均方根（让 Δx 与 x "
                "的单位一致），而不是 Adagrad 的步长。",
            ),
            "Zeiler 2012, ADADELTA, §3.2 (Algorithm 1); torch 2.13 docs: torch.optim.Adadelta",
            f"{HERE}; seed-formulas",
            "Δx = −RMS(Δx)/RMS(g)·g, not a ratio of two steps",
        ),
        Erratum(
            "adam-sign",
            "wrong",
            abs(adam["post_x"]) > 1 and abs(adam["torch_x"]) < 0.1,
            text(
                f"With the minus sign m ≈ −(average gradient), and W − α·m/√cache climbs the gradient: run "
                f"literally on ½x² from x = 1 (α = {adam['lr']}, β₁ = 0.9, β₂ = 0.999), x = "
                f"{adam['post_x']:.1f} after {adam['steps']} steps; optimlab.optim.Adam with the same "
                "settings: "
                f"x = {adam['torch_x']:.4f}.",
                f"带着这个负号，m ≈ −(平均梯度)，于是 W − α·m/√cache 是在沿梯度上坡：在 ½x² 上从 x = 1 "
                f"出发照原文计算（α = {adam['lr']}，β₁ = 0.9，β₂ = 0.999），{adam['steps']} 步后 x = "
                f"{adam['post_x']:.1f}；同样设置下 optimlab.optim.Adam 得到 x = {adam['torch_x']:.4f}。",
            ),
            text(
                "m ← β₁m + (1 − β₁)g (a plus sign: SGDM's V carries the minus because V is added to W), "
                "v ← β₂v + (1 − β₂)g², θ ← θ − α·m̂/(√v̂ + ε), with m̂ = m/(1 − β₁ᵗ), v̂ = v/(1 − β₂ᵗ).",
                "m ← β₁m + (1 − β₁)g（是加号；SGDM 的 V 带负号，是因为 V 是直接加到 W 上的），"
                "v ← β₂v + (1 − β₂)g²，θ ← θ − α·m̂/(√v̂ + ε)，其中 m̂ = m/(1 − β₁ᵗ)，v̂ = v/(1 − β₂ᵗ)。",
            ),
            "Kingma & Ba 2015, Adam, Algorithm 1; torch 2.13 docs: torch.optim.Adam",
            f"{HERE}; seed-formulas",
            "m ← β₁m + (1 − β₁)g",
        ),
        Erratum(
            "adam-beta2",
            "wrong",
            api["adam_betas"] == [0.9, 0.999],
            text(
                f"Algorithm 1 of the paper gives β₂ = 0.999 (with α = 0.001, β₁ = 0.9, ε = 10⁻⁸); torch's "
                f"Adam defaults, read off the installed torch {api['torch']}: betas = "
                f"{tuple(api['adam_betas'])}, eps = {api['adam_eps']:g}.",
                f"论文的 Algorithm 1 给出的是 β₂ = 0.999（以及 α = 0.001、β₁ = 0.9、ε = 10⁻⁸）；从本机 "
                f"torch {api['torch']} 读出的 Adam 默认值：betas = {tuple(api['adam_betas'])}，"
                f"eps = {api['adam_eps']:g}。",
            ),
            text(
                "The paper's defaults are β₁ = 0.9, β₂ = 0.999, ε = 10⁻⁸, as torch's. β₂ = 0.99 averages the "
                "squared gradients over about 100 steps instead of about 1000.",
                "论文的默认值是 β₁ = 0.9、β₂ = 0.999、ε = 10⁻⁸，与 torch 相同。β₂ = 0.99 只对最近约 100 步"
                "的梯度平方求平均，而 0.999 约为 1000 步。",
            ),
            "Kingma & Ba 2015, Adam, Algorithm 1; torch 2.13 docs: torch.optim.Adam",
            HERE,
            "β₂ = 0.999",
        ),
        Erratum(
            "adam-eps",
            "wrong",
            api["ten_e_minus_8"] != api["adam_eps"],
            text(
                f"10e−8 is 10 × 10⁻⁸ = {api['ten_e_minus_8']:g} (Python: float('10e-8') == 1e-07); the paper "
                f"and torch use ε = 10⁻⁸ = {api['adam_eps']:g}.",
                f"10e−8 是 10 × 10⁻⁸ = {api['ten_e_minus_8']:g}（Python 中 float('10e-8') == 1e-07）；"
                f"论文和 torch 用的是 ε = 10⁻⁸ = {api['adam_eps']:g}。",
            ),
            text(
                "ε = 1e-8 (10⁻⁸); written as 10e-8 in code it becomes 1e-7, ten times larger.",
                "ε = 1e-8（即 10⁻⁸）；在代码里写成 10e-8 会变成 1e-7，大了十倍。",
            ),
            "Kingma & Ba 2015, Algorithm 1 (ε = 10⁻⁸); torch 2.13 docs: torch.optim.Adam (eps=1e-08)",
            HERE,
            "ε = 1e-8 = 10⁻⁸",
        ),
        Erratum(
            "nadam",
            "wrong",
            api["nadam"]["in_torch"],
            text(
                f"torch.optim.NAdam is in the installed torch {api['torch']} (default lr = "
                f"{api['nadam']['lr']}), and optimlab.optim.NAdam implements its rule; the post prints its "
                "signature right below the sentence.",
                f"本机的 torch {api['torch']} 里就有 torch.optim.NAdam（默认 lr = {api['nadam']['lr']}），"
                "optimlab.optim.NAdam 也实现了它的规则；原文在这句话下面贴出的正是它的函数签名。",
            ),
            text(
                "NAdam is built in: torch.optim.NAdam(params, lr=0.002, betas=(0.9, 0.999), eps=1e-08, "
                "momentum_decay=0.004).",
                "NAdam 是内置的：torch.optim.NAdam(params, lr=0.002, betas=(0.9, 0.999), eps=1e-08, "
                "momentum_decay=0.004)。",
            ),
            "Dozat 2016, Incorporating Nesterov Momentum into Adam; torch 2.13 docs: torch.optim.NAdam",
            HERE,
            "torch.optim.NAdam exists",
        ),
        Erratum(
            "gradient-direction",
            "wrong",
            gd["ascent"] > gd["loss"] > gd["descent"],
            text(
                f"On f = ½(x² + 10y²) at (1, 1), f = {gd['loss']:.2f}: one step of optimlab.optim.SGD "
                f"(lr {gd['lr']}) against the gradient gives {gd['descent']:.2f}; the same step along it "
                f"(maximize=True) gives {gd['ascent']:.2f}.",
                f"在 f = ½(x² + 10y²) 的 (1, 1) 处 f = {gd['loss']:.2f}：optimlab.optim.SGD（lr "
                f"{gd['lr']}）逆着梯度走一步得到 {gd['descent']:.2f}；顺着梯度走同样一步（maximize=True）"
                f"得到 {gd['ascent']:.2f}。",
            ),
            text(
                "The gradient points where the cost rises fastest; it falls fastest along the negative "
                "gradient, which is why gradient descent subtracts it: θ ← θ − η∇f (seed 004 says so "
                "correctly).",
                "梯度方向是代价函数上升最快的方向；负梯度方向才是下降最快的方向，所以梯度下降是减去梯度："
                "θ ← θ − η∇f（种子文章 004 的说法是对的）。",
            ),
            "Goodfellow et al. 2016 §4.3; Nocedal & Wright 2006, Numerical Optimization §2.2",
            HERE,
            "−∇f: steepest descent; ∇f: steepest ascent",
        ),
        Erratum(
            "six-schedulers",
            "partly",
            len(api["schedulers"]) > 6,
            text(
                f"The installed torch {api['torch']} has {len(api['schedulers'])} scheduler classes in "
                f"torch.optim.lr_scheduler; besides the six: {', '.join(extra)}.",
                f"本机 torch {api['torch']} 的 torch.optim.lr_scheduler 中有 {len(api['schedulers'])} "
                f"个调度器类；除了这六种还有：{'、'.join(extra)}。",
            ),
            text(
                "The six are the classic ones; torch also has warm-up (LinearLR, ConstantLR), one-cycle and "
                "cyclic schedules, warm restarts, polynomial decay, and SequentialLR/ChainedScheduler to "
                "combine them.",
                "这六种是经典的；torch 还有预热（LinearLR、ConstantLR）、单周期与循环调度、带热重启的余弦、"
                "多项式衰减，以及用来组合它们的 SequentialLR/ChainedScheduler。",
            ),
            "torch 2.13 docs: torch.optim.lr_scheduler",
            f"{HERE}; schedules",
            f"{len(api['schedulers'])} schedulers in torch {api['torch']}",
        ),
        Erratum(
            "l1-zeros",
            "partly",
            l1["sgd_zeros"] < l1["solution_zeros"],
            text(
                f"Minimizing ½‖w − a‖² + {l1['lambda']}·‖w‖₁ over {l1['size']} weights (a ~ N(0, 1), seed "
                "0): "
                f"the exact minimizer (soft thresholding) has {l1['solution_zeros']} zeros of {l1['size']}; "
                f"optimlab.optim.SGD (lr {l1['lr']}, {l1['steps']} steps, autograd's subgradient of |w|) "
                "ends "
                f"with {l1['sgd_zeros']} exact zeros: the weights that should be 0 jitter around it, up to "
                f"{l1['sgd_largest_should_be_zero']:.3f}.",
                f"对 {l1['size']} 个权重最小化 ½‖w − a‖² + {l1['lambda']}·‖w‖₁（a ~ N(0, 1)，种子 0）："
                f"精确解（软阈值）中有 {l1['solution_zeros']} 个为 0；optimlab.optim.SGD（lr {l1['lr']}，"
                f"{l1['steps']} 步，用 autograd 给出的 |w| 的次梯度）最后恰好为 0 的有 {l1['sgd_zeros']} 个："
                f"本该为 0 的权重在 0 附近来回跳，最大偏离 {l1['sgd_largest_should_be_zero']:.3f}。",
            ),
            text(
                "The L1 minimum has exact zeros — how many depends on λ, not 'most' in general — but plain "
                "(sub)gradient methods (SGD, Adam with |w| in the loss) almost never land on exactly 0; "
                "exact "
                "sparsity needs a proximal step (soft thresholding), coordinate descent, or thresholding.",
                "L1 的最优解确实有恰好为 0 的分量——有多少取决于 λ，并不一定是“大部分”——但普通的（次）梯度"
                "方法（SGD、把 |w| 加进损失的 Adam）几乎永远停不到恰好 0；要得到真正的稀疏解，需要近端步"
                "（软阈值）、坐标下降或事后截断。",
            ),
            "Tibshirani 1996 (lasso); Tsuruoka, Tsujii & Ananiadou 2009 (SGD with L1); Parikh & Boyd 2014, "
            "Proximal Algorithms §6.5.2",
            f"{HERE}; l1-vs-l2",
            "zeros at the L1 minimum (count set by λ); SGD reaches none exactly",
        ),
        Erratum(
            "l2-is-decay",
            "partly",
            wd["sgd_vs_l2"] < TOLERANCE and wd["adamw_vs_adam"] > 1e-3,
            text(
                f"Largest gap after {wd['steps']} steps on ½(w₁² + 100w₂²) (λ = {wd['lambda']}, lr "
                f"{wd['lr']}): SGD(weight_decay=λ) vs SGD on loss + λ/2‖w‖²: {wd['sgd_vs_l2']:.1e}; "
                f"Adam(weight_decay=λ) vs Adam on the same L2 loss: {wd['adam_vs_l2']:.1e}; "
                f"AdamW(weight_decay=λ) vs Adam(weight_decay=λ): {wd['adamw_vs_adam']:.1e}.",
                f"在 ½(w₁² + 100w₂²) 上走 {wd['steps']} 步（λ = {wd['lambda']}，lr {wd['lr']}）后的最大差距："
                f"SGD(weight_decay=λ) 与在损失中加 λ/2‖w‖² 的 SGD：{wd['sgd_vs_l2']:.1e}；"
                f"Adam(weight_decay=λ) 与加同样 L2 项的 Adam：{wd['adam_vs_l2']:.1e}；"
                f"AdamW(weight_decay=λ) 与 Adam(weight_decay=λ)：{wd['adamw_vs_adam']:.1e}。",
            ),
            text(
                "For SGD weight decay and an L2 penalty are the same thing. For adaptive optimizers they "
                "differ: torch's Adam weight_decay adds λθ to the gradient (L2, then rescaled by 1/√v); "
                "AdamW shrinks θ ← θ − ηλθ directly (decoupled weight decay), which is not L2 "
                "regularization.",
                "对 SGD 来说，权重衰减和 L2 正则是一回事。对自适应优化器则不同：torch 的 Adam 的 "
                "weight_decay "
                "是把 λθ 加进梯度（即 L2，之后还会被 1/√v 缩放）；AdamW 则直接做 θ ← θ − ηλθ"
                "（解耦的权重衰减），这就不再是 L2 正则。",
            ),
            "Loshchilov & Hutter 2019, Decoupled Weight Decay Regularization, §2; torch 2.13 docs: "
            "torch.optim.Adam, torch.optim.AdamW",
            f"{HERE}; weight-decay",
            "decay = L2 for SGD only; AdamW's decay ≠ L2",
        ),
        Erratum(
            "momentum-potential",
            "partly",
            in_global["momentum"] < n_starts,
            ripples_text,
            text(
                "Momentum is velocity: a heavy ball's kinetic energy with friction 1 − μ; the loss is the "
                "potential energy. It damps oscillation and can roll over small bumps, but it does not keep "
                "the model out of local minima.",
                "动量对应的是速度：带摩擦（1 − μ）的重球的动能；损失函数才是势能。它能抑制震荡、冲过小的"
                "起伏，但不能保证避开局部最优。",
            ),
            "Polyak 1964; Goodfellow et al. 2016 §8.3.2; Goh 2017, Why Momentum Really Works (Distill)",
            f"{HERE}; momentum; local-minima",
            "momentum = velocity (kinetic); no escape guarantee",
        ),
        Erratum(
            "plateau-verbose",
            "partly",
            not plateau_api["verbose_accepted"],
            text(
                f"In the installed torch {api['torch']}: "
                + (
                    "a class ReduceLROnPlateauLR exists"
                    if plateau_api["class_ReduceLROnPlateauLR"]
                    else "there is no class ReduceLROnPlateauLR (the class is ReduceLROnPlateau)"
                )
                + ", and ReduceLROnPlateau(optimizer, verbose=True) "
                + ("is still accepted" if plateau_api["verbose_accepted"] else "raises TypeError")
                + f"; its parameters are {', '.join(plateau_api['parameters'])}.",
                f"在本机的 torch {api['torch']} 中："
                + (
                    "有 ReduceLROnPlateauLR 这个类"
                    if plateau_api["class_ReduceLROnPlateauLR"]
                    else "并没有 ReduceLROnPlateauLR 这个类（类名是 ReduceLROnPlateau）"
                )
                + "，ReduceLROnPlateau(optimizer, verbose=True) "
                + ("仍然可用" if plateau_api["verbose_accepted"] else "会抛出 TypeError")
                + f"；它的参数是 {'、'.join(plateau_api['parameters'])}。",
            ),
            text(
                "Outdated rather than wrong: in the torch of the post's time verbose=True did print a "
                "message at each reduction of the learning rate. The argument was deprecated (torch 2.2) "
                "and is gone from torch 2.13 — read the learning rate with scheduler.get_last_lr() "
                "instead. The class is ReduceLROnPlateau, not ReduceLROnPlateauLR.",
                "这条是过时了，而不是错了：在原文当时的 torch 里，verbose=True 确实会在每次降低学习率时打印"
                "一条信息。这个参数后来被弃用（torch 2.2），torch 2.13 中已经没有了——改用 "
                "scheduler.get_last_lr() 查看学习率。另外，类名是 ReduceLROnPlateau，不是 "
                "ReduceLROnPlateauLR。",
            ),
            "torch 2.13 docs: torch.optim.lr_scheduler.ReduceLROnPlateau; torch 2.2 release notes "
            "(verbose deprecated)",
            HERE,
            "ReduceLROnPlateau(mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps)",
        ),
        Erratum(
            "lambda-lr",
            "wrong",
            api["lambda_lr"]["zero_epochs"] > 0,
            text(
                "Stepping that scheduler (on optimlab.optim.SGD, lr 0.1) for 100 epochs: lr = 0 in the "
                "first "
                f"{api['lambda_lr']['zero_epochs']} epochs, then {api['lambda_lr']['lr']['30']:g} from epoch "
                "30, "
                f"{api['lambda_lr']['lr']['60']:g} from 60, {api['lambda_lr']['lr']['90']:g} from 90: it "
                "does "
                "not decay — it switches training off for 30 epochs, then grows.",
                f"把这个调度器（挂在 lr = 0.1 的 optimlab.optim.SGD 上）运行 100 个 epoch：前 "
                f"{api['lambda_lr']['zero_epochs']} 个 epoch 的 lr = 0，从第 30 个起是 "
                f"{api['lambda_lr']['lr']['30']:g}，第 60 个起 {api['lambda_lr']['lr']['60']:g}，第 90 个起 "
                f"{api['lambda_lr']['lr']['90']:g}：它不是在衰减，而是先停训 30 个 epoch，然后越调越大。",
            ),
            text(
                "LambdaLR sets lr = lr₀·λ(epoch), so λ(0) should be 1; epoch // 30 is 0 for epochs 0–29 "
                "(torch's "
                "docs pair it with a second parameter group). A step decay is 0.1 ** (epoch // 30), or "
                "StepLR(step_size=30, gamma=0.1); a smooth one the post's unused lambda2, 0.95 ** epoch.",
                "LambdaLR 令 lr = lr₀·λ(epoch)，所以 λ(0) 应当是 1；epoch // 30 在第 0–29 个 epoch 都是 0"
                "（torch 文档里它是给第二个参数组的示例）。阶梯衰减应写成 0.1 ** (epoch // 30)，或用 "
                "StepLR(step_size=30, gamma=0.1)；平滑衰减就是原文定义了却没用上的 lambda2：0.95 ** epoch。",
            ),
            "torch 2.13 docs: torch.optim.lr_scheduler.LambdaLR",
            HERE,
            "lr_lambda = lambda epoch: 0.1 ** (epoch // 30)",
        ),
        Erratum(
            "two-d",
            "wrong",
            api["linear_shapes"]["3-D (4, 7, 1)"] == [4, 7, 10],
            text(
                "torch.nn.Linear(1, 10) maps an input of shape (1,) "
                f"to {tuple(api['linear_shapes']['1-D (1,)'])} "
                f"and one of shape (4, 7, 1) to {tuple(api['linear_shapes']['3-D (4, 7, 1)'])}: it needs the "
                "last dimension to equal in_features, nothing more.",
                f"torch.nn.Linear(1, 10) 把形状 (1,) 的输入变成 {tuple(api['linear_shapes']['1-D (1,)'])}，"
                f"把 (4, 7, 1) 变成 {tuple(api['linear_shapes']['3-D (4, 7, 1)'])}：它只要求最后一维等于 "
                "in_features。",
            ),
            text(
                "torch handles tensors of any number of dimensions; nn.Linear takes (*, in_features). "
                "unsqueeze(dim=1) turns 1000 scalars (1000,) into 1000 one-feature samples (1000, 1), the "
                "shape "
                "Linear(1, …) and the MSELoss against y need.",
                "torch 可以处理任意维度的张量；nn.Linear 接受形状 (*, in_features) 的输入。unsqueeze(dim=1) "
                "把 1000 个标量 (1000,) 变成 1000 个单特征样本 (1000, 1)，这正是 Linear(1, …) 和与 y 计算 "
                "MSELoss 所需要的形状。",
            ),
            "torch 2.13 docs: torch.nn.Linear (input (*, H_in)), torch.unsqueeze",
            HERE,
            "any number of dims; Linear takes (*, in_features)",
        ),
        Erratum(
            "saddle-stuck",
            "partly",
            escape["sgd"]["near"] is not None and escape["sgd"]["ridge"] is None,
            text(
                f"On f = x² − y² at lr {saddle['lr']}: from (1, 0.001) plain SGD leaves the saddle (f ≤ −1) "
                f"after {escape['sgd']['near']} steps; only from exactly (1, 0), on the ridge, does it never "
                f"leave in {saddle['steps']} steps.",
                f"在 f = x² − y² 上取 lr {saddle['lr']}：从 (1, 0.001) 出发，普通 SGD 走 "
                f"{escape['sgd']['near']} 步就离开了鞍点（f ≤ −1）；只有恰好从山脊上的 (1, 0) 出发时，"
                f"{saddle['steps']} 步内都离不开。",
            ),
            text(
                "The gradient is 0 only exactly at the saddle; near it the gradient has a component along "
                "the "
                "negative-curvature direction and gradient descent escapes — slowly, because the gradient is "
                "small there. The real cost of saddles is the slowdown; noise or a perturbation suffices to "
                "leave one.",
                "梯度只在鞍点本身为 0；在它附近，梯度沿负曲率方向有分量，梯度下降能逃出去——只是因为那里"
                "梯度小而很慢。鞍点真正的代价是减速；一点噪声或扰动就足以离开。",
            ),
            "Dauphin et al. 2014, Identifying and attacking the saddle point problem; Jin et al. 2017, How "
            "to "
            "Escape Saddle Points Efficiently; Goodfellow et al. 2016 §8.2.3",
            f"{HERE}; momentum",
            "∇f = 0 only at the saddle itself; GD escapes from nearby, slowly",
        ),
        Erratum(
            "momentum-saddle",
            "partly",
            escape["momentum"]["ridge"] is None
            and escape["momentum"]["near"] is not None
            and escape["sgd"]["near"] is not None
            and escape["momentum"]["near"] < escape["sgd"]["near"],
            text(
                f"From (1, 0.001), momentum 0.9 leaves the saddle after {escape['momentum']['near']} steps "
                f"against {escape['sgd']['near']} for SGD; from (1, 0) exactly, neither leaves: momentum "
                "speeds "
                "up an escape that has begun but accumulates nothing along a direction with zero gradient.",
                f"从 (1, 0.001) 出发，带 0.9 动量时 {escape['momentum']['near']} 步离开鞍点，SGD 需要 "
                f"{escape['sgd']['near']} 步；恰好从 (1, 0) 出发时两者都离不开：动量能加速已经开始的逃离，"
                "却无法在梯度为 0 的方向上积累任何东西。",
            ),
            text(
                "Momentum accelerates the escape along the descent direction once the point is off the "
                "ridge; "
                "it does not move a point sitting at a stationary point — the gradients it accumulated point "
                "along the ridge, towards the saddle.",
                "一旦离开山脊，动量会加速沿下降方向的逃离；但它推不动停在驻点上的参数——它积累的梯度都沿着"
                "山脊指向鞍点。",
            ),
            "Jin, Netrapalli & Jordan 2018, Accelerated Gradient Descent Escapes Saddle Points Faster than "
            "Gradient Descent",
            f"{HERE}; momentum",
            "momentum speeds up an escape; it does not start one",
        ),
        Erratum(
            "s2-formula",
            "wrong",
            abs(buf["post_002_s2"] - buf["average_s2"]) > 0.5,
            text(
                f"With d₁ = d₂ = 1 the post's s2 = 0.9 + s1 + 0.1·d2 = {buf['post_002_s2']:g}; the weighted "
                f"average it means, 0.9·s1 + 0.1·d2, is 1 — torch's momentum buffer with dampening 0.9 gives "
                f"{buf['average_s2']:g}.",
                f"取 d₁ = d₂ = 1，原文的 s2 = 0.9 + s1 + 0.1·d2 = {buf['post_002_s2']:g}；它想表达的加权平均 "
                "0.9·s1 + 0.1·d2 等于 1——dampening = 0.9 的 torch 动量缓冲给出的也是"
                f" {buf['average_s2']:g}。",
            ),
            text(
                "S_t = β·S_{t−1} + (1 − β)·D_t: s2 = 0.9·s1 + 0.1·d2 (a product, not a sum; and the "
                "left-hand "
                "side of the general formula is S_t, not D_t).",
                "S_t = β·S_{t−1} + (1 − β)·D_t：s2 = 0.9·s1 + 0.1·d2（是乘号而不是加号；通式左边应是 S_t "
                "而不是 D_t）。",
            ),
            "Goodfellow et al. 2016 §8.3; torch 2.13 docs: torch.optim.SGD (dampening)",
            f"{HERE}; ewa",
            "S_t = β·S_{t−1} + (1 − β)·D_t",
        ),
        Erratum(
            "rmsprop-proven",
            "wrong",
            None,
            text(
                "From the literature (no measurement): RMSProp was proposed in a lecture without proof; its "
                "merit on neural networks is empirical, and Reddi et al. construct convex problems on which "
                "RMSProp and Adam do not converge.",
                "来自文献（无需测量）：RMSProp 是在一门课程讲义中提出的，并没有证明；它在神经网络上的优势来自"
                "经验，而 Reddi 等人构造了 RMSProp 和 Adam 都不收敛的凸问题。",
            ),
            text(
                "RMSProp is empirically effective on deep networks; nothing proves it optimizes better in "
                "the "
                "non-convex case, and simple convex counterexamples exist (hence AMSGrad).",
                "RMSProp 在深度网络上经验上有效；并没有证明它在非凸情形下优化得更好，反倒存在简单的凸反例"
                "（AMSGrad 因此提出）。",
            ),
            "Tieleman & Hinton 2012, Lecture 6.5; Goodfellow et al. 2016 §8.5.2; Reddi, Kale & Kumar 2018, "
            "On the Convergence of Adam and Beyond",
            "reference",
            "empirically effective, not proven; convex counterexamples",
        ),
        Erratum(
            "optimizer-gradients",
            "wrong",
            m["autograd"]["grad_from_backward"] == 3.0 and not moved,
            text(
                "loss.backward() fills p.grad before any optimizer exists "
                f"({m['autograd']['grad_from_backward']:g} "
                "for ½p² at p = 3); optimizer.step() without a backward() "
                + ("moved p" if moved else "leaves p where it was")
                + ". The post says it right two paragraphs earlier: the optimizer uses the gradients "
                "backpropagation produced.",
                f"loss.backward() 在还没有任何优化器时就已经写好了 p.grad（½p² 在 p = 3 处为 "
                f"{m['autograd']['grad_from_backward']:g}）；没有调用 backward() 时 optimizer.step() "
                + ("移动了 p" if moved else "不会移动 p")
                + "。原文前面其实说对了：“优化器根据反向传播得到的梯度信息”来更新参数。",
            ),
            text(
                "Autograd computes the gradients (loss.backward() writes each parameter's .grad); the "
                "optimizer "
                "reads .grad and its own state and updates the parameters; zero_grad() clears the gradients.",
                "梯度是 autograd 算的（loss.backward() 写入每个参数的 .grad）；优化器读取 .grad 和自己的状态"
                "来更新参数；zero_grad() 负责清空梯度。",
            ),
            "torch 2.13 docs: torch.optim (How to use an optimizer), torch.autograd",
            HERE,
            "autograd computes .grad; the optimizer only reads it",
        ),
        Erratum(
            "clipping",
            "partly",
            not api["clip_arguments"],
            text(
                "No optimizer of torch.optim has a clipping argument "
                f"({api['clip_arguments'] or 'none found'}): "
                "clipping is torch.nn.utils.clip_grad_norm_/clip_grad_value_, called between backward() and "
                "step(). The clipping demonstration: on Rosenbrock at lr 0.01 clipping keeps every step "
                "bounded, but bounded is not converged.",
                f"torch.optim 中没有任何优化器带裁剪参数（{api['clip_arguments'] or '一个也没有'}）：裁剪是 "
                "torch.nn.utils.clip_grad_norm_/clip_grad_value_，在 backward() 与 step() 之间调用。clipping "
                "演示：在 Rosenbrock 上 lr = 0.01 时，裁剪让每一步都有界，但有界不等于收敛。",
            ),
            text(
                "Clipping is a separate utility that bounds exploding gradients; it does nothing for "
                "vanishing "
                "ones, which are handled by architecture and initialization (ReLU, residual connections, "
                "normalization, careful init). Neither guarantees stable training.",
                "梯度裁剪是独立的工具，只能限制梯度爆炸；对梯度消失无能为力——那要靠网络结构和初始化"
                "（ReLU、残差连接、归一化、合适的初始化）。两者都不能保证训练稳定。",
            ),
            "Pascanu, Mikolov & Bengio 2013 §3.2; Glorot & Bengio 2010; He et al. 2016; torch 2.13 docs: "
            "torch.nn.utils.clip_grad_norm_",
            f"{HERE}; clipping",
            "clipping: torch.nn.utils, for exploding gradients only",
        ),
        Erratum(
            "overfitting",
            "partly",
            None,
            text(
                "From the literature (no measurement): lowering the training loss is what overfits; what "
                "counters overfitting is regularization — weight decay (an optimizer argument), early "
                "stopping, more data, dropout — and in part the implicit regularization of SGD's noise.",
                "来自文献（无需测量）：把训练损失降得更低，正是过拟合的来源；对抗过拟合靠的是正则化——权重"
                "衰减（优化器的一个参数）、提前停止、更多数据、dropout——以及 SGD 噪声带来的部分隐式正则化。",
            ),
            text(
                "An optimizer lowers the training loss; that alone does not prevent overfitting. "
                "Regularization "
                "does; optimizer choices matter through it (e.g. AdamW's decoupled decay) and through the "
                "implicit effects of noise and step size.",
                "优化器的任务是降低训练损失，这本身并不防止过拟合。防止过拟合的是正则化；优化器的选择通过正则"
                "化（如 AdamW 的解耦衰减）以及噪声和步长的隐式效应产生影响。",
            ),
            "Goodfellow et al. 2016, ch. 7 (§7.1 norm penalties, §7.8 early stopping); Zhang et al. 2017, "
            "Understanding deep learning requires rethinking generalization",
            "weight-decay",
            "regularization, not the optimizer, counters overfitting",
        ),
        Erratum(
            "momentum-flat",
            "wrong",
            plateau["ratio"] > 5,
            text(
                f"On a gentle slope f = {plateau['slope']}·x (a near-flat region), {plateau['steps']} steps "
                "at lr "
                f"{plateau['lr']}: SGD moves {plateau['sgd']:.3f}, SGD + momentum 0.9 moves "
                f"{plateau['momentum']:.3f} — {plateau['ratio']:.1f}× as far. Flat regions are where "
                "momentum "
                "helps most.",
                f"在平缓的斜坡 f = {plateau['slope']}·x 上（近乎平坦的区域），lr {plateau['lr']} 走 "
                f"{plateau['steps']} 步：SGD 移动了 {plateau['sgd']:.3f}，加 0.9 动量后移动了 "
                f"{plateau['momentum']:.3f}——是 {plateau['ratio']:.1f} 倍。平坦区域恰恰是动量最有用的地方。",
            ),
            text(
                "On a flat region plain SGD crawls; momentum accumulates the small, consistent gradients and "
                "moves up to 1/(1 − μ) times faster. Its real drawbacks are overshoot and oscillation when μ "
                "or the lr is too large.",
                "在平坦区域普通 SGD 走得很慢；动量会累积这些小而方向一致的梯度，最多快 1/(1 − μ) 倍。"
                "它真正的缺点是 μ 或学习率过大时的过冲和震荡。",
            ),
            "Goodfellow et al. 2016 §8.3.2; Goh 2017, Why Momentum Really Works (Distill)",
            f"{HERE}; momentum",
            "momentum moves up to 1/(1 − μ)× faster on flat regions",
        ),
        Erratum(
            "nag-stabler",
            "partly",
            large_holds,
            large_text,
            text(
                "NAG's look-ahead damps oscillation and overshoot at a given small lr, but its largest "
                "stable lr "
                "is smaller than the heavy ball's (at μ = 0.9 even smaller than plain GD's 2/L): it is not "
                "the "
                "more stable one at large steps.",
                "NAG 的“前瞻”在给定的小学习率下能抑制震荡和过冲，但它的最大稳定学习率比重球动量小（μ = 0.9 "
                "时甚至小于普通梯度下降的 2/L）：步长大时它并不更稳定。",
            ),
            "Sutskever, Martens, Dahl & Hinton 2013, §2; torch 2.13 docs: torch.optim.SGD (nesterov)",
            f"{HERE}; nesterov",
            "NAG: less overshoot, smaller stable lr",
        ),
        Erratum(
            "adamw",
            "partly",
            wd["adamw_vs_adam"] > 1e-3 and wd["adam_vs_l2"] < TOLERANCE,
            text(
                "Adam already has weight_decay: it adds λθ to the gradient — Adam(weight_decay=λ) matches "
                "Adam "
                f"on loss + λ/2‖θ‖² to {wd['adam_vs_l2']:.1e}. AdamW changes where the decay goes: with the "
                f"same λ = {wd['lambda']} the two end {wd['adamw_vs_adam']:.1e} apart after {wd['steps']} "
                "steps.",
                f"Adam 本来就有 weight_decay：它把 λθ 加进梯度——Adam(weight_decay=λ) 与在损失中加 "
                f"λ/2‖θ‖² 的 Adam 相差只有 {wd['adam_vs_l2']:.1e}。AdamW 改变的是衰减施加的位置：同样的 "
                f"λ = {wd['lambda']}，{wd['steps']} 步后两者相差 {wd['adamw_vs_adam']:.1e}。",
            ),
            text(
                "AdamW decouples weight decay from the gradient: θ ← θ − ηλθ directly, not rescaled by "
                "Adam's "
                "1/√v (with Adam's L2-style decay, weights with large gradients are barely decayed). torch's "
                "AdamW decays by default (0.01), Adam does not (0). The better generalization is an "
                "empirical "
                "finding, not a guarantee.",
                "AdamW 把权重衰减从梯度中解耦：直接做 θ ← θ − ηλθ，不再被 Adam 的 1/√v 缩放（Adam 的 L2 式"
                "衰减下，梯度大的权重几乎不被衰减）。torch 的 AdamW 默认衰减 0.01，Adam 默认 0。更好的泛化是"
                "经验结论，并无保证。",
            ),
            "Loshchilov & Hutter 2019, Decoupled Weight Decay Regularization, §2–3; torch 2.13 docs: "
            "torch.optim.AdamW",
            f"{HERE}; weight-decay",
            "AdamW: decoupled decay θ ← θ − ηλθ (Adam already has L2)",
        ),
        Erratum(
            "nesterov-004",
            "wrong",
            nag4["post_x"] > 1e3 and nag4["nesterov_x"] < 1e-3,
            text(
                f"Run as the code does on ½x² from x = 1 (μ = 0.9, lr {nag4['lr']}): |x| "
                f"= {nag4['post_x']:.1e} "
                f"after {nag4['steps']} steps; torch's NAG (optimlab.optim.SGD, nesterov=True) reaches "
                f"{nag4['nesterov_x']:.1e}, the heavy ball {nag4['heavy_ball_x']:.1e}. With the new v the "
                "update is x + μ³v_old − (1 + μ + μ²)ηg: on a quadratic of curvature L it diverges once "
                f"lr·L > 2(1 + μ)/(1 + 2μ + 2μ²) = {nag4['post_limit']:.3f}; torch's NAG holds up to "
                f"{nag4['nesterov_limit']:.3f}.",
                f"照代码在 ½x² 上从 x = 1 计算（μ = 0.9，lr {nag4['lr']}）：{nag4['steps']} 步后 |x| = "
                f"{nag4['post_x']:.1e}；torch 的 NAG（optimlab.optim.SGD，nesterov=True）到了 "
                f"{nag4['nesterov_x']:.1e}，重球动量 {nag4['heavy_ball_x']:.1e}。用更新后的 v，这一步其实是 "
                "x + μ³v_旧 − (1 + μ + μ²)ηg：在曲率为 L 的二次函数上，只要 学习率·L > "
                f"2(1 + μ)/(1 + 2μ + 2μ²) = {nag4['post_limit']:.3f} 就发散；torch 的 NAG 可以到 "
                f"{nag4['nesterov_limit']:.3f}。",
            ),
            text(
                "Bengio et al.'s form (the paper the post cites) adds μ² times the velocity from before this "
                "step: W ← W + μ²·v_{t−1} − (1 + μ)·η·g, with v_t = μ·v_{t−1} − η·g; equivalently torch's "
                "SGD(nesterov=True): b ← μb + g, W ← W − η(g + μb).",
                "Bengio 等人的公式（即原文引用的论文）加的是本步更新之前的速度的 μ² 倍："
                "W ← W + μ²·v_{t−1} − (1 + μ)·η·g，其中 v_t = μ·v_{t−1} − η·g；与 torch 的 "
                "SGD(nesterov=True) 等价：b ← μb + g，W ← W − η(g + μb)。",
            ),
            "Bengio, Boulanger-Lewandowski & Pascanu 2013, Advances in Optimizing Recurrent Networks "
            "(arXiv 1212.0901), §3.5; torch 2.13 docs: torch.optim.SGD (nesterov)",
            f"{HERE}; nesterov; seed-formulas",
            "W ← W + μ²·v_old − (1 + μ)ηg",
        ),
    ]


#: the six schedulers seed 001 names
_SIX = ("StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR", "ReduceLROnPlateau", "LambdaLR")


def _log_abs(values: np.ndarray) -> np.ndarray:
    """|values| with exact zeros as gaps (a log axis)."""
    out = np.abs(values)
    return np.where(out > 0, out, np.nan)


def _versus(title: str, steps: np.ndarray, post: np.ndarray, reference: np.ndarray) -> Panel:
    """|x| by the seed's formula and by torch's rule, on a log axis."""
    series = [
        Series("seed's formula", steps, _log_abs(post)),
        Series("torch's rule", steps, _log_abs(reference), dash="dash"),
    ]
    return Panel(title, series, "step", "|x|", log_y=True)


def _run() -> Outcome:
    measured = measure()
    curves = measured.pop("_curves")
    found = errata(measured)
    verdicts = [e.verdict() for e in found]
    kinds = Counter(v.kind for v in verdicts)
    by_post = Counter(e.claim.post[:3] for e in found)
    numbers = {
        "count": len(found),
        "by_post": {post: by_post[post] for post in sorted(by_post)},
        "by_kind": {kind: kinds[kind] for kind in ("wrong", "partly", "confirmed") if kinds[kind]},
        "errata": {
            e.key: {"post": e.claim.post[:3], "kind": v.kind, "shown_by": e.shown_by}
            for e, v in zip(found, verdicts, strict=True)
        },
        "computed": measured,
    }
    columns = ["post", "passage", "verdict", "correct", "shown by"]
    rows = [
        [e.claim.post[:3], e.claim.quote, v.kind, e.fix, e.shown_by]
        for e, v in zip(found, verdicts, strict=True)
    ]
    steps = np.arange(FORMULA_STEPS + 1)
    nesterov_steps = np.arange(NESTEROV_STEPS + 1)
    post_dd, torch_dd = curves["adadelta"]
    post_am, torch_am = curves["adam"]
    post_nag, nag, heavy = curves["nesterov"]
    figure = Lines(
        panels=[
            _versus("Adadelta (seed 000 vs torch)", steps, post_dd, torch_dd),
            _versus(f"Adam, lr {ADAM_LR} (seed 000 vs torch)", steps, post_am, torch_am),
            Panel(
                f"Nesterov, lr {NESTEROV_LR}, μ = {MU} (seed 004 vs torch)",
                [
                    Series("seed's formula", nesterov_steps, _log_abs(post_nag)),
                    Series("torch's rule", nesterov_steps, _log_abs(nag), dash="dash"),
                    Series("heavy ball (torch)", nesterov_steps, _log_abs(heavy), dash="dot"),
                ],
                "step",
                "|x|",
                log_y=True,
            ),
        ],
        title="The seed posts' formulas run literally on f(x) = ½x², from x = 1",
    )
    caption = text(
        "|x| step by step on ½x² (the minimum at 0, log scale): the seed posts' Adadelta (000), Adam (000) "
        "and "
        "Nesterov (004) as written, against optimlab.optim's rules (torch's) with the same settings. The "
        "posts' versions move away from the minimum.",
        "在 ½x² 上逐步的 |x|（最小值在 0，对数坐标）：照原文写法计算的 Adadelta（000）、Adam（000）和 "
        "Nesterov（004），与同样设置下 optimlab.optim（即 torch）的规则对比。原文的写法都在远离最小值。",
    )
    notes = [
        text(
            "The table's 'correct' column is a one-line summary; each erratum above has the full correction.",
            "表中“correct”一栏只是一句话的概括，完整的更正见上面每一条。",
        )
    ]
    return Outcome(numbers, verdicts, [Figure(figure, caption)], columns, rows, notes)


DEMO = Demo(
    name="errata",
    order=15,
    title=text("Errata: where the seed posts are wrong or loose", "勘误：种子文章中错误或不严谨之处"),
    summary=text(
        "Every erratum of the five seed posts: the passage, what is true, how it is shown (computed here "
        "where cheap, or the demonstration that shows it) and a reference.",
        "五篇种子文章中的每一处错误或不严谨的说法：原文、正确的说法、如何证明（能简单计算的就在这里"
        "算出来，否则指向相应的演示）以及参考文献。",
    ),
    claims=tuple(CLAIMS.values()),
    run=_run,
)
