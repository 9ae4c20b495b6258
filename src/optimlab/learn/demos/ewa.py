"""``ewa``: an exponentially weighted average smooths and lags, and a zero start needs bias correction.

Seed 002's experiment: 30 days of temperatures (``torch.manual_seed(0)``, ``randn × 10``) and their
exponentially weighted averages S_t = β·S_{t−1} + (1−β)·y_t for β = 0.5, 0.9, 0.98, started three ways:

* as the post does, at the first day's value — which is torch's momentum buffer with
  ``dampening = momentum = β`` (its first value is the first gradient);
* at zero, as the moving averages inside Adam (``exp_avg``) and RMSprop start;
* at zero with Adam's bias correction, S_t / (1 − β^t).

The averages are the optimizers' own state: :func:`optimlab.optim.functional.update` of SGD and of
Adam, fed the temperatures as gradients with ``lr=0``. Numbers: the roughness (mean |Δ| day to day)
per β, the effective window 1/(1 − β), the lag (days an average of a unit step takes to reach ½), and
the first day's value started at zero, without and with the correction.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from optimlab.learn.demo import Claim, Demo, Figure, Outcome, Verdict, text
from optimlab.optim import functional as F
from optimlab.reports.figures.lines import Lines, Panel, Series

__all__ = ["DEMO", "averages"]

POST = "002_795ce8fce5229f80.txt"
BETAS = (0.5, 0.9, 0.98)
DAYS = 30

SMOOTHER = Claim(
    POST,
    "β 的值越大,则绘制出的折线越加平缓; β 值一般默认都是 0.9.",
    "The larger β, the smoother the line; β is usually 0.9 by default.",
)
FIRST_VALUE = Claim(
    POST,
    "第一个元素的的 EWA 值等于自身",
    "The EWA value of the first element equals the element itself.",
)


def temperatures() -> torch.Tensor:
    """The post's 30 days: ``torch.manual_seed(0)``, then ``torch.randn(30) * 10``."""
    torch.manual_seed(0)
    return torch.randn(size=[DAYS]) * 10


def averages(series: torch.Tensor, beta: float) -> dict[str, np.ndarray]:
    """The weighted averages of ``series`` by the optimizers' own state, one value a day: ``"post"``
    (SGD's momentum buffer, dampening β: starts at the first value), ``"zero"`` (Adam's ``exp_avg``)
    and ``"corrected"`` (``exp_avg / (1 − β^t)``, Adam's bias correction)."""
    params = {"x": torch.zeros(())}
    post_state: dict | None = None
    adam_state: dict | None = None
    post, zero, corrected = [], [], []
    for t, value in enumerate(series.to(torch.float64), start=1):
        grads = {"x": value.to(torch.float32)}
        _, post_state = F.update("sgd", params, grads, post_state, lr=0.0, momentum=beta, dampening=beta)
        _, adam_state = F.update("adam", params, grads, adam_state, lr=0.0, betas=(beta, 0.999))
        post.append(float(post_state["x"]["momentum_buffer"]))
        m = float(adam_state["x"]["exp_avg"])
        zero.append(m)
        corrected.append(m / (1.0 - beta**t))
    return {"post": np.array(post), "zero": np.array(zero), "corrected": np.array(corrected)}


def roughness(values: np.ndarray) -> float:
    """Mean |Δ| from one day to the next."""
    return float(np.mean(np.abs(np.diff(values))))


def lag(beta: float, days: int = 400) -> int:
    """Days the average of a unit step (0 before, 1 from day 1), started at zero, takes to reach ½."""
    reached = averages(torch.ones(days), beta)["zero"]
    return int(np.argmax(reached >= 0.5)) + 1


