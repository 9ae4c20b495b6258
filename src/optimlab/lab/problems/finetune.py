"""``finetune`` — pre-train on the digits, fine-tune on a shifted version of them: a small lr matters.

Pre-training is part of building the model: ``build_model(seed)`` initializes an MLP
64 → ``hidden`` → ``hidden`` → 10 (ReLU) from the seed, trains it on the original digits (the
``digits-mlp`` training split) with Adam (lr 1e-3, batches of 64 in a seeded order,
``pretrain_epochs`` epochs, one thread, so every process gets the same weights), and gives it a new
head (a fresh ``hidden → 10`` layer from its own stream of the seed) for the new task. The
pre-trained weights are cached in the process per (options, seed), so replicas and repeated runs do
not pre-train again; nothing is downloaded. The lab's optimizer trains only the fine-tuning.

The fine-tuning task is the same digits under a distribution shift (``shift``):

* ``rotate`` (default): the images turned by 90°;
* ``relabel``: the images as they were, the labels permuted (a fixed derangement): a new task on
  the same features, which transfer fully;
* ``permute``: the pixels shuffled by a fixed permutation.

It trains on ``samples`` images per class of the training split (few: the fine-tuning regime) and is
validated on the whole shifted validation split (``val_loss``, ``val_accuracy``). The training loss
alone favours large steps (they fit the few samples fastest); the validation loss is what a
fine-tuning is for, and there a small learning rate wins. Measured (Adam, 20 epochs, median of
seeds 0–2): ``rotate`` val_loss 0.26 at lr 1e-3, 0.53 at 1e-2, 1.9 at 0.1 (0.27 at 1e-3 without
pre-training, ``pretrain_epochs=0``); ``relabel`` 0.13 at 1e-3, 0.41 at 1e-2, 3.7 at 0.1.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from optimlab.lab.problems.base import (
    Budget,
    TensorProblem,
    check_options,
    generator,
    mix_seed,
    parse_batch,
    seeded_module,
)
from optimlab.lab.problems.digits import _digits
from optimlab.lab.problems.parabola import _int_option

OPTIONS = {
    "shift": "rotate | relabel | permute (default rotate)",
    "samples": "fine-tuning images per class (default 20)",
    "hidden": "hidden units of each of the two layers (default 128)",
    "pretrain_epochs": "epochs of pre-training on the original digits (default 10)",
    "batch": "full | 1 | N (default 32)",
    "split_seed": "seed of the digits' train/validation split and of the shift (default 0)",
}
SHIFTS = ("rotate", "relabel", "permute")
#: pre-training's Adam learning rate and batch size
PRETRAIN_LR, PRETRAIN_BATCH = 1e-3, 64

#: pre-trained weights by (hidden, pretrain_epochs, split_seed, seed): built once per process
_PRETRAINED: dict[tuple[int, int, int, int], dict[str, Tensor]] = {}


def _mlp(hidden: int) -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 10)
    )


def pretrained_weights(hidden: int, epochs: int, split_seed: int, seed: int) -> dict[str, Tensor]:
    """The MLP of ``seed`` pre-trained on the original digits (cached in the process; the caller
    gets its own copy)."""
    key = (hidden, epochs, split_seed, seed)
    if key not in _PRETRAINED:
        x, y, _, _ = _digits(split_seed)
        model = seeded_module(seed, lambda: _mlp(hidden))
        optimizer = torch.optim.Adam(model.parameters(), lr=PRETRAIN_LR)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # the same float sums in every process, whatever its threads
        try:
            for epoch in range(epochs):
                order = torch.randperm(len(x), generator=generator("finetune-pretrain", seed, epoch))
                for start in range(0, len(x), PRETRAIN_BATCH):
                    idx = order[start : start + PRETRAIN_BATCH]
                    optimizer.zero_grad(set_to_none=True)
                    nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                    optimizer.step()
        finally:
            torch.set_num_threads(threads)
        _PRETRAINED[key] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {k: v.clone() for k, v in _PRETRAINED[key].items()}


def _shifted(shift: str, x: Tensor, y: Tensor, split_seed: int) -> tuple[Tensor, Tensor]:
    """The digits ``(x, y)`` under ``shift`` (fixed by ``split_seed``)."""
    if shift == "rotate":
        return torch.rot90(x.view(-1, 8, 8), 1, dims=(1, 2)).reshape(-1, 64), y
    g = generator("finetune-shift", shift, split_seed)
    if shift == "permute":
        return x[:, torch.randperm(64, generator=g)], y
    labels = (torch.arange(10) + 1 + torch.randperm(9, generator=g)[0]) % 10  # a derangement
    return x, labels[y]


class Finetune(TensorProblem):
    name = "finetune"
    description = (
        "digits MLP pre-trained on the digits, new head fine-tuned on 20/class rotated ones, 20 epochs; "
        "a small lr matters: watch val_loss"
    )
    target_loss = 0.05
    version = "1"
    classification = True
    default_budget = Budget(epochs=20)

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        check_options(self.name, self.options, OPTIONS)
        self.shift = str(self.options.get("shift", "rotate"))
        if self.shift not in SHIFTS:
            raise ValueError(
                f"problem {self.name!r}: shift must be one of {', '.join(SHIFTS)}, got {self.shift!r}"
            )
        samples = _int_option(self.name, self.options, "samples", 20)
        self.hidden = _int_option(self.name, self.options, "hidden", 128)
        self.pretrain_epochs = _int_option(self.name, self.options, "pretrain_epochs", 10, minimum=0)
        self.split_seed = _int_option(self.name, self.options, "split_seed", 0, minimum=0)
        x, y, x_val, y_val = _digits(self.split_seed)
        per_class = min(int((y == label).sum()) for label in range(10))
        if samples > per_class:
            raise ValueError(
                f"problem {self.name!r}: samples must be at most {per_class} (images per class), "
                f"got {samples}"
            )
        chosen = torch.cat([torch.nonzero(y == label).flatten()[:samples] for label in range(10)])
        chosen = chosen[torch.randperm(len(chosen), generator=generator("finetune-subset", self.split_seed))]
        self.x, self.y = _shifted(self.shift, x[chosen], y[chosen], self.split_seed)
        self.x_val, self.y_val = _shifted(self.shift, x_val, y_val, self.split_seed)
        self.x_source, self.y_source = x_val, y_val
        self.batch_size = parse_batch(self.options.get("batch"), len(self.x), 32)

    def make_model(self) -> nn.Module:
        return _mlp(self.hidden)

    def build_model(self, seed: int) -> nn.Module:
        """The MLP of ``seed`` pre-trained on the original digits, with a new head (fresh weights)."""
        model = _mlp(self.hidden)
        model.load_state_dict(pretrained_weights(self.hidden, self.pretrain_epochs, self.split_seed, seed))
        # a new head for the new task (torch's default init, from its own stream of the seed)
        model[-1] = seeded_module(mix_seed("finetune-head", seed), lambda: nn.Linear(self.hidden, 10))
        return model

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return nn.functional.cross_entropy(output, target)
