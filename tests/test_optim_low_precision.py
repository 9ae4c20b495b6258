"""bfloat16 storage: stochastic rounding, ``state_dtype`` and ``stochastic_rounding`` (issue 15).

Stochastic rounding must be unbiased (its mean error inside a confidence interval over many draws)
and reproducible; every first-order optimizer keeps its state tensors in bfloat16 with
``state_dtype`` and still follows its float32 run; on a long-horizon quadratic with a small learning
rate, round-to-nearest bfloat16 parameters (torch.optim's) stall where stochastic rounding goes as
far as float32; checkpoints round-trip and a resumed run rounds as the uninterrupted one.
"""

from __future__ import annotations

import copy
import io
import math
from typing import Any

import pytest
import torch

import optimlab.optim as ol
from optimlab.optim.engine.rounding import (
    COMPILE_MIN_NUMEL,
    RoundingStream,
    _compiled_rounding,
    round_with_bits,
    stochastic_round,
)
from parity_cases import PARITY, gradient

BF16 = torch.bfloat16


def _neighbours(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The bfloat16 numbers just below and just above each float32 ``x`` in magnitude."""
    bits = x.view(torch.int32)
    low = (bits & -(1 << 16)).view(torch.float32)
    high = ((bits & -(1 << 16)) + (1 << 16)).view(torch.float32)
    return low, high


# --- the rounding itself -------------------------------------------------------------------------


def test_rounds_to_a_neighbour_and_keeps_exact_and_special_values() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(10_000, generator=gen) * torch.logspace(-30, 30, 10_000)
    rounded = stochastic_round(x, BF16, torch.Generator().manual_seed(1)).float()
    low, high = _neighbours(x)
    assert bool(((rounded == low) | (rounded == high)).all())
    exact = x.to(BF16).float()  # already representable: unchanged, whatever the random bits
    assert torch.equal(stochastic_round(exact, BF16, torch.Generator().manual_seed(2)).float(), exact)
    special = torch.tensor([float("inf"), -float("inf"), float("nan"), 0.0, -0.0])
    out = stochastic_round(special, BF16).float()
    assert out[0] == float("inf") and out[1] == -float("inf") and math.isnan(out[2])
    assert out[3] == 0 and out[4] == 0 and math.copysign(1, out[4]) == -1


def test_stochastic_rounding_is_unbiased() -> None:
    """The mean of many rounded draws is x, for positive and negative values across binades: each
    value's standardized mean error is inside ±4.5 (a 99.9 % family-wise interval for 64 values)
    and their squares average ≈ 1, as unbiased draws give; round-to-nearest's fixed errors would be
    hundreds of standard errors out."""
    gen = torch.Generator().manual_seed(0)
    signs = torch.tensor([1.0, -1.0]).repeat(32)
    x = (torch.rand(64, generator=gen) + 0.5) * torch.logspace(-3, 3, 64) * signs
    draws = 4000
    rounding = torch.Generator().manual_seed(1)
    samples = torch.stack([stochastic_round(x, BF16, rounding).double() for _ in range(draws)])
    error = samples - x.double()
    z = error.mean(0) / (error.std(0) / math.sqrt(draws))
    assert float(z.abs().max()) < 4.5
    assert 0.6 < float((z**2).mean()) < 1.5
    nearest = x.to(BF16).double() - x.double()
    assert float((nearest.abs() / (error.std(0) / math.sqrt(draws))).median()) > 20


def test_the_compiled_rounding_is_the_eager_one_bit_for_bit() -> None:
    compiled = _compiled_rounding("cpu")
    if compiled is None:
        pytest.skip("no C++ compiler for torch.compile")
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(COMPILE_MIN_NUMEL + 3, generator=gen) * 1e3
    x[:4] = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0])
    x[4] = torch.tensor(0x7FFFFFFF, dtype=torch.int32).view(torch.float32)  # a NaN whose payload carries
    noise = torch.randint(0, 1 << 16, x.shape, dtype=torch.int32, generator=gen)
    ours, eager = compiled(x, noise), round_with_bits(x, noise)
    assert torch.equal(ours.view(torch.int16), eager.view(torch.int16))
    assert math.isnan(float(eager[4])) and math.isnan(float(eager[0]))
    # the public function takes the compiled path for large tensors: same draws, same result
    a = stochastic_round(x, BF16, torch.Generator().manual_seed(5))
    b = round_with_bits(
        x, torch.randint(0, 1 << 16, x.shape, dtype=torch.int32, generator=torch.Generator().manual_seed(5))
    )
    assert torch.equal(a.view(torch.int16), b.view(torch.int16))


def test_the_same_seed_rounds_the_same_way() -> None:
    x = torch.randn(1000, generator=torch.Generator().manual_seed(0))
    a = RoundingStream(seed=3, group=0, step=7).round(x, BF16)
    b = RoundingStream(seed=3, group=0, step=7).round(x, BF16)
    c = RoundingStream(seed=3, group=0, step=8).round(x, BF16)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_only_bfloat16_is_a_storage_dtype() -> None:
    with pytest.raises(ValueError, match="stochastic rounding writes bfloat16"):
        stochastic_round(torch.ones(2), torch.float16)
    with pytest.raises(
        ValueError, match=r"Invalid state_dtype: torch.float16 \(expected None or torch.bfloat16\)"
    ):
        ol.Adam([torch.zeros(2, requires_grad=True)], state_dtype=torch.float16)
    with pytest.raises(ValueError, match="Invalid stochastic_rounding"):
        ol.SGD([torch.zeros(2, requires_grad=True)], stochastic_rounding="yes")  # type: ignore[arg-type]


def test_the_fused_engine_and_autograd_refuse_rounded_storage() -> None:
    p = torch.zeros(2, requires_grad=True)
    with pytest.raises(ValueError, match="engine='fused' does not support state_dtype"):
        ol.Adam([p], engine="fused", state_dtype=BF16)
    with pytest.raises(ValueError, match="differentiable=True does not support state_dtype"):
        ol.Adam([p], differentiable=True, stochastic_rounding=True)
    with pytest.raises(ValueError, match="engine='fused' does not support"):
        ol.Adam([p], fused=True, state_dtype=BF16)
    assert ol.Adam([p], state_dtype=BF16).engine.name == "eager"  # auto: eager


def test_complex_parameters_cannot_keep_bfloat16_state() -> None:
    p = torch.zeros(2, dtype=torch.complex64, requires_grad=True)
    opt = ol.Adam([p], state_dtype=BF16)
    p.grad = torch.ones_like(p)
    with pytest.raises(ValueError, match=r"state_dtype=torch\.bfloat16 needs real parameters"):
        opt.step()


# --- every first-order optimizer ---------------------------------------------------------------

SHAPES_2D = [(6, 5), (4, 3), (5, 4)]


def _cases() -> list[tuple[str, type, dict[str, Any], list[tuple[int, ...]], str]]:
    """(id, class, kwargs, param shapes, gradient kind) for every first-order optimizer."""
    cases = [
        (
            name,
            entry.ours,
            {"momentum": 0.9} if entry.ours is ol.SGD else {},
            entry.param_shapes,
            entry.gradients,
        )
        for name, entry in PARITY.items()
        if entry.ours is not ol.LBFGS
    ]
    cases += [
        ("Lion", ol.Lion, {"lr": 1e-3}, SHAPES_2D, "dense"),
        ("ADOPT", ol.ADOPT, {}, SHAPES_2D, "dense"),
        ("AdEMAMix", ol.AdEMAMix, {}, SHAPES_2D, "dense"),
        ("Lamb", ol.Lamb, {}, SHAPES_2D, "dense"),
        ("Prodigy", ol.Prodigy, {}, SHAPES_2D, "dense"),
        ("AdamWScheduleFree", ol.AdamWScheduleFree, {}, SHAPES_2D, "dense"),
        ("SGDScheduleFree", ol.SGDScheduleFree, {"lr": 0.1}, SHAPES_2D, "dense"),
        ("MuonWithAdamW", ol.MuonWithAdamW, {}, [(6, 5), (4,), (5, 4)], "dense"),
    ]
    return cases


CASES = _cases()


def _build(cls: type, kwargs: dict[str, Any], shapes: list[tuple[int, ...]], **extra: Any):
    gen = torch.Generator().manual_seed(0)
    params = [torch.randn(shape, generator=gen).requires_grad_() for shape in shapes]
    if cls is ol.MuonWithAdamW:
        groups = [{"params": [params[0], params[2]]}, {"params": [params[1]], "use_muon": False}]
        opt = cls(groups, **kwargs, **extra)
    else:
        opt = cls([{"params": params[:2]}, {"params": params[2:]}], **kwargs, **extra)
    if hasattr(opt, "train"):
        opt.train()
    return opt, params


def _run(
    opt: torch.optim.Optimizer, params: list[torch.Tensor], steps: int, kind: str, start: int = 0
) -> None:
    for step in range(start, start + steps):
        for index, p in enumerate(params):
            p.grad = gradient(step, index, p, kind)
        opt.step()


@pytest.mark.parametrize(
    ("cls", "kwargs", "shapes", "kind"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_state_dtype_keeps_the_state_in_bfloat16_and_follows_float32(
    cls: type, kwargs: dict[str, Any], shapes: list[tuple[int, ...]], kind: str
) -> None:
    full, full_params = _build(cls, kwargs, shapes)
    half, half_params = _build(cls, kwargs, shapes, state_dtype=BF16)
    initial = [p.detach().clone() for p in full_params]
    _run(full, full_params, 30, kind)
    _run(half, half_params, 30, kind)
    tensors = [
        (key, value)
        for state in half.state.values()
        for key, value in state.items()
        if isinstance(value, torch.Tensor) and value.dim() > 0
    ]
    moments = [value for key, value in tensors if key not in cls.parameter_state]
    assert tensors and all(value.dtype == BF16 for value in moments)  # ASGD, SGD-SF: no moments
    assert all(value.dtype == torch.float32 for key, value in tensors if key in cls.parameter_state)
    for a, b, a0 in zip(full_params, half_params, initial, strict=True):
        assert a.dtype == b.dtype == torch.float32
        moved = float((a.detach() - a0).norm())
        assert float((a - b).detach().norm()) <= 0.05 * moved + 1e-6, (float((a - b).norm()), moved)
    state = half.state_dict()  # a checkpoint holds bfloat16 state and round-trips
    again, _ = _build(cls, kwargs, shapes, state_dtype=BF16)
    again.load_state_dict(copy.deepcopy(state))
    for key, value in again.state_dict()["state"].items():
        for name, tensor in value.items():
            if isinstance(tensor, torch.Tensor):
                assert torch.equal(tensor, state["state"][key][name]), name


def test_bfloat16_moments_track_float32_where_round_to_nearest_stalls() -> None:
    """v ← β₂v + (1 − β₂)g² with a steady gradient: each increment (1 − β₂)(g² − v) falls below half
    of bfloat16's spacing long before v reaches g²; round-to-nearest storage stops there, stochastic
    rounding goes on (the mean over many coordinates, within 1 % of float32's)."""
    n = 4096
    grad = torch.ones(n)

    def exp_avg_sq(**extra: Any) -> torch.Tensor:
        p = torch.zeros(n, requires_grad=True)
        opt = ol.Adam([p], lr=0.0, **extra)
        for _ in range(3000):
            p.grad = grad
            opt.step()
        return opt.state[p]["exp_avg_sq"].float()

    full = float(exp_avg_sq().mean())
    stochastic = float(exp_avg_sq(state_dtype=BF16).mean())
    nearest = 0.0  # the same recursion stored with round-to-nearest
    v = torch.zeros((), dtype=BF16)
    for _ in range(3000):
        v = (0.999 * v.float() + 0.001).to(BF16)
    nearest = float(v)
    assert abs(stochastic - full) <= 0.01 * full
    assert nearest < 0.9 * full


def test_stochastic_rounding_moves_bfloat16_parameters_where_round_to_nearest_stalls() -> None:
    """A long-horizon quadratic ½‖θ − c‖² with a small learning rate in bfloat16: every step's change
    η(θ − c) is below half a unit in the last place of θ, so torch.optim's bfloat16 SGD never moves
    θ; with stochastic rounding the iterates travel as far as float32's (the mean over the
    coordinates, within 1 %)."""
    n, steps, lr = 20_000, 2000, 1e-3
    start, target = 1.0, 0.5

    def travelled(cls: type, dtype: torch.dtype, **extra: Any) -> float:
        p = torch.full((n,), start, dtype=dtype, requires_grad=True)
        opt = cls([p], lr=lr, **extra)
        for _ in range(steps):
            p.grad = (p.detach() - target).to(dtype)
            opt.step()
        return float(start - p.detach().double().mean())

    full = travelled(ol.SGD, torch.float32)
    assert full > 0.4  # float32 goes most of the way
    assert travelled(torch.optim.SGD, BF16) == 0.0  # round-to-nearest: stalled from the first step
    assert abs(travelled(ol.SGD, BF16, stochastic_rounding=True) - full) <= 0.01 * full


def test_a_0d_bfloat16_parameter_is_rounded_stochastically_too() -> None:
    """Each step's change (≈ 5e-4) is a sixteenth of bfloat16's spacing at 1: round-to-nearest never
    moves the scalar, stochastic rounding does (on average as far as float32)."""
    moved = {}
    for name, extra in (("nearest", {}), ("stochastic", {"stochastic_rounding": True})):
        p = torch.tensor(1.0, dtype=BF16, requires_grad=True)
        opt = ol.SGD([p], lr=1e-3, **extra)
        for _ in range(500):
            p.grad = (p.detach() - 0.5).to(BF16)
            opt.step()
        moved[name] = 1.0 - float(p)
    assert moved["nearest"] == 0.0 and moved["stochastic"] > 0.05


def test_stochastic_rounding_leaves_other_dtypes_alone() -> None:
    p, q = (torch.randn(5, generator=torch.Generator().manual_seed(0)).requires_grad_() for _ in range(2))
    a, b = ol.Adam([p]), ol.Adam([q], stochastic_rounding=True)
    _run(a, [p], 10, "dense")
    _run(b, [q], 10, "dense")
    assert torch.equal(p, q)


def test_a_resumed_run_rounds_as_the_uninterrupted_one() -> None:
    cls, kwargs, shapes = ol.AdamW, {"lr": 1e-2}, [(8, 3), (5,), (7,)]
    whole, whole_params = _build(cls, kwargs, shapes, state_dtype=BF16)
    _run(whole, whole_params, 20, "dense")
    first, first_params = _build(cls, kwargs, shapes, state_dtype=BF16)
    _run(first, first_params, 10, "dense")
    buffer = io.BytesIO()
    torch.save({"params": [p.detach() for p in first_params], "optimizer": first.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer)
    resumed, resumed_params = _build(cls, kwargs, shapes, state_dtype=BF16)
    with torch.no_grad():
        for p, value in zip(resumed_params, saved["params"], strict=True):
            p.copy_(value)
    resumed.load_state_dict(saved["optimizer"])
    assert resumed.param_groups[0]["rounded_steps"] == 10
    _run(resumed, resumed_params, 10, "dense", start=10)
    for a, b in zip(whole_params, resumed_params, strict=True):
        assert torch.equal(a, b)
    copied = copy.deepcopy(resumed)
    assert copied.state_dtype == BF16 and copied.engine.name == "eager"


def test_state_dtype_halves_the_state_bytes() -> None:
    def state_bytes(**extra: Any) -> int:
        p = torch.zeros(1000, requires_grad=True)
        opt = ol.Adam([p], **extra)
        p.grad = torch.ones_like(p)
        opt.step()
        return sum(t.numel() * t.element_size() for t in opt.state[p].values() if t.dim() > 0)

    assert state_bytes() == 8000 and state_bytes(state_dtype=BF16) == 4000
