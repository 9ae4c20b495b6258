"""``momentum``: friction. Heavy-ball momentum μ ∈ {0, 0.5, 0.9, 0.99} down the ravine and off the saddle.

The heavy ball (torch.optim.SGD with ``momentum=μ``, dampening 0) keeps a velocity buffer

    b ← μ·b + ∇f(θ),   θ ← θ − γ·b,

so without a force the buffer decays by μ a step: 1 − μ is the friction. Two of optimlab's 2-D surfaces
(:func:`optimlab.lab.problems.get_problem`), their own functions, start points and targets, stepped
by :class:`optimlab.optim.SGD` on a float64 point:

* ``ravine``, ½(x² + 100·y²) from (−4, 0.5), γ = 0.018 (just under plain gradient descent's limit
  2/100 = 0.02, so it zigzags across): steps until the loss is ≤ 1e-3 (the problem's target), and
  until then the sideways travel Σ|Δy| across the ravine and how often x crosses the valley's floor x = 0.
* ``saddle``, x² − y² from (1, 0.001), γ = 0.02: the steps to **escape**, defined as the first step
  whose loss is ≤ −1 (the problem's target; since x² ≥ 0 this means |y| ≥ 1: the point has left the
  saddle by a unit distance down its descent direction). Near the saddle y grows by the largest
  root z of z² − (1 + μ + 2γ)·z + μ = 0 a step (z = 1 + 2γ without momentum); that rate is measured
  too. And from (1, 0) exactly — on the ridge, with no y component at all — no μ escapes.

References: Polyak 1964 (the heavy ball, its best μ = ((√κ − 1)/(√κ + 1))² on a quadratic); Goh 2017,
"Why Momentum Really Works" (Distill); Jin, Netrapalli & Jordan 2018 (momentum escapes saddles faster,
from a perturbation).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch

from optimlab.lab.problems import get_problem
from optimlab.learn.demo import Claim, Demo, Figure, Outcome, Verdict, text
from optimlab.optim import SGD
from optimlab.reports.figures.lines import Lines, Panel, Series

__all__ = ["DEMO", "Descent", "descend", "escape_growth"]

POST_002 = "002_795ce8fce5229f80.txt"
POST_004 = "004_91ae9b067697a3ae.txt"
MOMENTA = (0.0, 0.5, 0.9, 0.99)
RAVINE_LR = 0.018
RAVINE_STEPS = 1000
#: the steps of the ravine's paths drawn
PATH_STEPS = 100
SADDLE_LR = 0.02
SADDLE_STEPS = 300
SADDLE_START = (1.0, 1e-3)
RIDGE_START = (1.0, 0.0)
#: the loss ≤ which a point has escaped the saddle (the saddle problem's target: |y| ≥ 1)
ESCAPE_LOSS = -1.0

SADDLE = Claim(
    POST_002,
    "但是 Momentum 动量梯度下降算法已经在先前积累了一些梯度值,很有可能使得跨过鞍点。",
    "But gradient descent with momentum has already accumulated some gradient values before, "
    "which will very likely carry it across the saddle point.",
)
RAVINE = Claim(
    POST_002,
    "一定程度上有利于降低 “峡谷” 问题的影响。",
    "To some extent it helps reduce the effect of the “ravine” problem (which the post defines as "
    "violent oscillation of the updates).",
)
FRICTION = Claim(
    POST_004,
    "类似于在地面上滚动小球时,摩擦力和空气阻力所带来的的影响。",
    "[The momentum factor α acts] like the friction and air resistance on a ball rolling on the ground.",
)


@dataclass(frozen=True)
class Descent:
    """One run on a surface: the points θ₀ … θ_T (shape (T+1, 2)) and their losses (T+1)."""

    points: np.ndarray
    losses: np.ndarray

    def first(self, reached: np.ndarray) -> int | None:
        """The first step t ≥ 1 where ``reached[t]`` holds, or ``None``."""
        hits = np.flatnonzero(reached[1:])
        return int(hits[0]) + 1 if hits.size else None

    def steps_to(self, target: float) -> int | None:
        """Steps until the loss is ≤ ``target`` (``None``: never within the run)."""
        return self.first(self.losses <= target)

    @property
    def diverged(self) -> bool:
        """The loss ended non-finite or above where it started."""
        end = self.losses[-1]
        return bool(not np.isfinite(end) or end > self.losses[0])


def descend(
    spec: str,
    *,
    lr: float,
    momentum: float = 0.0,
    nesterov: bool = False,
    dampening: float = 0.0,
    steps: int,
    start: tuple[float, float] | None = None,
    blow_up: float = 1e12,
) -> Descent:
    """``steps`` steps of :class:`optimlab.optim.SGD` (``lr``, ``momentum``, ``nesterov``,
    ``dampening``) on the 2-D surface problem ``spec``, from its start point or ``start``, in float64.
    A run whose loss leaves [−blow_up, blow_up] stops there (diverged, or fallen off an unbounded
    surface)."""
    problem = get_problem(spec)
    fn = problem.fn  # type: ignore[attr-defined]
    xy = torch.tensor(start or problem.start, dtype=torch.float64, requires_grad=True)  # type: ignore[attr-defined]
    options = {"momentum": momentum, "nesterov": nesterov, "dampening": dampening} if momentum else {}
    optimizer = SGD([xy], lr=lr, **options)
    with torch.no_grad():
        points, losses = [xy.detach().clone()], [float(fn(xy[0], xy[1]))]
    for _ in range(steps):
        optimizer.zero_grad()
        fn(xy[0], xy[1]).backward()
        optimizer.step()
        with torch.no_grad():
            loss = float(fn(xy[0], xy[1]))
        points.append(xy.detach().clone())
        losses.append(loss)
        if not math.isfinite(loss) or abs(loss) > blow_up:
            break
    return Descent(torch.stack(points).numpy(), np.array(losses))


def escape_growth(momentum: float, lr: float) -> float:
    """The factor by which the heavy ball's y grows a step near the saddle x² − y² (∂f/∂y = −2y): the
    largest root of z² − (1 + μ + 2γ)·z + μ = 0."""
    s = 1.0 + momentum + 2.0 * lr
    return (s + math.sqrt(s * s - 4.0 * momentum)) / 2.0


def _crossings(values: np.ndarray) -> int:
    """How often ``values`` changes sign (a zero counts as no sign)."""
    signs = np.sign(values)
    signs = signs[signs != 0]
    return int(np.count_nonzero(signs[1:] != signs[:-1]))


def _measured_growth(run: Descent, escape: int | None, span: int = 10) -> float | None:
    """(|y_T| / |y_{T−span}|)^(1/span) at the escape step T: the measured growth a step."""
    if escape is None or escape < span:
        return None
    y = np.abs(run.points[:, 1])
    return float((y[escape] / y[escape - span]) ** (1.0 / span))


def _fmt(steps: int | None) -> str:
    return "never" if steps is None else str(steps)


def _fmt_zh(steps: int | None) -> str:
    return "始终没有" if steps is None else str(steps)


def _run() -> Outcome:
    keys = [f"{mu:g}" for mu in MOMENTA]
    ravine = {f"{mu:g}": descend("ravine", lr=RAVINE_LR, momentum=mu, steps=RAVINE_STEPS) for mu in MOMENTA}
    target = float(get_problem("ravine").target_loss)
    steps_to_target = {k: ravine[k].steps_to(target) for k in keys}
    until = {k: slice(0, (steps_to_target[k] or RAVINE_STEPS) + 1) for k in keys}
    sideways = {k: float(np.abs(np.diff(ravine[k].points[until[k], 1])).sum()) for k in keys}
    floor_crossings = {k: _crossings(ravine[k].points[until[k], 0]) for k in keys}

    saddle = {
        f"{mu:g}": descend("saddle", lr=SADDLE_LR, momentum=mu, steps=SADDLE_STEPS, start=SADDLE_START)
        for mu in MOMENTA
    }
    escape = {k: saddle[k].steps_to(ESCAPE_LOSS) for k in keys}
    # the post's own form, an average of gradients: b ← μb + (1 − μ)∇ (torch's dampening = μ)
    averaged = {
        k: descend(
            "saddle", lr=SADDLE_LR, momentum=mu, dampening=mu, steps=SADDLE_STEPS, start=SADDLE_START
        ).steps_to(ESCAPE_LOSS)
        for k, mu in zip(keys, MOMENTA, strict=True)
    }
    growth = {f"{mu:g}": escape_growth(mu, SADDLE_LR) for mu in MOMENTA}
    growth_measured = {k: _measured_growth(saddle[k], escape[k]) for k in keys}
    ridge = {
        f"{mu:g}": descend("saddle", lr=SADDLE_LR, momentum=mu, steps=SADDLE_STEPS, start=RIDGE_START)
        for mu in MOMENTA
    }
    ridge_escape = {k: ridge[k].steps_to(ESCAPE_LOSS) for k in keys}
    ridge_crossings = {k: _crossings(ridge[k].points[:, 0]) for k in keys}
    ridge_distance = {k: float(np.hypot(*ridge[k].points[-1])) for k in keys}

    numbers = {
        "lr": {"ravine": RAVINE_LR, "saddle": SADDLE_LR},
        "steps_to_target": steps_to_target,
        "sideways": sideways,
        "floor_crossings": floor_crossings,
        "steps_to_escape": escape,
        "steps_to_escape_averaged": averaged,
        "escape_growth": {"theory": growth, "measured": growth_measured},
        "ridge": {"steps_to_escape": ridge_escape, "crossings": ridge_crossings, "distance": ridge_distance},
    }

    # --- the saddle -------------------------------------------------------------------------------
    base = escape["0"]
    faster = base is not None and all(
        escape[k] is not None and escape[k] < base
        for k in keys[1:]  # type: ignore[operator]
    )
    stuck = all(v is None for v in ridge_escape.values())
    if faster:
        ratio = base / escape["0.9"]  # type: ignore[operator]
        ratio_en, ratio_zh = (
            f"{ratio:.1f}× faster at μ = 0.9",
            f"μ = 0.9 时的速度是不带动量时的 {ratio:.1f} 倍",
        )
    else:
        ratio_en, ratio_zh = "no faster than without it", "动量并没有让它更快逃离"
    escapes_en = ", ".join(f"{_fmt(escape[k])} at μ = {k}" for k in keys)
    escapes_zh = "、".join(f"μ = {k} 时 {_fmt_zh(escape[k])}" for k in keys)
    growth_en = ", ".join(f"{growth[k]:.3f}" for k in keys)
    crossings_en = ", ".join(f"{ridge_crossings[k]}" for k in keys)
    saddle_evidence = text(
        f"From (1, 0.001) the steps to escape (loss ≤ −1, i.e. |y| ≥ 1) are {escapes_en}: momentum "
        f"leaves the saddle {ratio_en}. It does not coast over it, though: near the saddle the tiny y "
        f"grows by a factor {growth_en} a step (for μ = "
        f"{', '.join(keys)}), which momentum enlarges. Started exactly on the ridge, at (1, 0), no μ "
        f"escapes in {SADDLE_STEPS} steps: the accumulated velocity points along x, so the ball "
        f"rolls along the ridge y = 0 into the saddle (through it {crossings_en} times) and settles "
        f"towards it (distance after {SADDLE_STEPS} steps: "
        + ", ".join(f"{ridge_distance[k]:.1g}" for k in keys)
        + "). And that is torch's undamped buffer, whose long-run step is γ/(1 − μ): with the post's own "
        "averaged form b ← μb + (1 − μ)∇ (dampening = μ) at the same γ, the steps to escape are "
        + ", ".join(f"{_fmt(averaged[k])} at μ = {k}" for k in keys)
        + " — momentum alone does not speed the escape; its larger effective step does.",
        f"从 (1, 0.001) 出发，逃离鞍点（损失 ≤ −1，即 |y| ≥ 1）所需的步数是 {escapes_zh}："
        f"{ratio_zh}。但它并不是靠惯性“冲过”鞍点："
        f"在鞍点附近，微小的 y 每步放大 {'、'.join(f'{growth[k]:.3f}' for k in keys)} 倍"
        f"（μ = {'、'.join(keys)}），动量让这个放大倍数变大。如果恰好从山脊上的 (1, 0) 出发，"
        f"{SADDLE_STEPS} 步内没有一个 μ 能逃离：积累的速度全都沿 x 方向，小球只在山脊 y = 0 上滚动，"
        f"穿过鞍点（{'、'.join(str(ridge_crossings[k]) for k in keys)} 次）后逐渐停向鞍点"
        f"（{SADDLE_STEPS} 步后离鞍点的距离 " + "、".join(f"{ridge_distance[k]:.1g}" for k in keys) + "）。"
        "而且这是 torch 不带阻尼的缓冲，它的长期步长是 γ/(1 − μ)：换成原文自己的平均形式 "
        "b ← μb + (1 − μ)∇（dampening = μ），在同样的 γ 下逃离所需的步数是 "
        + "、".join(f"μ = {k} 时 {_fmt_zh(averaged[k])}" for k in keys)
        + "——单靠动量并不能加快逃离，真正起作用的是更大的有效步长。",
    )
    saddle_verdict = Verdict(
        SADDLE,
        "partly" if faster and stuck else ("confirmed" if faster else "wrong"),
        saddle_evidence,
        correction=None
        if faster and not stuck
        else text(
            "Momentum does not carry a point over a saddle by the speed it gathered on the way in: that "
            "speed points along the directions that lead into the saddle, and it crosses the saddle and "
            "comes back. What momentum does is amplify any small component along the escape direction "
            "(its growth factor a step rises from 1 + 2γ to the largest root of z² − (1 + μ + 2γ)·z + μ = 0, "
            "about 1 + √(2γ) as μ → 1), so it escapes "
            "faster once there is one — noise of stochastic gradients or a random start supplies it.",
            "动量并不是靠来时积累的速度把参数“带过”鞍点：那个速度指向进入鞍点的方向，它会穿过鞍点再折返。"
            "动量真正做的，是把逃离方向上任何微小的分量放大（每步的放大倍数从 1 + 2γ 增大到 "
            "z² − (1 + μ + 2γ)·z + μ = 0 的较大根，μ → 1 时约为 1 + √(2γ)），所以只要有这样一个分量，"
            "它就逃得更快——随机梯度的噪声或随机初始化"
            "都会提供这个分量。",
        ),
        reference=None
        if faster and not stuck
        else "Jin, Netrapalli & Jordan 2018, Accelerated gradient descent escapes saddle points faster than "
        "gradient descent (COLT); Dauphin et al. 2014 (saddle points in high dimensions)",
    )

    # --- the ravine -------------------------------------------------------------------------------
    gd = steps_to_target["0"]
    helped = [
        k
        for k in keys[1:]
        if steps_to_target[k] is not None and (gd is None or steps_to_target[k] < gd)  # type: ignore[operator]
    ]
    calmer = [k for k in keys[1:] if sideways[k] < sideways["0"]]
    overdone = "0.99" not in helped
    all_better = len(helped) == len(calmer) == len(keys) - 1
    targets_en = ", ".join(f"{_fmt(steps_to_target[k])} at μ = {k}" for k in keys)
    targets_zh = "、".join(f"μ = {k} 时 {_fmt_zh(steps_to_target[k])}" for k in keys)
    sideways_en = ", ".join(f"{sideways[k]:.1f}" for k in keys)
    best_mu = ((math.sqrt(100) - 1) / (math.sqrt(100) + 1)) ** 2
    ravine_verdict = Verdict(
        RAVINE,
        "confirmed" if all_better else ("partly" if helped else "wrong"),
        text(
            f"At γ = {RAVINE_LR} plain gradient descent zigzags across the ravine and needs {_fmt(gd)} steps "
            f"to reach the loss {target:g}. Steps to the target: {targets_en}. The sideways travel Σ|Δy| "
            f"(for μ = {', '.join(keys)}): {sideways_en} — the zigzag is calmer only at μ = "
            f"{', '.join(calmer) or 'none'}; with more momentum the point swings across the ravine wider "
            "and longer, while it gains speed along it"
            + (" — at μ = 0.99 so much that it rolls past the minimum again and again." if overdone else "."),
            f"γ = {RAVINE_LR} 时，普通梯度下降在峡谷两壁之间来回“之”字形震荡，需要 {_fmt_zh(gd)} 步"
            f"才把损失降到 {target:g}。到达目标的步数：{targets_zh}。横穿峡谷的总路程 Σ|Δy|"
            f"（μ = {'、'.join(keys)}）：{'、'.join(f'{sideways[k]:.1f}' for k in keys)}——只有 μ = "
            f"{'、'.join(calmer) or '无'} 时震荡变小；动量更大时，点在峡谷两壁之间摆得更宽、更久，"
            "同时沿谷底走得更快" + ("——μ = 0.99 时快得一次又一次冲过最小值。" if overdone else "。"),
        ),
        correction=None
        if all_better
        else text(
            "Momentum speeds up the slow direction along the ravine (a moderate μ cuts the steps by 2–3×), "
            "but on the exact gradient it damps the swing across it only at a moderate μ (0.5 here); a "
            "larger μ turns the zigzag into a wider, slower oscillation, and with too little friction "
            "(μ = 0.99) the point rolls back and "
            f"forth for far longer than plain descent. On a quadratic of condition κ the best heavy ball "
            f"uses μ = ((√κ − 1)/(√κ + 1))² ≈ {best_mu:.2f} for κ = 100 (with its own best step size). "
            "The smoothing the post describes is of noisy mini-batch gradients, which the average "
            "over ~1/(1 − μ) steps does reduce.",
            "动量能加快沿峡谷方向（平缓方向）的前进（适中的 μ 让步数减少 2–3 倍），但在精确梯度下，"
            "只有适中的 μ（这里是 0.5）能抑制横穿峡谷的摆动；μ 更大时，它把“之”字形震荡变成了更宽、"
            "更慢的摆动；摩擦太小时"
            f"（μ = 0.99），点会来回滚动很久，比普通梯度下降还慢。条件数为 κ 的二次函数上，重球法最好的 "
            f"μ = ((√κ − 1)/(√κ + 1))²，κ = 100 时约为 {best_mu:.2f}（配合它自己的最佳步长）。"
            "原文说的“平滑”，指的是小批量梯度的噪声：对大约 1/(1 − μ) 步求平均确实能减小它。",
        ),
        reference=None
        if all_better
        else "Polyak 1964 (heavy ball, optimal μ on quadratics); Goh 2017, Why Momentum Really Works",
    )

    # --- friction ---------------------------------------------------------------------------------
    more_swing = all(floor_crossings[a] <= floor_crossings[b] for a, b in itertools.pairwise(keys))
    friction_verdict = Verdict(
        FRICTION,
        "confirmed" if more_swing and floor_crossings["0.99"] > floor_crossings["0"] else "partly",
        text(
            "Without a gradient the velocity buffer shrinks by μ a step, so 1 − μ is the friction. Less "
            "friction, more rolling: before reaching the target the point crosses the valley floor x = 0 "
            + ", ".join(f"{floor_crossings[k]} times at μ = {k}" for k in keys)
            + ".",
            "没有梯度时，速度缓冲每步乘以 μ 衰减，所以 1 − μ 就是摩擦。摩擦越小，滚得越久：到达目标之前，"
            "点穿过谷底 x = 0 的次数为 "
            + "、".join(f"μ = {k} 时 {floor_crossings[k]} 次" for k in keys)
            + "。",
        ),
        correction=None
        if more_swing and floor_crossings["0.99"] > floor_crossings["0"]
        else text(
            "The measured oscillation does not grow steadily as the friction 1 − μ falls.",
            "实测的摆动次数没有随摩擦 1 − μ 减小而单调增加。",
        ),
        reference=None
        if more_swing and floor_crossings["0.99"] > floor_crossings["0"]
        else "Polyak 1964; Goh 2017, Why Momentum Really Works (Distill)",
    )

    # --- figures ----------------------------------------------------------------------------------
    def label(k: str) -> str:
        return f"μ = {k}"

    ravine_paths, ravine_y, ravine_losses = [], [], []
    shown = slice(0, PATH_STEPS + 1)
    for k in keys:
        run = ravine[k]
        ravine_paths.append(Series(label(k), run.points[shown, 0], run.points[shown, 1]))
        ravine_y.append(Series(label(k), np.arange(PATH_STEPS + 1), run.points[shown, 1]))
        ravine_losses.append(Series(label(k), np.arange(len(run.losses)), run.losses))
    ravine_figure = Lines(
        panels=[
            Panel(f"ravine ½(x² + 100y²), lr = {RAVINE_LR}: {PATH_STEPS} steps", ravine_paths, "x", "y"),
            Panel("across the ravine: y", ravine_y, "step", "y", hline=(0.0, "floor")),
            Panel("loss", ravine_losses, "step", "f(x, y)", log_y=True, hline=(target, f"target {target:g}")),
        ],
        title="Momentum down a ravine: faster along, wider across",
    )
    saddle_paths, saddle_y, ridge_x = [], [], []
    for k in keys:
        run = saddle[k]
        inside = np.flatnonzero(np.abs(run.points[:, 1]) > 2.0)
        end = int(inside[0]) + 1 if inside.size else len(run.losses)
        saddle_paths.append(Series(label(k), run.points[:end, 0], run.points[:end, 1]))
        saddle_y.append(Series(label(k), np.arange(end), np.abs(run.points[:end, 1])))
        ridge_x.append(Series(label(k), np.arange(len(ridge[k].losses)), ridge[k].points[:, 0]))
    saddle_figure = Lines(
        panels=[
            Panel("saddle x² − y² from (1, 0.001)", saddle_paths, "x", "y"),
            Panel("|y|: escape at |y| ≥ 1", saddle_y, "step", "|y|", log_y=True, hline=(1.0, "escaped")),
            Panel("from the ridge (1, 0): x", ridge_x, "step", "x", hline=(0.0, "saddle")),
        ],
        title="Momentum at a saddle: faster escape, but only with a push off the ridge",
    )
    figures = [
        Figure(
            ravine_figure,
            text(
                f"Left: the first {PATH_STEPS} steps down the ravine at lr = {RAVINE_LR} from (−4, 0.5). "
                "Middle: y, across the ravine, a step — plain descent zigzags and dies out, μ = 0.5 calms "
                "it, μ = 0.9 and 0.99 swing wide and long. Right: the loss a step, log scale.",
                f"左：学习率 {RAVINE_LR} 时从 (−4, 0.5) 沿峡谷下降的前 {PATH_STEPS} 步。中：每一步横穿峡谷的"
                "坐标 y——普通梯度下降呈“之”字形震荡并很快衰减，μ = 0.5 让它更平稳，μ = 0.9 和 0.99 "
                "摆得又宽又久。右：每一步的损失（对数坐标）。",
            ),
        ),
        Figure(
            saddle_figure,
            text(
                "Left: paths off the saddle from (1, 0.001) at lr = 0.02. Middle: |y| a step, log scale — "
                "a straight line is a constant growth factor, steeper with μ. Right: started on the ridge "
                "(1, 0), x a step: momentum crosses the saddle back and forth and settles towards it.",
                "左：学习率 0.02 时从 (1, 0.001) 出发离开鞍点的路径。中：每一步的 |y|（对数坐标），"
                "直线代表固定的放大倍数，μ 越大越陡。右：从山脊上的 (1, 0) 出发时每一步的 x："
                "带动量的点在鞍点两侧来回穿过，并逐渐停向鞍点。",
            ),
        ),
    ]
    columns = [
        "μ",
        "ravine: steps to 1e-3",
        "sideways Σ|Δy|",
        "floor crossings",
        "saddle: steps to escape",
        "growth/step (theory)",
        "growth/step (measured)",
        "escaped from the ridge",
    ]
    rows = [
        [
            k,
            _fmt(steps_to_target[k]),
            sideways[k],
            floor_crossings[k],
            _fmt(escape[k]),
            growth[k],
            "–" if growth_measured[k] is None else growth_measured[k],
            "no" if ridge_escape[k] is None else f"step {ridge_escape[k]}",
        ]
        for k in keys
    ]
    return Outcome(numbers, [saddle_verdict, ravine_verdict, friction_verdict], figures, columns, rows)


DEMO = Demo(
    name="momentum",
    order=5,
    title=text("Momentum: friction, ravines and saddles", "动量：摩擦、峡谷与鞍点"),
    summary=text(
        "Heavy-ball momentum μ = 0, 0.5, 0.9, 0.99 down the ravine ½(x² + 100y²) and off the saddle x² − y².",
        "重球动量 μ = 0、0.5、0.9、0.99 在峡谷 ½(x² + 100y²) 中下降，以及从鞍点 x² − y² 逃离。",
    ),
    claims=(SADDLE, RAVINE, FRICTION),
    run=_run,
)
