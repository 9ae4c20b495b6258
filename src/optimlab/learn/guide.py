"""The optimizer guide (``optimlab learn guide``): one section per optimizer of :mod:`optimlab.optim`.

What can be read off the code is read off it: the summary, update formula and references come from
the rule's docstring (:mod:`optimlab.optim.rules`); the defaults from the class's signature; the state
and its bytes per parameter from a real step on a float32 parameter. What cannot — what an optimizer
is good and bad at, and which demonstrations show it — is written here, per optimizer, in both
languages, with the seed posts that discuss it.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from optimlab.learn.demo import Text, text

__all__ = ["GUIDE", "GuideEntry", "entries"]


@dataclass(frozen=True)
class GuideNotes:
    """The written part of an entry."""

    good: Text
    bad: Text
    demos: Sequence[str]
    posts: Sequence[str]


#: what each optimizer is good and bad at, the demonstrations that show it, the seed posts that discuss it
GUIDE: dict[str, GuideNotes] = {
    "SGD": GuideNotes(
        text(
            "The baseline; with momentum (and a schedule) still the optimizer to beat on many vision "
            "tasks, and the cheapest in memory (no state without momentum, one buffer with).",
            "基线方法；加上动量（和学习率调度）后，在许多视觉任务上仍是最难超越的优化器，而且最省内存"
            "（不带动量没有状态，带动量一个缓冲区）。",
        ),
        text(
            "One learning rate for every coordinate: slow along flat directions of an ill-conditioned "
            "problem, oscillating across steep ones; sensitive to the learning rate.",
            "所有坐标共用一个学习率：在病态问题里，平缓方向走得慢，陡峭方向来回震荡；对学习率很敏感。",
        ),
        ("batch-size", "learning-rate", "momentum", "nesterov", "clipping"),
        ("000", "001", "003", "004"),
    ),
    "Adagrad": GuideNotes(
        text(
            "A learning rate per coordinate that adapts to the gradients seen: rarely active features "
            "keep large steps, which suits sparse data.",
            "每个坐标有自己的学习率，随见过的梯度自适应：很少出现的特征保持较大的步长，适合稀疏数据。",
        ),
        text(
            "The accumulated sum only grows, so the step shrinks like 1/√t even on a stationary problem "
            "and training can stall long before a minimum.",
            "累加的平方和只增不减，即使问题是平稳的，步长也按 1/√t 缩小，训练可能远未到达最小值就停滞。",
        ),
        ("effective-lr", "rare-features"),
        ("000", "001", "002", "003", "004"),
    ),
    "RMSprop": GuideNotes(
        text(
            "Adagrad with a forgetting average of squared gradients: the step stops shrinking, which "
            "suits non-stationary problems (recurrent networks, reinforcement learning).",
            "把 AdaGrad 的累加换成会遗忘的平方梯度平均：步长不再一直缩小，"
            "适合非平稳问题（循环网络、强化学习）。",
        ),
        text(
            "No bias correction in torch: the average starts at zero, so the first steps are up to "
            "1/√(1−α) = 10× larger than later ones.",
            "torch 的实现没有偏差修正：平均从 0 开始，最初几步可比后来大到 1/√(1−α) = 10 倍。",
        ),
        ("effective-lr", "ewa"),
        ("000", "001", "002", "003", "004"),
    ),
    "Adadelta": GuideNotes(
        text(
            "No learning rate to tune in its original form: the step's units come from a running "
            "average of past updates.",
            "原始形式不需要调学习率：步长的量纲来自过去更新量的滑动平均。",
        ),
        text(
            "Starts very slowly (the update average begins at zero) and is rarely competitive today; "
            "torch keeps an lr (default 1.0) that multiplies the step.",
            "起步很慢（更新量的平均从 0 开始），如今很少有竞争力；"
            "torch 仍保留一个乘在步长上的 lr（默认 1.0）。",
        ),
        ("seed-formulas", "errata"),
        ("000", "001", "003"),
    ),
    "Adam": GuideNotes(
        text(
            "Momentum and per-coordinate scaling with bias correction: robust defaults, fast early "
            "progress; the usual first choice for transformers and many other networks.",
            "动量加上逐坐标缩放，并做偏差修正：默认值稳健，前期进展快；"
            "训练 Transformer 和许多其他网络时的常用首选。",
        ),
        text(
            "L2 weight decay through the gradient is scaled by the adaptive denominator (use AdamW); "
            "can generalize worse than tuned SGD on some vision tasks; two moment buffers of memory.",
            "通过梯度加入的 L2 权重衰减会被自适应分母缩放（应当用 AdamW）；"
            "在某些视觉任务上泛化不如调好的 SGD；需要两个矩缓冲区的内存。",
        ),
        ("bias-correction", "effective-lr", "weight-decay"),
        ("000", "001", "002", "003", "004"),
    ),
    "AdamW": GuideNotes(
        text(
            "Adam with decoupled weight decay: the decay shrinks every weight by the same factor, "
            "independent of its gradient history — the standard for training large models.",
            "带解耦权重衰减的 Adam：衰减让每个权重按同一比例缩小，与其梯度历史无关——训练大模型的标准做法。",
        ),
        text(
            "Its default weight_decay (1e-2) differs from Adam's (0): swapping one for the other "
            "changes more than the decay's form.",
            "它的 weight_decay 默认值（1e-2）与 Adam 的（0）不同：两者互换时改变的不只是衰减的形式。",
        ),
        ("weight-decay",),
        ("001", "003"),
    ),
    "Adamax": GuideNotes(
        text(
            "Adam with an infinity norm in the denominator: the step is bounded by the learning rate.",
            "分母用无穷范数的 Adam：步长以学习率为上界。",
        ),
        text(
            "The max never forgets a single large gradient until it decays away; rarely better than Adam.",
            "最大值会一直记住某个很大的梯度，直到它慢慢衰减掉；很少比 Adam 更好。",
        ),
        (),
        ("001",),
    ),
    "NAdam": GuideNotes(
        text(
            "Adam with Nesterov momentum (looks ahead along the momentum): often a little faster early.",
            "带 Nesterov 动量的 Adam（沿动量方向向前看一步）：前期常常快一点。",
        ),
        text(
            "A momentum schedule (momentum_decay) that few tune; gains over Adam are usually small.",
            "有一个很少有人调的动量调度（momentum_decay）；相对 Adam 的提升通常不大。",
        ),
        ("nesterov",),
        ("000", "003"),
    ),
    "RAdam": GuideNotes(
        text(
            "Rectified Adam: switches the adaptive step on only once the variance of the second moment "
            "is estimated well — a built-in warm-up.",
            "修正的 Adam：只有在二阶矩方差估计可靠之后才启用自适应步长——自带预热。",
        ),
        text(
            "The first few steps are plain momentum SGD; a learning-rate warm-up achieves much the same.",
            "最初几步就是带动量的普通 SGD；用学习率预热也能达到差不多的效果。",
        ),
        (),
        (),
    ),
    "LBFGS": GuideNotes(
        text(
            "A quasi-Newton method: curvature from the last few gradient differences, with a line "
            "search; converges in few iterations on smooth, deterministic, small problems.",
            "拟牛顿法：由最近几次梯度差估计曲率，配合线搜索；在光滑、确定性、规模小的问题上几步就能收敛。",
        ),
        text(
            "Needs a closure that re-evaluates the loss, many gradient evaluations per step, full-batch "
            "(noise breaks its curvature pairs) and memory for history_size pairs of vectors.",
            "需要一个能重新计算损失的 closure，每步要多次计算梯度，要求全批量（噪声会破坏它的曲率对），"
            "并要为 history_size 对向量准备内存。",
        ),
        (),
        ("001", "003"),
    ),
}


@dataclass(frozen=True)
class GuideEntry:
    """One optimizer's section: read off the code, and its :class:`GuideNotes`."""

    name: str
    summary: str
    formula: str
    references: str
    defaults: dict[str, Any]
    state: dict[str, int]  # state key → bytes per parameter element (float32 parameters)
    notes: GuideNotes


