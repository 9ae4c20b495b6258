"""optimlab.optim.Lamb and Prodigy against their reference packages (pytorch_optimizer.Lamb 4.1.0,
prodigyopt.Prodigy 1.1.2): the numbers of 50 float64 steps on two param groups for every variant and
engine, checkpoints loaded both ways mid-training, the constructors' signatures and errors."""

from __future__ import annotations

import copy
import inspect
from typing import Any

import pytest
import torch
from torch import Tensor

from optimlab.optim import Lamb, Prodigy
from optimlab.optim.engine import ENGINE_CHOICES

pytorch_optimizer = pytest.importorskip("pytorch_optimizer")
prodigyopt = pytest.importorskip("prodigyopt")

SHAPES = [(3, 2), (4,), (5,)]
STEPS = 50
GROUP_KEYS = {
    "Lamb": ("step",),
    "Prodigy": ("d", "d_max", "d_numerator", "d_denom", "d_hat", "k"),
}


def _params(dtype: torch.dtype, zero: int | None = None) -> list[Tensor]:
    generator = torch.Generator().manual_seed(3)
    params = [torch.randn(shape, generator=generator, dtype=dtype) for shape in SHAPES]
    if zero is not None:
        params[zero].zero_()
    return [torch.nn.Parameter(p) for p in params]


def _set_grads(params: list[Tensor], step: int) -> None:
    """Deterministic gradients: a wave plus a pull towards a target (fresh tensors each step: the
    references change gradients in place)."""
    for index, param in enumerate(params):
        wave = torch.cos(torch.arange(param.numel(), dtype=torch.float64) * 0.7 + 0.3 * step + index)
        grad = wave.reshape(param.shape).to(param.dtype) + 0.5 * (param.detach() - 0.1 * (index + 1))
        param.grad = grad.clone()


def _groups(params: list[Tensor], first: dict[str, Any], second: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"params": params[:2], **first}, {"params": params[2:], **second}]


def _reference(name: str) -> type:
    return pytorch_optimizer.Lamb if name == "Lamb" else prodigyopt.Prodigy


def _ours(name: str) -> type:
    return Lamb if name == "Lamb" else Prodigy


def _value(value: Any) -> Tensor:
    return torch.as_tensor(value, dtype=torch.float64) if not isinstance(value, Tensor) else value.double()


def _assert_same(ours: Any, ref: Any, ps: list[Tensor], rs: list[Tensor], rtol: float, atol: float) -> None:
    name = type(ours).__name__
    for p, r in zip(ps, rs, strict=True):
        torch.testing.assert_close(p.detach(), r.detach(), rtol=rtol, atol=atol)
        our_state, ref_state = ours.state[p], ref.state[r]
        assert set(our_state) == set(ref_state), (sorted(our_state), sorted(ref_state))
        for key, want in ref_state.items():
            got = our_state[key]
            assert isinstance(got, Tensor), key
            torch.testing.assert_close(_value(got), _value(want), rtol=rtol, atol=atol, msg=key)
    for our_group, ref_group in zip(ours.param_groups, ref.param_groups, strict=True):
        assert set(ref_group) - {"params"} <= set(our_group), set(ref_group) - set(our_group)
        for key in GROUP_KEYS[name]:
            if key not in ref_group:
                assert key not in our_group, key
                continue
            torch.testing.assert_close(
                _value(our_group[key]), _value(ref_group[key]), rtol=rtol, atol=atol, msg=key
            )


LAMB_VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    # name: (constructor arguments, first group, second group)
    "defaults": ({}, {}, {"lr": 2e-3, "betas": (0.8, 0.99), "eps": 1e-5}),
    "decoupled-decay": ({"weight_decay": 0.1}, {}, {"weight_decay": 0.02, "lr": 3e-3}),
    "fixed-decay": ({"weight_decay": 0.01, "fixed_decay": True}, {}, {"fixed_decay": False}),
    "coupled-decay": ({"weight_decay": 0.05, "weight_decouple": False}, {}, {"weight_decay": 0.0}),
    "rectify": ({"rectify": True, "lr": 1e-2}, {}, {"betas": (0.9, 0.9)}),
    "rectify-sgd": (
        {"rectify": True, "degenerated_to_sgd": True, "n_sma_threshold": 4, "weight_decay": 0.05},
        {"weight_decouple": False},
        {},
    ),
    "adam": ({"adam": True}, {}, {"adam": False}),
    "no-grad-averaging": ({"grad_averaging": False}, {}, {"grad_averaging": True, "lr": 5e-4}),
    "pre-norm": ({"pre_norm": True, "max_grad_norm": 0.5}, {}, {"lr": 2e-3}),
    "pre-norm-unclipped": ({"pre_norm": True, "max_grad_norm": 100.0}, {}, {}),
    "pre-norm-off": ({"pre_norm": True, "max_grad_norm": 0.0}, {}, {}),
    "maximize": ({"maximize": True, "weight_decay": 0.01}, {}, {}),
    "adam-debias": ({"adam_debias": True}, {}, {"rectify": True}),
}

