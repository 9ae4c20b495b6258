"""optimlab's extras over torch.optim: ``l1`` proximal shrinkage and the ``nonfinite`` gradient policy."""

from __future__ import annotations

import math

import pytest
import torch

import optimlab.optim as ol
from optimlab.optim.engine import ENGINE_CHOICES
from optimlab.optim.rules import l1_proximal
from parity_cases import PARITY, Variant, run

# --- l1: exact zeros on a sparse linear regression -------------------------------------------------

N, D, RELEVANT = 200, 50, 5
_gen = torch.Generator().manual_seed(0)
X = torch.randn(N, D, generator=_gen, dtype=torch.float64)
W_TRUE = torch.zeros(D, dtype=torch.float64)
W_TRUE[:RELEVANT] = torch.tensor([2.0, -3.0, 1.5, 4.0, -2.5], dtype=torch.float64)
Y = X @ W_TRUE + 0.5 * torch.randn(N, generator=_gen, dtype=torch.float64)


def loss_at(w: torch.Tensor, rows: torch.Tensor | slice = slice(None)) -> torch.Tensor:
    """½·mean squared error, the smooth part of the lasso objective."""
    return 0.5 * ((X[rows] @ w - Y[rows]) ** 2).mean()


XTX, XTY = X.T @ X / N, X.T @ Y / N  # the full-batch gradient is XTX·w − XTY


def train(cls: type, epochs: int, batch: int, **kwargs) -> torch.Tensor:
    """``epochs`` passes over the data in minibatches of ``batch`` rows (the gradient of
    :func:`loss_at`, written out to keep the test cheap)."""
    w = torch.zeros(D, dtype=torch.float64, requires_grad=True)
    opt = cls([w], **kwargs)
    order = torch.Generator().manual_seed(1)
    for _ in range(epochs):
        rows = torch.randperm(N, generator=order)
        for start in range(0, N, batch):
            if batch == N:
                w.grad = XTX @ w.detach() - XTY
            else:
                xb = X[rows[start : start + batch]]
                w.grad = xb.T @ (xb @ w.detach() - Y[rows[start : start + batch]]) / len(xb)
            opt.step()
    return w.detach()


LAM = 0.1


def lasso_solution() -> torch.Tensor:
    """Full-batch SGD with ``l1`` is proximal gradient descent (ISTA): it converges to the lasso
    solution, which we check by its optimality conditions."""
    w = train(ol.SGD, epochs=400, batch=N, lr=0.4, l1=LAM).requires_grad_()
    (grad,) = torch.autograd.grad(loss_at(w), w)
    w = w.detach()
    zero = w == 0
    # KKT conditions of min ½·mse + λ‖w‖₁:  ∇ = −λ·sign(w) off the zeros, |∇| ≤ λ on them.
    torch.testing.assert_close(grad[~zero], -LAM * torch.sign(w[~zero]), rtol=0, atol=1e-9)
    assert (grad[zero].abs() < LAM).all()
    return w


LASSO = lasso_solution()


