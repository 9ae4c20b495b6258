"""``weight-decay``: on 10 noisy points an MLP overfits; weight decay holds its weights and its
validation gap down — and under Adam, L2 in the gradient (Adam's ``weight_decay``) is not the
decoupled decay of AdamW.

Data (seeded): 10 training points x = linspace(−1, 1), y = 1.5x + N(0, 0.5²), and 200 validation
points with fresh noise (the best possible validation MSE is the noise variance, 0.25). Model: an
MLP 1 → 64 → 64 → 1 (ReLU), the same initialization for every variant, trained full-batch on the
MSE for 1000 steps with :mod:`optimlab.optim`:

* ``sgd`` / ``sgd+l2`` — seed 001's two networks: SGD(lr=0.01, momentum=0.9), the second with
  ``weight_decay=1e-2``; and ``sgd+l2 in loss``, plain SGD on MSE + ½λ‖θ‖² (λ = 1e-2);
* ``adam`` — Adam(lr=1e-3); ``adam+l2`` — Adam's ``weight_decay=λ`` (coupled: g ← ∇ + λθ, then
  divided by √v̂ + ε); ``adamw`` — AdamW's decoupled decay θ ← θ − γλθ, for λ in a sweep; the
  headline of each is its λ with the lowest final validation MSE.

Each model's parameters are one flat tensor (its layers are views of it), so an optimizer step is
one rule call per model. Numbers: final training and validation MSE, the validation gap (validation
− training MSE) and the parameters' norm ‖θ‖ per variant.

References: Krogh & Hertz, "A Simple Weight Decay Can Improve Generalization", NIPS 1991;
Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019 (§2: L2 and weight decay
coincide for SGD, not for adaptive methods; AdamW).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from optimlab.learn.demo import Claim, Demo, Figure, Outcome, Verdict, text
from optimlab.optim import SGD, Adam, AdamW
from optimlab.reports.figures.lines import Lines, Panel, Series

__all__ = ["DEMO", "data", "train"]

POST_001 = "001_8a28b8e74910af88.txt"
POST_003 = "003_2ca240df3290a5bb.txt"
STEPS = 1000
EVERY = 20
HIDDEN = 64
SGD_DECAY = 1e-2  #: seed 001's weight_decay
LAMBDAS = (0.01, 0.1, 1.0, 3.0, 10.0, 30.0)  #: the sweep of Adam+L2's and AdamW's λ (its best inside)
NOISE = 0.5

BALANCE = Claim(
    POST_001,
    "weight_decay就是找一个平衡,不至于过度追求损失的降低。让权值参数不断减小。防止过拟合现象。",
    "weight_decay strikes a balance, so that lowering the loss is not pursued too far. It keeps making the "
    "weights smaller. It prevents overfitting.",
)
SAME_AS_L2 = Claim(
    POST_001,
    "L2正则化:又称weight decay(权值衰减),知道带上权值衰减就是L2正则化就行了",
    "L2 regularization, also called weight decay: just know that adding weight decay is L2 regularization.",
)
ADAMW = Claim(
    POST_003,
    "AdamW是对Adam的改进版本,在参数更新时对权重衰减进行更准确的处理,可以提高模型的泛化性能。",
    "AdamW is an improved Adam: it handles weight decay more correctly in the parameter update, which "
    "can improve the model's generalization.",
)


def data() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """10 training and 200 validation points of y = 1.5x + N(0, 0.5²) on [−1, 1] (seeded)."""
    g = torch.Generator().manual_seed(0)
    x = torch.linspace(-1, 1, 10).unsqueeze(1)
    y = 1.5 * x + NOISE * torch.randn(x.shape, generator=g)
    x_val = torch.linspace(-1, 1, 200).unsqueeze(1)
    y_val = 1.5 * x_val + NOISE * torch.randn(x_val.shape, generator=g)
    return x, y, x_val, y_val


class _FlatMLP(nn.Module):
    """MLP 1 → H → H → 1 (ReLU) whose parameters are one flat tensor ``theta``."""

    def __init__(self) -> None:
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            layers = [nn.Linear(1, HIDDEN), nn.Linear(HIDDEN, HIDDEN), nn.Linear(HIDDEN, 1)]
        self.shapes = [p.shape for layer in layers for p in (layer.weight, layer.bias)]
        self.theta = nn.Parameter(
            torch.cat([p.detach().flatten() for layer in layers for p in layer.parameters()])
        )

    def forward(self, x: Tensor) -> Tensor:
        parts, start = [], 0
        for shape in self.shapes:
            n = math.prod(shape)
            parts.append(self.theta[start : start + n].view(shape))
            start += n
        w1, b1, w2, b2, w3, b3 = parts
        h = torch.relu(x @ w1.T + b1)
        h = torch.relu(h @ w2.T + b2)
        return h @ w3.T + b3


def _variants() -> dict[str, tuple[type, dict[str, Any], float]]:
    """Variant → (optimizer class, its arguments, the ½λ‖θ‖² added to the loss)."""
    found: dict[str, tuple[type, dict[str, Any], float]] = {
        "sgd": (SGD, {"lr": 0.01, "momentum": 0.9}, 0.0),
        "sgd+l2": (SGD, {"lr": 0.01, "momentum": 0.9, "weight_decay": SGD_DECAY}, 0.0),
        "sgd+l2 in loss": (SGD, {"lr": 0.01, "momentum": 0.9}, SGD_DECAY),
        "adam": (Adam, {"lr": 1e-3}, 0.0),
    }
    for lam in LAMBDAS:
        found[f"adam+l2 {lam:g}"] = (Adam, {"lr": 1e-3, "weight_decay": lam}, 0.0)
        found[f"adamw {lam:g}"] = (AdamW, {"lr": 1e-3, "weight_decay": lam}, 0.0)
    return found


def train(steps: int = STEPS) -> dict[str, dict[str, Any]]:
    """Train every variant of :func:`_variants`; per variant the curves (every ``EVERY`` steps) of
    training MSE, validation MSE and ‖θ‖, and the final flat parameters."""
    x, y, x_val, y_val = data()
    variants = _variants()
    models = {name: _FlatMLP() for name in variants}
    opts = {
        name: cls([models[name].theta], engine="eager", **kwargs)  # small steps: no compilation
        for name, (cls, kwargs, _) in variants.items()
    }
    curves: dict[str, dict[str, Any]] = {
        name: {"step": [], "train": [], "val": [], "norm": []} for name in variants
    }
    for step in range(steps + 1):
        if step % EVERY == 0:
            with torch.no_grad():
                for name, model in models.items():
                    c = curves[name]
                    c["step"].append(step)
                    c["train"].append(float(((model(x) - y) ** 2).mean()))
                    c["val"].append(float(((model(x_val) - y_val) ** 2).mean()))
                    c["norm"].append(float(model.theta.norm()))
        if step == steps:
            break
        for opt in opts.values():
            opt.zero_grad()
        loss = torch.zeros(())
        for name, model in models.items():
            loss = loss + ((model(x) - y) ** 2).mean() + 0.5 * variants[name][2] * model.theta.pow(2).sum()
        loss.backward()
        for opt in opts.values():
            opt.step()
    for name, model in models.items():
        curves[name]["theta"] = model.theta.detach().clone()
    return curves


def _best(curves: dict[str, dict[str, Any]], kind: str) -> float:
    """The λ of ``kind`` ("adam+l2" or "adamw") with the lowest final validation MSE."""
    return min(LAMBDAS, key=lambda lam: curves[f"{kind} {lam:g}"]["val"][-1])


def _run() -> Outcome:
    curves = train()
    best = {kind: _best(curves, kind) for kind in ("adam+l2", "adamw")}
    names = {
        "sgd": "sgd",
        "sgd+l2": "sgd+l2",
        "adam": "adam",
        "adam+l2": f"adam+l2 {best['adam+l2']:g}",
        "adamw": f"adamw {best['adamw']:g}",
    }
    final = {k: {q: curves[v][q][-1] for q in ("train", "val", "norm")} for k, v in names.items()}
    sweep = {
        kind: {
            f"{lam:g}": {
                "val_loss": curves[f"{kind} {lam:g}"]["val"][-1],
                "val_gap": curves[f"{kind} {lam:g}"]["val"][-1] - curves[f"{kind} {lam:g}"]["train"][-1],
                "weight_norm": curves[f"{kind} {lam:g}"]["norm"][-1],
            }
            for lam in LAMBDAS
        }
        for kind in ("adam+l2", "adamw")
    }
    in_loss_diff = float((curves["sgd+l2"]["theta"] - curves["sgd+l2 in loss"]["theta"]).abs().max())
    numbers = {
        "val_gap": {k: f["val"] - f["train"] for k, f in final.items()},
        "weight_norm": {k: f["norm"] for k, f in final.items()},
        "val_loss": {k: f["val"] for k, f in final.items()},
        "train_loss": {k: f["train"] for k, f in final.items()},
        "best_lambda": best,
        "sweep": sweep,
        "noise_variance": NOISE**2,
        "sgd_l2_vs_loss_penalty_max_diff": in_loss_diff,
        "initial_norm": curves["sgd"]["norm"][0],
    }
    verdicts = _verdicts(numbers)
    figure = _figure(curves, names)
    caption = text(
        "Left: training (dashed) and validation (solid) MSE of seed 001's two SGD networks, without and with "
        "weight_decay=1e-2. Middle: the same for Adam, Adam with L2 (weight_decay) and AdamW, each at "
        "its best "
        "λ. Right: the parameters' norm ‖θ‖ as they train. The grey line is the noise variance 0.25, "
        "the best "
        "any model can do on validation.",
        "左：种子文章 001 的两个 SGD 网络（不加和加 weight_decay=1e-2）的训练 MSE（虚线）与验证 MSE（实线）。"
        "中：Adam、加 L2（weight_decay）的 Adam 和 AdamW，各取最好的 λ。右：训练过程中参数的范数 ‖θ‖。"
        "灰线是噪声方差 0.25，也就是任何模型在验证集上能达到的最好值。",
    )
    columns = ["variant", "λ", "train MSE", "val MSE", "val gap", "‖θ‖"]
    lam = {"sgd": "0", "sgd+l2": f"{SGD_DECAY:g}", "adam": "0", **{k: f"{best[k]:g}" for k in best}}
    rows = [
        [k, lam[k], final[k]["train"], final[k]["val"], numbers["val_gap"][k], final[k]["norm"]]
        for k in final
    ]
    return Outcome(numbers, verdicts, [Figure(figure, caption)], columns, rows)


def _verdicts(numbers: dict[str, Any]) -> list[Verdict]:
    gap, norm, val, tr = (
        numbers["val_gap"],
        numbers["weight_norm"],
        numbers["val_loss"],
        numbers["train_loss"],
    )
    verdicts = []
    balance_en = (
        f"SGD with weight_decay=1e-2 ends with ‖θ‖ = {norm['sgd+l2']:.2f} against {norm['sgd']:.2f} without "
        f"(it started at {numbers['initial_norm']:.2f}); it gives up training loss ({tr['sgd+l2']:.3f} "
        "against "
        f"{tr['sgd']:.4f}) and gains validation loss ({val['sgd+l2']:.3f} against {val['sgd']:.3f}): the gap "
        f"between them falls from {gap['sgd']:.3f} to {gap['sgd+l2']:.3f}."
    )
    balance_zh = (
        f"加 weight_decay=1e-2 的 SGD 最终 ‖θ‖ = {norm['sgd+l2']:.2f}，不加的是 {norm['sgd']:.2f}"
        f"（初始为 {numbers['initial_norm']:.2f}）；它让出了一些训练损失（{tr['sgd+l2']:.3f}，不加的是 "
        f"{tr['sgd']:.4f}），换来更低的验证损失（{val['sgd+l2']:.3f} 对 {val['sgd']:.3f}）：两者之差从 "
        f"{gap['sgd']:.3f} 降到 {gap['sgd+l2']:.3f}。"
    )
    if norm["sgd+l2"] < norm["sgd"] and gap["sgd+l2"] < gap["sgd"] and val["sgd+l2"] < val["sgd"]:
        verdicts.append(Verdict(BALANCE, "confirmed", text(balance_en, balance_zh)))
    else:
        verdicts.append(
            Verdict(
                BALANCE,
                "wrong",
                text(balance_en, balance_zh),
                correction=text(
                    "Here weight decay did not reduce overfitting; its strength must be tuned.",
                    "这里权重衰减没有减轻过拟合；它的强度需要调。",
                ),
                reference="Krogh & Hertz, NIPS 1991",
            )
        )
    diff = numbers["sgd_l2_vs_loss_penalty_max_diff"]
    pairs = [
        (lam, numbers["sweep"]["adam+l2"][lam], numbers["sweep"]["adamw"][lam])
        for lam in numbers["sweep"]["adamw"]
    ]
    verdicts.append(
        Verdict(
            SAME_AS_L2,
            "partly",
            text(
                f"For SGD it is exact: SGD(weight_decay=1e-2) and plain SGD on MSE + ½·1e-2·‖θ‖² end "
                f"{diff:.1e} apart (identical up to float rounding). For Adam they differ: at the same λ, "
                "Adam's "
                "weight_decay (L2 in the gradient) and AdamW's decoupled decay end at ‖θ‖ = "
                + ", ".join(
                    f"{a['weight_norm']:.2f} vs {w['weight_norm']:.2f} (λ = {lam})" for lam, a, w in pairs
                )
                + ".",
                f"对 SGD 完全成立：SGD(weight_decay=1e-2) 与在 MSE + ½·1e-2·‖θ‖² 上跑普通 SGD，最终参数只差 "
                f"{diff:.1e}（浮点舍入）。对 Adam 就不同了：同样的 λ 下，Adam 的 weight_decay（把 L2 "
                "加进梯度）和 "
                "AdamW 的解耦衰减最终的 ‖θ‖ 分别是 "
                + "、".join(
                    f"{a['weight_norm']:.2f} 与 {w['weight_norm']:.2f}（λ = {lam}）" for lam, a, w in pairs
                )
                + "。",
            ),
            correction=text(
                "Weight decay (θ ← θ − γλθ) equals L2 regularization (adding ½λ‖θ‖² to the loss) only "
                "for SGD. In "
                "an adaptive method the L2 gradient λθ is divided by √v̂ like the rest, so weights with "
                "large "
                "gradients are hardly decayed; AdamW decays every weight by γλθ outside the adaptive step. "
                "torch's Adam(weight_decay=λ) is L2; AdamW(weight_decay=λ) is weight decay, on a "
                "different scale "
                "(its λ is multiplied by the learning rate).",
                "权重衰减（θ ← θ − γλθ）只在 SGD 中等同于 L2 正则（在损失上加 ½λ‖θ‖²）。在自适应方法里，"
                "L2 的梯度 λθ "
                "和其余梯度一起被除以 √v̂，梯度大的权重几乎不被衰减；AdamW 则在自适应步之外对每个权重按 "
                "γλθ 衰减。"
                "torch 的 Adam(weight_decay=λ) 是 L2；AdamW(weight_decay=λ) 才是权重衰减，而且尺度不同"
                "（它的 λ 要乘以学习率）。",
            ),
            reference="Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019, §2; "
            "torch.optim.Adam / AdamW docs",
        )
    )
    sweep = numbers["sweep"]
    best = numbers["best_lambda"]
    sweep_en = "; ".join(
        f"{kind}: " + ", ".join(f"{s['val_loss']:.3f} (λ = {lam})" for lam, s in sweep[kind].items())
        for kind in ("adam+l2", "adamw")
    )
    sweep_zh = "；".join(
        f"{kind}：" + "、".join(f"{s['val_loss']:.3f}（λ = {lam}）" for lam, s in sweep[kind].items())
        for kind in ("adam+l2", "adamw")
    )
    evidence = text(
        f"Validation MSE after {STEPS} steps (noise floor {numbers['noise_variance']:.2f}): Adam "
        f"{val['adam']:.3f}; {sweep_en}. At its best λ ({best['adamw']:g}) AdamW reaches {val['adamw']:.3f} "
        f"(gap {gap['adamw']:.3f}), Adam with L2 at its best λ ({best['adam+l2']:g}) {val['adam+l2']:.3f} "
        f"(gap {gap['adam+l2']:.3f}).",
        f"训练 {STEPS} 步后的验证 MSE（噪声下限 {numbers['noise_variance']:.2f}）：Adam {val['adam']:.3f}；"
        f"{sweep_zh}。AdamW 在最好的 λ（{best['adamw']:g}）下为 {val['adamw']:.3f}（差距 "
        f"{gap['adamw']:.3f}），"
        f"加 L2 的 Adam 在最好的 λ（{best['adam+l2']:g}）下为 {val['adam+l2']:.3f}（差距 "
        f"{gap['adam+l2']:.3f}）。",
    )
    if val["adamw"] < val["adam+l2"] and val["adamw"] < val["adam"]:
        verdicts.append(Verdict(ADAMW, "confirmed", evidence))
    else:
        verdicts.append(
            Verdict(
                ADAMW,
                "partly",
                evidence,
                correction=text(
                    "AdamW does apply weight decay as intended (decoupled from the adaptive step, so "
                    "every weight "
                    "decays at the same relative rate γλ), and it beats no decay once λ is tuned. But "
                    "it is not "
                    "better by default: its λ lives on another scale than Adam's L2 (γλ per step), so "
                    "it must be "
                    "tuned again, and whether it generalizes better than a tuned L2 depends on the problem — "
                    "Loshchilov & Hutter's gains are on image classification, and here a tuned L2 does "
                    "as well "
                    "or better.",
                    "AdamW 确实按本意施加权重衰减（与自适应步解耦，每个权重都以相同的相对速率 γλ 衰减），"
                    "调好 λ 后也优于不加衰减。但它并不天然更好：它的 λ 与 Adam 的 L2 "
                    "不在一个尺度上（每步衰减 γλ），"
                    "需要重新调；它是否比调好的 L2 泛化更好取决于问题——Loshchilov 与 Hutter "
                    "的收益来自图像分类，"
                    "而在这里调好的 L2 一样好甚至更好。",
                ),
                reference="Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019, §2–4",
            )
        )
    return verdicts


def _figure(curves: dict[str, dict[str, Any]], names: dict[str, str]) -> Lines:
    def pair(label: str, key: str) -> list[Series]:
        c = curves[key]
        return [
            Series(f"{label} val", c["step"], c["val"]),
            Series(f"{label} train", c["step"], c["train"], dash="dash"),
        ]

    floor = (NOISE**2, "noise 0.25")
    labels = {
        "sgd": "SGD",
        "sgd+l2": "SGD wd=1e-2",
        "adam": "Adam",
        "adam+l2": f"Adam+L2 λ={names['adam+l2'].split()[-1]}",
        "adamw": f"AdamW λ={names['adamw'].split()[-1]}",
    }
    sgd = pair(labels["sgd"], "sgd") + pair(labels["sgd+l2"], "sgd+l2")
    adam = [s for k in ("adam", "adam+l2", "adamw") for s in pair(labels[k], names[k])]
    norms = [Series(f"{labels[k]} val", curves[v]["step"], curves[v]["norm"]) for k, v in names.items()]
    return Lines(
        panels=[
            Panel("SGD, seed 001's two networks", sgd, "step", "MSE", log_y=True, hline=floor),
            Panel("Adam + L2 vs AdamW (best λ each)", adam, "step", "MSE", log_y=True, hline=floor),
            Panel("parameter norm ‖θ‖", norms, "step", "‖θ‖"),
        ],
        title="Weight decay on 10 noisy points (seed 001, Loshchilov & Hutter 2019)",
    )


DEMO = Demo(
    name="weight-decay",
    order=9,
    title=text("Weight decay: L2 for SGD, decoupled for AdamW", "权重衰减：SGD 里是 L2，AdamW 里是解耦衰减"),
    summary=text(
        "An MLP overfits 10 noisy points: SGD without and with weight_decay (seed 001), then Adam, Adam with "
        "L2 and AdamW over a sweep of λ — training and validation loss and the weights' norm.",
        "一个 MLP 在 10 个带噪声的点上过拟合：先比较不加和加 weight_decay 的 SGD（种子文章 001），"
        "再比较 Adam、加 L2 的 Adam 和 AdamW（扫描 λ）——看训练与验证损失以及权重的范数。",
    ),
    claims=(BALANCE, SAME_AS_L2, ADAMW),
    run=_run,
)