PRODIGY_VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "defaults": ({}, {}, {"eps": 1e-6, "d0": 1e-5}),
    "bias-correction": ({"use_bias_correction": True}, {}, {}),
    "safeguard-warmup": ({"safeguard_warmup": True}, {}, {"safeguard_warmup": False}),
    "decoupled-decay": ({"weight_decay": 0.1}, {}, {"weight_decay": 0.01}),
    "coupled-decay": ({"weight_decay": 0.05, "decouple": False}, {}, {}),
    "coef-growth-beta3": ({"d_coef": 2.0, "growth_rate": 1.05, "beta3": 0.95, "lr": 0.5}, {}, {}),
    "no-momentum": ({"betas": (0.0, 0.99), "weight_decay": 0.02, "decouple": False}, {}, {}),
    "slice": ({"slice_p": 2}, {}, {"slice_p": 3}),
    "frozen-group": ({"weight_decay": 0.01}, {}, {"lr": 0.0}),
    "zero-parameter": ({}, {}, {}),
}

VARIANTS = [("Lamb", v) for v in LAMB_VARIANTS] + [("Prodigy", v) for v in PRODIGY_VARIANTS]


def _variant(name: str, variant: str) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    return (LAMB_VARIANTS if name == "Lamb" else PRODIGY_VARIANTS)[variant]


def _pair(name: str, variant: str, engine: str, dtype: torch.dtype = torch.float64) -> tuple:
    kwargs, first, second = _variant(name, variant)
    zero = 1 if variant == "zero-parameter" else None
    ps, rs = _params(dtype, zero), _params(dtype, zero)
    ours = _ours(name)(_groups(ps, first, second), **kwargs, engine=engine)
    ref = _reference(name)(_groups(rs, first, second), **kwargs)
    return ours, ref, ps, rs


def _run(ours: Any, ref: Any, ps: list[Tensor], rs: list[Tensor], steps: range) -> None:
    for step in steps:
        _set_grads(ps, step)
        _set_grads(rs, step)
        ours.step()
        ref.step()


@pytest.mark.parametrize("engine", ENGINE_CHOICES)
@pytest.mark.parametrize(("name", "variant"), VARIANTS)
def test_matches_the_reference(name: str, variant: str, engine: str) -> None:
    ours, ref, ps, rs = _pair(name, variant, engine)
    _run(ours, ref, ps, rs, range(STEPS))
    _assert_same(ours, ref, ps, rs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["Lamb", "Prodigy"])
def test_the_fused_engine_compiles_them(name: str) -> None:
    from optimlab.optim.engine.kernels import compiler_available

    if not compiler_available("cpu"):
        pytest.skip("no compiler")
    ours, ref, ps, rs = _pair(name, "defaults", "fused")
    _run(ours, ref, ps, rs, range(4))
    # every parameter after the first step (whose norms Lamb creates) runs in a compiled kernel
    assert ours.engine.counts["fused"] >= (3 if name == "Lamb" else 4) * len(ps)
    _assert_same(ours, ref, ps, rs, rtol=1e-9, atol=1e-12)


CHECKPOINT_VARIANTS = [
    ("Lamb", "decoupled-decay"),
    ("Lamb", "rectify-sgd"),
    ("Prodigy", "decoupled-decay"),
    ("Prodigy", "slice"),
    ("Prodigy", "zero-parameter"),
]


