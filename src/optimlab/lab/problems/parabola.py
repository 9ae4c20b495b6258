"""``parabola`` — the seed experiment: fit y = x² + noise with a 1-10-1 ReLU network.

1000 points x evenly spaced on [−1, 1], y = x² + N(0, 0.1²) (fixed data, ``data_seed``), MSE,
mini-batches of 32 drawn in a fresh seeded order each epoch, 12 epochs. A validation set of 250
points x ~ U(−1, 1) with their own noise measures generalization. The noise floor is 0.01 (the
noise variance), so a loss of 0.02 means the network has found the parabola.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from optimlab.lab.problems.base import Budget, TensorProblem, check_options, generator, parse_batch

OPTIONS = {
    "batch": "full | 1 | N (default 32)",
    "n": "number of training points (default 1000)",
    "hidden": "hidden units (default 10)",
    "data_seed": "seed of the data noise (default 0)",
}


class Parabola(TensorProblem):
    name = "parabola"
    description = "the seed experiment: y = x² + N(0, 0.1²), MLP 1-10-1 ReLU, MSE, batch 32, 12 epochs"
    target_loss = 0.02
    default_budget = Budget(epochs=12)

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        check_options(self.name, self.options, OPTIONS)
        n = _int_option(self.name, self.options, "n", 1000)
        self.hidden = _int_option(self.name, self.options, "hidden", 10)
        data_seed = _int_option(self.name, self.options, "data_seed", 0, minimum=0)
        g = generator("parabola-data", data_seed)
        self.x = torch.linspace(-1, 1, n).unsqueeze(1)
        self.y = self.x.pow(2) + 0.1 * torch.randn(self.x.shape, generator=g)
        self.x_val = torch.rand(250, 1, generator=g) * 2 - 1
        self.y_val = self.x_val.pow(2) + 0.1 * torch.randn(self.x_val.shape, generator=g)
        self.batch_size = parse_batch(self.options.get("batch"), n, 32)

    def make_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(1, self.hidden), nn.ReLU(), nn.Linear(self.hidden, 1))

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return nn.functional.mse_loss(output, target)


def _int_option(name: str, options: Mapping[str, Any], key: str, default: int, minimum: int = 1) -> int:
    value = options.get(key, default)
    try:
        number = int(value)
        ok = not isinstance(value, bool) and number == float(value) and number >= minimum
    except (TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        raise ValueError(f"problem {name!r}: {key} must be a whole number ≥ {minimum}, got {value!r}")
    return number
