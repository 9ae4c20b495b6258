"""``batch-size``: full-batch gradient descent, mini-batches and one-sample SGD on the seed experiment.

The seed experiment ``parabola`` (y = x² + N(0, 0.1²), 1000 points, a 1-10-1 ReLU network, MSE) is
trained with the same rule, ``optimlab.optim.SGD`` at lr = 0.1, θ ← θ − γ·ĝ, where ĝ is the gradient
of the loss on a batch of B samples:

* B = 1000, ``parabola:batch=full`` — gradient descent proper (batch GD): ĝ = ∇L(θ), exact;
* B = 32, ``parabola`` (the seed post's ``BATCH_SIZE = 32``) — mini-batch SGD (MBGD);
* B = 1, ``parabola:batch=1`` — one-sample SGD (Robbins & Monro 1951).

Each run takes 600 steps from seeds 0–4; after every step the full training loss L(θ) is evaluated,
so even the one-sample run is a curve. Numbers (medians over the seeds): steps and samples seen until
the full loss first reaches the problem's target 0.02 (the noise floor is 0.01), the standard deviation
of the loss each step saw (on its own batch) over the last 200 steps, the share of steps after which the
full loss went *up*, and the mean full loss over the last 200 steps.

References: Bottou, Curtis & Nocedal 2018, "Optimization Methods for Large-Scale Machine Learning"
(§3.2–3.3, §4); Goodfellow, Bengio & Courville 2016, *Deep Learning*, §8.1.3.
"""

from __future__ import annotations

import statistics

import numpy as np

from optimlab import optim
from optimlab.lab.loop import objective
from optimlab.lab.problems import get_problem
from optimlab.learn.demo import Claim, Demo, Figure, Outcome, Verdict, text
from optimlab.reports.figures.lines import Lines, Panel, Series

__all__ = ["DEMO", "VARIANTS", "train_curve"]

POST = "000_e26eedcb58e8e554.txt"
#: the variants by batch size, as the problem's ``batch`` option writes it
VARIANTS: dict[str, str] = {"full": "parabola:batch=full", "32": "parabola", "1": "parabola:batch=1"}
LABELS = {"full": "full batch (GD), B = 1000", "32": "mini-batch, B = 32", "1": "one sample (SGD), B = 1"}
LR = 0.1
STEPS = 600
WINDOW = 200  #: the last steps, over which the noise and the floor are measured
SEEDS = (0, 1, 2, 3, 4)

GD_DEFINITION = Claim(
    POST,
    "GD:ΔT会在每输入一个样本就更新一次",
    "GD: ΔT (the gradient) is updated after every single sample that is fed in.",
)
BGD_DEFINITION = Claim(
    POST,
    "BGD:ΔT会在批量输入数据之后才更新一次(也就是那个batchsize参数)",
    "BGD: ΔT is updated only once a batch of data has been fed in (that is, the batchsize parameter).",
)
OSCILLATION = Claim(
    POST,
    "以上三个都是在提升参数更新效率的方向上优化,但是都无法克服产生局部震荡,从而只是实现了局部最优解的问题",
    "All three improve the efficiency of parameter updates, but none of them can overcome local "
    "oscillation, and so they only reach a local optimum.",
)


def train_curve(spec: str, seed: int, lr: float = LR, steps: int = STEPS) -> dict[str, np.ndarray | int]:
    """Train ``spec``'s model of ``seed`` with ``optimlab.optim.SGD(lr)`` for ``steps`` steps on the
    problem's own batches; returns ``full`` (the full training loss before the first step and after
    every step), ``seen`` (the loss each step saw on its batch, before its update) and ``batch``."""
    problem = get_problem(spec)
    model = problem.build_model(seed)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = optim.SGD(params, lr=lr)
    full, seen = [objective(problem, model)], []
    epoch = 0
    while len(seen) < steps:
        for inputs, target in problem.batches(seed, epoch):
            if len(seen) >= steps:
                break
            opt.zero_grad(set_to_none=True)
            loss = problem.loss(model(inputs), target)
            loss.backward()
            opt.step()
            seen.append(float(loss.detach()))
            full.append(objective(problem, model))
        epoch += 1
    return {"full": np.array(full), "seen": np.array(seen), "batch": int(problem.batch_size)}


