"""``quadratic-100d`` — DeepOBS's noisy ill-conditioned quadratic (Schneider et al., 2019).

f(θ) = ½·θᵀHθ with H = Qᵀ·diag(λ)·Q, Q a random rotation, 90 eigenvalues λ ~ U(0, 1) and 10
eigenvalues λ ~ U(30, 60) (fixed by ``data_seed``). A training set of 1000 noise vectors
xᵢ ~ N(0, I) makes the gradients stochastic: a sample's loss is ½·(θ − xᵢ)ᵀH(θ − xᵢ) − ½·tr H, an
unbiased estimate of f(θ) whose minimum is 0 in expectation. θ starts at (1, …, 1) (f ≈ 100). The
evaluated ``loss`` is the exact f(θ); the target is 1 % of the initial loss, after 100 epochs of 8 steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from optimlab.lab.problems.base import Budget, TensorProblem, check_options, generator, parse_batch
from optimlab.lab.problems.parabola import _int_option

OPTIONS = {
    "batch": "full | 1 | N (default 128)",
    "dim": "dimension (default 100)",
    "data_seed": "seed of the spectrum, rotation and noise (default 0)",
}


class Offset(nn.Module):
    """θ as a module: ``forward(x) = θ − x`` (one row per sample)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.theta = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.theta - x


class Quadratic100D(TensorProblem):
    name = "quadratic-100d"
    description = (
        "DeepOBS-style noisy quadratic, 100-D, eigenvalues 90×U(0,1) + 10×U(30,60), batch 128, 100 epochs"
    )
    target_loss = 1.0  # 1 % of the initial loss
    default_budget = Budget(epochs=100)  # 800 steps, as DeepOBS's quadratic_deep

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        check_options(self.name, self.options, OPTIONS)
        dim = _int_option(self.name, self.options, "dim", 100, minimum=2)
        data_seed = _int_option(self.name, self.options, "data_seed", 0, minimum=0)
        g = generator("quadratic", data_seed)
        n_big = max(1, dim // 10)
        eigenvalues = torch.cat(
            [torch.rand(dim - n_big, generator=g), 30 + 30 * torch.rand(n_big, generator=g)]
        )
        q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g))
        self.hessian = q.T @ torch.diag(eigenvalues) @ q
        self.hessian = 0.5 * (self.hessian + self.hessian.T)
        self.trace = float(eigenvalues.sum())
        self.dim = dim
        self.x = torch.randn(1000, dim, generator=g)
        self.y = torch.zeros(1000)
        self.batch_size = parse_batch(self.options.get("batch"), len(self.x), 128)

    def make_model(self) -> nn.Module:
        return Offset(self.dim)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return 0.5 * ((output @ self.hessian) * output).sum(dim=1).mean() - 0.5 * self.trace

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        theta = model.theta  # type: ignore[union-attr]
        return {"loss": float(0.5 * theta @ self.hessian @ theta)}