@pytest.mark.parametrize("direction", ["reference-to-ours", "ours-to-reference"])
@pytest.mark.parametrize(("name", "variant"), CHECKPOINT_VARIANTS)
def test_state_dicts_load_both_ways(name: str, variant: str, direction: str) -> None:
    ours, ref, ps, rs = _pair(name, variant, "eager")
    _run(ours, ref, ps, rs, range(STEPS // 2))
    kwargs, first, second = _variant(name, variant)
    if direction == "reference-to-ours":
        loaded_params = [torch.nn.Parameter(r.detach().clone()) for r in rs]
        loaded = _ours(name)(_groups(loaded_params, first, second), **kwargs)
        loaded.load_state_dict(copy.deepcopy(ref.state_dict()))
        ours, ps = loaded, loaded_params
    else:
        loaded_params = [torch.nn.Parameter(p.detach().clone()) for p in ps]
        loaded = _reference(name)(_groups(loaded_params, first, second), **kwargs)
        loaded.load_state_dict(copy.deepcopy(ours.state_dict()))
        ref, rs = loaded, loaded_params
    _run(ours, ref, ps, rs, range(STEPS // 2, STEPS))
    _assert_same(ours, ref, ps, rs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("engine", ["eager", "fused"])
@pytest.mark.parametrize("name", ["Lamb", "Prodigy"])
def test_float32(name: str, engine: str) -> None:
    ours, ref, ps, rs = _pair(name, "decoupled-decay", engine, torch.float32)
    _run(ours, ref, ps, rs, range(STEPS))
    _assert_same(ours, ref, ps, rs, rtol=2e-5, atol=1e-6)
    assert all(p.dtype == torch.float32 for p in ps)


@pytest.mark.parametrize("name", ["Lamb", "Prodigy"])
def test_signature_and_defaults(name: str) -> None:
    ours = inspect.signature(_ours(name).__init__).parameters
    ref = inspect.signature(_reference(name).__init__).parameters
    extra = {"l1", "nonfinite", "engine", "state_dtype", "stochastic_rounding"}
    positional = [(p.name, p.kind, p.default) for p in ours.values() if p.name not in extra]
    assert positional == [(p.name, p.kind, p.default) for p in ref.values()]
    assert all(ours[k].kind is inspect.Parameter.KEYWORD_ONLY for k in extra)
    params = _params(torch.float64)
    assert _ours(name)(params).defaults.items() >= _reference(name)(params).defaults.items()


LAMB_ERRORS = [
    {"lr": -1.0},
    {"betas": (1.0, 0.9)},
    {"betas": (0.9, -0.1)},
    {"weight_decay": -1.0},
    {"max_grad_norm": -1.0},
    {"eps": -1e-3},
]
PRODIGY_ERRORS = [
    {"d0": 0.0},
    {"lr": 0.0},
    {"eps": 0.0},
    {"betas": (1.0, 0.9)},
    {"betas": (0.9, 1.0)},
]


@pytest.mark.parametrize(
    ("name", "kwargs"), [("Lamb", k) for k in LAMB_ERRORS] + [("Prodigy", k) for k in PRODIGY_ERRORS]
)
def test_invalid_arguments_raise_the_reference_errors(name: str, kwargs: dict[str, Any]) -> None:
    with pytest.raises(Exception) as expected:
        _reference(name)(_params(torch.float64), **kwargs)
    with pytest.raises(Exception) as got:
        _ours(name)(_params(torch.float64), **kwargs)
    assert type(got.value).__name__ == type(expected.value).__name__
    assert str(got.value) == str(expected.value)


def test_prodigy_refuses_different_learning_rates_as_the_reference() -> None:
    params = _params(torch.float64)
    _set_grads(params, 0)
    for cls in (Prodigy, prodigyopt.Prodigy):
        optimizer = cls(_groups(params, {}, {"lr": 0.5}))
        with pytest.raises(RuntimeError, match="Setting different lr values"):
            optimizer.step()


def test_lamb_refuses_adanorm() -> None:
    with pytest.raises(ValueError, match="adanorm"):
        Lamb(_params(torch.float64), adanorm=True)


def test_prodigy_without_gradient_mass_does_not_move() -> None:
    """Σ|s| = 0 (zero gradients on the first step): the reference returns before any parameter
    moves and before its group counters change; the moments were updated all the same."""
    ps, rs = _params(torch.float64), _params(torch.float64)
    ours, ref = Prodigy(ps, engine="eager"), prodigyopt.Prodigy(rs)
    for params in (ps, rs):
        for p in params:
            p.grad = torch.zeros_like(p)
    ours.step()
    ref.step()
    _assert_same(ours, ref, ps, rs, rtol=0, atol=0)
    assert ours.param_groups[0]["k"] == 0 and "d_hat" not in ours.param_groups[0]
