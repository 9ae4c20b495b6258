"""``modular-addition`` — learn (a + b) mod p from a fraction of the table: the grokking problem.

The p² pairs (a, b) with 0 ≤ a, b < p are split once (``data_seed``): a ``fraction`` of them is the
training set, the rest the validation set. The model embeds each operand (one shared ``p × width``
embedding), concatenates the two embeddings and maps them through a ReLU MLP to p logits;
cross-entropy. It fits the training table quickly; whether it then generalises — late, after a long
plateau of perfect training accuracy and chance validation accuracy ("grokking", Power et al.
2022), or never — is up to the optimizer and its weight decay (``adamw:weight_decay=1`` groks,
without decay it tends not to). ``accuracy`` and ``val_accuracy`` are reported; watch the latter.

The default budget is short (a comparison on the memorisation phase); ``steps=20000`` (a few
minutes on a CPU) lets a run grok. The model has no buffers: sweeps train as batched replicas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from optimlab.lab.problems.base import Budget, TensorProblem, check_options, generator, parse_batch
from optimlab.lab.problems.parabola import _int_option

OPTIONS = {
    "p": "the modulus, ≥ 2 (default 97)",
    "fraction": "fraction of the p² pairs used for training, in (0, 1) (default 0.3)",
    "width": "embedding width (default 128)",
    "hidden": "hidden units of the MLP (default 256)",
    "steps": "default budget in optimizer steps (default 1000)",
    "batch": "full | N pairs per batch (default 512)",
    "data_seed": "seed of the train/validation split (default 0)",
}


def _fraction(name: str, options: Mapping[str, Any]) -> float:
    value = options.get("fraction", 0.3)
    try:
        number = float(value)
        ok = not isinstance(value, bool | str) and 0 < number < 1
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"problem {name!r}: fraction must be a number in (0, 1), got {value!r}")
    return number


class AdditionMLP(nn.Module):
    """``pairs [batch, 2]`` → logits ``[batch, p]``: shared embedding, concatenated, ReLU MLP."""

    def __init__(self, p: int, width: int, hidden: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(p, width)
        self.mlp = nn.Sequential(nn.Linear(2 * width, hidden), nn.ReLU(), nn.Linear(hidden, p))

    def forward(self, pairs: Tensor) -> Tensor:
        return self.mlp(self.embedding(pairs).flatten(-2))


class ModularAddition(TensorProblem):
    name = "modular-addition"
    description = (
        "(a + b) mod 97 from 30% of the table, embedding + MLP, cross-entropy, 1000 steps; "
        "val_accuracy shows whether (and when) it generalises — grokking"
    )
    target_loss = 0.01
    version = "1"
    classification = True

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        check_options(self.name, self.options, OPTIONS)
        self.p = _int_option(self.name, self.options, "p", 97, minimum=2)
        fraction = _fraction(self.name, self.options)
        self.width = _int_option(self.name, self.options, "width", 128)
        self.hidden = _int_option(self.name, self.options, "hidden", 256)
        steps = _int_option(self.name, self.options, "steps", 1000)
        data_seed = _int_option(self.name, self.options, "data_seed", 0, minimum=0)
        pairs = torch.cartesian_prod(torch.arange(self.p), torch.arange(self.p))
        sums = pairs.sum(dim=1) % self.p
        order = torch.randperm(len(pairs), generator=generator("modular-addition", self.p, data_seed))
        cut = round(fraction * len(pairs))
        if not 1 <= cut < len(pairs):
            raise ValueError(
                f"problem {self.name!r}: fraction {fraction} of {len(pairs)} pairs leaves an empty "
                "training or validation set"
            )
        self.x, self.y = pairs[order[:cut]], sums[order[:cut]]
        self.x_val, self.y_val = pairs[order[cut:]], sums[order[cut:]]
        self.batch_size = parse_batch(self.options.get("batch"), cut, 512)
        self.default_budget = Budget(steps=steps)

    def make_model(self) -> nn.Module:
        return AdditionMLP(self.p, self.width, self.hidden)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return nn.functional.cross_entropy(output, target)
