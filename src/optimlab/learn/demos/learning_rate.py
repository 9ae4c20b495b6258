"""``learning-rate``: too small is slow, too large diverges, and the best sits just below the edge.

Gradient descent, θ ← θ − γ·∇f(θ) (``optimlab.optim.SGD``, no momentum), on ``booth``:
f(x, y) = (x + 2y − 7)² + (2x + y − 5)², a convex quadratic whose Hessian [[10, 8], [8, 10]] has the
curvatures L = 18 and μ = 2 (read off ``torch.autograd.functional.hessian``, not written in). Along
an eigenvector of curvature λ the error is multiplied by 1 − γλ at every step, so

* γ < 1/L: every step stays on its side of the minimum (slow when γ is small);
* 1/L < γ < 2/L: the step jumps past the minimum along the steep direction, yet still converges —
  fastest at γ = 2/(L + μ) = 0.1, contraction (L − μ)/(L + μ) per step;
* γ > 2/L = 1/9: |1 − γL| > 1, the iterates oscillate with a growing amplitude: divergence.

Runs of 200 steps from the standard start (−5, −5) with the lab's runner, for the lrs of :data:`GRID`
and a sweep of :data:`SWEEP` lrs; the smallest diverging lr (the loss after 200 steps above the
starting loss) is found by bisection; the learning-rate range test (Smith 2017, §3.3) with
``optimlab lr-find``'s defaults gives its suggestions (``valley``, the rule fastai uses by default,
as ``suggested_lr``), and a run at that lr is measured too.

References: Nesterov 2004, *Introductory Lectures on Convex Optimization*, §1.2.3 and Thm 2.1.15;
Goodfellow, Bengio & Courville 2016, *Deep Learning*, §4.3; Smith 2017, "Cyclical Learning
Rates for Training Neural Networks", §3.3.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from optimlab.lab.lr_find import problem_range_test
from optimlab.lab.presets import make_config
from optimlab.lab.problems import Budget, get_problem
from optimlab.lab.runner import RunResult, train
from optimlab.learn.demo import Claim, Demo, Figure, Outcome, Verdict, text
from optimlab.reports.figures.lines import Lines, Panel, Series

__all__ = ["DEMO", "GRID", "curvatures", "diverges", "smallest_diverging_lr"]

PROBLEM = "booth"
SEED = 0
STEPS = 200
#: too small, slow, safe, about right (2/(L + μ)), too large
GRID = (0.001, 0.01, 0.05, 0.1, 0.12)
#: the sweep of the middle figure: 21 lrs, evenly spaced in log from 1e-3 to 0.3
SWEEP = tuple(float(v) for v in np.geomspace(1e-3, 0.3, 21))
#: steps over which the overshoots (the steep coordinate changing sign) are counted
OVERSHOOT_STEPS = 20
RESOLUTION = 1e-4  #: a coordinate closer than this to the minimum counts as on it (float32 θ ≈ 3)
FLOOR = 1e-12  #: losses are drawn at least this large on log axes (float32 reaches 0)

SMALL_IS_SAFE = Claim(
    "000_e26eedcb58e8e554.txt",
    "因为梯度下降时候学习率太大也就是步子太大会错过最优点所以一般设置学习率都比较小"
    "(即使会导致下降的很慢但是不容易错过最优解呀)",
    "Because in gradient descent a learning rate that is too large — a step that is too big — misses "
    "the optimum, the learning rate is usually set rather small (even if that makes the descent slow, "
    "it does not easily miss the optimal solution).",
)
NEITHER_TOO_BIG_NOR_SMALL = Claim(
    "004_91ae9b067697a3ae.txt",
    "学习率过大过小都不便于学习。",
    "A learning rate that is too large or too small both hinder learning.",
)


def curvatures(problem_spec: str = PROBLEM) -> tuple[float, float, np.ndarray]:
    """(μ, L, the eigenvector of L) of the surface's Hessian at its minimum
    (``torch.autograd.functional.hessian``)."""
    problem = get_problem(problem_spec)
    point = torch.tensor(problem.minima[0], dtype=torch.float64)
    hessian = torch.autograd.functional.hessian(lambda v: problem.fn(v[0], v[1]), point)
    values, vectors = torch.linalg.eigh(hessian)
    return float(values[0]), float(values[-1]), vectors[:, -1].numpy()


def _train(lr: float) -> RunResult:
    return train(get_problem(PROBLEM), make_config("sgd", {"lr": lr}), SEED, Budget(steps=STEPS))


def diverges(result: RunResult) -> bool:
    """Whether a run diverged: the runner stopped it, or its loss after the budget is above its start."""
    return result.diverged or not result.final_loss <= result.losses[0]


def smallest_diverging_lr(converging: float, diverging: float, tolerance: float = 1e-4) -> float:
    """Bisection between an lr that converges and one that diverges (:func:`diverges`), down to a
    relative ``tolerance``; returns the smallest diverging lr found."""
    while diverging - converging > tolerance * diverging:
        middle = 0.5 * (converging + diverging)
        if diverges(_train(middle)):
            diverging = middle
        else:
            converging = middle
    return diverging


def overshoots(result: RunResult, direction: np.ndarray, minimum: tuple[float, float]) -> int:
    """How often, over the first :data:`OVERSHOOT_STEPS` steps, the coordinate of θ − θ* along
    ``direction`` (the steep one) changed sign: a step that jumped past the minimum."""
    path = np.asarray(result.trajectory or [], dtype=float)[: OVERSHOOT_STEPS + 1]
    along = (path - np.asarray(minimum)) @ direction
    along = np.where(np.abs(along) > RESOLUTION, along, 0.0)  # below float32's resolution: at the minimum
    return int(np.sum(along[1:] * along[:-1] < 0))


def _key(lr: float) -> str:
    return f"{lr:g}"


def _final(result: RunResult) -> float:
    return math.inf if diverges(result) else float(result.final_loss)


def _steps(result: RunResult) -> int | None:
    return None if not math.isfinite(result.steps_to_target) else int(result.steps_to_target)


def _run() -> Outcome:
    problem = get_problem(PROBLEM)
    mu, big_l, steep = curvatures()
    target = problem.target_loss
    grid = {_key(lr): _train(lr) for lr in GRID}
    sweep = [(lr, _train(lr)) for lr in SWEEP]
    start_loss = float(grid[_key(GRID[0])].losses[0])
    stable = [lr for lr, r in sweep if not diverges(r)]
    unstable = [lr for lr, r in sweep if diverges(r) and lr > max(stable)]
    edge = smallest_diverging_lr(max(stable), min(unstable))
    test = problem_range_test(problem, make_config("sgd"), SEED)
    suggested = float(test.suggestions["valley"])
    at_suggested = _train(suggested)
    final_loss = {k: _final(r) for k, r in grid.items()}
    steps_to = {k: _steps(r) for k, r in grid.items()}
    flips = {k: overshoots(r, steep, problem.minima[0]) for k, r in grid.items()}
    numbers = {
        "problem": PROBLEM,
        "steps": STEPS,
        "start_loss": start_loss,
        "target": target,
        "curvature": {"mu": mu, "L": big_l},
        # 2/L: the divergence edge; 2/(L + μ): the fastest constant lr; 1/L: steps overshoot above it
        "theory": {"edge": 2 / big_l, "fastest": 2 / (big_l + mu), "overshoot": 1 / big_l},
        "final_loss": final_loss,
        "steps_to_target": steps_to,
        "overshoots": flips,
        "smallest_diverging_lr": edge,
        "suggested_lr": suggested,
        "suggestions": {k: float(v) for k, v in test.suggestions.items()},
        "range_test_minimum_lr": float(test.lrs[int(np.argmin(test.smoothed))]),
        "suggested_run": {"final_loss": _final(at_suggested), "steps_to_target": _steps(at_suggested)},
    }

    def shown(value: float, lang: str = "en") -> str:
        if math.isfinite(value):
            return f"{value:.3g}"
        return "diverged" if lang == "en" else "发散"

    def reached(key: str, lang: str = "en") -> str:
        if steps_to[key] is not None:
            return str(steps_to[key])
        return "never" if lang == "en" else "始终没有"

    small, large = _key(GRID[0]), _key(GRID[-1])
    ranked = [k for k in final_loss if steps_to[k] is not None]
    # the fastest lr of the grid to the target (if none reaches it: the lowest final loss)
    best = (
        min(ranked, key=lambda k: (steps_to[k], final_loss[k]))
        if ranked
        else min(final_loss, key=lambda k: final_loss[k])
    )
    both_hinder = final_loss[small] > target and not math.isfinite(final_loss[large]) and bool(ranked)
    listing_en = ", ".join(f"{shown(final_loss[k])} at γ = {k}" for k in final_loss)
    listing_zh = "、".join(f"γ = {k} 时 {shown(final_loss[k], 'zh')}" for k in final_loss)
    verdicts = [
        Verdict(
            NEITHER_TOO_BIG_NOR_SMALL,
            "confirmed" if both_hinder else "partly",
            text(
                f"After {STEPS} steps from a loss of {start_loss:g} the loss is {listing_en}. The smallest "
                f"lr never reaches the target {target:g}; from γ = {edge:.4f} on (theory: 2/L = "
                f"{2 / big_l:.4f}) the loss grows; γ = {best} reaches the target in {reached(best)} steps.",
                f"从损失 {start_loss:g} 出发训练 {STEPS} 步后，损失为 {listing_zh}。"
                f"最小的学习率始终没有到达目标 {target:g}；从 γ = {edge:.4f} 起（理论值 2/L = "
                f"{2 / big_l:.4f}）损失越来越大；γ = {best} 用 {reached(best, 'zh')} 步到达目标。",
            ),
            correction=None
            if both_hinder
            else text(
                "Too small an lr is slow and too large one diverges; here the grid did not show both.",
                "学习率太小则慢，太大则发散；本次网格没有同时显示出这两点。",
            ),
            reference=None if both_hinder else "Goodfellow et al. 2016, Deep Learning, §4.3",
        ),
    ]
    fast_overshoots = bool(ranked) and flips[best] > 0 and flips[small] == 0
    small_slow = final_loss[small] > target
    verdicts.append(
        Verdict(
            SMALL_IS_SAFE,
            "partly" if fast_overshoots and small_slow else "confirmed",
            text(
                f"Too large, yes: from γ = {edge:.4f} = 2/L on, the steps overshoot by more each time and "
                f"the loss blows up. But overshooting is not missing: the fastest lr of the grid, "
                f"γ = {best}, jumps past the minimum along the steep direction {flips[best]} times in its "
                f"first {OVERSHOOT_STEPS} steps and still reaches the target in {reached(best)} steps, "
                f"while a 'safe' small γ = {small} never overshoots ({flips[small]} times) and ends at "
                f"{shown(final_loss[small])} after {STEPS} steps, above the target {target:g}. The "
                f"fastest lr, 2/(L + μ) = {2 / (big_l + mu):.3g}, is {2 / (big_l + mu) / edge:.0%} of the "
                "divergence edge.",
                f"太大确实不行：从 γ = {edge:.4f} = 2/L 起，每一步都冲得更远，损失爆炸。但冲过头不等于错过："
                f"网格中最快的 γ = {best} 在前 {OVERSHOOT_STEPS} 步中沿陡峭方向越过极小值 "
                f"{flips[best]} 次，仍然只用 {reached(best, 'zh')} 步就到达目标；而“稳妥”的小学习率 "
                f"γ = {small} 从不越过（{flips[small]} 次），{STEPS} 步后损失仍为 "
                f"{shown(final_loss[small], 'zh')}，"
                f"高于目标 {target:g}。最快的学习率 2/(L + μ) = {2 / (big_l + mu):.3g}，"
                f"是发散边界的 {2 / (big_l + mu) / edge:.0%}。",
            ),
            correction=text(
                "On a quadratic with largest curvature L, gradient descent converges for every γ < 2/L and "
                "diverges above it; steps between 1/L and 2/L jump past the minimum and still converge, and "
                "the fastest constant lr, 2/(L + μ), is close to the edge. Setting the lr small by default "
                "wastes steps: pick the largest lr that is stable (a range test finds the edge cheaply), and "
                "decay it later if the gradients are noisy.",
                "对最大曲率为 L 的二次函数，梯度下降在 γ < 2/L 时都收敛，超过 2/L 就发散；γ 在 1/L 与 2/L "
                "之间时每一步都会越过极小值，但仍然收敛，而最快的固定学习率 2/(L + μ) 就在边界附近。"
                "默认把学习率设得很小会白白浪费步数：应选能稳定训练的最大学习率（学习率范围测试能便宜地找到边界），"
                "梯度有噪声时再逐步衰减。",
            ),
            reference="Nesterov 2004, Introductory Lectures on Convex Optimization, §1.2.3 and Thm 2.1.15; "
            "Smith 2017, Cyclical Learning Rates, §3.3",
        )
    )
    runs = [
        Series(f"γ = {k}", np.arange(len(r.losses)), np.maximum(np.asarray(r.losses), FLOOR))
        for k, r in grid.items()
    ]
    finals = np.array([_final(r) for _, r in sweep])
    finals = np.where(np.isfinite(finals), np.maximum(finals, FLOOR), np.nan)
    edge_line = Series("2/L (theory)", [2 / big_l] * 2, [FLOOR, start_loss], dash="dash")
    blown = [lr for lr, r in sweep if diverges(r)]
    curve = [
        Series("after 200 steps", SWEEP, finals, mode="lines+markers"),
        Series("γ = suggested (valley)", [suggested], [max(_final(at_suggested), FLOOR)], mode="markers"),
        Series("diverged (drawn at the start loss)", blown, [start_loss] * len(blown), mode="markers"),
        edge_line,
    ]
    rng = [
        Series("range test: loss", test.lrs, test.losses, mode="markers"),
        Series("range test: smoothed", test.lrs, test.smoothed),
        Series(
            "γ = suggested (valley)",
            [suggested],
            [float(np.interp(np.log(suggested), np.log(test.lrs), test.smoothed))],
            mode="markers",
        ),
        Series("2/L (theory)", [2 / big_l] * 2, [max(float(test.smoothed.min()), FLOOR), 1e4], dash="dash"),
    ]
    figure = Lines(
        panels=[
            Panel("loss per step", runs, "step", "loss f(θ)", log_y=True, hline=(target, "target")),
            Panel(
                "loss after 200 steps vs lr",
                curve,
                "learning rate γ",
                "final loss",
                log_x=True,
                log_y=True,
                hline=(target, "target"),
            ),
            Panel("range test (lr-find defaults)", rng, "learning rate γ", "loss", log_x=True, log_y=True),
        ],
        title="booth: gradient descent with learning rates from too small to too large",
    )
    caption = text(
        "Left: the loss at each step for five lrs (losses below 1e-12 drawn at 1e-12); the largest stops "
        "when the runner sees it explode. Middle: the loss after 200 steps across 21 lrs — it falls as the "
        "lr grows and breaks off at 2/L (a gap: diverged). Right: the range test's loss as the lr grows "
        "along the ramp, its smoothed curve and the suggested lr.",
        "左：五个学习率下每一步的损失（低于 1e-12 的画在 1e-12）；最大的那个在爆炸时被终止。"
        "中：21 个学习率训练 200 步后的损失——学习率越大损失越低，到 2/L 处突然断开（空缺表示发散）。"
        "右：学习率范围测试中损失随学习率增长的变化、平滑后的曲线和建议的学习率。",
    )
    columns = ["lr γ", "final loss", "steps to target", "overshoots (first 20 steps)"]
    rows = [[k, shown(final_loss[k]), reached(k), flips[k]] for k in final_loss]
    rows.append(
        [
            f"{suggested:.3g} (suggested)",
            shown(_final(at_suggested)),
            numbers["suggested_run"]["steps_to_target"] or "never",
            "–",
        ]
    )
    rows.append([f"{edge:.4f} (smallest diverging)", "diverged", "never", "–"])
    rules = test.suggestions
    note = text(
        "The range test (lr-find's defaults: 100 steps, lr from 1e-7 to 10) suggests "
        + ", ".join(f"{rule} {lr:.3g}" for rule, lr in rules.items())
        + f" — all below the edge 2/L = {2 / big_l:.4f}, although the smoothed loss of the test is lowest "
        f"at {numbers['range_test_minimum_lr']:.3g}, past the edge: the ramp outruns the divergence, which "
        "takes steps to show (hence the rules back off from the minimum). "
        f"At the valley's {suggested:.3g} gradient descent "
        f"reaches the target in {numbers['suggested_run']['steps_to_target'] or 'never'} steps, against "
        f"{reached(best)} at γ = {best}: a safe start, not the fastest lr.",
        "学习率范围测试（lr-find 的默认设置：100 步，学习率从 1e-7 增长到 10）给出的建议是 "
        + "、".join(f"{rule} {lr:.3g}" for rule, lr in rules.items())
        + f"，都在边界 2/L = {2 / big_l:.4f} 之下；不过测试中平滑后的损失在 "
        f"{numbers['range_test_minimum_lr']:.3g} 处才最低，已经越过了边界：学习率涨得比发散显现得更快"
        "（发散要过几步才看得出来），所以这些规则都要从最低点往回退。"
        f"用 valley 建议的 {suggested:.3g}，梯度下降 "
        f"{numbers['suggested_run']['steps_to_target'] or '无法'} 步到达目标，而 γ = {best} 只要 "
        f"{reached(best, 'zh')} 步：这是一个稳妥的起点，而不是最快的学习率。",
    )
    return Outcome(numbers, verdicts, [Figure(figure, caption)], columns, rows, notes=(note,))


DEMO = Demo(
    name="learning-rate",
    order=10,
    title=text("The learning rate: too small, about right, too large", "学习率：太小、合适与太大"),
    summary=text(
        "Gradient descent on a quadratic bowl with lrs from 0.001 to past the divergence edge 2/L, and what "
        "the learning-rate range test suggests.",
        "在二次碗形函数上用从 0.001 到超过发散边界 2/L 的学习率做梯度下降，并看学习率范围测试给出的建议。",
    ),
    claims=(SMALL_IS_SAFE, NEITHER_TOO_BIG_NOR_SMALL),
    run=_run,
)