def _first_at_or_below(values: np.ndarray, target: float) -> int | None:
    hit = np.flatnonzero(values <= target)
    return int(hit[0]) if hit.size else None


def _median(values: list[float]) -> float:
    return float(statistics.median(values))


def _run() -> Outcome:
    target = get_problem("parabola").target_loss
    curves = {name: [train_curve(spec, seed) for seed in SEEDS] for name, spec in VARIANTS.items()}
    batch = {name: int(runs[0]["batch"]) for name, runs in curves.items()}
    steps_to, samples_to, loss_std, rises, floor = {}, {}, {}, {}, {}
    for name, runs in curves.items():
        hits = [_first_at_or_below(r["full"], target) for r in runs]  # type: ignore[arg-type]
        reached = [h for h in hits if h is not None]
        steps_to[name] = int(statistics.median(reached)) if len(reached) == len(hits) else None
        samples_to[name] = None if steps_to[name] is None else steps_to[name] * batch[name]
        loss_std[name] = _median([float(np.std(r["seen"][-WINDOW:])) for r in runs])  # type: ignore[index]
        rises[name] = _median([float(np.mean(np.diff(r["full"]) > 0)) for r in runs])  # type: ignore[arg-type]
        floor[name] = _median([float(np.mean(r["full"][-WINDOW:])) for r in runs])  # type: ignore[index]
    numbers = {
        "lr": LR,
        "steps": STEPS,
        "seeds": len(SEEDS),
        "target": target,
        "batch": batch,
        "steps_to_target": steps_to,
        "samples_to_target": samples_to,
        "loss_std": loss_std,
        "rising_share": rises,
        "final_loss": floor,
        "noise_ratio": {"1/32": loss_std["1"] / loss_std["32"]},
    }

    def fmt(value: int | None) -> str:
        return "never" if value is None else f"{value:,}"

    one_noisy = rises["1"] > 0.2 and loss_std["1"] > 3 * loss_std["32"] > 3 * loss_std["full"]
    gd_smooth = rises["full"] == 0.0
    verdicts = [
        Verdict(
            GD_DEFINITION,
            "wrong" if one_noisy and gd_smooth else "partly",
            text(
                f"Updating after every single sample is the B = 1 run: its loss per step scatters with a "
                f"standard deviation of {loss_std['1']:.4f}, and the full loss went up after "
                f"{rises['1']:.0%} of its steps. "
                f"Gradient descent proper sees all {batch['full']} samples at each "
                f"step: standard deviation {loss_std['full']:.5f} (for the full batch only its slow "
                "descent), and the full loss went up after "
                f"{rises['full']:.0%} of its steps.",
                f"每输入一个样本就更新一次，就是 B = 1 的那组：每一步看到的损失标准差为 {loss_std['1']:.4f}，"
                f"有 {rises['1']:.0%} 的步子之后整体损失反而上升。真正的梯度下降每一步都用全部 "
                f"{batch['full']} 个样本：标准差只有 {loss_std['full']:.5f}（全批量时这只是损失缓慢下降），"
                "整体损失上升的步数占 "
                f"{rises['full']:.0%}。",
            ),
            correction=text(
                "The names are swapped. Gradient descent (GD, also called batch GD, BGD) computes the "
                "gradient over the whole training set before each update. Updating after every single sample "
                "is stochastic gradient descent (SGD); updating after a batch of batch_size samples is "
                "mini-batch gradient descent (MBGD), which is what torch.optim.SGD does with a DataLoader.",
                "名字弄反了。梯度下降（GD，也叫批量梯度下降 BGD）在每次更新前都要用整个训练集计算梯度；"
                "每输入一个样本就更新一次的是随机梯度下降（SGD）；每输入 batch_size 个样本更新一次的是"
                "小批量梯度下降（MBGD）——torch.optim.SGD 配合 DataLoader 做的就是这个。",
            ),
            reference="Bottou, Curtis & Nocedal 2018, Optimization Methods for Large-Scale ML, §3.2–3.3; "
            "Goodfellow et al. 2016, Deep Learning, §8.1.3",
        ),
        Verdict(
            BGD_DEFINITION,
            "partly",
            text(
                f"With batch_size = {batch['32']} the run took {fmt(steps_to['32'])} steps "
                f"({fmt(samples_to['32'])} samples) to reach the target loss {target}; the whole-set batch "
                f"took {fmt(steps_to['full'])} steps but {fmt(samples_to['full'])} samples. Updating once "
                "per batch of batch_size samples is the mini-batch method; it becomes batch GD only when "
                "the batch is the whole training set.",
                f"batch_size = {batch['32']} 时，用了 {fmt(steps_to['32'])} 步"
                f"（{fmt(samples_to['32'])} 个样本）"
                f"达到目标损失 {target}；整个训练集作为一批时用了 {fmt(steps_to['full'])} 步，却要 "
                f"{fmt(samples_to['full'])} 个样本。每输入 batch_size 个样本更新一次是小批量方法；"
                "只有当这一批就是整个训练集时，它才是批量梯度下降。",
            ),
            correction=text(
                "BGD uses the whole training set per update (batch_size = N). With 1 < batch_size < N it is "
                "mini-batch gradient descent (MBGD), which the post does not name here.",
                "BGD 每次更新使用整个训练集（batch_size = N）。1 < batch_size < N 时是"
                "小批量梯度下降（MBGD），原文此处没有把它区分出来。",
            ),
            reference="Bottou, Curtis & Nocedal 2018, §3.2 (mini-batch); Goodfellow et al. 2016, §8.1.3",
        ),
        Verdict(
            OSCILLATION,
            "partly" if gd_smooth and rises["1"] > rises["full"] else "confirmed",
            text(
                f"Efficiency, yes: samples seen until the target — {fmt(samples_to['full'])} (full batch), "
                f"{fmt(samples_to['32'])} (B = 32), {fmt(samples_to['1'])} (B = 1) — at about the same "
                f"number of steps ({fmt(steps_to['full'])}, {fmt(steps_to['32'])}, {fmt(steps_to['1'])}). "
                f"Oscillation, only with sampling: the full loss went up after {rises['full']:.0%} of the "
                f"full-batch steps, {rises['32']:.0%} of the B = 32 steps and {rises['1']:.0%} of the B = 1 "
                f"steps; the loss a step sees scatters by {loss_std['full']:.5f}, {loss_std['32']:.4f} and "
                f"{loss_std['1']:.4f}. All three end near the noise floor 0.01 (mean full loss over the last "
                f"{WINDOW} steps: {floor['full']:.4f}, {floor['32']:.4f}, {floor['1']:.4f}) — no "
                "local-optimum trap here.",
                f"效率确实提高了：到达目标所看过的样本数分别是 {fmt(samples_to['full'])}（全批量）、"
                f"{fmt(samples_to['32'])}（B = 32）、{fmt(samples_to['1'])}（B = 1），而所用步数差不多"
                f"（{fmt(steps_to['full'])}、{fmt(steps_to['32'])}、{fmt(steps_to['1'])}）。震荡只来自抽样："
                f"整体损失在全批量的步子里上升了 {rises['full']:.0%}，B = 32 时 {rises['32']:.0%}，B = 1 时 "
                f"{rises['1']:.0%}；每一步看到的损失标准差分别为 {loss_std['full']:.5f}、"
                f"{loss_std['32']:.4f}、{loss_std['1']:.4f}。三者最后都接近噪声下限 0.01"
                f"（最后 {WINDOW} 步的平均整体损失："
                f"{floor['full']:.4f}、{floor['32']:.4f}、{floor['1']:.4f}），这里并没有陷入局部最优。",
            ),
            correction=text(
                "Full-batch gradient descent with a small enough learning rate (γ < 2/L, L the largest "
                "curvature) decreases the loss at every step: it does not oscillate. The oscillation of SGD "
                "and mini-batches comes from the sampling noise of the gradient, whose variance falls as "
                "1/B; with a constant learning rate SGD only reaches a noisy neighbourhood of a minimum, "
                "whose size shrinks with a smaller lr or a larger batch (and momentum or averaging). "
                "Oscillation and local optima are different problems.",
                "学习率足够小时（γ < 2/L，L 为最大曲率），全批量梯度下降每一步都让损失下降，并不震荡。"
                "SGD 和小批量的震荡来自梯度的抽样噪声，其方差按 1/B 减小；学习率固定时，SGD 只能到达极小值"
                "附近一个带噪声的区域，减小学习率、增大批量（或用动量、平均）可以缩小这个区域。震荡和局部最优"
                "是两回事。",
            ),
            reference="Bottou, Curtis & Nocedal 2018, Optimization Methods for Large-Scale ML, "
            "§4.2 (Thm 4.6) and §5",
        ),
    ]
    runs0 = {name: runs[0] for name, runs in curves.items()}
    steps_axis = np.arange(STEPS + 1)
    by_step = [Series(LABELS[n], steps_axis, r["full"]) for n, r in runs0.items()]  # type: ignore[arg-type]
    by_sample = [
        Series(LABELS[n], steps_axis[1:] * batch[n], r["full"][1:])  # type: ignore[index]
        for n, r in runs0.items()
    ]
    seen = [Series(LABELS[n], steps_axis[1:], r["seen"], mode="lines") for n, r in runs0.items()]  # type: ignore[arg-type]
    figure = Lines(
        panels=[
            Panel(
                "full loss per step",
                by_step,
                "step",
                "training loss (all 1000 points)",
                log_y=True,
                hline=(target, "target"),
            ),
            Panel(
                "full loss per sample seen",
                by_sample,
                "samples seen",
                "training loss",
                log_x=True,
                log_y=True,
                hline=(target, "target"),
            ),
            Panel("loss each step saw (its batch)", seen, "step", "batch loss", log_y=True),
        ],
        title=f"parabola: SGD lr = {LR} with batches of 1000, 32 and 1 (seed 0)",
    )
    caption = text(
        "Seed 0. Left: the full training loss after every step — about the same per step. Middle: the same "
        "against the samples seen (log scale) — the smaller the batch, the fewer samples to the target. "
        "Right: the loss each step saw on its own batch — the noise grows as the batch shrinks.",
        "种子 0。左：每一步之后的整体训练损失——按步数看三者差不多。中：同一损失对已看过的样本数（对数坐标）"
        "——批量越小，到达目标所需样本越少。右：每一步在自己那一批上看到的损失——批量越小噪声越大。",
    )
    columns = ["batch", "B", "steps to target", "samples to target", "loss std", "rising share", "final loss"]
    rows = [
        [n, batch[n], fmt(steps_to[n]), fmt(samples_to[n]), loss_std[n], rises[n], floor[n]] for n in VARIANTS
    ]
    return Outcome(numbers, verdicts, [Figure(figure, caption)], columns, rows)


DEMO = Demo(
    name="batch-size",
    order=4,
    title=text(
        "Batch size: full-batch GD, mini-batch and one-sample SGD", "批量大小：全批量 GD、小批量与单样本 SGD"
    ),
    summary=text(
        "The seed experiment trained with SGD on batches of 1000 (all), 32 and 1: steps and samples to the "
        "target, and the noise each batch size brings.",
        "用 SGD 在批量 1000（全部）、32 和 1 上训练种子实验：到达目标的步数与样本数，以及各批量带来的噪声。",
    ),
    claims=(GD_DEFINITION, BGD_DEFINITION, OSCILLATION),
    run=_run,
)
