"""``nesterov``: Nesterov's accelerated gradient against the heavy ball — less overshoot, a smaller safe lr.

Three variants of :class:`optimlab.optim.SGD` (torch's formulation; μ = 0.9 with momentum):

* ``sgd``: θ ← θ − γ·g;
* ``momentum`` (heavy ball): b ← μ·b + g, θ ← θ − γ·b;
* ``nesterov`` (``nesterov=True``): b ← μ·b + g, θ ← θ − γ·(g + μ·b) — the gradient taken where the
  momentum is about to carry θ (Sutskever et al. 2013), written at the look-ahead point.

On a quadratic of curvature L, with a = γL, the three recurrences have the characteristic polynomials
z − (1 − a), z² − (1 + μ − a)·z + μ and z² − (1 + μ)(1 − a)·z + μ(1 − a): the heavy ball's roots have
modulus √μ whenever they are complex, NAG's only √(μ(1 − a)) — it brakes, so it overshoots less. But
the roots leave the unit circle at z = −1, where a = 2, 2(1 + μ) and 2(1 + μ)/(1 + 2μ): with μ = 0.9
NAG tolerates a step 2.8× smaller than the heavy ball, and smaller than plain gradient descent.

Measured: the overshoot past the minimum of ½θ² from θ = 1 (γ = 0.1), the steps to the target
(loss ≤ 1e-3) down optimlab's ``ravine`` ½(x² + 100·y²) at γ = 0.01, and which run diverges there at
γ = 0.015 (between NAG's limit 0.0136 and plain descent's 0.02); and each limit checked at 0.97× and
1.03× of its value.

References: Nesterov 1983; Sutskever, Martens, Dahl & Hinton 2013 (ICML), §2; Polyak 1964;
torch.optim.SGD docs (nesterov).
"""

from __future__ import annotations

import numpy as np
import torch

from optimlab.lab.problems import get_problem
from optimlab.learn.demo import Claim, Demo, Figure, Outcome, Verdict, text
from optimlab.learn.demos.momentum import Descent, descend
from optimlab.optim import SGD
from optimlab.reports.figures.lines import Lines, Panel, Series

__all__ = ["DEMO", "VARIANTS", "lr_limit", "overshoot"]

POST_000 = "000_e26eedcb58e8e554.txt"
POST_003 = "003_2ca240df3290a5bb.txt"
MU = 0.9
#: variant name → (momentum, nesterov)
VARIANTS: dict[str, tuple[float, bool]] = {
    "sgd": (0.0, False),
    "momentum": (MU, False),
    "nesterov": (MU, True),
}
QUADRATIC_LR = 0.1
QUADRATIC_STEPS = 200
RAVINE_LR = 0.01
LARGE_LR = 0.015
RAVINE_STEPS = 1000
#: the ravine's steep curvature (κ = 100)
CURVATURE = 100.0

SAFER = Claim(
    POST_000,
    "这样就会比纯动量更加保险",
    "This makes it safer than plain momentum.",
)
STABLER = Claim(
    POST_003,
    "通过提前考虑动量项,可以更准确地估计参数更新,提高参数更新的准确性和稳定性。",
    "By taking the momentum term into account in advance, it estimates the parameter update more "
    "accurately, improving the accuracy and stability of the updates.",
)


def _options(variant: str) -> dict[str, float | bool]:
    momentum, nesterov = VARIANTS[variant]
    return {"momentum": momentum, "nesterov": nesterov} if momentum else {}


def overshoot(
    variant: str, lr: float = QUADRATIC_LR, steps: int = QUADRATIC_STEPS
) -> tuple[float, np.ndarray]:
    """The path θ₀ = 1, θ₁, … of ``variant`` on ½θ² and its overshoot max(0, −min θ_t): how far past the
    minimum 0 it swings, as a fraction of the start."""
    theta = torch.ones(1, dtype=torch.float64, requires_grad=True)
    optimizer = SGD([theta], lr=lr, **_options(variant))
    path = [1.0]
    for _ in range(steps):
        optimizer.zero_grad()
        (0.5 * theta**2).sum().backward()
        optimizer.step()
        path.append(float(theta.detach()))
    values = np.array(path)
    return max(0.0, float(-values.min())), values


def lr_limit(variant: str, curvature: float = CURVATURE) -> float:
    """The largest stable step size on a quadratic of curvature L: 2/L, 2(1 + μ)/L, 2(1 + μ)/((1 + 2μ)L)."""
    momentum, nesterov = VARIANTS[variant]
    if not momentum:
        return 2.0 / curvature
    return 2.0 * (1 + momentum) / ((1 + 2 * momentum) if nesterov else 1.0) / curvature


def _ravine(variant: str, lr: float) -> Descent:
    momentum, nesterov = VARIANTS[variant]
    return descend("ravine", lr=lr, momentum=momentum, nesterov=nesterov, steps=RAVINE_STEPS)


def _fmt(steps: int | None) -> str:
    return "never" if steps is None else str(steps)


def _fmt_zh(steps: int | None) -> str:
    return "始终没有" if steps is None else str(steps)


