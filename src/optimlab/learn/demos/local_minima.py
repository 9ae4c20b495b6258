"""``local-minima``: momentum carries a start over a barrier — out of the local well and out of the global
one alike.

A tilted double well f(x) = (x² − 1)² + 0.3·x: a global minimum near x = −1.04, a local one near
x = 0.96, a barrier (local maximum) near x = 0.075. 1 000 starts drawn uniformly in [−2, 2] (seeded
:class:`torch.Generator`) descend with :class:`optimlab.optim.SGD`,

    v ← μ·v + ∇f(x),   x ← x − lr·v,

for μ ∈ {0, 0.5, 0.9, 0.95, 0.99} and lr ∈ {0.003, 0.01, 0.03, 0.1}, 1 200 full-gradient steps. The rule
is elementwise, so every start is one element of one tensor, and every (lr, μ) one parameter group of
one optimizer. A run ends in the global minimum when it is within 0.1 of it.

Plain gradient descent with a small lr ends in the basin it starts in: the global fraction is the
share of starts left of the barrier. Momentum lets a start that began high on a wall keep its speed
and cross the barrier (Polyak's heavy ball: its "energy" f + kinetic term only decays), so starts move
between the wells — in both directions; a start at rest at the bottom of a well has no energy to leave.
Numbers: the fraction of runs ending in the global minimum per μ at lr = 0.01 and on the whole grid,
the fractions of the local basin's starts that escape and of the global basin's starts that are lost,
and the fraction that diverges.
"""

from __future__ import annotations

import numpy as np
import torch

from optimlab.learn.demo import Claim, Demo, Figure, Outcome, Verdict, text
from optimlab.optim import SGD
from optimlab.reports.figures.lines import Lines, Panel, Series

__all__ = ["DEMO", "descend", "f", "stationary_points"]

TILT = 0.3
STARTS = 1_000
STEPS = 1_200
SEED = 0
MUS = (0.0, 0.5, 0.9, 0.95, 0.99)
LRS = (0.003, 0.01, 0.03, 0.1)
#: the learning rate of the headline numbers
LR = 0.01
#: a run has ended in a minimum when it is this close to it
NEAR = 0.1
#: starts whose trajectories the figure shows
SHOWN = (1.9, -1.9, 1.3)

MOMENTUM = Claim(
    "000_e26eedcb58e8e554.txt",
    "反之方向相反就要减速最好是直接跳过局部最优解的山谷,前往全部最优解的山谷",
    "Conversely, when the direction reverses it must slow down — ideally jumping straight over the "
    "valley of a local optimum and on to the valley of the global optimum.",
)


def f(x: torch.Tensor) -> torch.Tensor:
    """The tilted double well (x² − 1)² + 0.3·x, elementwise."""
    return (x**2 - 1) ** 2 + TILT * x


def stationary_points() -> dict[str, float]:
    """The global minimum, the barrier and the local minimum: the roots of f'(x) = 4x³ − 4x + 0.3."""
    roots = np.sort(np.roots([4.0, 0.0, -4.0, TILT]).real)
    return {"global": float(roots[0]), "barrier": float(roots[1]), "local": float(roots[2])}


def descend(
    starts: torch.Tensor, settings: list[tuple[float, float]], steps: int = STEPS, record: bool = False
) -> tuple[list[torch.Tensor], list[np.ndarray]]:
    """``steps`` steps of :class:`optimlab.optim.SGD` from ``starts`` for every ``(lr, μ)`` of
    ``settings`` (one parameter group each). Returns the final points per setting and, with
    ``record``, every step's points (``steps + 1`` rows) per setting."""
    points = [starts.clone().requires_grad_(True) for _ in settings]
    groups = [{"params": [p], "lr": lr, "momentum": mu} for p, (lr, mu) in zip(points, settings, strict=True)]
    opt = SGD(groups, lr=LR)
    paths: list[list[np.ndarray]] = [[starts.numpy().copy()] for _ in settings] if record else []
    for _ in range(steps):
        opt.zero_grad()
        f(torch.stack(points)).sum().backward()  # one graph for every setting: the runs are independent
        opt.step()
        for path, p in zip(paths, points, strict=False):
            path.append(p.detach().numpy().copy())
    return [p.detach() for p in points], [np.array(path) for path in paths]


