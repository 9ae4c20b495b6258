"""L-BFGS: the same iterates as torch.optim.LBFGS, and robust to non-finite losses and gradients.

The default step is torch's arithmetic bit for bit (``torch.equal`` everywhere below); ``compact=True``
sums in another order and is held to 1e-9 (float64, 20 steps) where the problem does not amplify
rounding — and torch's own iterates show where it does.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

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


def assert_same_state(ours: dict, theirs: dict) -> None:
    """Every key of torch's L-BFGS state, equal (tensors bit for bit, Python numbers as numbers)."""
    assert ours.keys() == theirs.keys()
    for key, theirs_value in theirs.items():
        ours_value = ours[key]
        if isinstance(theirs_value, list):
            assert len(ours_value) == len(theirs_value), key
            pairs = list(zip(ours_value, theirs_value, strict=True))
        else:
            pairs = [(ours_value, theirs_value)]
        for a, b in pairs:
            assert type(a) is type(b), key
            if isinstance(b, torch.Tensor):
                assert a.dtype == b.dtype and torch.equal(a, b), key
            else:
                assert a == b, key


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
        losses = [opt.step(closure).item() for _ in range(20)]
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
    assert_same_state(ours_state, theirs_state)


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


# --- the lab's problems: bit for bit by default, compact within 1e-9 where rounding is not amplified ----

LAB_PRESET = {"lr": 0.01, "max_iter": 10, "max_eval": 10}  # the lab's L-BFGS preset


def lab_run(
    name: str, cls: type, hyper: dict, dtype: torch.dtype, steps: int = 20, scale: float = 1.0
) -> tuple[torch.Tensor, dict]:
    """``steps`` L-BFGS steps on the lab problem ``name`` (its seed-0 model and batches) in ``dtype``;
    the flat parameters at the end (the start multiplied by ``scale``) and the optimizer state."""
    from optimlab.lab.problems import get_problem

    problem = get_problem(name)
    for attribute, value in list(vars(problem).items()):  # the problem's data in dtype too
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            setattr(problem, attribute, value.to(dtype))
    model = problem.build_model(0).to(dtype)
    params = list(model.parameters())
    with torch.no_grad():
        torch._foreach_mul_(params, scale)
    batches: list = []
    epoch = 0
    while len(batches) < steps:
        batches.extend(problem.batches(0, epoch))
        epoch += 1
    opt = cls(params, **hyper)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the lab trains (and no thread waits on a busy machine)
    try:
        run_steps(opt, model, problem, batches[:steps], dtype)
    finally:
        torch.set_num_threads(threads)
    return torch.cat([p.detach().reshape(-1) for p in params]), opt.state_dict()["state"][0]


