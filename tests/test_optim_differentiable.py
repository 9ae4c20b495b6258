"""``differentiable=True``: the step is differentiable, as torch.optim's is, and gives its gradients.

Meta-learning and hypergradients differentiate a loss after some optimizer steps with respect to
the initial parameters and the hyperparameters. The rules are pure, so autograd records them as
they are (the eager engine runs while autograd records). These tests compare gradients with
torch.optim's (float64, with float64 as the default dtype: torch.optim's differentiable path computes
bias corrections in the step counter's dtype, float32 otherwise), check with finite differences the
cases where torch.optim's own in-place ops cannot be differentiated over several steps, and run the
single-step gradchecks of PyTorch's test suite in their own words.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch

import optimlab.optim as ol


@pytest.fixture(autouse=True)
def float64_default() -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


X = torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
Y = torch.randn(8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)


def loss_of(w: torch.Tensor) -> torch.Tensor:
    return ((X @ w - Y) ** 2).mean()


def unrolled(cls: type, w0: torch.Tensor, steps: int, **kwargs: Any) -> torch.Tensor:
    """The loss after ``steps`` differentiable steps from ``w0`` (gradients taken with create_graph)."""
    w = w0.clone()
    optimizer = cls([w], differentiable=True, **kwargs)
    for _ in range(steps):
        (grad,) = torch.autograd.grad(loss_of(w), w, create_graph=True)
        w.grad = grad
        optimizer.step()
    return loss_of(w)


def initial() -> torch.Tensor:
    return torch.randn(3, generator=torch.Generator().manual_seed(1), dtype=torch.float64).requires_grad_()


#: variants torch.optim itself can differentiate through 8 steps
AGREE = [
    ("SGD", {"lr": 0.05}),
    ("SGD", {"lr": 0.05, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "maximize": True}),
    ("Adagrad", {"lr": 0.05, "lr_decay": 0.1, "weight_decay": 0.1, "initial_accumulator_value": 0.1}),
    ("RMSprop", {"lr": 0.01}),
    ("Adadelta", {"weight_decay": 0.1, "rho": 0.8}),
    ("Adam", {"lr": 0.05}),
    ("Adam", {"lr": 0.05, "decoupled_weight_decay": True, "weight_decay": 0.1, "maximize": True}),
    ("AdamW", {"lr": 0.05}),
    ("NAdam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("RAdam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("ASGD", {"lr": 0.05, "t0": 3, "lambd": 0.01, "weight_decay": 0.1}),
    ("ASGD", {"lr": 0.05, "alpha": 0.5, "maximize": True}),
]


@pytest.mark.parametrize(("name", "kwargs"), AGREE, ids=[f"{n}-{i}" for i, (n, _) in enumerate(AGREE)])
def test_gradient_through_steps_equals_torch(name: str, kwargs: dict[str, Any]) -> None:
    w0 = initial()
    (ours,) = torch.autograd.grad(unrolled(getattr(ol, name), w0, 8, **kwargs), w0)
    (theirs,) = torch.autograd.grad(unrolled(getattr(torch.optim, name), w0, 8, **kwargs), w0)
    torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)
    assert ours.abs().max() > 1e-3  # a real dependence, not two zeros


@pytest.mark.parametrize("name", ["Adam", "AdamW", "RAdam", "SGD"])
def test_hypergradient_of_the_learning_rate_equals_torch(name: str) -> None:
    """d(loss after 4 steps)/d(lr) and d/d(w₀) with a tensor lr that requires grad."""
    results = []
    for cls in (getattr(ol, name), getattr(torch.optim, name)):
        w0 = initial()
        lr = torch.tensor(0.05, requires_grad=True)
        results.append(torch.autograd.grad(unrolled(cls, w0, 4, lr=lr), (w0, lr)))
    for ours, theirs in zip(*results, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-14)


#: variants where torch.optim's in-place ops break differentiation over several steps; optimlab's
#: functional rules do not, and finite differences check them
BEYOND_TORCH = [
    ("Adam", {"lr": 0.05, "amsgrad": True, "weight_decay": 0.1}),
    ("Adamax", {"lr": 0.05, "weight_decay": 0.1}),
    ("RMSprop", {"lr": 0.01, "centered": True, "momentum": 0.9, "weight_decay": 0.1}),
    ("Adagrad", {"lr": 0.05, "lr_decay": 0.1}),  # a tensor lr, which torch.optim.Adagrad rejects here
]


@pytest.mark.parametrize(("name", "kwargs"), BEYOND_TORCH, ids=[n for n, _ in BEYOND_TORCH])
def test_gradients_torch_cannot_take_agree_with_finite_differences(name: str, kwargs: dict[str, Any]) -> None:
    cls = getattr(ol, name)
    lr = torch.tensor(kwargs.pop("lr"), requires_grad=True)

    def final_loss(w0: torch.Tensor, learning_rate: torch.Tensor) -> torch.Tensor:
        return unrolled(cls, w0, 4, lr=learning_rate, **kwargs)

    assert torch.autograd.gradcheck(final_loss, (initial(), lr), eps=1e-6, atol=1e-5, rtol=1e-4)


#: Rprop: torch.optim multiplies its step sizes in place, which breaks differentiation over several
#: steps ("modified by an inplace operation"); its lr only seeds the step sizes (no gradient, as in torch)
RPROP_BEYOND_TORCH = [
    {"lr": 0.05},
    {"lr": 0.05, "etas": (0.3, 1.5), "step_sizes": (1e-3, 0.2), "maximize": True},
]


@pytest.mark.parametrize("kwargs", RPROP_BEYOND_TORCH, ids=["plain", "etas-step-sizes-maximize"])
def test_rprop_gradients_torch_cannot_take_agree_with_finite_differences(kwargs: dict[str, Any]) -> None:
    w0 = initial()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(unrolled(torch.optim.Rprop, w0, 4, **kwargs), w0)
    (grad,) = torch.autograd.grad(unrolled(ol.Rprop, w0, 4, **kwargs), w0)
    assert grad.abs().max() > 1e-3
    assert torch.autograd.gradcheck(lambda w: unrolled(ol.Rprop, w, 4, **kwargs), (w0,), eps=1e-6, atol=1e-5)


# --- PyTorch's single-step checks: gradcheck of one step from a given state -----------------------


def one_step(cls: type, kwargs: dict[str, Any], keys: tuple[str, ...], extra: dict[str, Any]):
    """A function of (parameter, gradient, *state tensors) returning the parameter after one
    differentiable step and the state tensors that require grad, as PyTorch's ``_diff_fn`` does."""

    def fn(param: torch.Tensor, grad: torch.Tensor, *state_values: torch.Tensor):
        p = param.clone()
        p.grad = grad
        optimizer = cls([p], differentiable=True, **kwargs)
        optimizer.state[p].update({k: v.clone() for k, v in zip(keys, state_values, strict=True)})
        optimizer.state[p].update({k: v.clone() for k, v in extra.items()})
        optimizer.step()
        return (
            p,
            *[v for v in optimizer.state[p].values() if isinstance(v, torch.Tensor) and v.requires_grad],
        )

    return fn


