"""The kinds of rule the engines carry beyond elementwise ones, on small rules written for the test:
per-tensor statistics (a trust ratio), group statistics (a group norm), group-level counters and
matrix rules stepped in same-shape stacks. Each engine must give the numbers written out by hand."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from optimlab.optim.base import RuleOptimizer
from optimlab.optim.engine import ENGINE_CHOICES


def normalized(param: Tensor, grad: Tensor, state: Any, *, lr: Any, grad_sq: Any, l1: Any = None):
    """θ ← θ − γ·g/‖g‖ with ‖g‖² a statistic (per tensor or over the group)."""
    return param - lr * grad / grad_sq**0.5, {}


def grad_squares(param: Tensor, grad: Tensor, state: Any, **hyper: Any) -> dict[str, Tensor]:
    return {"grad_sq": (grad * grad).sum()}


class TensorNormalized(RuleOptimizer):
    rule = staticmethod(normalized)
    statistics = staticmethod(grad_squares)
    elementwise = True

    def __init__(self, params: Any, lr: float = 0.1, *, engine: str | None = None) -> None:
        super().__init__(params, {"lr": lr, "differentiable": False}, engine=engine)

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        return {}

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        return {"lr": group["lr"]}


class GroupNormalized(TensorNormalized):
    statistics_scope = "group"

    def begin_group_step(self, group: dict[str, Any]) -> None:
        group["step"] = group.get("step", 0) + 1

    def group_statistics(self, group: dict[str, Any], totals: dict[str, Tensor]) -> dict[str, Any]:
        group["calls"] = group.get("calls", 0) + 1  # must be called once per step
        return totals


class StepNormalized(TensorNormalized):
    """‖g‖ over every param group (Prodigy's shared estimate), with a 0-d state entry the rule adds."""

    statistics_scope = "step"

    @staticmethod
    def rule(param: Tensor, grad: Tensor, state: Any, *, lr: Any, grad_sq: Any, l1: Any = None):
        norm = torch.as_tensor(grad_sq, dtype=param.dtype) ** 0.5
        return param - lr * grad / norm, {"norm": norm}

    def begin_step(self, groups: list[dict[str, Any]]) -> None:
        self.begun = getattr(self, "begun", 0) + 1

    def step_statistics(self, groups: list[dict[str, Any]], totals: dict[str, Tensor]) -> dict[str, Any]:
        assert self.begun == self.param_groups[0].get("calls", 0) + 1  # begin_step came first
        for group in groups:
            group["calls"] = group.get("calls", 0) + 1  # once per step, for all groups
        return totals


def polar_step(param: Tensor, grad: Tensor, state: Any, *, lr: Any, l1: Any = None):
    """A matrix rule on (…, m, n): θ ← θ − γ·(g gᵀ g)/‖g‖², momentum-free."""
    product = grad @ grad.transpose(-2, -1) @ grad
    norm = (grad * grad).sum(dim=(-2, -1), keepdim=True)
    buf = state.get("buf")
    new_buf = product if buf is None else 0.5 * buf + product
    return param - lr * new_buf / norm, {"buf": new_buf}


class Polar(RuleOptimizer):
    rule = staticmethod(polar_step)
    matrix = True

    def __init__(
        self, params: Any, lr: float = 0.1, batch: bool = True, *, engine: str | None = None
    ) -> None:
        super().__init__(params, {"lr": lr, "batch": batch, "differentiable": False}, engine=engine)

    def init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Tensor]:
        return {}

    def rule_hyperparameters(self, group: dict[str, Any]) -> dict[str, Any]:
        return {"lr": group["lr"]}

    def batches_matrices(self, group: dict[str, Any]) -> bool:
        return group["batch"]