def run_steps(
    opt: torch.optim.Optimizer, model: torch.nn.Module, problem: Any, batches: list, dtype: torch.dtype
) -> None:
    for x, y in batches:
        x = x.to(dtype) if x.is_floating_point() else x
        y = y.to(dtype) if y.is_floating_point() else y

        def closure(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
            opt.zero_grad()
            loss = problem.loss(model(x), y)
            loss.backward()
            return loss

        opt.step(closure)


SLOW = pytest.mark.slow  # seconds of the user's closure each, on a loaded 2-core machine
LAB_PROBLEMS = [
    "parabola",
    "rosenbrock",
    "quadratic-100d:dim=20",
    pytest.param("quadratic-100d", marks=SLOW),
    pytest.param("digits-mlp", marks=SLOW),
]
LINE_SEARCHES = {"fixed-step": {}, "strong-wolfe": {"line_search_fn": "strong_wolfe"}}


@pytest.mark.parametrize("line_search", list(LINE_SEARCHES))
@pytest.mark.parametrize("name", LAB_PROBLEMS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_lab_problems_bit_for_bit(name: str, line_search: str, dtype: torch.dtype) -> None:
    hyper = {**LAB_PRESET, **LINE_SEARCHES[line_search]}
    ours, ours_state = lab_run(name, ol.LBFGS, hyper, dtype)
    theirs, theirs_state = lab_run(name, torch.optim.LBFGS, hyper, dtype)
    assert torch.equal(ours, theirs)
    assert_same_state(ours_state, theirs_state)
    assert ours_state["func_evals"] > 20  # the steps did iterate


def relative_deviation(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


#: (problem, line search) where compact=True stays within 1e-9 of torch after 20 float64 steps
#: (measured: parabola 7e-14, quadratic-100d 1e-12 and 6e-12, digits-mlp 2e-12, rosenbrock ≤ 4e-14)
COMPACT_WITHIN_1E9 = [
    ("parabola", "fixed-step"),
    ("rosenbrock", "fixed-step"),
    ("rosenbrock", "strong-wolfe"),
    ("quadratic-100d:dim=20", "fixed-step"),
    ("quadratic-100d:dim=20", "strong-wolfe"),
    pytest.param("quadratic-100d", "fixed-step", marks=SLOW),
    pytest.param("quadratic-100d", "strong-wolfe", marks=SLOW),
    pytest.param("digits-mlp", "fixed-step", marks=SLOW),
]


@pytest.mark.parametrize(("name", "line_search"), COMPACT_WITHIN_1E9)
def test_compact_within_1e9_of_torch(name: str, line_search: str) -> None:
    hyper = {**LAB_PRESET, **LINE_SEARCHES[line_search]}
    ours, ours_state = lab_run(name, ol.LBFGS, {**hyper, "compact": True}, torch.float64)
    theirs, theirs_state = lab_run(name, torch.optim.LBFGS, hyper, torch.float64)
    assert relative_deviation(ours, theirs) <= 1e-9
    assert ours_state.keys() == theirs_state.keys()
    assert (ours_state["func_evals"], ours_state["n_iter"]) == (
        theirs_state["func_evals"],
        theirs_state["n_iter"],
    )
    assert len(ours_state["old_dirs"]) == len(theirs_state["old_dirs"]) >= 10
    for a, b in zip(ours_state["old_stps"], theirs_state["old_stps"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-12)


def test_where_torch_amplifies_rounding_no_reordering_can_match_it() -> None:
    """Why the default keeps torch's order: on parabola with strong Wolfe (lr 1) torch's own
    iterates move by more than 1e-3 when the start moves by 1e-15 — so does compact=True, and the
    default does not move at all."""
    hyper = LINE_SEARCHES["strong-wolfe"]
    theirs, _ = lab_run("parabola", torch.optim.LBFGS, hyper, torch.float64)
    nudged, _ = lab_run("parabola", torch.optim.LBFGS, hyper, torch.float64, scale=1 + 1e-15)
    compact, _ = lab_run("parabola", ol.LBFGS, {**hyper, "compact": True}, torch.float64)
    ours, _ = lab_run("parabola", ol.LBFGS, hyper, torch.float64)
    assert relative_deviation(nudged, theirs) > 1e-3
    assert relative_deviation(compact, theirs) > 1e-3
    assert torch.equal(ours, theirs)


@pytest.mark.parametrize("problem_name", ["least-squares", "complex-least-squares"])
@pytest.mark.parametrize("variant", ["lr-history", "strong-wolfe-history-tolerances"])
def test_compact_ring_wraps_within_1e9(variant: str, problem_name: str) -> None:
    """A short history (3 or 4 pairs) overwritten many times, on well-conditioned problems (complex
    parameters as their real views, as torch flattens them)."""
    problem = PROBLEMS[problem_name][0]
    runs = []
    for cls, extra in ((ol.LBFGS, {"compact": True}), (torch.optim.LBFGS, {})):
        params = start(problem_name)
        opt = cls(params, **LBFGS_VARIANTS[variant], **extra)
        closure = closure_for(opt, params, problem)
        for _ in range(20):
            opt.step(closure)
        runs.append(
            torch.cat(
                [
                    torch.view_as_real(p.detach()).reshape(-1) if p.is_complex() else p.detach().reshape(-1)
                    for p in params
                ]
            )
        )
        n_iter = opt.state[params[0]]["n_iter"]
    if problem_name == "least-squares":
        assert n_iter > LBFGS_VARIANTS[variant]["history_size"] + 1  # the ring did wrap
    assert relative_deviation(*runs) <= 1e-9


# --- checkpoints: torch's state in, torch's state out --------------------------------------------


@pytest.mark.parametrize("compact", [False, True], ids=["default", "compact"])
@pytest.mark.parametrize("line_search", list(LINE_SEARCHES))
def test_checkpoints_continue_torchs_run_both_ways(line_search: str, compact: bool) -> None:
    hyper = {"history_size": 4, "max_iter": 6, **LINE_SEARCHES[line_search]}

    def steps(opt: torch.optim.Optimizer, params: list[torch.Tensor], n: int) -> None:
        closure = closure_for(opt, params, rosenbrock)
        for _ in range(n):
            opt.step(closure)

    reference_params = start("rosenbrock-4d")
    reference = torch.optim.LBFGS(reference_params, **hyper)
    steps(reference, reference_params, 6)
    for source_cls, target_cls in ((torch.optim.LBFGS, ol.LBFGS), (ol.LBFGS, torch.optim.LBFGS)):
        source_params = start("rosenbrock-4d")
        source = source_cls(
            source_params, **hyper, **({"compact": compact} if source_cls is ol.LBFGS else {})
        )
        steps(source, source_params, 3)
        target_params = [p.detach().clone().requires_grad_() for p in source_params]
        target = target_cls(
            target_params, **hyper, **({"compact": compact} if target_cls is ol.LBFGS else {})
        )
        target.load_state_dict(copy.deepcopy(source.state_dict()))
        steps(target, target_params, 3)
        if compact:  # Rosenbrock amplifies the other summation order to ~2e-9 here
            torch.testing.assert_close(target_params[0], reference_params[0], rtol=1e-7, atol=1e-9)
        else:
            assert torch.equal(target_params[0], reference_params[0])
            assert_same_state(target.state_dict()["state"][0], reference.state_dict()["state"][0])


def test_compact_state_dict_is_torchs_lists() -> None:
    params = start("rosenbrock-4d")
    opt = ol.LBFGS(params, history_size=3, compact=True)
    closure = closure_for(opt, params, rosenbrock)
    for _ in range(3):
        opt.step(closure)
    state = opt.state_dict()["state"][0]
    assert len(state["old_dirs"]) == len(state["old_stps"]) == len(state["ro"]) == 3
    assert len(state["al"]) == 3
    for y, s, ro in zip(state["old_dirs"], state["old_stps"], state["ro"], strict=True):
        assert y.shape == s.shape == (4,) and ro.shape == ()
        torch.testing.assert_close(ro, 1 / y.dot(s), rtol=1e-12, atol=0)


def test_compact_must_be_a_bool() -> None:
    with pytest.raises(ValueError, match="compact must be True or False"):
        ol.LBFGS([torch.zeros(2, requires_grad=True)], compact="yes")  # type: ignore[arg-type]


def test_float32_host_rounding_is_the_tensors() -> None:
    from optimlab.optim.lbfgs_pairs import _float32

    gen = torch.Generator().manual_seed(3)
    a = torch.randn(2000, generator=gen) * torch.logspace(-30, 30, 2000)
    b = torch.randn(2000, generator=gen)
    host = [_float32(x * y) for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    assert host == (a * b).tolist()
    host = [_float32(x - y) for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    assert host == (a - b).tolist()


def test_compact_beyond_its_size_is_torchs_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Large models are memory-bound either way: compact=True then runs the pair-by-pair recursion."""
    import optimlab.optim.lbfgs as lbfgs_module

    monkeypatch.setattr(lbfgs_module, "COMPACT_MAX_NUMEL", 3)  # rosenbrock-4d has 4 elements
    runs = []
    for cls, extra in ((ol.LBFGS, {"compact": True}), (torch.optim.LBFGS, {})):
        params = start("rosenbrock-4d")
        opt = cls(params, **extra)
        closure = closure_for(opt, params, rosenbrock)
        for _ in range(5):
            opt.step(closure)
        runs.append((params[0].detach(), opt.state_dict()["state"][0]))
    assert torch.equal(runs[0][0], runs[1][0])
    assert_same_state(runs[0][1], runs[1][1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_tolerance_grad_is_compared_in_the_gradients_dtype(dtype: torch.dtype) -> None:
    """float32(1e-7) is a little above 1e-7, yet torch's float32 tensor compares as at most 1e-7."""
    slope = torch.tensor([1e-7, -1e-8], dtype=dtype)
    states = []
    for cls in (ol.LBFGS, torch.optim.LBFGS):
        x = torch.ones(2, dtype=dtype, requires_grad=True)
        opt = cls([x])

        def closure(opt: torch.optim.Optimizer = opt, x: torch.Tensor = x) -> torch.Tensor:
            opt.zero_grad()
            loss = (slope * x).sum()
            loss.backward()
            return loss

        opt.step(closure)
        states.append(opt.state_dict()["state"][0])
    assert_same_state(*states)
    assert states[1]["func_evals"] == 1  # torch stopped at once: the gradient is small enough
