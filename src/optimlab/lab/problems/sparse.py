"""``sparse-regression`` — many irrelevant features: L1 gives exact zeros, L2 only small weights.

y = X·w* + N(0, 0.1²) with X ~ N(0, 1) of 200 samples × 100 features, of which only 5 matter
(w* = ±1 on 5 random features, fixed by ``data_seed``). A linear model without bias is fitted by
MSE. Run it with an optimizer's ``l1`` option (proximal shrinkage, exact zeros) against
``weight_decay`` (L2): the problem reports ``zero_fraction`` (the fraction of weights that are
exactly 0) and ``support_recall`` (the fraction of the 5 relevant features whose weight is
non-zero) on every evaluation, plus a validation loss on 200 fresh samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from optimlab.lab.problems.base import Budget, TensorProblem, check_options, generator, parse_batch
from optimlab.lab.problems.parabola import _int_option

OPTIONS = {
    "batch": "full | 1 | N (default 32)",
    "features": "number of features (default 100)",
    "relevant": "number of relevant features (default 5)",
    "data_seed": "seed of the data (default 0)",
}


class SparseRegression(TensorProblem):
    name = "sparse-regression"
    description = "linear regression, 100 features of which 5 matter; reports the fraction of exact zeros"
    target_loss = 0.02
    default_budget = Budget(epochs=30)

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        check_options(self.name, self.options, OPTIONS)
        features = _int_option(self.name, self.options, "features", 100)
        relevant = _int_option(self.name, self.options, "relevant", 5)
        if relevant > features:
            raise ValueError(f"problem {self.name!r}: relevant ({relevant}) exceeds features ({features})")
        data_seed = _int_option(self.name, self.options, "data_seed", 0, minimum=0)
        g = generator("sparse", data_seed)
        self.support = torch.randperm(features, generator=g)[:relevant]
        self.w_true = torch.zeros(features)
        self.w_true[self.support] = torch.where(torch.rand(relevant, generator=g) < 0.5, -1.0, 1.0)
        self.features = features
        self.x = torch.randn(200, features, generator=g)
        self.y = self.x @ self.w_true + 0.1 * torch.randn(200, generator=g)
        self.x_val = torch.randn(200, features, generator=g)
        self.y_val = self.x_val @ self.w_true + 0.1 * torch.randn(200, generator=g)
        self.batch_size = parse_batch(self.options.get("batch"), len(self.x), 32)

    def make_model(self) -> nn.Module:
        return nn.Linear(self.features, 1, bias=False)

    def build_model(self, seed: int) -> nn.Module:
        model = super().build_model(seed)
        return _Squeeze(model)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return nn.functional.mse_loss(output, target)

    def metrics(self, model: nn.Module) -> dict[str, float]:
        weight = model.linear.weight.detach().flatten()  # type: ignore[union-attr]
        return {
            "zero_fraction": float((weight == 0).float().mean()),
            "support_recall": float((weight[self.support] != 0).float().mean()),
        }


class _Squeeze(nn.Module):
    def __init__(self, linear: nn.Module) -> None:
        super().__init__()
        self.linear = linear

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).squeeze(-1)
