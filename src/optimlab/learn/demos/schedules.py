"""``schedules``: constant, step, cosine and plateau learning rates in real training on seed 001's data.

Seed 001 lists torch's learning-rate schedulers and gives their settings; here four of them train
its experiment (the lab's ``parabola``: y = x² + N(0, 0.1²), a 1-10-1 ReLU network, MSE, batches
of 32) with SGD + momentum 0.9 at lr 0.1 for 32 epochs, three seeds each, through the lab's runner
(:func:`optimlab.lab.runner.train`, which steps ``torch.optim.lr_scheduler`` once per epoch):

* ``constant`` — η_t = η₀;
* ``step`` — the post's ``StepLR(step_size=4, gamma=0.5)``: η_t = η₀ · 0.5^⌊t/4⌋;
* ``cosine`` — the post's ``CosineAnnealingLR(T_max=32, eta_min=1e-4)``:
  η_t = η_min + ½(η₀ − η_min)(1 + cos(π t / T_max));
* ``plateau`` — the post's ``ReduceLROnPlateau(mode='min', factor=0.1, patience=5)``: η × 0.1 after
  more than 5 epochs without a better epoch loss.

Numbers: the final full training loss per schedule (mean of the seeds, and per seed), the data's own
noise floor mean((y − x²)²), the last lr, the epochs at which ``plateau`` cut the lr on each seed, and
how many schedulers the installed torch has. References: Loshchilov & Hutter 2017 (SGDR, cosine
annealing); torch.optim.lr_scheduler docs.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from torch.optim import lr_scheduler

from optimlab.lab.presets import make_config
from optimlab.lab.problems import Budget, get_problem
from optimlab.lab.run import RunResult
from optimlab.lab.runner import train
from optimlab.lab.schedules import parse_schedule
from optimlab.learn.demo import Claim, Demo, Figure, Outcome, Verdict, text
from optimlab.reports.figures.lines import Lines, Panel, Series

__all__ = ["DEMO", "SCHEDULES", "torch_schedulers"]

POST = "001_8a28b8e74910af88.txt"
EPOCHS = 32
LR = 0.1
SEEDS = (0, 1, 2)
#: the four schedules, with seed 001's own settings
SCHEDULES: dict[str, str | None] = {
    "constant": None,
    "step": "step:step_size=4,gamma=0.5",
    "cosine": "cosine:T_max=32,eta_min=1e-4",
    "plateau": "plateau:factor=0.1,patience=5",
}
DECAYS = ("step", "cosine", "plateau")

SIX = Claim(
    POST,
    "pytorch也提供了六种学习率调度策略,分别是等间隔法,给定间隔法,指数衰减法,余弦下降法,监控指标调整法,"
    "LambdaLR自定义调整策略。",
    "PyTorch provides six learning-rate scheduling strategies: fixed-interval (StepLR), given milestones "
    "(MultiStepLR), exponential decay, cosine decay, adjusting on a monitored metric (ReduceLROnPlateau), "
    "and LambdaLR, a custom strategy.",
)
BY_METRIC = Claim(
    POST,
    "学习率调度器是根据一些指标进行学习率的改变,改变优化器优化的步长。",
    "A learning-rate scheduler changes the learning rate according to some metric, changing the "
    "optimizer's step size.",
)


def torch_schedulers() -> list[str]:
    """The scheduler classes the installed ``torch.optim.lr_scheduler`` offers (the base class aside)."""
    base = lr_scheduler.LRScheduler
    found = [
        name
        for name, obj in vars(lr_scheduler).items()
        if inspect.isclass(obj)
        and obj.__module__ == lr_scheduler.__name__
        and not name.startswith("_")
        and name not in ("LRScheduler", "_LRScheduler")
        and (issubclass(obj, base) or name == "ReduceLROnPlateau")
    ]
    return sorted(found)


def _train(schedule: str | None, seed: int) -> RunResult:
    problem = get_problem("parabola")
    config = make_config("momentum", {"lr": LR})
    return train(problem, config, seed, Budget(epochs=EPOCHS), parse_schedule(schedule))


def _epoch_lrs(result: RunResult, steps_per_epoch: int) -> list[float]:
    """The lr each epoch trained with."""
    return [float(lr) for lr in result.lrs[::steps_per_epoch]]


def _run() -> Outcome:
    problem = get_problem("parabola")
    spe = problem.steps_per_epoch
    floor = float(torch.mean((problem.y - problem.x.pow(2)) ** 2))
    runs = {name: [_train(spec, seed) for seed in SEEDS] for name, spec in SCHEDULES.items()}
    per_seed = {name: [float(r.final_loss) for r in rs] for name, rs in runs.items()}
    final = {name: float(np.mean(v)) for name, v in per_seed.items()}
    lrs = {name: [_epoch_lrs(r, spe) for r in rs] for name, rs in runs.items()}
    final_lr = {name: lrs[name][0][-1] for name in SCHEDULES}
    cuts = {
        str(seed): [e for e in range(1, EPOCHS) if lrs["plateau"][i][e] < lrs["plateau"][i][e - 1]]
        for i, seed in enumerate(SEEDS)
    }
    calendar_fixed = all(all(lr == lrs[name][0] for lr in lrs[name]) for name in ("step", "cosine"))
    plateau_varies = any(lr != lrs["plateau"][0] for lr in lrs["plateau"])
    decays_win = all(
        per_seed[name][i] < per_seed["constant"][i] for name in DECAYS for i in range(len(SEEDS))
    )
    schedulers = torch_schedulers()
    numbers = {
        "final_loss": final,
        "final_loss_per_seed": per_seed,
        "excess_over_floor": {name: v - floor for name, v in final.items()},
        "noise_floor": floor,
        "final_lr": final_lr,
        "plateau_cut_epochs": cuts,
        "torch_schedulers": {"count": len(schedulers), "names": schedulers},
        "setup": {
            "problem": "parabola",
            "optimizer": "momentum",
            "lr": LR,
            "epochs": EPOCHS,
            "seeds": list(SEEDS),
        },
    }
    extra = [n for n in schedulers if n not in ("StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR",
                                                "ReduceLROnPlateau", "LambdaLR")]  # fmt: skip
    six_kind = "confirmed" if len(schedulers) <= 6 else "partly"
    finals_en = ", ".join(f"{n} {final[n]:.5f}" for n in SCHEDULES)
    finals_zh = "、".join(f"{n} {final[n]:.5f}" for n in SCHEDULES)
    cuts_en = "; ".join(f"seed {s}: {', '.join(map(str, c)) or 'never'}" for s, c in cuts.items())
    cuts_zh = "；".join(f"种子 {s}：{'、'.join(map(str, c)) or '从未'}" for s, c in cuts.items())
    verdicts = [
        Verdict(
            SIX,
            six_kind,
            text(
                f"The six are there, but the installed torch {torch.__version__.split('+')[0]} has "
                f"{len(schedulers)} scheduler classes; besides the six: {', '.join(extra)}.",
                f"这六种都有，但本机安装的 torch {torch.__version__.split('+')[0]} 一共有 {len(schedulers)} "
                f"个调度器类；六种之外还有：{'、'.join(extra)}。",
            ),
            correction=text(
                "Those six are the classic schedulers. torch.optim.lr_scheduler also has warm-up and cyclic "
                "ones (LinearLR, ConstantLR, CyclicLR, OneCycleLR, CosineAnnealingWarmRestarts, "
                "PolynomialLR, MultiplicativeLR) and ways to combine them (SequentialLR, ChainedScheduler); "
                "the Transformer-style warm-up + cosine used today is SequentialLR(LinearLR, "
                "CosineAnnealingLR).",
                "这六种是经典的调度器。torch.optim.lr_scheduler 还有预热和周期型的（LinearLR、ConstantLR、"
                "CyclicLR、OneCycleLR、CosineAnnealingWarmRestarts、PolynomialLR、MultiplicativeLR），"
                "以及组合调度器的方式（SequentialLR、ChainedScheduler）；如今常用的“预热 + 余弦”就是 "
                "SequentialLR(LinearLR, CosineAnnealingLR)。",
            )
            if six_kind != "confirmed"
            else None,
            reference="torch.optim.lr_scheduler docs (How to adjust learning rate)"
            if six_kind != "confirmed"
            else None,
        ),
        Verdict(
            BY_METRIC,
            "partly" if calendar_fixed else "confirmed",
            text(
                f"Changing the step size pays: after {EPOCHS} epochs (mean of {len(SEEDS)} seeds) the "
                f"training loss is {finals_en} against a noise floor of {floor:.5f}"
                + (
                    " — every decay beats the constant lr on every seed"
                    if decays_win
                    else " — but not every decay beats the constant lr on every seed"
                )
                + f". Yet only plateau reads a metric: it cut the lr when the epoch loss stalled ({cuts_en}"
                + ("; different epochs on each seed" if plateau_varies else "; the same epochs on every seed")
                + "). Step and cosine gave "
                + (
                    "the same lr, epoch by epoch, on every seed"
                    if calendar_fixed
                    else "different lrs per seed"
                )
                + " — they follow the epoch count, not the loss.",
                f"调整步长确实有用：训练 {EPOCHS} 个 epoch 后（{len(SEEDS)} 个种子的平均），训练损失为 "
                f"{finals_zh}，数据本身的噪声下限是 {floor:.5f}"
                + (
                    "，每个种子上三种衰减都优于恒定学习率"
                    if decays_win
                    else "，但并非每个种子上每种衰减都优于恒定学习率"
                )
                + "。不过只有 plateau 看指标：它在每个 epoch 的损失停滞时降低学习率"
                + f"（降低发生的 epoch：{cuts_zh}"
                + ("；各个种子各不相同" if plateau_varies else "；各个种子相同")
                + "）。step 和 cosine "
                + (
                    "在每个种子上逐 epoch 给出完全相同的学习率"
                    if calendar_fixed
                    else "在不同种子上给出了不同的学习率"
                )
                + "——它们只按 epoch 计数，不看损失。",
            ),
            correction=text(
                "Most schedulers are a timetable: StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR, "
                "LambdaLR and OneCycleLR set the lr from the epoch (or step) count alone, fixed before "
                "training. Only ReduceLROnPlateau reacts to a metric, which you pass to "
                "scheduler.step(metric).",
                "大多数调度器只是一张时间表：StepLR、MultiStepLR、ExponentialLR、CosineAnnealingLR、"
                "LambdaLR 和 OneCycleLR 只根据 epoch（或步数）计算学习率，训练前就已确定。只有 "
                "ReduceLROnPlateau 会根据指标调整，指标要传给 scheduler.step(metric)。",
            )
            if calendar_fixed
            else None,
            reference="torch.optim.lr_scheduler docs (ReduceLROnPlateau: step(metrics)); "
            "Loshchilov & Hutter 2017, SGDR"
            if calendar_fixed
            else None,
        ),
    ]
    epochs = np.arange(EPOCHS)
    lr_panel = [Series(name, epochs, lrs[name][0], mode="lines+markers") for name in SCHEDULES]
    loss_panel = []
    for name in SCHEDULES:
        steps, values = runs[name][0].eval_curve("loss")
        loss_panel.append(Series(name, np.asarray(steps) / spe, values))
    plateau_panel = [
        Series(f"plateau, seed {seed}", epochs, lrs["plateau"][i], dash=("solid", "dash", "dot")[i % 3])
        for i, seed in enumerate(SEEDS)
    ]
    plateau_panel.append(Series("cosine", epochs, lrs["cosine"][0]))
    figure = Lines(
        panels=[
            Panel("learning rate (seed 0)", lr_panel, "epoch", "lr", log_y=True),
            Panel(
                "training loss (seed 0)",
                loss_panel,
                "epoch",
                "full training loss",
                log_y=True,
                hline=(floor, "noise floor"),
            ),
            Panel("plateau reacts to the loss", plateau_panel, "epoch", "lr", log_y=True),
        ],
        title="SGD + momentum 0.9, lr 0.1, on seed 001's parabola: four schedules",
    )
    caption = text(
        "Left: the lr of each schedule, with seed 001's settings. Middle: the full training loss (the dashed "
        "line is the data's noise floor). Right: plateau cuts the lr at different epochs on each seed; "
        "cosine (like step) is the same on every seed.",
        "左：各调度器的学习率（使用种子文章 001 的参数）。"
        "中：完整训练集上的损失（虚线是数据本身的噪声下限）。"
        "右：plateau 在不同种子上于不同 epoch 降低学习率；cosine（以及 step）在每个种子上都一样。",
    )
    columns = ["schedule", "final loss (mean)", *[f"seed {s}" for s in SEEDS], "excess over floor", "last lr"]
    rows = [[name, final[name], *per_seed[name], final[name] - floor, final_lr[name]] for name in SCHEDULES]
    return Outcome(numbers, verdicts, [Figure(figure, caption)], columns, rows)


DEMO = Demo(
    name="schedules",
    order=11,
    title=text(
        "Learning-rate schedules in real training: constant, step, cosine, plateau",
        "学习率调度的实际训练效果：恒定、等间隔、余弦、监控指标",
    ),
    summary=text(
        "Seed 001's parabola trained with four of its schedulers (its own settings), three seeds each.",
        "用种子文章 001 中的四种调度器（按原文参数）训练它的抛物线拟合实验，每种三个种子。",
    ),
    claims=(SIX, BY_METRIC),
    run=_run,
)