def _run() -> Outcome:
    names = list(VARIANTS)
    paths = {v: overshoot(v) for v in names}
    over = {v: paths[v][0] for v in names}
    target = float(get_problem("ravine").target_loss)
    small = {v: _ravine(v, RAVINE_LR) for v in names}
    large = {v: _ravine(v, LARGE_LR) for v in names}
    steps_to_target = {v: small[v].steps_to(target) for v in names}
    steps_large = {v: large[v].steps_to(target) for v in names}
    diverged = {v: large[v].diverged for v in names}
    limits = {v: lr_limit(v) for v in names}
    holds = {
        v: not _ravine(v, 0.97 * limits[v]).diverged and _ravine(v, 1.03 * limits[v]).diverged for v in names
    }
    numbers = {
        "mu": MU,
        "lr": {"quadratic": QUADRATIC_LR, "ravine": RAVINE_LR, "large": LARGE_LR},
        "overshoot": over,
        "steps_to_target": steps_to_target,
        "steps_to_target_large_lr": steps_large,
        "diverged": diverged,
        "lr_limit": {"theory": limits, "holds": holds},
    }

    gentler = over["nesterov"] < over["momentum"]
    faster = steps_to_target["nesterov"] is not None and (
        steps_to_target["momentum"] is None or steps_to_target["nesterov"] < steps_to_target["momentum"]
    )
    fragile = diverged["nesterov"] and not diverged["momentum"]
    kind = "partly" if (gentler or faster) and fragile else ("confirmed" if gentler and faster else "wrong")
    over_en = ", ".join(f"{v} {over[v]:.3f}" for v in names)
    over_zh = "、".join(f"{v} {over[v]:.3f}" for v in names)
    steps_en = ", ".join(f"{v} {_fmt(steps_to_target[v])}" for v in names)
    steps_zh = "、".join(f"{v} {_fmt_zh(steps_to_target[v])}" for v in names)
    large_en = ", ".join(
        f"{v} {'diverges' if diverged[v] else f'reaches it in {_fmt(steps_large[v])} steps'}" for v in names
    )
    large_zh = "、".join(
        f"{v} {'发散' if diverged[v] else f'{_fmt_zh(steps_large[v])} 步到达'}" for v in names
    )
    limits_en = ", ".join(f"{v} {limits[v]:.4g}" for v in names)
    limits_zh = "、".join(f"{v} {limits[v]:.4g}" for v in names)
    evidence = text(
        f"On ½θ² from θ = 1 at lr = {QUADRATIC_LR} (μ = {MU}) the overshoot past the minimum is {over_en}: "
        f"NAG brakes. Down the ravine at lr = {RAVINE_LR} the steps to the loss {target:g} are {steps_en}. "
        f"But at lr = {LARGE_LR}: {large_en}. The largest stable lr on the ravine (curvature 100) is "
        f"{limits_en}; each checked at 0.97× (converges) and 1.03× (diverges): "
        + ", ".join(f"{v} {'holds' if holds[v] else 'fails'}" for v in names)
        + ".",
        f"在 ½θ² 上从 θ = 1 出发、学习率 {QUADRATIC_LR}（μ = {MU}）时，越过最小值的幅度为 {over_zh}："
        f"NAG 会提前刹车。学习率 {RAVINE_LR} 时沿峡谷下降到损失 {target:g} 的步数为 {steps_zh}。"
        f"但学习率为 {LARGE_LR} 时：{large_zh}。在峡谷（曲率 100）上能稳定的最大学习率为 {limits_zh}；"
        "分别在 0.97 倍（收敛）和 1.03 倍（发散）处检验："
        + "、".join(f"{v} {'成立' if holds[v] else '不成立'}" for v in names)
        + "。",
    )
    correction = text(
        "NAG damps the oscillation of momentum: at a small enough step it overshoots less and converges "
        "faster. It is not safer in the step size: on a quadratic of curvature L the heavy ball is stable "
        f"for lr < 2(1 + μ)/L, NAG only for lr < 2(1 + μ)/((1 + 2μ)L) — at μ = {MU}, "
        f"{limits['momentum'] / limits['nesterov']:.1f}× smaller, and even below plain gradient descent's "
        "2/L. The look-ahead gradient that brakes along a gentle slope over-corrects on a steep one. "
        "Switching momentum to nesterov=True may need a smaller learning rate.",
        "NAG 能抑制动量带来的振荡：步长足够小时，它越过最小值更少、收敛更快。但在步长上它并不更“保险”："
        "在曲率为 L 的二次函数上，重球法在 lr < 2(1 + μ)/L 时稳定，"
        "NAG 只在 lr < 2(1 + μ)/((1 + 2μ)L) 时稳定——"
        f"μ = {MU} 时只有重球法的 1/{limits['momentum'] / limits['nesterov']:.1f}，"
        "甚至比普通梯度下降的 2/L 还小。"
        "在缓坡上起刹车作用的“向前看”梯度，到了陡坡上会矫枉过正。把动量换成 nesterov=True 时，"
        "可能需要调小学习率。",
    )
    reference = (
        "Sutskever, Martens, Dahl & Hinton 2013, On the importance of initialization and momentum in deep "
        "learning (ICML), §2; Polyak 1964; torch.optim.SGD docs (nesterov)"
    )
    verdicts = [
        Verdict(
            claim,
            kind,
            evidence,
            correction=None if kind == "confirmed" else correction,
            reference=None if kind == "confirmed" else reference,
        )
        for claim in (SAFER, STABLER)
    ]

    steps = np.arange(QUADRATIC_STEPS + 1)
    shown = slice(0, 61)
    figure = Lines(
        panels=[
            Panel(
                f"½θ², lr = {QUADRATIC_LR}, μ = {MU}",
                [Series(v, steps[shown], paths[v][1][shown]) for v in names],
                "step",
                "θ",
                hline=(0.0, "minimum"),
            ),
            Panel(
                f"ravine, lr = {RAVINE_LR}",
                [Series(v, np.arange(len(small[v].losses)), small[v].losses) for v in names],
                "step",
                "f(x, y)",
                log_y=True,
                hline=(target, f"target {target:g}"),
            ),
            Panel(
                f"ravine, lr = {LARGE_LR}",
                [Series(v, np.arange(len(large[v].losses)), large[v].losses) for v in names],
                "step",
                "f(x, y)",
                log_y=True,
                hline=(target, f"target {target:g}"),
            ),
        ],
        title="Nesterov vs heavy-ball momentum: less overshoot, a smaller safe learning rate",
    )
    caption = text(
        f"Left: θ a step on ½θ² (lr = {QUADRATIC_LR}): the heavy ball swings far past 0, NAG less, plain "
        f"descent not at all. Middle: the ravine's loss at lr = {RAVINE_LR}, NAG fastest. Right: at lr = "
        f"{LARGE_LR}, above NAG's limit {limits['nesterov']:.4f}, NAG blows up while plain descent and the "
        "heavy ball converge (a run stops when its loss passes 1e12).",
        f"左：在 ½θ² 上（学习率 {QUADRATIC_LR}）每一步的 θ：重球法远远冲过 0，NAG 冲得少，普通梯度下降"
        f"完全不越过。中：学习率 {RAVINE_LR} 时峡谷上的损失，NAG 最快。右：学习率 {LARGE_LR} 超过了 NAG "
        f"的稳定上限 {limits['nesterov']:.4f}，NAG 发散，而普通梯度下降和重球法都收敛"
        "（损失超过 1e12 时停止运行）。",
    )
    columns = [
        "variant",
        f"overshoot (½θ², lr {QUADRATIC_LR})",
        f"ravine: steps to 1e-3 (lr {RAVINE_LR})",
        f"ravine: lr {LARGE_LR}",
        "stable lr limit",
        "limit checked",
    ]
    rows = [
        [
            v,
            over[v],
            _fmt(steps_to_target[v]),
            "diverged" if diverged[v] else f"{_fmt(steps_large[v])} steps",
            limits[v],
            "yes" if holds[v] else "no",
        ]
        for v in names
    ]
    notes = [
        text(
            "Seed 004's Nesterov code updates the velocity v ← μv − η∇ first and then adds μ²·v with the "
            "new v; Bengio et al. 2013's form (the paper the post cites, arXiv 1212.0901) uses the velocity "
            "before its update. As written each step weights the gradient by (1 + μ + μ²)η instead of "
            "(1 + μ)η, and on a quadratic of curvature L the same root analysis keeps it stable only for "
            "η·L < 2(1 + μ)/(1 + 2μ + 2μ²) ≈ 0.86 at μ = 0.9 (torch's NAG: 1.36). Here only torch's "
            "formulation, SGD(nesterov=True), is run.",
            "种子文章 004 的 Nesterov 代码先更新速度 v ← μv − η∇，再用更新后的 v 加上 μ²·v；"
            "而 Bengio 等人 2013 年的公式（即原文引用的 arXiv 1212.0901）用的是更新之前的速度。"
            "照原文写法，每一步梯度的权重变成 "
            "(1 + μ + μ²)η 而不是 (1 + μ)η；用同样的特征根分析，在曲率为 L 的二次函数上，它只在 "
            "η·L < 2(1 + μ)/(1 + 2μ + 2μ²) 时稳定，μ = 0.9 时约为 0.86（torch 的 NAG 为 1.36）。"
            "本演示只运行 torch 的写法 SGD(nesterov=True)。",
        )
    ]
    return Outcome(numbers, verdicts, [Figure(figure, caption)], columns, rows, notes)


DEMO = Demo(
    name="nesterov",
    order=6,
    title=text("Nesterov momentum: a brake, not a safety net", "Nesterov 动量：是刹车，不是保险"),
    summary=text(
        "SGD(nesterov=True) against heavy-ball momentum (μ = 0.9) and plain SGD: overshoot on ½θ², speed "
        "and divergence down the ravine.",
        "SGD(nesterov=True) 与重球动量（μ = 0.9）和普通 SGD 的对比：在 ½θ² 上的过冲，"
        "以及在峡谷中的速度与发散。",
    ),
    claims=(SAFER, STABLER),
    run=_run,
)