#: classes whose rule is another's (AdamW is Adam's rule with decoupled weight decay)
_RULE_OF = {"AdamW": "adam"}


def _plain(line: str) -> str:
    """A docstring line without reStructuredText markup."""
    return re.sub(r":\w+:`([^`]*)`", r"\1", line).replace("``", "")


def _docstring_parts(doc: str) -> tuple[str, str, str]:
    """(summary, formula, references) of a rule's docstring."""
    lines = inspect.cleandoc(doc).splitlines()
    summary = _plain(lines[0].strip())
    body = "\n".join(lines[1:]).strip()
    formula = _plain(body.split("Defaults", 1)[0].strip())
    found = re.search(r"References?:\s*(.*)", body, re.S)
    references = " ".join(found.group(1).split()) if found else ""
    return summary, formula, references


def _defaults(cls: type) -> dict[str, Any]:
    signature = inspect.signature(cls.__init__)
    skip = {"self", "params", "foreach", "capturable", "differentiable", "fused", "engine", "nonfinite"}
    return {
        name: p.default
        for name, p in signature.parameters.items()
        if name not in skip and p.default is not inspect.Parameter.empty
    }


def _state_bytes(cls: type, **hyper: Any) -> dict[str, int]:
    """State key → bytes per element of a float32 parameter, after one real step."""
    param = torch.zeros(1000, requires_grad=True)
    optimizer = cls([param], **hyper)
    param.grad = torch.ones(1000)
    if cls.__name__ == "LBFGS":
        optimizer.step(lambda: (param**2).sum())
    else:
        optimizer.step()
    sizes: dict[str, int] = {}
    for key, value in optimizer.state[param].items():
        if isinstance(value, torch.Tensor) and value.numel() == param.numel():
            sizes[key] = value.element_size()
    if cls.__name__ == "LBFGS":  # and the curvature pairs, history_size of each once the history is full
        pairs = optimizer.param_groups[0]["history_size"]
        sizes["old_dirs + old_stps (full history)"] = 2 * pairs * param.element_size()
    return sizes


def entries() -> list[GuideEntry]:
    """Every optimizer of the guide, in the order of :data:`GUIDE`."""
    import optimlab.optim as optim
    from optimlab.optim import rules

    found = []
    for name, notes in GUIDE.items():
        cls = getattr(optim, name)
        rule = getattr(rules, _RULE_OF.get(name, name.lower()), None)
        doc = (rule.__doc__ if rule is not None else None) or cls.__doc__ or name
        summary, formula, references = _docstring_parts(doc)
        if name in _RULE_OF:  # a class of another's rule: its own one-line summary
            summary = _docstring_parts(cls.__doc__ or name)[0].split(" — see")[0].rstrip(".") + "."
        extra = {"momentum": 0.9} if name == "SGD" else {}
        found.append(
            GuideEntry(name, summary, formula, references, _defaults(cls), _state_bytes(cls, **extra), notes)
        )
    return found