def _run() -> Outcome:
    y = temperatures()
    days = np.arange(1, DAYS + 1)
    raw = y.numpy().astype(float)
    curves = {beta: averages(y, beta) for beta in BETAS}
    rough = {str(b): roughness(curves[b]["post"]) for b in BETAS}
    window = {str(b): 1.0 / (1.0 - b) for b in BETAS}
    lags = {str(b): lag(b) for b in BETAS}
    first_uncorrected = {str(b): float(curves[b]["zero"][0]) for b in BETAS}
    first_corrected = {str(b): float(curves[b]["corrected"][0]) for b in BETAS}
    numbers = {
        "first_day": float(raw[0]),
        "roughness": {"raw": roughness(raw), **rough},
        "window": window,
        "lag": lags,
        "first_value": {"uncorrected": first_uncorrected, "corrected": first_corrected},
    }
    smoother = all(rough[str(a)] > rough[str(b)] for a, b in itertools.pairwise(BETAS))
    verdicts = [
        Verdict(
            SMOOTHER,
            "partly",
            text(
                f"Smoother, yes: the mean day-to-day change falls from {roughness(raw):.2f} (raw) to "
                + ", ".join(f"{rough[str(b)]:.2f} at β = {b}" for b in BETAS)
                + f". But it lags: an average takes {', '.join(str(lags[str(b)]) for b in BETAS)} days to "
                "follow half of a sudden change, and it averages about 1/(1 − β) = "
                + ", ".join(f"{window[str(b)]:g}" for b in BETAS)
                + " days.",
                f"确实更平缓：相邻两天的平均变化从原始数据的 {roughness(raw):.2f} 降到 "
                + "、".join(f"β = {b} 时的 {rough[str(b)]:.2f}" for b in BETAS)
                + f"。但它也更滞后：面对一次突变，平均值要 {'、'.join(str(lags[str(b)]) for b in BETAS)} "
                "天才跟上一半；它大约平均了最近 1/(1 − β) = "
                + "、".join(f"{window[str(b)]:g}" for b in BETAS)
                + " 天的数据。",
            )
            if smoother
            else text("The measured roughness does not fall with β.", "实测的粗糙度没有随 β 增大而下降。"),
            correction=text(
                "A larger β smooths more and lags more: it trades noise for delay. And 0.9 is a default only "
                "for momentum-like first moments (torch.optim.SGD has no default momentum at all; Adam's "
                "β₁ = 0.9). Second moments use far larger values: Adam's β₂ = 0.999, RMSprop's α = 0.99.",
                "β 越大越平缓，同时也越滞后：用延迟换取更少的噪声。而 0.9 只是一阶矩（动量类）的常用默认值"
                "（torch.optim.SGD 的 momentum 默认是 0；Adam 的 β₁ = 0.9）；二阶矩用的值大得多："
                "Adam 的 β₂ = 0.999，RMSprop 的 α = 0.99。",
            ),
            reference="Kingma & Ba 2015, Adam (§2: β₂ = 0.999); torch.optim.RMSprop docs (alpha=0.99)",
        ),
        Verdict(
            FIRST_VALUE,
            "confirmed",
            text(
                f"The post starts at the first day ({raw[0]:.2f}), as torch's momentum buffer does: a valid "
                "choice with no cold-start bias. Adam and RMSprop start their averages at zero instead: "
                "their first value is (1 − β)·y₁ = "
                + ", ".join(f"{first_uncorrected[str(b)]:.2f}" for b in BETAS)
                + " for β = "
                + ", ".join(str(b) for b in BETAS)
                + ", biased towards zero for about 1/(1 − β) steps; Adam's bias correction divides by "
                "1 − βᵗ and gives back "
                + ", ".join(f"{first_corrected[str(b)]:.2f}" for b in BETAS)
                + " (torch's RMSprop does not correct it).",
                f"原文从第一天的值（{raw[0]:.2f}）开始，torch 的动量缓冲也是这样："
                "这是一种合理的做法，没有冷启动偏差。"
                "Adam 和 RMSprop 的滑动平均却从 0 开始：第一天的值只有 (1 − β)·y₁ = "
                + "、".join(f"{first_uncorrected[str(b)]:.2f}" for b in BETAS)
                + "（β = "
                + "、".join(str(b) for b in BETAS)
                + "），前大约 1/(1 − β) 步都偏向 0；Adam 的偏差修正除以 1 − βᵗ，又得回 "
                + "、".join(f"{first_corrected[str(b)]:.2f}" for b in BETAS)
                + "（torch 的 RMSprop 没有这个修正）。",
            ),
        ),
    ]
    series = [Series("raw", days, raw, mode="lines+markers", dash="dot")]
    series += [Series(f"β = {b}", days, curves[b]["post"]) for b in BETAS]
    starts = [Series("raw", days, raw, mode="markers")]
    starts += [
        Series("first value (post)", days, curves[0.9]["post"]),
        Series("zero (Adam, RMSprop)", days, curves[0.9]["zero"], dash="dash"),
        Series("zero, bias-corrected (Adam)", days, curves[0.9]["corrected"], dash="dot"),
    ]
    figure = Lines(
        panels=[
            Panel("smoothing grows with β", series, "day", "temperature"),
            Panel("three starts, β = 0.9", starts, "day", "temperature"),
        ],
        title="Exponentially weighted averages of 30 days (seed 002)",
    )
    caption = text(
        "Left: the post's averages (started at the first day) for three β. Right: β = 0.9 started at the "
        "first value, at zero, and at zero with Adam's bias correction.",
        "左：原文的做法（从第一天开始）在三个 β 下的平均。右：β = 0.9 时从第一个值开始、从 0 开始、"
        "以及从 0 开始并做 Adam 偏差修正的三条曲线。",
    )
    columns = ["β", "roughness", "window 1/(1−β)", "lag (days)", "day 1 from 0", "day 1 corrected"]
    rows = [["raw", roughness(raw), "–", "–", "–", "–"]]
    rows += [
        [
            str(b),
            rough[str(b)],
            window[str(b)],
            lags[str(b)],
            first_uncorrected[str(b)],
            first_corrected[str(b)],
        ]
        for b in BETAS
    ]
    return Outcome(numbers, verdicts, [Figure(figure, caption)], columns, rows)


DEMO = Demo(
    name="ewa",
    order=1,
    title=text("Exponentially weighted averages: smoothing, lag, bias", "指数加权平均：平滑、滞后与偏差"),
    summary=text(
        "Seed 002's 30 days of temperatures averaged with β = 0.5, 0.9, 0.98, started three ways.",
        "用 β = 0.5、0.9、0.98 对种子文章 002 的 30 天气温做指数加权平均，并比较三种起点。",
    ),
    claims=(SMOOTHER, FIRST_VALUE),
    run=_run,
)
