"""``clipping``: gradient clipping stops a blow-up, but bounded is not converged.

SGD and SGD + momentum 0.9 (:class:`optimlab.optim.SGD`) on the lab's ``rosenbrock`` problem
(f = (1 − x)² + 100(y − x²)², start (−1.2, 1), 1000 steps) at lr = 0.01, ten times the lr at which
both train (0.001; near the minimum the Hessian's largest eigenvalue is ≈ 1001.6, so plain gradient
descent needs lr < 2/1001.6 ≈ 0.002). Three variants of each, between ``backward()`` and ``step()``:

* ``none`` — the raw gradient g;
* ``norm`` — ``torch.nn.utils.clip_grad_norm_(params, 1.0)``: g ← g · min(1, c/‖g‖), the direction
  kept, so an SGD step is at most lr·c long (with momentum β at most lr·c/(1 − β));
* ``value`` — ``torch.nn.utils.clip_grad_value_(params, 1.0)``: gᵢ ← clamp(gᵢ, −c, c), each coordinate
  capped — the direction changes (a step of at most lr·c·√2 here, in 2-D).

A run diverges as in the lab: a non-finite loss or one above EXPLOSION_FACTOR × max(|f₀|, 1).
Numbers per variant: diverged, the final loss (∞ when diverged), the step it diverged at, the share of
steps where clipping changed the gradient, the longest step, the final distance to the minimum (1, 1);
and the unclipped runs at lr 0.001 for reference. References: Pascanu, Mikolov & Bengio 2013 (On the
difficulty of training RNNs, §3.2: clipping by norm); torch.nn.utils.clip_grad_norm_ docs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from optimlab.lab.problems import get_problem
from optimlab.lab.run import EXPLOSION_FACTOR
from optimlab.learn.demo import Claim, Demo, Figure, Outcome, Verdict, text
from optimlab.optim import SGD
from optimlab.reports.figures.lines import Lines, Panel, Series

__all__ = ["DEMO", "Trace", "train"]

POST = "003_2ca240df3290a5bb.txt"
LR = 0.01
SAFE_LR = 0.001
CLIP = 1.0
STEPS = 1000
OPTIMIZERS = {"sgd": 0.0, "momentum": 0.9}
CLIPS = ("none", "norm", "value")
NAMES = {"sgd": "SGD", "momentum": "momentum"}

STABLE = Claim(
    POST,
    "优化器通过适当的学习率调整和梯度裁剪等技巧,可以缓解这些问题,保证模型的稳定训练。",
    "Through techniques such as suitable learning-rate adjustment and gradient clipping, optimizers can "
    "mitigate these problems [vanishing or exploding gradients] and guarantee stable training.",
)


def variant(optimizer: str, clip: str) -> str:
    """The key of a variant: ``sgd``, ``sgd+norm``, ``momentum+value``, …"""
    return optimizer if clip == "none" else f"{optimizer}+{clip}"


@dataclass(frozen=True)
class Trace:
    """What one run recorded: the loss before each step, the raw gradient norm, whether clipping
    changed the gradient, the length of each step, the path (x, y), and where it diverged."""

    losses: np.ndarray
    grad_norms: np.ndarray
    clipped: np.ndarray
    step_lengths: np.ndarray
    path: np.ndarray
    final_loss: float
    diverged_at: int | None
    enlarged: bool  #: whether clipping ever made a gradient longer (it must not)


def train(momentum: float, clip: str, lr: float = LR, steps: int = STEPS) -> Trace:
    """Train the rosenbrock point with :class:`optimlab.optim.SGD` (``lr``, ``momentum``), the
    gradient clipped by ``clip`` (``none``, ``norm`` or ``value``, at :data:`CLIP`) before each step."""
    problem = get_problem("rosenbrock")
    model = problem.build_model(0)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = SGD(params, lr=lr, momentum=momentum)
    no_noise = torch.empty(0)
    start = float(problem.evaluate(model)["loss"])
    threshold = EXPLOSION_FACTOR * max(abs(start), 1.0)
    losses, norms, clipped, lengths = [], [], [], []
    path = [model.xy.detach().clone().numpy()]  # type: ignore[union-attr]
    enlarged, diverged_at = False, None
    for step in range(1, steps + 1):
        opt.zero_grad()
        loss = model(no_noise)
        loss.backward()
        raw = torch.cat([p.grad.reshape(-1) for p in params]).clone()  # type: ignore[union-attr]
        if clip == "norm":
            torch.nn.utils.clip_grad_norm_(params, CLIP)
        elif clip == "value":
            torch.nn.utils.clip_grad_value_(params, CLIP)
        used = torch.cat([p.grad.reshape(-1) for p in params])  # type: ignore[union-attr]
        before = model.xy.detach().clone()  # type: ignore[union-attr]
        opt.step()
        value = float(loss.detach())
        losses.append(value)
        norms.append(float(raw.norm()))
        clipped.append(not torch.equal(raw, used))
        enlarged |= float(used.norm()) > float(raw.norm()) * (1 + 1e-6)
        lengths.append(float((model.xy.detach() - before).norm()))  # type: ignore[union-attr]
        path.append(model.xy.detach().clone().numpy())  # type: ignore[union-attr]
        if not math.isfinite(value) or value > threshold:
            diverged_at = step
            break
    final = float(problem.evaluate(model)["loss"])
    if diverged_at is None and (not math.isfinite(final) or final > threshold):
        diverged_at = steps
    return Trace(
        losses=np.array(losses),
        grad_norms=np.array(norms),
        clipped=np.array(clipped),
        step_lengths=np.array(lengths),
        path=np.array(path),
        final_loss=math.inf if diverged_at is not None else final,
        diverged_at=diverged_at,
        enlarged=enlarged,
    )


def _run() -> Outcome:
    problem = get_problem("rosenbrock")
    target = float(problem.target_loss)
    runs = {variant(o, c): train(m, c) for o, m in OPTIMIZERS.items() for c in CLIPS}
    safe = {o: train(m, "none", lr=SAFE_LR) for o, m in OPTIMIZERS.items()}
    diverged = {k: r.diverged_at is not None for k, r in runs.items()}
    final = {k: r.final_loss for k, r in runs.items()}
    distance = {
        k: (math.inf if diverged[k] else float(np.linalg.norm(r.path[-1] - np.array([1.0, 1.0]))))
        for k, r in runs.items()
    }
    numbers = {
        "diverged": diverged,
        "final_loss": final,
        "diverged_at_step": {k: r.diverged_at for k, r in runs.items()},
        "clipped_fraction": {k: float(np.mean(r.clipped)) for k, r in runs.items() if "+" in k},
        "max_step": {k: float(np.max(r.step_lengths)) for k, r in runs.items() if not diverged[k]},
        "last_100_range": {
            k: [float(np.min(r.losses[-100:])), float(np.max(r.losses[-100:]))]
            for k, r in runs.items()
            if not diverged[k]
        },
        "distance_to_minimum": distance,
        "initial_grad_norm": float(runs["sgd"].grad_norms[0]),
        "clipping_enlarged_a_gradient": any(r.enlarged for r in runs.values()),
        "reference_final_loss": {o: r.final_loss for o, r in safe.items()},
        "setup": {"problem": "rosenbrock", "lr": LR, "reference_lr": SAFE_LR, "clip": CLIP, "steps": STEPS},
    }
    unclipped = [variant(o, "none") for o in OPTIMIZERS]
    clipped_keys = [k for k in runs if "+" in k]
    blow_up = all(diverged[k] for k in unclipped)
    stable = not any(diverged[k] for k in clipped_keys)
    missed = [k for k in clipped_keys if final[k] > target]
    kind = "wrong" if not stable else ("confirmed" if not missed else "partly")

    def finals(keys: list[str], sep: str) -> str:
        return sep.join(f"{k} {final[k]:.3g}" for k in keys)

    def ranges(keys: list[str], sep: str) -> str:
        band = numbers["last_100_range"]
        return sep.join(f"{k} {band[k][0]:.3g}–{band[k][1]:.3g}" for k in keys)

    by_value = [k for k in missed if k.endswith("value")]
    by_norm = [k for k in clipped_keys if k.endswith("norm")]

    blow_en = (
        f"At lr {LR} both unclipped runs blow up (SGD at step {runs['sgd'].diverged_at}, momentum at step "
        f"{runs['momentum'].diverged_at}; the first gradient is {numbers['initial_grad_norm']:.0f} long)"
        if blow_up
        else f"At lr {LR} not both unclipped runs blew up ({finals(unclipped, ', ')})"
    )
    blow_zh = (
        f"在 lr = {LR} 时，两个不裁剪的运行都发散了（SGD 在第 {runs['sgd'].diverged_at} 步，momentum 在第 "
        f"{runs['momentum'].diverged_at} 步；第一个梯度的长度是 {numbers['initial_grad_norm']:.0f}）"
        if blow_up
        else f"在 lr = {LR} 时，不裁剪的运行并未都发散（{finals(unclipped, '、')}）"
    )
    verdict = Verdict(
        STABLE,
        kind,
        text(
            blow_en
            + (
                "; every clipped run stays bounded for all "
                f"{STEPS} steps (longest SGD step with norm clipping: {numbers['max_step']['sgd+norm']:.4f} "
                f"≤ lr·c = {LR * CLIP:g})."
                if stable
                else f"; clipping did not stop them all: {', '.join(k for k in clipped_keys if diverged[k])} "
                "diverged."
            )
            + (
                f" But bounded is not converged: {finals(missed, ', ')} end above the target "
                f"{target:g} — clipping by value, which caps each coordinate and so bends the direction, "
                f"stalls ({finals(by_value, ', ') or 'none'}); norm clipping keeps the direction "
                f"({finals(by_norm, ', ')}; over the last 100 steps the loss ranges "
                f"{ranges(by_norm, ', ')}). For comparison, unclipped at lr {SAFE_LR}: momentum reaches "
                f"{safe['momentum'].final_loss:.3g}, plain SGD only {safe['sgd'].final_loss:.3g}."
                if missed and stable
                else ""
            ),
            blow_zh
            + (
                f"；所有裁剪后的运行在全部 {STEPS} 步中都保持有界（按范数裁剪时 SGD 最长的一步为 "
                f"{numbers['max_step']['sgd+norm']:.4f} ≤ lr·c = {LR * CLIP:g}）。"
                if stable
                else f"；裁剪没能挡住所有发散：{'、'.join(k for k in clipped_keys if diverged[k])} 发散了。"
            )
            + (
                f"但有界不等于收敛：{finals(missed, '、')} 最终都高于目标 {target:g}。按值裁剪逐个坐标截断，"
                f"改变了梯度方向，训练停滞（{finals(by_value, '、') or '无'}）；"
                f"按范数裁剪保持方向（{finals(by_norm, '、')}；最后 100 步的损失范围："
                f"{ranges(by_norm, '、')}）。作为对照，lr = {SAFE_LR} 且不裁剪时，"
                f"momentum 达到 {safe['momentum'].final_loss:.3g}，"
                f"普通 SGD 只到 {safe['sgd'].final_loss:.3g}。"
                if missed and stable
                else ""
            ),
        ),
        correction=text(
            "Clipping is not part of the optimizer: torch applies it between backward() and step() "
            "(torch.nn.utils.clip_grad_norm_ / clip_grad_value_). It bounds each step (to lr·c by norm, "
            "lr·c/(1 − β) with momentum), so an exploding gradient cannot throw the parameters away — it "
            "makes training bounded, not convergent: too large an lr still oscillates where the gradient is "
            "small, and clipping by value changes the direction. It only ever shrinks gradients, so it does "
            "nothing against vanishing ones (that takes initialization, normalization, residual paths, "
            "gating). Fix the lr first; clip by norm as a safety net.",
            "梯度裁剪不是优化器的一部分：torch 在 backward() 和 step() 之间单独调用它"
            "（torch.nn.utils.clip_grad_norm_ / clip_grad_value_）。它限制了每一步的长度（按范数裁剪时不超过 "
            "lr·c，加动量时不超过 lr·c/(1 − β)），所以梯度爆炸不会把参数甩飞——但它只保证有界，不保证收敛："
            "学习率过大时，在梯度较小的地方照样震荡；按值裁剪还会改变梯度方向。裁剪只会缩小梯度，"
            "对梯度消失毫无帮助（那要靠初始化、归一化、残差连接、门控等）。先把学习率调好，再把按范数裁剪"
            "当作安全网。",
        )
        if kind != "confirmed"
        else None,
        reference="Pascanu, Mikolov & Bengio 2013, On the difficulty of training RNNs, §3.2; "
        "torch.nn.utils.clip_grad_norm_ docs"
        if kind != "confirmed"
        else None,
    )
    labels = {
        variant(o, c): NAMES[o]
        + {"none": "", "norm": f" + clip norm {CLIP:g}", "value": f" + clip value {CLIP:g}"}[c]
        for o in OPTIMIZERS
        for c in CLIPS
    }
    dashes = {"none": "dot", "norm": "solid", "value": "dash"}
    cap = EXPLOSION_FACTOR * max(abs(float(runs["sgd"].losses[0])), 1.0)

    def shown(losses: np.ndarray) -> np.ndarray:
        """The losses up to the explosion threshold (a gap above: the figure keeps its scale)."""
        return np.where(losses <= cap, losses, np.nan)

    loss_series = [
        Series(
            labels[k],
            np.arange(1, len(r.losses) + 1),
            shown(r.losses),
            dash=dashes[k.partition("+")[2] or "none"],
        )
        for k, r in runs.items()
    ]
    loss_series += [
        Series(f"{NAMES[o]}, lr {SAFE_LR:g}", np.arange(1, len(r.losses) + 1), r.losses, dash="dashdot")
        for o, r in safe.items()
    ]
    path_series = [
        Series(labels[k], r.path[:, 0], r.path[:, 1], dash=dashes[k.partition("+")[2]])
        for k, r in runs.items()
        if "+" in k
    ]
    path_series += [
        Series(f"{NAMES[o]}, lr {SAFE_LR:g}", r.path[:, 0], r.path[:, 1], dash="dashdot")
        for o, r in safe.items()
    ]
    path_series.append(Series("minimum (1, 1)", [1.0], [1.0], mode="markers"))
    norm_series = [
        Series(labels[k], np.arange(1, len(r.grad_norms) + 1), r.grad_norms, dash=dashes[k.partition("+")[2]])
        for k, r in runs.items()
        if "+" in k
    ]
    figure = Lines(
        panels=[
            Panel(f"loss, lr {LR:g}", loss_series, "step", "f(x, y)", log_y=True),
            Panel("paths of the clipped runs", path_series, "x", "y"),
            Panel(
                "raw gradient norm", norm_series, "step", "‖g‖ before clipping", log_y=True, hline=(CLIP, "c")
            ),
        ],
        title=f"Gradient clipping on Rosenbrock: SGD and momentum at lr {LR:g} (seed 003)",
    )
    caption = text(
        f"Left: the loss of each run (the unclipped ones at lr {LR:g} stop where they blow up; dash-dot: "
        f"unclipped at lr {SAFE_LR:g}). Middle: the clipped runs' paths from (−1.2, 1). Right: the raw "
        f"gradient norm; clipping acts above the dashed line c = {CLIP:g}.",
        f"左：各运行的损失（lr = {LR:g} 时不裁剪的运行在发散处终止；点划线：lr = {SAFE_LR:g} 不裁剪）。"
        f"中：裁剪后的运行从 (−1.2, 1) 出发的路径。"
        f"右：裁剪前的梯度范数；虚线 c = {CLIP:g} 以上裁剪才起作用。",
    )
    columns = ["variant", "diverged", "final loss", "diverged at step", "clipped steps", "longest step"]
    rows = [
        [
            k,
            "yes" if diverged[k] else "no",
            final[k],
            r.diverged_at if r.diverged_at is not None else "–",
            f"{numbers['clipped_fraction'][k]:.0%}" if k in numbers["clipped_fraction"] else "–",
            numbers["max_step"].get(k, "–"),
        ]
        for k, r in runs.items()
    ]
    rows += [
        [f"{o}, lr {SAFE_LR:g}", "no", r.final_loss, "–", "–", float(np.max(r.step_lengths))]
        for o, r in safe.items()
    ]
    return Outcome(numbers, [verdict], [Figure(figure, caption)], columns, rows)


DEMO = Demo(
    name="clipping",
    order=12,
    title=text(
        "Gradient clipping: bounded steps, not convergence",
        "梯度裁剪：步长有界，但不等于收敛",
    ),
    summary=text(
        f"SGD and momentum blow up on Rosenbrock at lr {LR:g}; clipped by norm or value they stay bounded.",
        f"SGD 和 momentum 在 lr = {LR:g} 时于 Rosenbrock 上发散；按范数或按值裁剪让它们保持有界。",
    ),
    claims=(STABLE,),
    run=_run,
)
