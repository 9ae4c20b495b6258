"""Numerical parity with torch.optim over the whole table in tests/parity_cases.py, for every engine."""

from __future__ import annotations

import inspect

import pytest
import torch

from optimlab.optim.engine import ENGINE_CHOICES
from parity_cases import CASES, COMPLEX, FLOAT32, FLOAT64, PARITY, Variant

STEPS = 40
SHAPES = [(3, 2), (4,), (5,)]  # p0, p1 in the first group; p2 in the second
DTYPES = {FLOAT64: torch.float64, FLOAT32: torch.float32, COMPLEX: torch.complex128}
#: (rtol, atol) per dtype
TOLERANCE = {FLOAT64: (1e-9, 1e-12), COMPLEX: (1e-9, 1e-12), FLOAT32: (2e-5, 1e-6)}


def initial_params(dtype: torch.dtype) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=gen, dtype=dtype) for shape in SHAPES]


def gradient(step: int, index: int, param: torch.Tensor) -> torch.Tensor | None:
    """A noisy quadratic's gradient; p1 skips some steps and p2 starts late (grad None)."""
    if (index == 1 and step % 4 == 1) or (index == 2 and (step == 0 or step % 7 == 3)):
        return None
    gen = torch.Generator().manual_seed(1000 * step + index)
    noise = torch.randn(param.shape, generator=gen, dtype=param.dtype)
    return 0.3 * param.detach() + noise


def run(
    optimizer: torch.optim.Optimizer, params: list[torch.Tensor], steps: int = STEPS, start: int = 0
) -> None:
    for step in range(start, start + steps):
        for index, p in enumerate(params):
            p.grad = gradient(step, index, p)
        optimizer.step()


def build_pair(entry_name: str, variant: Variant, dtype: torch.dtype, engine: str):
    entry = PARITY[entry_name]
    theirs_params = [p.requires_grad_() for p in initial_params(dtype)]
    ours_params = [p.requires_grad_() for p in initial_params(dtype)]
    theirs = variant.build(entry.theirs, [theirs_params[:2], theirs_params[2:]])
    ours = variant.build(entry.ours, [ours_params[:2], ours_params[2:]], engine=engine)
    return theirs, theirs_params, ours, ours_params


def assert_same_state(ours: torch.optim.Optimizer, theirs: torch.optim.Optimizer, rtol: float, atol: float):
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert ours_sd["state"].keys() == theirs_sd["state"].keys()
    for index, their_state in theirs_sd["state"].items():
        our_state = ours_sd["state"][index]
        assert our_state.keys() == their_state.keys(), index
        for key, value in their_state.items():
            assert our_state[key].dtype == value.dtype, (index, key)
            torch.testing.assert_close(
                our_state[key], value, rtol=rtol, atol=atol, msg=f"state {index}.{key}"
            )


def check_parity(entry_name: str, variant: Variant, dtype_name: str, engine: str) -> None:
    dtype = DTYPES[dtype_name]
    rtol, atol = TOLERANCE[dtype_name]
    theirs, theirs_params, ours, ours_params = build_pair(entry_name, variant, dtype, engine)
    run(theirs, theirs_params)
    run(ours, ours_params)
    for index, (a, b) in enumerate(zip(ours_params, theirs_params, strict=True)):
        assert torch.isfinite(torch.view_as_real(b) if b.is_complex() else b).all()
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, i=index: f"param {i}: {m}")
    assert_same_state(ours, theirs, rtol, atol)


@pytest.mark.parametrize("engine", ENGINE_CHOICES)
@pytest.mark.parametrize(("entry", "variant"), CASES, ids=[f"{n}-{v.name}" for n, v in CASES])
def test_parity_float64(entry: str, variant: Variant, engine: str) -> None:
    check_parity(entry, variant, FLOAT64, engine)


OTHER_DTYPE_CASES = [(n, v, d) for n, v in CASES for d in v.dtypes if d != FLOAT64]


@pytest.mark.parametrize("engine", ENGINE_CHOICES)
@pytest.mark.parametrize(
    ("entry", "variant", "dtype"),
    OTHER_DTYPE_CASES,
    ids=[f"{n}-{v.name}-{d}" for n, v, d in OTHER_DTYPE_CASES],
)
def test_parity_other_dtypes(entry: str, variant: Variant, dtype: str, engine: str) -> None:
    check_parity(entry, variant, dtype, engine)


def test_every_flag_is_switched_on_and_off() -> None:
    """The table covers each boolean flag and each optional term of every optimizer both ways."""
    for name, entry in PARITY.items():
        defaults = entry.theirs([torch.zeros(1)]).defaults
        arguments = inspect.signature(entry.theirs).parameters
        toggles = [k for k in defaults if (k in FLAGS or k in TERMS) and k in arguments]
        for key in toggles:
            seen = set()
            for variant in entry.variants:
                for values in (variant.kwargs, {**variant.kwargs, **variant.group}):
                    value = values.get(key, defaults[key])
                    seen.add(bool(value) if key in FLAGS else float(value) == float(defaults[key]))
            assert len(seen) >= 2, f"{name}: {key} is never varied in the parity table"
        assert any(isinstance(v.kwargs.get("lr"), torch.Tensor) for v in entry.variants), (
            f"{name}: no tensor lr"
        )
        assert any(v.group for v in entry.variants), f"{name}: no second group with its own hyperparameters"


FLAGS = {"nesterov", "maximize", "amsgrad", "centered", "decoupled_weight_decay"}
TERMS = {
    "momentum",
    "dampening",
    "weight_decay",
    "lr_decay",
    "initial_accumulator_value",
    "momentum_decay",
    "eps",
}
