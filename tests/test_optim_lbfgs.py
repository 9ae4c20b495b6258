"""L-BFGS: the same iterates as torch.optim.LBFGS, and robust to non-finite losses and gradients."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch

import optimlab.optim as ol
from parity_cases import LBFGS_VARIANTS

Problem = Callable[[list[torch.Tensor]], torch.Tensor]


def rosenbrock(params: list[torch.Tensor]) -> torch.Tensor:
    (x,) = params
    return (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()


_gen = torch.Generator().manual_seed(7)
_A = torch.randn(8, 3, generator=_gen, dtype=torch.float64)
_B = torch.randn(8, generator=_gen, dtype=torch.float64)
_AC = torch.randn(6, 2, generator=_gen, dtype=torch.complex128)
_BC = torch.randn(6, generator=_gen, dtype=torch.complex128)


def least_squares(params: list[torch.Tensor]) -> torch.Tensor:
    w, b = params
    return ((_A @ w + b - _B) ** 2).mean()


def complex_least_squares(params: list[torch.Tensor]) -> torch.Tensor:
    (z,) = params
    return (_AC @ z - _BC).abs().pow(2).sum()


PROBLEMS: dict[str, tuple[Problem, Callable[[], list[torch.Tensor]]]] = {
    "rosenbrock-4d": (rosenbrock, lambda: [torch.tensor([-1.2, 1.0, -0.5, 0.8], dtype=torch.float64)]),
    "least-squares": (
        least_squares,
        lambda: [torch.zeros(3, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64)],
    ),
    "complex-least-squares": (complex_least_squares, lambda: [torch.zeros(2, dtype=torch.complex128)]),
}


def closure_for(opt: torch.optim.Optimizer, params: list[torch.Tensor], problem: Problem) -> Callable:
    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = problem(params)
        loss.backward()
        return loss

    return closure


def start(problem_name: str) -> list[torch.Tensor]:
    return [p.requires_grad_() for p in PROBLEMS[problem_name][1]()]


@pytest.mark.parametrize("problem_name", list(PROBLEMS))
@pytest.mark.parametrize("variant", list(LBFGS_VARIANTS))
def test_same_iterates_as_torch(problem_name: str, variant: str) -> None:
    problem = PROBLEMS[problem_name][0]
    runs = []
    for cls in (ol.LBFGS, torch.optim.LBFGS):
        params = start(problem_name)
        opt = cls(params, **LBFGS_VARIANTS[variant])
        closure = closure_for(opt, params, problem)
        losses = [opt.step(closure).item() for _ in range(4)]
        runs.append((params, losses, opt.state_dict()))
    (ours, ours_losses, ours_sd), (theirs, theirs_losses, theirs_sd) = runs
    assert ours_losses == theirs_losses
    assert theirs_losses[-1] < theirs_losses[0]  # the problem is actually being solved
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a, b)
    ours_state, theirs_state = ours_sd["state"][0], theirs_sd["state"][0]
    assert ours_state.keys() == theirs_state.keys()
    for key in ("func_evals", "n_iter"):
        assert ours_state[key] == theirs_state[key]
    assert len(ours_state["old_dirs"]) == len(theirs_state["old_dirs"])
    for a, b in zip(ours_state["old_dirs"], theirs_state["old_dirs"], strict=True):
        assert torch.equal(a, b)


# --- non-finite losses and gradients ----------------------------------------------------------------


class Recorder:
    """A Rosenbrock closure that records every point it evaluates and turns bad from evaluation
    ``bad_from`` on (NaN/Inf loss, or a NaN gradient with a finite loss)."""

    def __init__(self, opt: torch.optim.Optimizer, x: torch.Tensor, bad_from: int, kind: str = "nan-loss"):
        self.opt, self.x, self.bad_from, self.kind = opt, x, bad_from, kind
        self.points: list[tuple[torch.Tensor, float]] = []

    def __call__(self) -> torch.Tensor:
        self.opt.zero_grad()
        loss = rosenbrock([self.x])
        loss.backward()
        bad = len(self.points) + 1 >= self.bad_from
        self.points.append((self.x.detach().clone(), loss.item() if not bad else math.nan))
        if bad and self.kind == "nan-loss":
            return loss * math.nan
        if bad and self.kind == "inf-loss":
            return loss + math.inf
        if bad and self.kind == "nan-grad":
            self.x.grad[0] = math.nan
        return loss

    def best_finite(self) -> torch.Tensor:
        finite = [(loss, point) for point, loss in self.points if math.isfinite(loss)]
        return min(finite, key=lambda item: item[0])[1]


@pytest.mark.parametrize("kind", ["nan-loss", "inf-loss", "nan-grad"])
@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize("bad_from", [2, 6])
def test_nonfinite_evaluation_ends_the_step_at_a_finite_point(
    kind: str, line_search_fn: str | None, bad_from: int
) -> None:
    x = torch.tensor([-1.2, 1.0, -0.5, 0.8], dtype=torch.float64, requires_grad=True)
    opt = ol.LBFGS([x], line_search_fn=line_search_fn)
    closure = Recorder(opt, x, bad_from, kind)
    first = opt.step(closure)
    assert first.item() == closure.points[0][1]  # the step's first loss, as torch returns it
    assert len(closure.points) == bad_from  # the bad evaluation ended the step at once
    assert torch.isfinite(x).all()
    assert torch.equal(x.detach(), closure.best_finite())
    state = opt.state[x]
    assert state["nonfinite_stops"] == 1
    assert state["func_evals"] == bad_from
    assert state["n_iter"] == 0 and "old_dirs" not in state and "d" not in state

    # The next step works, and is exactly torch's first step from the restored point.
    restored = x.detach().clone()
    closure.bad_from = math.inf
    opt.step(closure)
    y = restored.clone().requires_grad_()
    fresh = torch.optim.LBFGS([y], line_search_fn=line_search_fn)
    fresh.step(closure_for(fresh, [y], rosenbrock))
    assert torch.equal(x.detach(), y.detach())
    assert rosenbrock([x]).item() < float(rosenbrock([restored]))
    assert opt.state[x]["nonfinite_stops"] == 1


def test_torch_lbfgs_is_corrupted_where_ours_is_not() -> None:
    """The reason for the guard: torch.optim.LBFGS writes the NaNs into the parameters."""
    results = []
    for cls in (torch.optim.LBFGS, ol.LBFGS):
        x = torch.tensor([-1.2, 1.0, -0.5, 0.8], dtype=torch.float64, requires_grad=True)
        opt = cls([x])
        opt.step(Recorder(opt, x, bad_from=4, kind="nan-grad"))
        results.append(bool(torch.isfinite(x).all()))
    assert results == [False, True]


def test_nonfinite_first_evaluation_restores_the_last_steps_best_point() -> None:
    x = torch.tensor([-1.2, 1.0, -0.5, 0.8], dtype=torch.float64, requires_grad=True)
    opt = ol.LBFGS([x], max_iter=5)
    closure = Recorder(opt, x, bad_from=math.inf)
    opt.step(closure)
    best_of_first_step = closure.best_finite()
    assert not torch.equal(x.detach(), best_of_first_step)  # without line search: last point unevaluated
    closure.bad_from = len(closure.points) + 1  # the very next evaluation is NaN
    loss = opt.step(closure)
    assert math.isnan(loss.item())
    assert torch.equal(x.detach(), best_of_first_step)
    assert opt.state[x]["nonfinite_stops"] == 1


def test_nonfinite_first_evaluation_without_any_finite_point_leaves_params() -> None:
    x = torch.tensor([0.5, 0.5], dtype=torch.float64, requires_grad=True)
    opt = ol.LBFGS([x])
    closure = Recorder(opt, x, bad_from=1)
    loss = opt.step(closure)
    assert math.isnan(loss.item())
    assert torch.equal(x.detach(), torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert opt.state[x]["func_evals"] == 1 and opt.state[x]["nonfinite_stops"] == 1


def test_step_requires_a_closure() -> None:
    with pytest.raises(ValueError, match="closure"):
        ol.LBFGS([torch.zeros(2, requires_grad=True)]).step(None)  # type: ignore[arg-type]
