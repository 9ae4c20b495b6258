"""``l1-vs-l2``: L1 gives exact zeros, L2 only small weights; with features ≫ samples L1 wins.

The lab's ``sparse-regression`` problem: y = X·w* + N(0, 0.1²), 200 training and 200 validation
samples, w* = ±1 on a few relevant features. Three regimes: 100 features of which 5 matter
(samples > features), 1000 features of which 5 matter (features ≫ samples), and 1000 features of
which 600 matter (more relevant features than samples). Each is fitted full-batch on the mean
squared error f(w) = ‖Xw − y‖²/n from the problem's own initialization (``build_model(0)``) with
:class:`optimlab.optim.SGD` at step γ = 0.9/L (L = 2‖X‖₂²/n, the gradient's Lipschitz constant),
1000 steps, and a sweep of strengths κ:

* ``l1=κ`` — SGD's proximal L1 option: after the gradient step, soft-thresholding
  w ← sign(w)·max(|w| − γκ, 0) (ISTA, which minimizes f(w) + κ‖w‖₁);
* ``weight_decay=κ`` — coupled L2, g ← ∇f + κw (minimizes f(w) + ½κ‖w‖²);
* none; and, at κ = 0.03, the L1 penalty κ‖w‖₁ added to the loss and differentiated by autograd
  (its subgradient κ·sign(w): what one writes in plain PyTorch).

Every run is one parameter group of one SGD optimizer (the groups do not interact). Numbers: the
fraction of weights exactly 0 per variant and strength, the weights' norm, the validation MSE, and
the fraction of the relevant features kept (support recall).

References: Tibshirani, "Regression Shrinkage and Selection via the Lasso", JRSS B 1996; Parikh &
Boyd, "Proximal Algorithms", 2014, §6.5.2 (soft thresholding); Tsuruoka, Tsujii & Ananiadou,
"Stochastic Gradient Descent Training for L1-regularized Log-linear Models", ACL 2009 (subgradient
steps do not give exact zeros).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from optimlab.lab.problems import get_problem
from optimlab.learn.demo import Claim, Demo, Figure, Outcome, Verdict, text
from optimlab.optim import SGD
from optimlab.reports.figures.lines import Lines, Panel, Series

__all__ = ["DEMO", "REGIMES", "fit"]

POST = "001_8a28b8e74910af88.txt"
STRENGTHS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
HEADLINE = 0.03  #: the strength of the headline numbers and of the stem plot
STEPS = 1000
#: regime name → the problem's options
REGIMES = {
    "samples>features": "sparse-regression:features=100,relevant=5",
    "features>>samples": "sparse-regression:features=1000,relevant=5",
    "relevant>samples": "sparse-regression:features=1000,relevant=600",
}

L2_NOT_ZERO = Claim(
    POST,
    "它只是使得模型的参数值趋近于0,而不是等于0",
    "It (L2) only makes the model's parameters approach 0, not equal 0.",
)
L1_ZEROS = Claim(
    POST,
    "L1正则化的作用是使得大部分模型参数的值等于0",
    "What L1 regularization does is make most of the model's parameters equal to 0.",
)
WIDE = Claim(
    POST,
    "在模型特征个数远大于训练样本数的情况下,如果我们事先知道模型的特征中只有少量相关特征(即参数值不为0),"
    "并且相关特征的个数少于训练样本数,那么L1的效果远好于L2。",
    "When the model has far more features than training samples, if we know beforehand that only a few "
    "features are relevant (i.e. their parameters are non-zero) and there are fewer relevant features "
    "than training samples, L1 works far better than L2.",
)
DENSE = Claim(
    POST,
    "当相关特征数远大于训练样本数时,无论是L1还是L2,都无法取得很好的效果。",
    "When the relevant features far outnumber the training samples, neither L1 nor L2 can do well.",
)


def _variants() -> dict[str, dict[str, float]]:
    """Variant name → SGD hyperparameters of its parameter group."""
    found: dict[str, dict[str, float]] = {"none": {}}
    found |= {f"l1 {k:g}": {"l1": k} for k in STRENGTHS}
    found |= {f"l2 {k:g}": {"weight_decay": k} for k in STRENGTHS}
    found["l1 in loss"] = {}
    return found


def fit(spec: str, steps: int = STEPS) -> dict[str, Any]:
    """Fit every variant of :func:`_variants` on problem ``spec``; per variant its final weights,
    training and validation MSE, fraction of exact zeros and support recall."""
    problem: Any = get_problem(spec)
    x, y = problem.x.double(), problem.y.double()
    x_val, y_val = problem.x_val.double(), problem.y_val.double()
    n = len(x)
    lr = float(0.9 * n / (2 * torch.linalg.matrix_norm(x, 2) ** 2))
    start = problem.build_model(0).linear.weight.detach().flatten().double()
    variants = _variants()
    weights = [start.clone().requires_grad_(True) for _ in variants]
    opt = SGD(
        [{"params": [w], **hyper} for w, hyper in zip(weights, variants.values(), strict=True)],
        lr=lr,
        engine="eager",  # a few hundred small steps: no compilation
    )
    in_loss = list(variants).index("l1 in loss")
    for _ in range(steps):
        opt.zero_grad()
        stacked = torch.stack(weights, 1)
        loss = ((x @ stacked - y[:, None]) ** 2).mean(0).sum() + HEADLINE * weights[in_loss].abs().sum()
        loss.backward()
        opt.step()
    w = torch.stack(weights, 1).detach()
    train = ((x @ w - y[:, None]) ** 2).mean(0)
    val = ((x_val @ w - y_val[:, None]) ** 2).mean(0)
    out: dict[str, Any] = {
        "lr": lr,
        "w_true": problem.w_true.numpy().astype(float),
        "val_var": float(y_val.var()),
    }
    for i, name in enumerate(variants):
        col = w[:, i]
        out[name] = {
            "w": col.numpy(),
            "train": float(train[i]),
            "val": float(val[i]),
            "zero_fraction": float((col == 0).double().mean()),
            "support_recall": float((col[problem.support] != 0).double().mean()),
            "norm": float(col.norm()),
        }
    return out


def _best(fits: dict[str, Any], kind: str) -> tuple[float, float]:
    """(strength, validation MSE) of the best strength of ``kind`` ("l1" or "l2")."""
    return min(((k, fits[f"{kind} {k:g}"]["val"]) for k in STRENGTHS), key=lambda kv: kv[1])


def _run() -> Outcome:
    fits = {name: fit(spec) for name, spec in REGIMES.items()}
    base = fits["samples>features"]
    h = f"{HEADLINE:g}"
    regimes: dict[str, Any] = {}
    for name, f in fits.items():
        best_l1, best_l2 = _best(f, "l1"), _best(f, "l2")
        regimes[name] = {
            "spec": REGIMES[name],
            "lr": f["lr"],
            "val_variance": f["val_var"],
            "val_loss": {"none": f["none"]["val"], "l1": best_l1[1], "l2": best_l2[1]},
            "best_strength": {"l1": best_l1[0], "l2": best_l2[0]},
            "zero_fraction": {
                kind: {f"{k:g}": f[f"{kind} {k:g}"]["zero_fraction"] for k in STRENGTHS}
                for kind in ("l1", "l2")
            },
            "support_recall": {"l1": f[f"l1 {best_l1[0]:g}"]["support_recall"]},
        }
    numbers = {
        "strength": HEADLINE,
        "zero_fraction": {
            "l1": base[f"l1 {h}"]["zero_fraction"],
            "l2": base[f"l2 {h}"]["zero_fraction"],
            "none": base["none"]["zero_fraction"],
            "l1_in_loss": base["l1 in loss"]["zero_fraction"],
        },
        "min_abs_weight": {
            "l2": float(np.abs(base[f"l2 {h}"]["w"]).min()),
            "l1_in_loss": float(np.abs(base["l1 in loss"]["w"]).min()),
        },
        "weight_norm": {
            "none": base["none"]["norm"],
            **{f"l2 {k:g}": base[f"l2 {k:g}"]["norm"] for k in STRENGTHS},
        },
        "regimes": regimes,
    }
    verdicts = _verdicts(numbers, base)
    figure = _figure(fits)
    caption = text(
        f"Left: the 100 final weights (samples > features, strength κ = {h}) against the true w* — "
        "L1 leaves only the relevant ones, L2 and no regularization keep every weight non-zero. Middle: "
        "the fraction of weights exactly 0 against κ (L2 stays at 0). Right: the validation MSE against κ "
        "with 1000 features and 200 samples (dashed: no regularization).",
        f"左：样本多于特征时（强度 κ = {h}）训练后的 100 个权重与真实的 w* —— L1 只留下相关的权重，"
        "L2 和不加正则时每个权重都不为 0。中：恰好为 0 的权重比例随 κ 的变化（L2 一直是 0）。"
        "右：1000 个特征、200 个样本时验证集 MSE 随 κ 的变化（虚线：不加正则）。",
    )
    columns = ["regime", "val MSE none", "best L1 (κ)", "best L2 (κ)", "zeros L1", "zeros L2", "recall L1"]
    rows = []
    for name, r in regimes.items():
        k1, k2 = r["best_strength"]["l1"], r["best_strength"]["l2"]
        rows.append(
            [
                name,
                r["val_loss"]["none"],
                f"{r['val_loss']['l1']:.4g} ({k1:g})",
                f"{r['val_loss']['l2']:.4g} ({k2:g})",
                r["zero_fraction"]["l1"][f"{k1:g}"],
                r["zero_fraction"]["l2"][f"{k2:g}"],
                r["support_recall"]["l1"],
            ]
        )
    return Outcome(numbers, verdicts, [Figure(figure, caption)], columns, rows)


def _verdicts(numbers: dict[str, Any], base: dict[str, Any]) -> list[Verdict]:
    zf, h = numbers["zero_fraction"], f"{HEADLINE:g}"
    base_r, wide, dense = (numbers["regimes"][k] for k in REGIMES)
    l2_zeros = [z for r in numbers["regimes"].values() for z in r["zero_fraction"]["l2"].values()]
    norms = [numbers["weight_norm"][f"l2 {k:g}"] for k in STRENGTHS]
    l2_shrinks = all(a > b for a, b in zip([numbers["weight_norm"]["none"], *norms], norms, strict=False))
    verdicts = []
    if max(l2_zeros) == 0 and l2_shrinks:
        l2 = Verdict(
            L2_NOT_ZERO,
            "confirmed",
            text(
                "Not one weight is exactly 0 with L2 at any strength in any regime (max fraction "
                f"{max(l2_zeros):g}), "
                f"and the smallest |w| at κ = {h} is {numbers['min_abs_weight']['l2']:.1e}; yet the "
                "norm ‖w‖ falls "
                f"from {numbers['weight_norm']['none']:.3f} (none) to "
                + ", ".join(f"{n:.3f}" for n in norms)
                + " for κ = "
                + ", ".join(f"{k:g}" for k in STRENGTHS)
                + ".",
                f"任何强度、任何情形下，L2 都没有让一个权重恰好等于 0（比例最大为 {max(l2_zeros):g}），"
                f"κ = {h} 时"
                f"最小的 |w| 是 {numbers['min_abs_weight']['l2']:.1e}；但权重的范数 ‖w‖ 从不加正则的 "
                f"{numbers['weight_norm']['none']:.3f} 降到 "
                + "、".join(f"{n:.3f}" for n in norms)
                + "（κ = "
                + "、".join(f"{k:g}" for k in STRENGTHS)
                + "）。",
            ),
        )
    else:
        l2 = Verdict(
            L2_NOT_ZERO,
            "wrong",
            text(
                f"L2 left a fraction {max(l2_zeros):g} of weights exactly 0, or did not shrink the norm.",
                f"L2 让 {max(l2_zeros):g} 的权重恰好为 0，或者没有缩小范数。",
            ),
            correction=text(
                "L2's minimizer (ridge regression) has no exact zeros; it shrinks every weight by a factor.",
                "L2 的最优解（岭回归）没有恰好为 0 的权重；它按比例缩小每个权重。",
            ),
            reference="Hoerl & Kennard 1970, ridge regression",
        )
    verdicts.append(l2)
    z1 = base_r["zero_fraction"]["l1"]
    sweep_en = ", ".join(f"{z1[f'{k:g}']:.2f} at κ = {k:g}" for k in STRENGTHS)
    sweep_zh = "、".join(f"κ = {k:g} 时 {z1[f'{k:g}']:.2f}" for k in STRENGTHS)
    if zf["l1"] >= 0.5:
        kind = "partly" if zf["l1_in_loss"] < 0.05 or min(z1.values()) < 0.5 else "confirmed"
        verdicts.append(
            Verdict(
                L1_ZEROS,
                kind,  # type: ignore[arg-type]
                text(
                    f"With SGD's proximal l1 option, {zf['l1']:.0%} of the 100 weights end exactly 0 at "
                    f"κ = {h} "
                    f"(95% are irrelevant), and every relevant one is kept (recall "
                    f"{base[f'l1 {h}']['support_recall']:.2f}). But how many depends on κ: {sweep_en}. "
                    "And the "
                    f"same penalty put into the loss (autograd's subgradient κ·sign(w), plain SGD) leaves "
                    f"{zf['l1_in_loss']:.0%} zeros: its smallest |w| is "
                    f"{numbers['min_abs_weight']['l1_in_loss']:.1e}"
                    ", jittering around 0.",
                    f"用 SGD 的近端 l1 选项，κ = {h} 时 100 个权重中有 {zf['l1']:.0%} 恰好为 0（其中 "
                    "95% 本来就无关），"
                    f"相关的权重全部保留（召回率 {base[f'l1 {h}']['support_recall']:.2f}）。但 0 "
                    "的多少取决于 κ："
                    f"{sweep_zh}。而把同一个惩罚直接加进损失（autograd 求出次梯度 κ·sign(w)，普通 SGD "
                    "更新），"
                    f"恰好为 0 的只有 {zf['l1_in_loss']:.0%}：最小的 |w| 是 "
                    f"{numbers['min_abs_weight']['l1_in_loss']:.1e}，在 0 附近来回抖动。",
                ),
                correction=text(
                    "L1's minimizer (the lasso) has exact zeros: a weight stays at 0 while its loss "
                    "gradient is "
                    "below κ in magnitude. How many are zero is set by κ and by the data (here about the "
                    "irrelevant features once κ is large enough), not 'most' by nature. And an "
                    "optimizer reaches "
                    "those zeros only with a proximal (soft-thresholding) step or coordinate descent — "
                    "adding "
                    "κ‖w‖₁ to the loss and stepping with SGD or Adam gives small, not zero, weights.",
                    "L1 的最优解（lasso）确实有恰好为 0 的权重：只要某个权重的损失梯度绝对值小于 κ，"
                    "它就停在 0。"
                    "但 0 的个数由 κ 和数据决定（这里 κ 足够大时约等于无关特征的个数），"
                    "并不是天生就“大部分”。"
                    "而且优化器只有用近端（软阈值）步或坐标下降才能真正到达 0——把 κ‖w‖₁ 加进损失再用 SGD 或 "
                    "Adam 更新，得到的只是很小、而不是等于 0 的权重。",
                ),
                reference="Tibshirani 1996 (lasso); Parikh & Boyd 2014, Proximal Algorithms §6.5.2; "
                "Tsuruoka et al., ACL 2009",
            )
        )
    else:
        verdicts.append(
            Verdict(
                L1_ZEROS,
                "wrong",
                text(
                    f"Only {zf['l1']:.0%} of the weights are exactly 0 with L1 at κ = {h}.",
                    f"κ = {h} 时 L1 只让 {zf['l1']:.0%} 的权重恰好为 0。",
                ),
                correction=text(
                    "The lasso's zeros need a proximal step and a large enough κ.",
                    "lasso 的 0 需要近端步和足够大的 κ。",
                ),
                reference="Tibshirani 1996 (lasso); Parikh & Boyd 2014, Proximal Algorithms §6.5.2",
            )
        )
    wv = wide["val_loss"]
    ratio = wv["l2"] / wv["l1"]
    wide_en = (
        "With 1000 features, 200 samples and 5 relevant features, the best L1 (κ = "
        f"{wide['best_strength']['l1']:g}) "
        f"reaches a validation MSE of {wv['l1']:.4f}, the best L2 (κ = {wide['best_strength']['l2']:g}) "
        f"{wv['l2']:.3f} — {ratio:.0f}× worse, hardly better than none ({wv['none']:.3f}; predicting 0 "
        "scores "
        f"{wide['val_variance']:.2f})."
    )
    wide_zh = (
        f"1000 个特征、200 个样本、5 个相关特征时，最好的 L1（κ = {wide['best_strength']['l1']:g}）"
        "验证集 MSE 为 "
        f"{wv['l1']:.4f}，最好的 L2（κ = {wide['best_strength']['l2']:g}）为 {wv['l2']:.3f}——差了 "
        f"{ratio:.0f} 倍，"
        f"几乎不比不加正则（{wv['none']:.3f}）好（全部预测 0 的 MSE 是 {wide['val_variance']:.2f}）。"
    )
    if ratio >= 10:
        verdicts.append(Verdict(WIDE, "confirmed", text(wide_en, wide_zh)))
    else:
        verdicts.append(
            Verdict(
                WIDE,
                "wrong",
                text(wide_en, wide_zh),
                correction=text(
                    "Here L1 was not far better than L2.",
                    "这里 L1 并没有远好于 L2。",
                ),
                reference="Hastie, Tibshirani & Wainwright 2015, Statistical Learning with Sparsity, ch. 2",
            )
        )
    dv = dense["val_loss"]
    r2 = {k: 1 - dv[k] / dense["val_variance"] for k in ("l1", "l2")}
    dense_en = (
        f"With 600 relevant features of 1000 and 200 samples, the best validation MSE is {dv['l1']:.0f} "
        "(L1) and "
        f"{dv['l2']:.0f} (L2), against {dense['val_variance']:.0f} for predicting 0: R² = {r2['l1']:.2f} and "
        f"{r2['l2']:.2f}."
    )
    dense_zh = (
        f"1000 个特征中 600 个相关、200 个样本时，最好的验证集 MSE 分别是 {dv['l1']:.0f}（L1）和 "
        f"{dv['l2']:.0f}（L2），"
        f"而全部预测 0 是 {dense['val_variance']:.0f}：R² 只有 {r2['l1']:.2f} 和 {r2['l2']:.2f}。"
    )
    if max(r2.values()) < 0.5:
        verdicts.append(Verdict(DENSE, "confirmed", text(dense_en, dense_zh)))
    else:
        verdicts.append(
            Verdict(
                DENSE,
                "wrong",
                text(dense_en, dense_zh),
                correction=text("One of them still predicted well here.", "这里仍有一种正则化预测得不错。"),
                reference="Hastie, Tibshirani & Wainwright 2015, Statistical Learning with Sparsity, ch. 11",
            )
        )
    return verdicts


def _figure(fits: dict[str, Any]) -> Lines:
    base, wide = fits["samples>features"], fits["features>>samples"]
    h = f"{HEADLINE:g}"
    idx = np.arange(len(base["w_true"]))
    stems = [
        Series("true w*", idx, base["w_true"], mode="markers"),
        Series("none", idx, base["none"]["w"], mode="stem"),
        Series(f"L2 (weight_decay={h})", idx, base[f"l2 {h}"]["w"], mode="stem"),
        Series(f"L1 (l1={h})", idx, base[f"l1 {h}"]["w"], mode="stem"),
    ]
    ks = np.array(STRENGTHS)
    zeros = []
    for name, f in (("100 features", base), ("1000 features", wide)):
        dash = "solid" if name == "100 features" else "dash"
        for kind, label in (("l1", "L1"), ("l2", "L2")):
            y = [f[f"{kind} {k:g}"]["zero_fraction"] for k in STRENGTHS]
            zeros.append(Series(f"{label}, {name}", ks, y, mode="lines+markers", dash=dash))
    val = [
        Series("L1, 1000 features", ks, [wide[f"l1 {k:g}"]["val"] for k in STRENGTHS], mode="lines+markers"),
        Series("L2, 1000 features", ks, [wide[f"l2 {k:g}"]["val"] for k in STRENGTHS], mode="lines+markers"),
    ]
    return Lines(
        panels=[
            Panel(f"final weights, 100 features, κ = {h}", stems, "feature", "w"),
            Panel("fraction of exact zeros", zeros, "strength κ", "fraction w = 0", log_x=True),
            Panel(
                "validation MSE, 1000 features, 200 samples",
                val,
                "strength κ",
                "validation MSE",
                log_x=True,
                log_y=True,
                hline=(wide["none"]["val"], "none"),
            ),
        ],
        title="L1 vs L2 on sparse-regression (seed 001)",
    )


DEMO = Demo(
    name="l1-vs-l2",
    order=8,
    title=text("L1 vs L2: exact zeros or small weights", "L1 与 L2：恰好为 0，还是只是变小"),
    summary=text(
        "Sparse regression fitted with SGD's proximal l1, with weight_decay (L2) and without, over a sweep "
        "of strengths, with 100 and 1000 features for 200 samples.",
        "用 SGD 的近端 l1、weight_decay（L2）和不加正则分别拟合稀疏回归，扫描正则强度，"
        "特征数取 100 和 1000、样本数为 200。",
    ),
    claims=(L2_NOT_ZERO, L1_ZEROS, WIDE, DENSE),
    run=_run,
)