def test_the_lasso_solution_has_the_true_support() -> None:
    assert (LASSO[RELEVANT:] == 0.0).all()
    assert (torch.sign(LASSO[:RELEVANT]) == torch.sign(W_TRUE[:RELEVANT])).all()


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (ol.SGD, {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
        (ol.SGD, {"lr": 0.02, "momentum": 0.8, "dampening": 0.5}),
        (ol.Adam, {"lr": 0.05}),
        (ol.Adam, {"lr": 0.05, "amsgrad": True}),
        (ol.AdamW, {"lr": 0.05, "weight_decay": 0.0}),
        (ol.NAdam, {"lr": 0.05}),
        (ol.Adamax, {"lr": 0.05}),
        (ol.Adagrad, {"lr": 0.5}),
        (ol.RMSprop, {"lr": 0.005, "momentum": 0.9, "centered": True}),
        (ol.ASGD, {"lr": 0.3, "t0": 100}),  # ζ = 1e-4 adds a negligible ridge term
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else "-".join(map(str, value.values())),
)
def test_l1_finds_the_lasso_solution_with_every_optimizer(cls: type, kwargs: dict) -> None:
    """``l1`` means the same penalty for every optimizer: each converges to the lasso solution,
    irrelevant weights exactly 0.0 (the step is taken in each optimizer's own metric)."""
    w = train(cls, epochs=300, batch=N, l1=LAM, **kwargs)
    assert (w[RELEVANT:] == 0.0).all(), f"{int((w[RELEVANT:] != 0).sum())} irrelevant weights are not zero"
    torch.testing.assert_close(w[:RELEVANT], LASSO[:RELEVANT], rtol=0, atol=0.05)


def test_rprop_l1_threshold_is_its_step_size() -> None:
    """Rprop moves a weight by its step size η whatever the gradient's magnitude, so its l1 threshold
    is η·l1 (the step shortened by l1·η towards 0): l1 is relative to the sign of the gradient, not to
    its size, and Rprop does not reach the lasso solution of the other rules. A weight at 0 stays there
    exactly when l1 ≥ 1, whatever its gradient."""
    p = torch.tensor([0.5, -0.5, 0.0, 0.001, 0.2], dtype=torch.float64, requires_grad=True)
    opt = ol.Rprop([p], lr=0.1, l1=0.3)
    p.grad = torch.tensor([1.0, 1.0, -2.0, 1.0, 0.0], dtype=torch.float64)
    opt.step()  # θ − η·sign(∇) with η = lr on the first step, then soft-thresholding by 0.3·η
    expected = torch.tensor([0.37, -0.57, 0.07, -0.069, 0.17], dtype=torch.float64)
    torch.testing.assert_close(p.detach(), expected, rtol=0, atol=1e-15)
    p.grad = torch.tensor([1.0, -1.0, -2.0, 1.0, 0.0], dtype=torch.float64)
    opt.step()  # η grows by 1.2 where the sign held, shrinks by 0.5 where it flipped (no step there)
    step_size = torch.tensor([0.12, 0.05, 0.12, 0.12, 0.1], dtype=torch.float64)
    torch.testing.assert_close(opt.state[p]["step_size"], step_size, rtol=0, atol=1e-15)
    moved = expected - torch.tensor([1.0, 0.0, -1.0, 1.0, 0.0], dtype=torch.float64) * step_size
    torch.testing.assert_close(p.detach(), l1_proximal(moved, 0.3 * step_size), rtol=0, atol=1e-15)
    w = train(ol.Rprop, epochs=50, batch=N, lr=0.01, l1=1.0)
    assert (w == 0.0).all()  # l1 = 1: every step is undone by the shrinkage
    w = train(ol.Rprop, epochs=50, batch=N, lr=0.01, l1=0.5)
    assert (w != 0.0).sum() > RELEVANT  # l1 < 1: irrelevant weights leave 0 too


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [(ol.SGD, {"lr": 0.05, "momentum": 0.9}), (ol.Adam, {"lr": 0.05})],
    ids=["SGD-momentum", "Adam"],
)
def test_l1_gives_exact_zeros_with_minibatches(cls: type, kwargs: dict) -> None:
    w = train(cls, epochs=40, batch=20, l1=LAM, **kwargs)
    assert (w[RELEVANT:] == 0.0).all(), f"{int((w[RELEVANT:] != 0).sum())} irrelevant weights are not zero"
    assert (torch.sign(w[:RELEVANT]) == torch.sign(W_TRUE[:RELEVANT])).all()


@pytest.mark.parametrize(
    ("cls", "kwargs", "batch"),
    [
        (ol.SGD, {"lr": 0.3}, N),
        (ol.Adam, {"lr": 0.05}, N),
        (ol.Adam, {"lr": 0.05}, 20),
        (ol.AdamW, {"lr": 0.05}, 20),
        (ol.ASGD, {"lr": 0.3}, N),
    ],
    ids=["SGD", "Adam", "Adam-minibatch", "AdamW-minibatch", "ASGD"],
)
def test_weight_decay_alone_gives_no_zeros(cls: type, kwargs: dict, batch: int) -> None:
    w = train(cls, epochs=100 if batch == N else 20, batch=batch, weight_decay=0.1, **kwargs)
    assert (w != 0.0).all()


