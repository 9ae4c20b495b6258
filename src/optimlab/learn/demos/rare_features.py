"""``rare-features``: Adagrad learns the weights of rarely present features that SGD leaves unlearned.

A linear regression built here with a seeded :class:`torch.Generator`: 10 000 rows, 10 *common*
features (standard normal in every row) and 10 *rare* features (standard normal in about 1 % of rows,
zero elsewhere), y = X·w* + 0.1·noise. Minibatches of 100 rows, loss ½·mean((xᵀw − y)²), one pass
over the data (100 steps, the online setting of Duchi et al.) from w = 0; SGD is also given 5 passes.

Why sparsity matters: the curvature of the loss along a rare coordinate is its frequency p times that
of a common one (here 1 %), and a single minibatch averages a rare feature's one nonzero row with 99
zeros. SGD's one learning rate is capped by the common features (it diverges beyond ≈ 2/λ_max), so its
rare weights move about p times as fast. Adagrad (Duchi, Hazan & Singer 2011) divides each coordinate's
step by the root of that coordinate's own accumulated squared gradients,

    s ← s + g²,   θ ← θ − lr · g / (√s + ε),

so a coordinate that is rarely active keeps a large step. Adam normalises per coordinate too (by a
moving average of g²).

Fair learning rates: every optimizer (torch's defaults otherwise) runs the same grid
lr ∈ {0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10} on the same data and minibatch order, and is reported at the lr
with the lowest final *total* training loss — the choice a practitioner makes without looking at the
rare weights. The floor is the least-squares solution of the same data. Numbers: the relative error
‖w − w*‖ / ‖w*‖ on the rare and on the common weights per optimizer, and the whole grid.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from optimlab.learn.demo import Claim, Demo, Figure, Outcome, Verdict, text
from optimlab.optim import SGD, Adagrad, Adam
from optimlab.reports.figures.lines import Lines, Panel, Series

__all__ = ["DEMO", "problem", "train"]

ROWS = 10_000
COMMON = 10
RARE = 10
PRESENCE = 0.01
NOISE = 0.1
BATCH = 100
EPOCHS = 1
#: the passes SGD is given in a second run, to see whether it catches up
SGD_EPOCHS = 5
SEED = 0
GRID = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"SGD": SGD, "Adagrad": Adagrad, "Adam": Adam}
#: torch.optim.Adagrad's default learning rate
ADAGRAD_DEFAULT_LR = 0.01
#: a learning rate is "good" when its final total loss is within this factor of the best of all runs
GOOD_FACTOR = 1.5

SPARSE = Claim(
    "003_2ca240df3290a5bb.txt",
    "Adagrad:Adagrad根据参数的历史梯度信息来调整学习率,适用于稀疏数据。",
    "Adagrad: Adagrad adjusts the learning rate from the parameters' history of gradients, and suits "
    "sparse data.",
)
NO_TUNING = Claim(
    "000_e26eedcb58e8e554.txt",
    "优点:不需要人为的调节学习率,它可以自动调节;对于稀疏的数据它的表现很好,很好地提高了 SGD 的鲁棒性;",
    "Advantages: no need to tune the learning rate by hand, it adjusts it automatically; it performs "
    "well on sparse data, and greatly improves on SGD's robustness.",
)


def problem(seed: int = SEED) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The data ``(X, y, w_true)``: ``COMMON`` dense standard-normal columns, then ``RARE`` columns
    nonzero (standard normal) in a fraction ``PRESENCE`` of rows; ``y = X·w_true + NOISE·ε``."""
    g = torch.Generator().manual_seed(seed)
    common = torch.randn(ROWS, COMMON, generator=g)
    present = torch.rand(ROWS, RARE, generator=g) < PRESENCE
    rare = torch.randn(ROWS, RARE, generator=g) * present
    x = torch.cat([common, rare], dim=1)
    w_true = torch.randn(COMMON + RARE, generator=g)
    y = x @ w_true + NOISE * torch.randn(ROWS, generator=g)
    return x, y, w_true


def _errors(w: torch.Tensor, w_true: torch.Tensor) -> tuple[float, float]:
    """Relative errors ‖w − w*‖/‖w*‖ on the common and on the rare block."""
    c, r = slice(0, COMMON), slice(COMMON, None)
    return (
        float((w[c] - w_true[c]).norm() / w_true[c].norm()),
        float((w[r] - w_true[r]).norm() / w_true[r].norm()),
    )


