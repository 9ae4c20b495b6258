"""optimlab.optim.functional: the classes' rules on named tensors, pure, with the classes' validation."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import optimlab.optim as ol
from optimlab.optim import functional as F
from parity_cases import gradient, initial_params

CASES: list[tuple[str, dict[str, Any]]] = [
    ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}),
    ("adagrad", {"lr": 0.05, "lr_decay": 0.01, "initial_accumulator_value": 0.1}),
    ("rmsprop", {"lr": 0.01, "centered": True, "momentum": 0.5}),
    ("adam", {"lr": 0.01, "amsgrad": True, "maximize": True}),
    ("AdamW", {"lr": 0.01, "betas": (0.8, 0.99)}),
    ("nadam", {"lr": 0.01, "decoupled_weight_decay": True, "weight_decay": 0.1}),
    ("radam", {"lr": 0.01, "l1": 0.05}),
    ("rprop", {"lr": 0.02, "etas": (0.4, 1.3), "step_sizes": (1e-4, 0.1), "maximize": True}),
    ("ASGD", {"lr": 0.05, "t0": 4, "lambd": 1e-3, "weight_decay": 0.01}),
]
IDS = [name for name, _ in CASES]


def functional_run(
    name: str, hyper: dict[str, Any], dtype: torch.dtype, steps: int = 12
) -> dict[str, torch.Tensor]:
    params = dict(zip("abc", initial_params(dtype), strict=True))
    states = None
    for step in range(steps):
        grads = {k: gradient(step, i, p) for i, (k, p) in enumerate(params.items())}
        params, states = F.update(name, params, grads, states, **hyper)
    return params


def class_run(cls: type, hyper: dict[str, Any], dtype: torch.dtype, steps: int = 12) -> list[torch.Tensor]:
    params = [p.requires_grad_() for p in initial_params(dtype)]
    opt = cls(params, **hyper)
    for step in range(steps):
        for i, p in enumerate(params):
            p.grad = gradient(step, i, p)
        opt.step()
    return params


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128], ids=["float64", "complex128"])
@pytest.mark.parametrize(("name", "hyper"), CASES, ids=IDS)
def test_update_matches_the_class_and_torch(name: str, hyper: dict[str, Any], dtype: torch.dtype) -> None:
    """Same numbers as the optimlab class (and, without l1, as torch.optim), incl. grad-less steps."""
    cls = F.optimizer_class(name)
    ours = functional_run(name, hyper, dtype)
    reference = class_run(cls, hyper, dtype)
    for a, b in zip(ours.values(), reference, strict=True):
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-14)
    if "l1" not in hyper:
        theirs = class_run(getattr(torch.optim, cls.__name__), hyper, dtype)
        for a, b in zip(ours.values(), theirs, strict=True):
            torch.testing.assert_close(a, b.detach(), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(("name", "hyper"), CASES, ids=IDS)
def test_update_is_pure(name: str, hyper: dict[str, Any]) -> None:
    params = {"w": torch.randn(4, dtype=torch.float64), "b": torch.randn((), dtype=torch.float64)}
    grads = {"w": torch.randn(4, dtype=torch.float64), "b": torch.randn((), dtype=torch.float64)}
    _, states = F.update(name, params, grads, **hyper)
    snapshot = (
        {k: v.clone() for k, v in params.items()},
        {k: v.clone() for k, v in grads.items()},
        {k: {sk: sv.clone() for sk, sv in s.items()} for k, s in states.items()},
    )
    new_params, new_states = F.update(name, params, grads, states, **hyper)
    for before, after in zip(snapshot, (params, grads, states), strict=True):
        assert before.keys() == after.keys()
        for key in before:
            if isinstance(before[key], dict):
                assert before[key].keys() == after[key].keys()
                assert all(torch.equal(before[key][k], after[key][k]) for k in before[key])
            else:
                assert torch.equal(before[key], after[key])
    assert all(not torch.equal(new_params[k], params[k]) for k in params)  # it did take a step
    assert all(float(s["step"]) == 2.0 for s in new_states.values() if "step" in s)


def test_init_gives_torch_state_keys() -> None:
    p = torch.zeros(3)
    assert set(F.init("adam", p)) == {"step", "exp_avg", "exp_avg_sq"}
    assert set(F.init("adam", p, amsgrad=True)) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert set(F.init("rmsprop", p, momentum=0.9, centered=True)) == {
        "step",
        "square_avg",
        "momentum_buffer",
        "grad_avg",
    }
    assert F.init("sgd", p, momentum=0.9) == {}  # created by the first step, as in torch
    assert torch.equal(F.init("adagrad", p, initial_accumulator_value=0.5)["sum"], torch.full((3,), 0.5))
    assert float(F.init("nadam", p)["mu_product"]) == 1.0


def test_param_without_gradient_is_returned_unchanged() -> None:
    params = {"a": torch.ones(2), "b": torch.ones(2)}
    new_params, new_states = F.update("adam", params, {"a": torch.ones(2), "b": None}, lr=0.1)
    assert new_params["b"] is params["b"]
    assert float(new_states["b"]["step"]) == 0.0 and float(new_states["a"]["step"]) == 1.0


def test_validation_is_the_class_validation() -> None:
    for bad, message in (({"lr": -1.0}, "Invalid learning rate"), ({"betas": (1.0, 0.9)}, "beta parameter")):
        with pytest.raises(ValueError, match=message) as ours:
            F.update("adam", {"w": torch.ones(1)}, {"w": torch.ones(1)}, **bad)
        with pytest.raises(ValueError) as theirs:
            torch.optim.Adam([torch.ones(1, requires_grad=True)], **bad)
        assert str(ours.value) == str(theirs.value)
    with pytest.raises(ValueError, match="Unknown optimizer 'adamz'"):
        F.update("adamz", {}, {})
    assert F.optimizer_class(ol.Adam) is ol.Adam


def test_tensor_hyperparameters_and_scheduled_floats_do_not_grow_the_cache() -> None:
    F._declaration.cache_clear()
    params, grads = {"w": torch.ones(2)}, {"w": torch.ones(2)}
    for step in range(300):
        F.update("sgd", params, grads, lr=0.1 / (step + 1))
        F.update("sgd", params, grads, lr=torch.tensor(0.1))
    assert F._declaration.cache_info().currsize <= F._declaration.cache_info().maxsize