def test_l1_proximal_is_soft_thresholding() -> None:
    x = torch.tensor([-3.0, -0.5, 0.0, 0.2, 1.0, 4.0])
    expected = torch.tensor([-2.0, 0.0, 0.0, 0.0, 0.0, 3.0])
    assert torch.equal(l1_proximal(x, 1.0), expected)
    assert torch.equal(l1_proximal(x, torch.tensor(1.0)), expected)
    assert torch.equal(x, torch.tensor([-3.0, -0.5, 0.0, 0.2, 1.0, 4.0]))  # pure


def test_l1_threshold_follows_the_scheduled_lr() -> None:
    """τ = γ·l1 with the group's current γ: a scheduler that changes lr changes the shrinkage."""
    p = torch.tensor([1.0, -1.0], requires_grad=True)
    opt = ol.SGD([p], lr=0.1, l1=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    for expected in ([0.9, -0.9], [0.85, -0.85], [0.825, -0.825]):
        p.grad = torch.zeros(2)
        opt.step()
        scheduler.step()
        torch.testing.assert_close(p.detach(), torch.tensor(expected))


def test_l1_zero_is_exactly_torch() -> None:
    for entry in PARITY.values():
        # six elements: (6,), or (3, 2) for a matrix optimizer; sparse gradients on (6,)
        shape = (6,) if entry.gradients == "sparse" else entry.param_shapes[0]
        params = [
            torch.linspace(-1, 1, 6, dtype=torch.float64).reshape(shape).requires_grad_() for _ in range(2)
        ]
        ours, theirs = entry.ours([params[0]], l1=0.0), entry.theirs([params[1]])
        for step in range(3):
            for p in params:
                p.grad = torch.cos(torch.arange(6, dtype=torch.float64) + step).reshape(shape)
                if entry.gradients == "sparse":  # entries 0, 2, 2 and 5 (SparseAdam)
                    p.grad = torch.sparse_coo_tensor(torch.tensor([[0, 2, 2, 5]]), p.grad[:4], (6,))
            ours.step()
            theirs.step()
        torch.testing.assert_close(params[0], params[1], rtol=1e-12, atol=1e-15)


# --- nonfinite: propagate (torch's behaviour), skip, raise -----------------------------------------

BAD = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def two_groups(cls: type, **kwargs) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
    params = [torch.linspace(-1, 1, 4, dtype=torch.float64).requires_grad_() for _ in range(3)]
    return cls([{"params": params[:2]}, {"params": params[2:], "lr": 0.02}], **kwargs), params


def set_grads(params: list[torch.Tensor], step: int, bad: float | None = None, where: int = 1) -> None:
    for index, p in enumerate(params):
        p.grad = torch.sin(torch.arange(4, dtype=torch.float64) * (index + 1) + step)
        if bad is not None and index == where:
            p.grad[2] = bad


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop", "NAdam", "Rprop", "ASGD"])
def test_propagate_is_torch(name: str) -> None:
    """The default: a NaN/Inf gradient goes into the update, exactly as torch.optim does it."""
    entry = PARITY[name]
    runs = []
    for cls in (entry.ours, entry.theirs):
        opt, params = two_groups(cls, lr=0.01)
        for step in range(3):
            set_grads(params, step, math.nan if step == 1 else None)
            opt.step()
        runs.append(params)
    # Rprop steps by sign(∇) and torch.sign(nan) is 0: there the NaN moves nothing, in torch.optim too
    assert torch.isnan(runs[0][1]).any() or name == "Rprop"
    for a, b in zip(*runs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15, equal_nan=True)


@pytest.mark.parametrize("bad", list(BAD))
@pytest.mark.parametrize("name", ["SGD", "Adam", "Adagrad", "RAdam", "Rprop", "ASGD"])
def test_skip_leaves_only_the_bad_group_untouched(name: str, bad: str) -> None:
    """With nonfinite="skip" a bad step equals torch's step with that group's gradients absent."""
    entry = PARITY[name]
    ours, ours_params = two_groups(entry.ours, lr=0.01, nonfinite="skip")
    theirs, theirs_params = two_groups(entry.theirs, lr=0.01)
    for step in range(6):
        bad_step = step in (2, 3)
        set_grads(ours_params, step, BAD[bad] if bad_step else None, where=2)
        set_grads(theirs_params, step)
        if bad_step:
            theirs_params[2].grad = None  # torch's equivalent: the second group has no gradient
            before = [p.detach().clone() for p in ours_params[2:]]
            state_before = {k: v.clone() for k, v in ours.state[ours_params[2]].items()}
        ours.step()
        theirs.step()
        if bad_step:
            assert torch.equal(ours_params[2].detach(), before[0])
            for key, value in state_before.items():
                assert torch.equal(ours.state[ours_params[2]][key], value), key
    for a, b in zip(ours_params, theirs_params, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)
    assert [g["skipped_steps"] for g in ours.param_groups] == [0, 2]
    assert ours.state_dict()["param_groups"][1]["skipped_steps"] == 2


def test_policy_can_differ_per_group() -> None:
    params = [torch.ones(2, dtype=torch.float64, requires_grad=True) for _ in range(2)]
    opt = ol.SGD([{"params": [params[0]]}, {"params": [params[1]], "nonfinite": "skip"}], lr=0.1)
    for p in params:
        p.grad = torch.tensor([math.nan, 1.0], dtype=torch.float64)
    opt.step()
    assert torch.isnan(params[0]).any()  # the default group propagates
    assert torch.equal(params[1].detach(), torch.ones(2, dtype=torch.float64))
    assert [g["skipped_steps"] for g in opt.param_groups] == [0, 1]


@pytest.mark.parametrize("name", ["SGD", "Adam", "Adadelta", "Rprop", "ASGD"])
def test_raise_raises_before_any_update(name: str) -> None:
    opt, params = two_groups(PARITY[name].ours, nonfinite="raise")
    set_grads(params, 0)
    opt.step()
    snapshot = [p.detach().clone() for p in params]
    states = [{k: v.clone() for k, v in opt.state[p].items()} for p in params]
    set_grads(params, 1, math.inf, where=2)  # only the second group is bad
    with pytest.raises(FloatingPointError, match="param group 1"):
        opt.step()
    for p, kept, state in zip(params, snapshot, states, strict=True):
        assert torch.equal(p.detach(), kept)  # the first group was not stepped either
        for key, value in state.items():
            assert torch.equal(opt.state[p][key], value)
    set_grads(params, 2)
    opt.step()  # and the optimizer keeps working
    assert all(torch.isfinite(p).all() for p in params)


# --- l1 across the table and the engines -----------------------------------------------------------

LAST_VARIANTS = [(name, entry.variants[-1]) for name, entry in PARITY.items()]


@pytest.mark.parametrize("engine", ENGINE_CHOICES)
@pytest.mark.parametrize(("entry", "variant"), LAST_VARIANTS, ids=[n for n, _ in LAST_VARIANTS])
def test_l1_is_the_same_on_every_engine(entry: str, variant: Variant, engine: str) -> None:
    """Every declaration hands ``l1`` to its rule, and every engine applies it exactly once."""
    results = {}
    for name, l1, chosen in (("plain", 0.0, "eager"), ("eager", 1.5, "eager"), ("engine", 1.5, engine)):
        params = PARITY[entry].params(torch.float64)
        opt = variant.build(PARITY[entry].ours, [params[:2], params[2:]], l1=l1, engine=chosen)
        run(opt, params, steps=10)
        results[name] = params
    # the declaration passes l1 to its rule, which shrinks every weight it steps (SparseAdam steps
    # only the entries its sparse gradients touch: in 10 steps of the table's, every entry but a few)
    shrunk = [
        (a.abs() < b.abs()).float().mean() for a, b in zip(results["eager"], results["plain"], strict=True)
    ]
    assert all(s == 1 for s in shrunk) or (
        PARITY[entry].gradients == "sparse" and all(s > 0.5 for s in shrunk)
    )
    for a, b in zip(results["engine"], results["eager"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
