"""Numerical parity with torch.optim over the whole table in tests/parity_cases.py, for every engine."""

from __future__ import annotations

import inspect

import pytest
import torch

from optimlab.optim import optimizers
from optimlab.optim.engine import ENGINE_CHOICES
from parity_cases import (
    CASES,
    DTYPES,
    FLOAT64,
    PARITY,
    TOLERANCE,
    T,
    Variant,
    assert_same_params,
    assert_same_state,
    build_pair,
    run,
)


def check_parity(
    entry_name: str, variant: Variant, dtype_name: str, engine: str, device: str = "cpu"
) -> None:
    dtype = DTYPES[dtype_name]
    rtol, atol = TOLERANCE[dtype_name]
    theirs, theirs_params, ours, ours_params = build_pair(entry_name, variant, dtype, engine, device)
    run(theirs, theirs_params)
    run(ours, ours_params)
    assert_same_params(ours_params, theirs_params, rtol, atol)
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


ALL_DTYPE_CASES = [(n, v, d) for n, v in CASES for d in v.dtypes]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("engine", ENGINE_CHOICES)
@pytest.mark.parametrize(
    ("entry", "variant", "dtype"), ALL_DTYPE_CASES, ids=[f"{n}-{v.name}-{d}" for n, v, d in ALL_DTYPE_CASES]
)
def test_parity_cuda(entry: str, variant: Variant, dtype: str, engine: str) -> None:
    """The whole table on a GPU against torch.optim's CUDA for-loop (the fused engine runs Triton)."""
    check_parity(entry, variant, dtype, engine, "cuda")


def test_every_flag_is_switched_on_and_off() -> None:
    """The table covers each boolean flag and each optional term of every optimizer both ways,
    a tensor lr, a second param group and invalid arguments; and it lists every optimizer."""
    for name, entry in PARITY.items():
        defaults = entry.theirs([entry.sample_param()]).defaults
        arguments = inspect.signature(entry.theirs).parameters
        toggles = [k for k in defaults if (k in FLAGS or k in TERMS) and k in arguments]
        for key in toggles:
            seen = set()
            for variant in entry.variants:
                for values in (variant.kwargs, {**variant.kwargs, **variant.group}):
                    value = values.get(key, defaults[key])
                    seen.add(bool(value) if key in FLAGS else _is_default(value, defaults[key]))
            assert len(seen) >= 2, f"{name}: {key} is never varied in the parity table"
        assert any(isinstance(v.kwargs.get("lr"), torch.Tensor) for v in entry.variants), (
            f"{name}: no tensor lr"
        )
        assert any(v.group for v in entry.variants), f"{name}: no second group with its own hyperparameters"
        assert entry.invalid, f"{name}: no invalid constructor arguments listed"
    assert set(PARITY) == set(optimizers.__all__), "every declared optimizer needs a parity entry"


def _is_default(value, default) -> bool:
    """Whether a term is at its default (a tuple term, Adafactor's ``eps``, element by element)."""
    if isinstance(default, tuple):
        return all(_is_default(v, d) for v, d in zip(value, default, strict=True))
    return value is default if default is None or value is None else float(value) == float(default)


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


def _as_float32(value):
    if isinstance(value, torch.Tensor):
        return value.to(torch.float32)
    if isinstance(value, tuple):
        return tuple(_as_float32(v) for v in value)
    return value


TENSOR_CASES = [(n, v) for n, v in CASES if isinstance(v.kwargs.get("lr"), torch.Tensor)]


@pytest.mark.parametrize("engine", ["eager", "fused"])
@pytest.mark.parametrize(("entry", "variant"), TENSOR_CASES, ids=[f"{n}-{v.name}" for n, v in TENSOR_CASES])
def test_float32_tensor_hyperparameters_on_float64_params(entry: str, variant: Variant, engine: str) -> None:
    """A known, deliberate difference: torch.optim evaluates bias corrections and step sizes in a
    tensor hyperparameter's own dtype; optimlab's rules evaluate some of them in float64 (the fused
    engine's kernels, which take numeric hyperparameters as float64, all of them). With torch's
    default float32 tensors (``lr=torch.tensor(0.01)``) on float64 parameters, results agree to
    float32 rounding of the step size instead of 1e-9, with every engine."""
    variant = Variant(
        variant.name,
        {k: _as_float32(v) for k, v in variant.kwargs.items()},
        {k: _as_float32(v) for k, v in variant.group.items()},
    )
    theirs, theirs_params, ours, ours_params = build_pair(entry, variant, torch.float64, engine)
    run(theirs, theirs_params)
    run(ours, ours_params)
    # float32 rounding of every step's size, over 40 steps: a few float32 ulps (1.2e-7 each)
    assert_same_params(ours_params, theirs_params, 1e-6 if engine == "eager" else 4e-6, 1e-9)


@pytest.mark.parametrize("engine", ENGINE_CHOICES)
@pytest.mark.parametrize("entry", list(PARITY))
def test_add_param_group_mid_training(entry: str, engine: str) -> None:
    """A group added after some steps gets the constructor's defaults and lazily created state."""
    runs = []
    for cls, extra in ((PARITY[entry].theirs, {}), (PARITY[entry].ours, {"engine": engine})):
        params = PARITY[entry].params(torch.float64)
        opt = cls(params[:2], lr=T(0.01) if entry == "Adadelta" else 0.01, **extra)
        run(opt, params[:2], steps=5)
        opt.add_param_group({"params": [params[2]], "lr": 0.02})
        run(opt, params, steps=10, start=5)
        runs.append((opt, params))
    (theirs, theirs_params), (ours, ours_params) = runs
    assert_same_params(ours_params, theirs_params, *TOLERANCE[FLOAT64])
    assert_same_state(ours, theirs, *TOLERANCE[FLOAT64])