def _loss(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    """The total training loss ½·mean((xᵀw − y)²); ``inf`` for a diverged run."""
    value = float(0.5 * ((x @ w - y) ** 2).mean())
    return value if math.isfinite(value) else math.inf


def train(
    cls: type[torch.optim.Optimizer],
    lrs: tuple[float, ...],
    data: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    epochs: int = EPOCHS,
    seed: int = SEED,
) -> dict[float, dict[str, object]]:
    """``epochs`` passes of minibatch training from zero, one run per lr at once (one parameter group
    each, torch's defaults otherwise), the minibatch order seeded by ``seed``. Per lr: final ``loss``,
    ``common`` and ``rare`` errors, and the ``rare_curve`` (rare error after every step)."""
    x, y, w_true = data
    weights = [torch.zeros(COMMON + RARE, requires_grad=True) for _ in lrs]
    opt = cls([{"params": [w], "lr": lr} for w, lr in zip(weights, lrs, strict=True)])
    order = torch.Generator().manual_seed(seed)
    curves: list[list[float]] = [[] for _ in lrs]
    for _ in range(epochs):
        perm = torch.randperm(ROWS, generator=order)
        for start in range(0, ROWS, BATCH):
            rows = perm[start : start + BATCH]
            pred = x[rows] @ torch.stack(weights, dim=1)  # (BATCH, len(lrs)): the runs are independent
            loss = 0.5 * ((pred - y[rows, None]) ** 2).mean(dim=0).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                for curve, w in zip(curves, weights, strict=True):
                    curve.append(_errors(w, w_true)[1])
    out: dict[float, dict[str, object]] = {}
    with torch.no_grad():
        for lr, w, curve in zip(lrs, weights, curves, strict=True):
            common, rare = _errors(w, w_true)
            loss = _loss(w, x, y)
            finite = math.isfinite(loss)
            out[lr] = {
                "loss": loss,
                "common": common if finite else math.inf,
                "rare": rare if finite else math.inf,
                "rare_curve": np.array(curve),
            }
    return out


def _num(value: float) -> float | None:
    """A JSON-able number: ``None`` for a diverged run."""
    return value if math.isfinite(value) else None


def _run() -> Outcome:
    data = problem()
    x, y, w_true = data
    presence = float((x[:, COMMON:] != 0).float().mean())
    ls = torch.linalg.lstsq(x.double(), y.double()[:, None]).solution[:, 0].float()
    floor_common, floor_rare = _errors(ls, w_true)
    floor = {"common": floor_common, "rare": floor_rare, "loss": _loss(ls, x, y)}
    runs = {name: train(cls, GRID, data) for name, cls in OPTIMIZERS.items()}
    best_lr = {name: min(GRID, key=lambda lr, r=r: r[lr]["loss"]) for name, r in runs.items()}
    best = {name: runs[name][best_lr[name]] for name in runs}
    rare = {name: float(best[name]["rare"]) for name in runs}
    common = {name: float(best[name]["common"]) for name in runs}
    total = {name: float(best[name]["loss"]) for name in runs}
    # robustness to the lr: how many of the grid's lrs come within GOOD_FACTOR of the optimizer's own best
    good = {
        name: sum(1 for lr in GRID if runs[name][lr]["loss"] <= GOOD_FACTOR * total[name]) for name in runs
    }
    more = train(SGD, GRID, data, epochs=SGD_EPOCHS)
    more_lr = min(GRID, key=lambda lr: more[lr]["loss"])
    more_rare = float(more[more_lr]["rare"])
    adagrad_losses = [runs["Adagrad"][lr]["loss"] for lr in GRID]
    default = runs["Adagrad"][ADAGRAD_DEFAULT_LR]
    numbers = {
        "rows": ROWS,
        "presence": presence,
        "epochs": EPOCHS,
        "lr": {name: best_lr[name] for name in runs},
        "rare_weight_error": rare,
        "common_weight_error": common,
        "total_loss": total,
        "floor": floor,
        "good_lrs": good,
        "sgd_more_epochs": {"epochs": SGD_EPOCHS, "lr": more_lr, "rare_weight_error": more_rare},
        "adagrad_default_lr": {
            "lr": ADAGRAD_DEFAULT_LR,
            "total_loss": float(default["loss"]),
            "rare_weight_error": float(default["rare"]),
        },
        "grid": {
            name: {
                f"{lr:g}": {"total_loss": _num(r[lr]["loss"]), "rare_weight_error": _num(r[lr]["rare"])}
                for lr in GRID
            }
            for name, r in runs.items()
        },
    }

    diverged_sgd = [f"{lr:g}" for lr in GRID if not math.isfinite(runs["SGD"][lr]["loss"])]
    diverged_en = f" (SGD diverges at lr = {', '.join(diverged_sgd)})" if diverged_sgd else ""
    diverged_zh = f"（SGD 在 lr = {'、'.join(diverged_sgd)} 时发散）" if diverged_sgd else ""
    ratio = rare["SGD"] / rare["Adagrad"]
    tuned_en = ", ".join(f"{n} lr = {best_lr[n]:g}" for n in runs)
    tuned_zh = "、".join(f"{n} lr = {best_lr[n]:g}" for n in runs)
    measured_en = (
        f"At the lr with the lowest total loss ({tuned_en}){diverged_en}, after one pass over the data the "
        f"rare weights' relative error is {rare['SGD']:.3f} for SGD, {rare['Adagrad']:.3f} for Adagrad and "
        f"{rare['Adam']:.3f} for Adam (least squares on the same data: {floor_rare:.3f}); on the common "
        f"weights {common['SGD']:.4f}, {common['Adagrad']:.4f}, {common['Adam']:.4f}. "
    )
    measured_zh = (
        f"各自取总损失最低的学习率（{tuned_zh}）{diverged_zh}，把数据过一遍之后，稀有特征权重的相对误差："
        f"SGD {rare['SGD']:.3f}，Adagrad {rare['Adagrad']:.3f}，Adam {rare['Adam']:.3f}"
        f"（同一数据的最小二乘解为 {floor_rare:.3f}）；常见特征权重的误差分别为 {common['SGD']:.4f}、"
        f"{common['Adagrad']:.4f}、{common['Adam']:.4f}。"
    )
    more_en = (
        f"Given {SGD_EPOCHS} passes, SGD's rare error falls to {more_rare:.3f} (lr = {more_lr:g}): "
        "Adagrad's advantage is how fast the rare weights are learnt. "
    )
    more_zh = (
        f"给 SGD {SGD_EPOCHS} 遍数据，它的稀有权重误差降到 {more_rare:.3f}（lr = {more_lr:g}）："
        "Adagrad 的优势在于稀有权重学得快。"
    )
    if ratio >= 3:
        sparse = Verdict(
            SPARSE,
            "confirmed",
            text(
                measured_en
                + f"Adagrad's rare weights are {ratio:.1f}× closer to the truth than SGD's. SGD's one "
                "learning rate is capped by the common features, and a rare coordinate's curvature is only "
                f"{presence:.1%} of a common one's, so its weight moves that much slower. "
                + more_en
                + f"Adam, which also normalises per coordinate, reaches {rare['Adam']:.3f}.",
                measured_zh
                + f"Adagrad 的稀有权重误差只有 SGD 的 1/{ratio:.1f}。SGD 只有一个学习率，上限由常见特征决定，"
                f"而稀有坐标方向的曲率只有常见特征的 {presence:.1%}，它的权重也就慢这么多。"
                + more_zh
                + f"同样按坐标归一化的 Adam 达到 {rare['Adam']:.3f}。",
            ),
        )
    else:
        sparse = Verdict(
            SPARSE,
            "partly" if ratio > 1 else "wrong",
            text(
                measured_en + f"Adagrad's rare error is only {ratio:.2f}× smaller than SGD's. " + more_en,
                measured_zh + f"Adagrad 的稀有权重误差是 SGD 的 1/{ratio:.2f}。" + more_zh,
            ),
            correction=text(
                "Per-coordinate step sizes help rarely active features only when SGD's single learning "
                "rate is capped by the frequent ones and the budget is short; here the difference is small.",
                "只有当 SGD 的单一学习率被常见特征限制住、而且训练步数有限时，按坐标的步长才会明显帮助"
                "稀有特征；此处差别不大。",
            ),
            reference="Duchi, Hazan & Singer 2011, Adaptive Subgradient Methods (JMLR 12), §1",
        )

    spread = max(v for v in adagrad_losses if math.isfinite(v)) / min(adagrad_losses)
    default_en = (
        f"torch's default lr = {ADAGRAD_DEFAULT_LR:g} leaves Adagrad at total loss {default['loss']:.3g} "
        f"(best {total['Adagrad']:.3g}) and rare error {default['rare']:.3f}"
    )
    default_zh = (
        f"用 torch 的默认 lr = {ADAGRAD_DEFAULT_LR:g} 时，Adagrad 的总损失为 "
        f"{default['loss']:.3g}（最好是 {total['Adagrad']:.3g}），稀有权重误差为 {default['rare']:.3f}"
    )
    good_en = ", ".join(f"{n} {good[n]}" for n in runs)
    good_zh = "、".join(f"{n} {good[n]} 个" for n in runs)
    if good["Adagrad"] > good["SGD"]:
        robust_en = "Adagrad does tolerate more learning rates than SGD — the robustness the post means."
        robust_zh = "Adagrad 确实比 SGD 能容忍更多的学习率——这正是原文说的鲁棒性。"
    else:
        robust_en = "Adagrad tolerates no more learning rates than SGD here."
        robust_zh = "这里 Adagrad 能容忍的学习率并不比 SGD 多。"
    if spread > 10:
        no_tuning = Verdict(
            NO_TUNING,
            "partly",
            text(
                "Good on sparse data, yes (above). But the learning rate still needs tuning: across the "
                f"grid Adagrad's final total loss varies {spread:.0f}-fold; {default_en}. Learning rates "
                f"within {GOOD_FACTOR:g}× of each optimizer's own best loss: {good_en} of {len(GRID)}. "
                + robust_en,
                f"对稀疏数据表现好，没错（见上）。但学习率仍然要调：在网格上 Adagrad 的最终总损失相差 "
                f"{spread:.0f} 倍；{default_zh}。"
                f"总损失在该优化器自己最好值的 {GOOD_FACTOR:g} 倍以内的学习率个数："
                f"{good_zh}（共 {len(GRID)} 个）。" + robust_zh,
            ),
            correction=text(
                "Adagrad adapts the relative step sizes of the coordinates, not the global learning rate: "
                "the step is lr/√(Σg²), so lr sets its scale and must be tuned like SGD's (torch's default "
                "0.01 is only a starting point). And since Σg² only grows, its steps keep shrinking (like "
                "1/√t while the gradients keep their size).",
                "Adagrad 自适应的是各个坐标之间步长的比例，而不是全局学习率：步长是 lr/√(Σg²)，"
                "lr 决定了它的大小，仍要像 SGD 一样调（torch 的默认值 0.01 只是起点）。"
                "而且 Σg² 只增不减，步长会一直缩小（梯度大小不变时按 1/√t）。",
            ),
            reference="Duchi, Hazan & Singer 2011, JMLR 12 (the step size η is a free parameter, §1.1); "
            "torch.optim.Adagrad docs (lr=0.01)",
        )
    else:
        no_tuning = Verdict(
            NO_TUNING,
            "confirmed",
            text(
                f"Across the grid Adagrad's final total loss varies only {spread:.1f}-fold; {default_en}.",
                f"在网格上 Adagrad 的最终总损失只相差 {spread:.1f} 倍；{default_zh}。",
            ),
        )

    grid = np.array(GRID)
    steps = np.arange(1, EPOCHS * ROWS // BATCH + 1)

    def col(name: str, key: str) -> np.ndarray:
        values = np.array([float(runs[name][lr][key]) for lr in GRID])
        return np.where(np.isfinite(values), values, np.nan)  # a diverged run leaves a gap

    figure = Lines(
        panels=[
            Panel(
                "rare weights after one pass",
                [Series(n, grid, col(n, "rare"), "lines+markers") for n in runs],
                "learning rate",
                "relative error ‖w − w*‖/‖w*‖",
                log_x=True,
                log_y=True,
                hline=(floor_rare, "least squares"),
            ),
            Panel(
                "common weights after one pass",
                [Series(n, grid, col(n, "common"), "lines+markers") for n in runs],
                "learning rate",
                "relative error ‖w − w*‖/‖w*‖",
                log_x=True,
                log_y=True,
                hline=(floor_common, "least squares"),
            ),
            Panel(
                "rare weights during training (tuned lr)",
                [Series(f"{n}", steps, np.asarray(best[n]["rare_curve"])) for n in runs],
                "step",
                "relative error",
                log_y=True,
                hline=(floor_rare, "least squares"),
            ),
        ],
        title=f"Linear regression, 10 features present in {presence:.1%} of rows (Adagrad vs SGD vs Adam)",
    )
    caption = text(
        "Left and middle: the relative error of the rare and of the common weights after one pass, for every "
        "learning rate of the grid (gaps: diverged); dashed: the least-squares solution. Right: the rare "
        "weights' error during training at each optimizer's tuned learning rate.",
        "左、中：网格上每个学习率把数据过一遍后，稀有特征和常见特征权重的相对误差（断开处为发散）；"
        "虚线是最小二乘解。右：各优化器在调好的学习率下，稀有权重误差随训练步数的变化。",
    )
    columns = ["optimizer", "tuned lr", "total loss", "common error", "rare error", "good lrs"]
    rows = [[n, best_lr[n], total[n], common[n], rare[n], good[n]] for n in runs]
    rows.append(["least squares", "–", floor["loss"], floor_common, floor_rare, "–"])
    return Outcome(numbers, [sparse, no_tuning], [Figure(figure, caption)], columns, rows)


DEMO = Demo(
    name="rare-features",
    order=7,
    title=text("Rare features: Adagrad, a step size per coordinate", "稀有特征：Adagrad 为每个坐标定步长"),
    summary=text(
        "A linear regression whose 10 informative rare features appear in 1 % of rows, fitted by SGD, "
        "Adagrad and Adam, each at its best learning rate of one grid.",
        "一个线性回归，其中 10 个有用的稀有特征只出现在 1% 的样本里；分别用 SGD、Adagrad、Adam 拟合，"
        "各自取同一网格中最好的学习率。",
    ),
    claims=(SPARSE, NO_TUNING),
    run=_run,
)