def _run() -> Outcome:
    g = torch.Generator().manual_seed(SEED)
    starts = torch.rand(STARTS, generator=g, dtype=torch.float64) * 4 - 2
    points = stationary_points()
    x_global, x_barrier, x_local = points["global"], points["barrier"], points["local"]
    settings = [(lr, mu) for lr in LRS for mu in MUS]
    finals = dict(zip(settings, descend(starts, settings)[0], strict=True))

    in_global = starts < x_barrier  # the basin each start begins in
    low = f(starts) < f(torch.tensor(x_barrier, dtype=torch.float64))  # below the barrier's height

    def frac(mask: torch.Tensor) -> float:
        return float(mask.double().mean()) if mask.numel() else 0.0

    def ends_global(x: torch.Tensor) -> torch.Tensor:
        return (x - x_global).abs() < NEAR

    def ends_local(x: torch.Tensor) -> torch.Tensor:
        return (x - x_local).abs() < NEAR

    grid = {f"{lr:g}": {f"{mu:g}": frac(ends_global(finals[lr, mu])) for mu in MUS} for lr in LRS}
    diverged = {f"{lr:g}": {f"{mu:g}": frac(~torch.isfinite(finals[lr, mu])) for mu in MUS} for lr in LRS}
    at = {mu: finals[LR, mu] for mu in MUS}
    global_fraction = {f"{mu:g}": grid[f"{LR:g}"][f"{mu:g}"] for mu in MUS}
    escaped = {f"{mu:g}": frac(ends_global(at[mu][~in_global])) for mu in MUS}
    lost = {f"{mu:g}": frac(ends_local(at[mu][in_global])) for mu in MUS}
    escaped_low = {f"{mu:g}": frac(ends_global(at[mu][~in_global & low])) for mu in MUS}
    settled = {f"{mu:g}": frac(ends_global(at[mu]) | ends_local(at[mu])) for mu in MUS}
    basin = frac(in_global)
    numbers = {
        "starts": STARTS,
        "lr": LR,
        "points": points,
        "basin_fraction": basin,
        "global_fraction": global_fraction,
        "global_fraction_grid": grid,
        "escaped_local_basin": escaped,
        "lost_global_basin": lost,
        "escaped_from_below_barrier": escaped_low,
        "settled": settled,
        "diverged_grid": diverged,
    }

    best_mu = max(MUS, key=lambda mu: global_fraction[f"{mu:g}"])
    gain = global_fraction[f"{best_mu:g}"] - global_fraction["0"]
    heavy = "0.9"
    worst_lr, worst_mu = max(settings, key=lambda s: diverged[f"{s[0]:g}"][f"{s[1]:g}"])
    worst = diverged[f"{worst_lr:g}"][f"{worst_mu:g}"]
    worst_en = (
        f"Too much of it diverges: with lr = {worst_lr:g} and μ = {worst_mu:g}, {worst:.1%} of the runs "
        "blow up."
        if worst > 0
        else ""
    )
    worst_zh = (
        f"动量太大还会发散：lr = {worst_lr:g}、μ = {worst_mu:g} 时，{worst:.1%} 的运行发散。"
        if worst > 0
        else ""
    )
    measured_en = (
        f"Of {STARTS} random starts, {basin:.1%} begin in the global minimum's basin. At lr = {LR:g}, the "
        "fraction ending in the global minimum is "
        + ", ".join(f"{v:.1%} at μ = {k}" for k, v in global_fraction.items())
        + f". With μ = {heavy}, {escaped[heavy]:.1%} of the starts in the local basin escape to the global "
        f"minimum — but {lost[heavy]:.1%} of those in the global basin are carried out of it into the local "
        f"one; of the local basin's starts lower than the barrier, {escaped_low[heavy]:.1%} escape. "
    )
    measured_zh = (
        f"{STARTS} 个随机起点中，{basin:.1%} 本来就在全局最小值的盆地里。lr = {LR:g} 时，最终落到全局最小值"
        "的比例为 "
        + "、".join(f"μ = {k} 时 {v:.1%}" for k, v in global_fraction.items())
        + f"。μ = {heavy} 时，局部盆地里的起点有 {escaped[heavy]:.1%} 跳到了全局最小值——但全局盆地里的起点"
        f"也有 {lost[heavy]:.1%} 被冲出去、落进了局部最小值；局部盆地里比势垒低的起点，逃出来的比例是 "
        f"{escaped_low[heavy]:.1%}。"
    )
    if gain >= 0.2 and lost[heavy] < 0.02:
        kind = "confirmed"
        verdict_text = text(
            measured_en + f"Momentum raises the global fraction by {100 * gain:.1f} percentage points.",
            measured_zh + f"动量把落到全局最小值的比例提高了 {100 * gain:.1f} 个百分点。",
        )
    else:
        kind = "partly" if gain > 0 else "wrong"
        verdict_text = text(
            measured_en
            + f"The net gain is {100 * gain:+.1f} percentage points (best μ = {best_mu:g}): momentum "
            "crosses barriers, it does not seek the global minimum. " + worst_en,
            measured_zh + f"净增益只有 {100 * gain:+.1f} 个百分点（最好的 μ = {best_mu:g}）：动量会越过势垒，"
            "但并不会去找全局最小值。" + worst_zh,
        )
    verdict = Verdict(
        MOMENTUM,
        kind,
        verdict_text,
        correction=None
        if kind == "confirmed"
        else text(
            "Momentum is inertia, not foresight: a run keeps the speed it gained going downhill, so it can "
            "cross a barrier lower than the height it started from — out of a local valley or out of the "
            "global one, whichever it happens to be in. A run at rest in a local minimum has no speed and "
            "stays. Momentum mainly speeds descent along shallow directions and damps oscillations; "
            "getting out of poor minima owes more to gradient noise (small batches) and the learning "
            "rate, and nothing guarantees the global minimum of a non-convex function.",
            "动量是惯性，不是预见：下坡时攒下的速度让它能越过比起点低的势垒——无论是从局部的山谷出来，"
            "还是从全局的山谷出来，它并不区分。停在局部最小值里的点没有速度，也就不会离开。"
            "动量主要加快沿平缓方向的下降、抑制震荡；跳出较差的极小值更多靠梯度噪声（小批量）和学习率，"
            "而对非凸函数，没有任何方法能保证找到全局最小值。",
        ),
        reference=None
        if kind == "confirmed"
        else "Polyak 1964 (heavy ball); Goodfellow, Bengio & Courville 2016, Deep Learning §8.3.2 "
        "(momentum as a particle with viscous drag); Sutskever et al. 2013, ICML",
    )

    mus = np.array(MUS)
    xs = starts.numpy()
    order = np.argsort(xs)
    shown = torch.tensor(SHOWN, dtype=torch.float64)
    _, paths = descend(shown, [(LR, 0.0), (LR, 0.9)], steps=300, record=True)
    t = np.arange(301)
    figure = Lines(
        panels=[
            Panel(
                f"where each start ends (lr = {LR:g})",
                [
                    Series("μ = 0", xs[order], at[0.0].numpy()[order], mode="markers"),
                    Series("μ = 0.9", xs[order], at[0.9].numpy()[order], mode="markers"),
                ],
                "start x₀",
                "final x",
            ),
            Panel(
                "runs ending in the global minimum",
                [
                    Series(f"lr = {lr:g}", mus, [grid[f"{lr:g}"][f"{mu:g}"] for mu in MUS], "lines+markers")
                    for lr in LRS
                ],
                "momentum μ",
                "fraction of starts",
                hline=(basin, "starts in the global basin"),
            ),
            Panel(
                f"three starts (lr = {LR:g})",
                [Series(f"x₀ = {x0:g}, μ = 0", t, paths[0][:, i], dash="dot") for i, x0 in enumerate(SHOWN)]
                + [Series(f"x₀ = {x0:g}, μ = 0.9", t, paths[1][:, i]) for i, x0 in enumerate(SHOWN)],
                "step",
                "x",
                hline=(x_barrier, "barrier"),
            ),
        ],
        title="Tilted double well f(x) = (x² − 1)² + 0.3x: SGD with momentum from 1 000 random starts",
    )
    caption = text(
        "Left: the final point of every start without momentum (each start stays in its basin) and with "
        "μ = 0.9 (starts high on either wall cross to the other well). Middle: the fraction ending in the "
        "global minimum per momentum and learning rate; dashed: the share of starts that begin in its "
        "basin. Right: three trajectories; dashed line: the barrier.",
        "左：每个起点最终落在哪里——不带动量时都留在起点所在的盆地；μ = 0.9 时，从两侧高处出发的点都会"
        "冲到另一个山谷。中：不同动量和学习率下落到全局最小值的比例；虚线是起点本来就在其盆地内的比例。"
        "右：三条轨迹；虚线是势垒的位置。",
    )
    columns = ["μ", "global (lr 0.01)", "escaped local basin", "lost global basin", "settled"]
    columns += [f"global (lr {lr:g})" for lr in LRS if lr != LR]
    rows = [
        [
            f"{mu:g}",
            global_fraction[f"{mu:g}"],
            escaped[f"{mu:g}"],
            lost[f"{mu:g}"],
            settled[f"{mu:g}"],
            *[grid[f"{lr:g}"][f"{mu:g}"] for lr in LRS if lr != LR],
        ]
        for mu in MUS
    ]
    return Outcome(numbers, [verdict], [Figure(figure, caption)], columns, rows)


DEMO = Demo(
    name="local-minima",
    order=13,
    title=text("Does momentum find the global minimum?", "动量能找到全局最小值吗？"),
    summary=text(
        "1 000 random starts on a tilted double well, SGD with momentum μ = 0 … 0.99 at four learning rates: "
        "how many end in the global minimum, and how many momentum carries the wrong way.",
        "在一个倾斜的双势阱上取 1000 个随机起点，用动量 μ = 0 … 0.99、四种学习率的 SGD 下降："
        "有多少落到全局最小值，又有多少被动量带错了方向。",
    ),
    claims=(MOMENTUM,),
    run=_run,
)