def rand(scale: float = 1.0) -> torch.Tensor:
    return (torch.rand(10) * scale).requires_grad_()


STEP = {"step": torch.tensor(10.0, dtype=torch.float64)}
SINGLE_STEP = [
    ("SGD", {"lr": 0.9}, ("momentum_buffer",), {}),
    ("SGD", {"lr": 0.9, "momentum": 0.9, "weight_decay": 0.1}, ("momentum_buffer",), {}),
    ("Adam", {"lr": 0.9, "amsgrad": True}, ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"), STEP),
    ("AdamW", {"lr": 0.9, "amsgrad": True}, ("exp_avg", "exp_avg_sq", "max_exp_avg_sq"), STEP),
    (
        "RMSprop",
        {"lr": 0.9, "maximize": True, "momentum": 0.9, "centered": True, "weight_decay": 0.1},
        ("square_avg", "momentum_buffer", "grad_avg"),
        {"step": torch.tensor(0.0, dtype=torch.float64)},
    ),
    ("Adadelta", {"lr": 0.9, "weight_decay": 0.1}, ("square_avg", "acc_delta"), STEP),
    ("Adagrad", {"lr": 0.9, "weight_decay": 0.1}, ("sum",), STEP),
    ("Adamax", {"lr": 0.9, "weight_decay": 0.1}, ("exp_avg", "exp_inf"), STEP),
    ("NAdam", {"lr": 0.9}, ("exp_avg", "exp_avg_sq", "mu_product"), STEP),
    ("NAdam", {"lr": 0.9, "decoupled_weight_decay": True}, ("exp_avg", "exp_avg_sq", "mu_product"), STEP),
    ("RAdam", {"lr": 0.9}, ("exp_avg", "exp_avg_sq"), STEP),
    (
        "RAdam",
        {"lr": 0.9, "weight_decay": 0.1, "decoupled_weight_decay": True},
        ("exp_avg", "exp_avg_sq"),
        STEP,
    ),
    ("Rprop", {"lr": 0.9}, ("prev", "step_size"), STEP),
    ("Rprop", {"lr": 0.9, "etas": (0.3, 1.5), "maximize": True}, ("prev", "step_size"), STEP),
    # eta, mu and step are not continuous variables: PyTorch's check keeps them out of the gradients
    ("ASGD", {"lr": 0.9}, ("ax",), {**STEP, "eta": torch.tensor(0.9), "mu": torch.tensor(1.0)}),
]
#: one step torch.optim takes but cannot differentiate: ASGD's averaging (μ < 1) multiplies by μ,
#: which the same step then overwrites in place
SINGLE_STEP_BEYOND_TORCH = [
    (
        "ASGD",
        {"lr": 0.9, "t0": 5, "weight_decay": 0.1, "maximize": True},
        ("ax",),
        {**STEP, "eta": torch.tensor(0.9, dtype=torch.float64), "mu": torch.tensor(0.2, dtype=torch.float64)},
    ),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "keys", "extra"),
    SINGLE_STEP,
    ids=[f"{n}-{i}" for i, (n, *_) in enumerate(SINGLE_STEP)],
)
def test_one_step_gradcheck_and_torch_agreement(
    name: str, kwargs: dict[str, Any], keys: tuple[str, ...], extra: dict[str, Any]
) -> None:
    """Jacobians of one step with respect to the parameter, its gradient and its state pass
    gradcheck (batched gradients included: the rules work under vmap), and equal torch.optim's."""
    torch.manual_seed(0)
    values = [rand(), rand()]
    for key in keys:
        values.append(
            torch.tensor(1.0, requires_grad=True)
            if key == "mu_product"
            else rand(1e-2 if key == "grad_avg" else 1.0)
        )
    ours = one_step(getattr(ol, name), kwargs, keys, extra)
    assert torch.autograd.gradcheck(ours, values, fast_mode=True, check_batched_grad=True)
    theirs = one_step(getattr(torch.optim, name), kwargs, keys, extra)
    outputs_ours, outputs_theirs = ours(*values), theirs(*values)
    assert len(outputs_ours) == len(outputs_theirs)
    for a, b in zip(outputs_ours, outputs_theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    weights = [torch.randn_like(o) for o in outputs_ours]
    grads_ours = torch.autograd.grad(outputs_ours, values, weights, allow_unused=True)
    grads_theirs = torch.autograd.grad(outputs_theirs, values, weights, allow_unused=True)
    for a, b in zip(grads_ours, grads_theirs, strict=True):
        if a is None or b is None:
            assert (a is None and b is None) or (a if a is not None else b).abs().max() == 0
            continue
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    ("name", "kwargs", "keys", "extra"),
    SINGLE_STEP_BEYOND_TORCH,
    ids=[f"{n}-{i}" for i, (n, *_) in enumerate(SINGLE_STEP_BEYOND_TORCH)],
)
def test_one_step_gradcheck_where_torch_cannot_differentiate(
    name: str, kwargs: dict[str, Any], keys: tuple[str, ...], extra: dict[str, Any]
) -> None:
    """The step's values equal torch.optim's; its Jacobians pass gradcheck, where torch's raise."""
    torch.manual_seed(0)
    values = [rand() for _ in range(2 + len(keys))]
    ours = one_step(getattr(ol, name), kwargs, keys, extra)
    assert torch.autograd.gradcheck(ours, values, fast_mode=True, check_batched_grad=True)
    theirs = one_step(getattr(torch.optim, name), kwargs, keys, extra)
    outputs_ours, outputs_theirs = ours(*values), theirs(*values)
    for a, b in zip(outputs_ours, outputs_theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    weights = [torch.ones_like(o) for o in outputs_theirs]
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(outputs_theirs, values, weights, allow_unused=True)


@pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph=True")
@pytest.mark.parametrize("name", ["Adam", "AdamW", "SGD"])
def test_tensor_hyperparameters_that_require_grad(name: str) -> None:
    """lr, weight_decay and betas as tensors in the graph, as in PyTorch's multi-step test: a
    parameter with a given gradient, two iterations of backward(create_graph=True), step and
    zero_grad, then the gradient of the last loss with respect to every hyperparameter."""
    results = []
    for cls in (getattr(ol, name), getattr(torch.optim, name)):
        torch.manual_seed(1)
        param, grad, x, y = (
            torch.rand(10, requires_grad=True),
            torch.rand(10, requires_grad=True),
            torch.rand(5),
            torch.rand(5),
        )
        hyper = {
            "lr": torch.tensor(0.001, requires_grad=True),
            "weight_decay": torch.tensor(0.9, requires_grad=True),
        }
        if name != "SGD":
            hyper["betas"] = (torch.tensor(0.9, requires_grad=True), torch.tensor(0.999, requires_grad=True))
        leaves = [hyper["lr"], hyper["weight_decay"], *hyper.get("betas", ())]
        cloned = {
            k: tuple(t.clone() for t in v) if isinstance(v, tuple) else v.clone() for k, v in hyper.items()
        }
        p = param.clone()
        p.grad = grad.clone()
        optimizer = cls([p], differentiable=True, **cloned)
        loss = None
        for _ in range(2):
            loss = torch.nn.functional.mse_loss(x * p.sum(), y)
            loss.backward(inputs=(p,), create_graph=True)
            optimizer.step()
            optimizer.zero_grad()
        results.append(torch.autograd.grad(loss, leaves))
    for ours, theirs in zip(*results, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-14)
    assert results[0][0].abs() > 0  # the learning rate's gradient (β₂'s may vanish: Adam's first step is ±γ)


@pytest.mark.parametrize("engine", ["auto", "eager"])
def test_every_engine_steps_eagerly_while_autograd_records(engine: str) -> None:
    """Compiled kernels are not differentiable: with differentiable=True every engine takes the
    eager path (and engine="fused" is refused at construction)."""
    w0 = initial()
    cls = type("TinyAdam", (ol.Adam,), {})
    ours = unrolled(lambda params, **kw: cls(params, engine=engine, **kw), w0, 3, lr=0.05)
    (grad,) = torch.autograd.grad(ours, w0)
    (expected,) = torch.autograd.grad(unrolled(torch.optim.Adam, w0, 3, lr=0.05), w0)
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="engine='fused' cannot differentiate"):
        ol.Adam([initial().clone()], differentiable=True, engine="fused")