def _params(shapes: list[tuple[int, ...]]) -> list[Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [
        torch.randn(shape, generator=generator, dtype=torch.float64, requires_grad=True) for shape in shapes
    ]


def _grads(params: list[Tensor], step: int) -> None:
    for index, param in enumerate(params):
        param.grad = torch.cos(torch.arange(param.numel(), dtype=torch.float64) + step + index).reshape(
            param.shape
        )


@pytest.mark.parametrize("engine", ENGINE_CHOICES)
@pytest.mark.parametrize("scope", ["tensor", "group"])
def test_statistics_reach_the_rule(engine: str, scope: str) -> None:
    params = _params([(3, 4), (5,), (2, 2)])
    expected = [p.detach().clone() for p in params]
    cls = TensorNormalized if scope == "tensor" else GroupNormalized
    optimizer = cls([{"params": params[:2]}, {"params": params[2:], "lr": 0.05}], engine=engine)
    for step in range(5):
        _grads(params, step)
        grads = [p.grad for p in params]
        group_norms = [
            sum((g * g).sum() for g in grads[:2]).sqrt(),
            (grads[2] * grads[2]).sum().sqrt(),
        ]
        for index, grad in enumerate(grads):
            lr = 0.1 if index < 2 else 0.05
            norm = (grad * grad).sum().sqrt() if scope == "tensor" else group_norms[index // 2]
            expected[index] -= lr * grad / norm
        optimizer.step()
    for param, want in zip(params, expected, strict=True):
        torch.testing.assert_close(param.detach(), want, rtol=1e-12, atol=1e-14)
    if scope == "group":
        assert [g["step"] for g in optimizer.param_groups] == [5, 5]
        assert [g["calls"] for g in optimizer.param_groups] == [5, 5]


def test_fused_engine_compiles_a_rule_with_statistics() -> None:
    from optimlab.optim.engine.kernels import compiler_available

    if not compiler_available("cpu"):
        pytest.skip("no compiler")
    params = _params([(64, 8), (33,)])
    optimizer = TensorNormalized(params, engine="fused")
    _grads(params, 0)
    optimizer.step()
    assert optimizer.engine.counts["fused"] == 2


def test_group_statistics_skip_a_skipped_group() -> None:
    params = _params([(3,)])
    optimizer = GroupNormalized(params, engine="eager")
    optimizer.param_groups[0]["nonfinite"] = "skip"
    params[0].grad = torch.tensor([1.0, float("nan"), 0.0], dtype=torch.float64)
    optimizer.step()
    assert "step" not in optimizer.param_groups[0] and optimizer.param_groups[0]["skipped_steps"] == 1


@pytest.mark.parametrize("engine", ENGINE_CHOICES)
def test_matrix_stacks_give_the_one_at_a_time_numbers(engine: str) -> None:
    shapes = [(4, 3), (4, 3), (2, 5), (4, 3), (2, 5), (6, 2)]
    stacked, alone = _params(shapes), _params(shapes)
    ours = Polar(stacked, engine=engine)
    reference = Polar(alone, batch=False, engine="eager")
    for step in range(4):
        _grads(stacked, step)
        _grads(alone, step)
        ours.step()
        reference.step()
    for a, b in zip(stacked, alone, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-13, atol=1e-15)
        torch.testing.assert_close(ours.state[a]["buf"], reference.state[b]["buf"], rtol=1e-13, atol=1e-15)
        assert ours.state[a]["buf"].shape == a.shape


@pytest.mark.parametrize("engine", ENGINE_CHOICES)
def test_step_statistics_span_every_group(engine: str) -> None:
    params = _params([(3, 4), (5,), (2, 2)])
    expected = [p.detach().clone() for p in params]
    optimizer = StepNormalized([{"params": params[:2]}, {"params": params[2:], "lr": 0.05}], engine=engine)
    for step in range(5):
        _grads(params, step)
        norm = sum((p.grad * p.grad).sum() for p in params).sqrt()
        for index, param in enumerate(params):
            expected[index] -= (0.1 if index < 2 else 0.05) * param.grad / norm
        optimizer.step()
    for param, want in zip(params, expected, strict=True):
        torch.testing.assert_close(param.detach(), want, rtol=1e-12, atol=1e-14)
        assert optimizer.state[param]["norm"].shape == ()  # a 0-d entry the rule added stays 0-d
    assert [g["calls"] for g in optimizer.param_groups] == [5, 5] and optimizer.begun == 5
