"""``digits-mlp`` and ``digits-cnn`` — scikit-learn's bundled 8×8 handwritten digits (no download).

1797 images, 10 classes, split 80/20 (stratified, fixed ``split_seed``) into training and
validation sets; pixels scaled to [0, 1] and standardized with the training statistics.
Cross-entropy loss; accuracy is reported as well as loss. The seed posts' "swap the optimizer in a
CNN" test, small enough for a CPU.

* ``digits-mlp``: 64 → 64 → 10, ReLU.
* ``digits-cnn``: conv 3×3 (8) → ReLU → max-pool 2 → conv 3×3 (16) → ReLU → max-pool 2 → linear 64 → 10.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

import torch
from torch import Tensor, nn

from optimlab.lab.problems.base import Budget, TensorProblem, check_options, generator, parse_batch
from optimlab.lab.problems.parabola import _int_option

OPTIONS = {
    "batch": "full | 1 | N (default 32)",
    "split_seed": "seed of the train/validation split (default 0)",
}


@cache
def _digits(split_seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:  # pragma: no cover - sklearn is in the lab extra
        raise ValueError("the digits problems need scikit-learn (pip install 'optimlab[lab]')") from error
    data = load_digits()
    x = torch.tensor(data.data, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    g = generator("digits-split", split_seed)
    train_idx, val_idx = [], []
    for label in range(10):  # stratified 80/20 split
        idx = torch.nonzero(y == label).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        cut = round(0.8 * len(idx))
        train_idx.append(idx[:cut])
        val_idx.append(idx[cut:])
    tr, va = torch.cat(train_idx), torch.cat(val_idx)
    tr = tr[torch.randperm(len(tr), generator=g)]
    mean, std = x[tr].mean(0), x[tr].std(0).clamp_min(1e-3)
    x = (x - mean) / std
    return x[tr], y[tr], x[va], y[va]


class _Digits(TensorProblem):
    classification = True
    default_budget = Budget(epochs=10)
    image = False
    #: the options this problem accepts (a subclass with more extends them)
    option_names: Mapping[str, str] = OPTIONS

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        check_options(self.name, self.options, self.option_names)
        split_seed = _int_option(self.name, self.options, "split_seed", 0, minimum=0)
        x, y, x_val, y_val = _digits(split_seed)
        if self.image:
            x, x_val = x.view(-1, 1, 8, 8), x_val.view(-1, 1, 8, 8)
        self.x, self.y, self.x_val, self.y_val = x, y, x_val, y_val
        self.batch_size = parse_batch(self.options.get("batch"), len(x), 32)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return nn.functional.cross_entropy(output, target)


class DigitsMLP(_Digits):
    name = "digits-mlp"
    description = "sklearn 8×8 digits, MLP 64-64-10, cross-entropy, batch 32, 10 epochs; reports accuracy"
    target_loss = 0.05

    def make_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


class DigitsCNN(_Digits):
    name = "digits-cnn"
    description = "sklearn 8×8 digits, small CNN (2 conv + linear), cross-entropy, batch 32, 10 epochs"
    target_loss = 0.05
    image = True

    def make_model(self) -> nn.Module:
        return nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64, 10),
        )
