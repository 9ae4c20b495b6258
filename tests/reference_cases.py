"""The reference table: optimlab optimizers checked against a reference package rather than torch.optim.

One entry per optimizer: our class, the reference class (the package is pinned in pyproject's dev
extra), flag variants and the constructor arguments the reference rejects. As in
tests/parity_cases.py, each variant is a set of constructor arguments plus the overrides of a second
param group, and across an entry's variants every option is switched on and off (several per
variant: the table runs once per engine). tests/test_optim_reference.py runs the whole table:
numbers after 50 steps, checkpoints both ways, signature, group defaults, errors, float32, ``l1``,
``nonfinite`` and ``functional.update``.

Adding an optimizer (LAMB, Prodigy, Schedule-Free, ...) means adding one entry here. Options the
reference keeps outside its param groups (Lion's ``decoupled_weight_decay``, AdEMAMix's
``maximize``) can only be varied through the constructor's arguments, not the second group's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import adopt
import lion_pytorch
import pytorch_optimizer
import torch

import optimlab.optim as ol
from parity_cases import FLOAT32, FLOAT64, T, Variant, gradient, initial_params

V = Variant

STEPS = 50
#: (rtol, atol) per dtype
TOLERANCE = {FLOAT64: (1e-9, 1e-12), FLOAT32: (2e-5, 1e-6)}


def tight_clip(step: float) -> float:
    """ADOPT's clipping at half its default bound, so that clipping happens often in 50 steps."""
    return 0.5 * step**0.25


@dataclass(frozen=True)
class ReferenceEntry:
    ours: type[torch.optim.Optimizer]
    theirs: type[torch.optim.Optimizer]
    #: the reference package and its pinned version, as in pyproject's dev extra
    package: str
    variants: tuple[Variant, ...]
    #: constructor arguments the reference rejects: we raise the same exception type (or, for the
    #: package's own exception classes, one of the same name) with the same message
    invalid: tuple[dict[str, Any], ...] = ()
    #: the reference counts steps per param group: ``functional.update`` then takes ``step=t``
    group_step: bool = False

    @property
    def name(self) -> str:
        return self.ours.__name__


REFERENCES: dict[str, ReferenceEntry] = {
    entry.name: entry
    for entry in (
        ReferenceEntry(
            ol.Lion,
            lion_pytorch.Lion,
            "lion-pytorch 0.2.5",
            (
                V("plain", {"lr": 0.01}, {"lr": 0.003}),
                V(
                    "wd-betas",
                    {"lr": 0.01, "betas": (0.95, 0.98), "weight_decay": 0.1},
                    {"weight_decay": 0.0, "betas": (0.9, 0.99)},
                    (FLOAT64, FLOAT32),
                ),
                # lion_pytorch divides every group's weight_decay by the constructor's lr
                V(
                    "decoupled-wd",
                    {"lr": 0.01, "weight_decay": 1.0, "decoupled_weight_decay": True},
                    {"lr": 0.002, "weight_decay": 0.5},
                ),
            ),
            invalid=({"lr": 0.0}, {"lr": -1e-3}, {"betas": (1.1, 0.99)}, {"betas": (0.9, -0.1)}),
        ),
        ReferenceEntry(
            ol.ADOPT,
            adopt.ADOPT,
            "torch-adopt 0.1.0",
            (
                V("plain", {"lr": 0.01}, {"lr": 0.003}),
                V(
                    "coupled-wd-tight-clip-maximize",
                    {
                        "lr": 0.01,
                        "betas": (0.8, 0.99),
                        "weight_decay": 0.05,
                        "clip_lambda": tight_clip,
                        "maximize": True,
                    },
                    {"maximize": False, "weight_decay": 0.0, "eps": 1e-3},
                    (FLOAT64, FLOAT32),
                ),
                V(
                    "decouple-no-clip-tensor-lr",
                    {
                        "lr": T(0.01),
                        "weight_decay": 0.1,
                        "decouple": True,
                        "clip_lambda": None,
                        "foreach": False,
                    },
                    {"lr": T(0.005), "decouple": False},
                ),
            ),
            invalid=(
                {"lr": -1.0},
                {"lr": torch.tensor([0.1, 0.2])},
                {"lr": T(0.01), "foreach": True},
                {"eps": -1e-6},
                {"betas": (1.0, 0.9999)},
                {"betas": (0.9, -0.5)},
                {"weight_decay": -1e-3},
                {"fused": True},
                {"fused": True, "differentiable": True},
            ),
        ),
        ReferenceEntry(
            ol.AdEMAMix,
            pytorch_optimizer.AdEMAMix,
            "pytorch-optimizer 4.1.0",
            (
                V("plain-for-loop", {"lr": 0.01, "foreach": False}, {"lr": 0.003}),
                # T = 20: the warm-ups of alpha and beta3 run out within the 50 steps
                V(
                    "warmup-coupled-wd-maximize",
                    {
                        "lr": 0.01,
                        "betas": (0.9, 0.99, 0.999),
                        "alpha": 8.0,
                        "t_alpha_beta3": 20,
                        "weight_decay": 0.05,
                        "maximize": True,
                    },
                    {"t_alpha_beta3": None, "alpha": 2.0, "weight_decay": 0.0},
                    (FLOAT64, FLOAT32),
                ),
                V(
                    "decoupled-fixed-tensor-lr",
                    {
                        "lr": T(0.01),
                        "weight_decay": 0.1,
                        "weight_decouple": True,
                        "fixed_decay": True,
                        "eps": 1e-6,
                        "t_alpha_beta3": 30.0,
                    },
                    {"fixed_decay": False, "lr": T(0.004), "weight_decay": 0.01},
                ),
            ),
            invalid=(
                {"lr": -1.0},
                {"betas": (1.0, 0.999, 0.9999)},
                {"betas": (0.9, -0.1, 0.9999)},
                {"betas": (0.9, 0.999, 1.5)},
                {"alpha": -1.0},
                {"t_alpha_beta3": -5.0},
                {"weight_decay": -0.1},
                {"eps": -1e-8},
            ),
            group_step=True,
        ),
    )
}

CASES = [(name, variant) for name, entry in REFERENCES.items() for variant in entry.variants]


# --- the harness ---------------------------------------------------------------------------------


def build(
    cls: type, variant: Variant, dtype: torch.dtype = torch.float64, **extra: Any
) -> tuple[torch.optim.Optimizer, list[torch.Tensor]]:
    """``cls`` over the three test parameters (two groups), the second group getting ``variant.group``."""
    params = [p.requires_grad_() for p in initial_params(dtype)]
    if dtype != torch.float64:  # tensor hyperparameters follow the parameters' precision
        variant = Variant(
            variant.name,
            {k: v.to(dtype) if isinstance(v, torch.Tensor) else v for k, v in variant.kwargs.items()},
            {k: v.to(dtype) if isinstance(v, torch.Tensor) else v for k, v in variant.group.items()},
        )
    return variant.build(cls, [params[:2], params[2:]], **extra), params


def run(
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    steps: int,
    start: int = 0,
    nan_at: int | None = None,
) -> None:
    """``steps`` steps with parity_cases' deterministic gradients (p1 skips some steps, p2 starts
    late); at step ``nan_at`` every gradient is NaN."""
    for step in range(start, start + steps):
        for index, p in enumerate(params):
            grad = gradient(step, index, p)
            p.grad = grad if grad is None or step != nan_at else torch.full_like(grad, float("nan"))
        optimizer.step()


#: param-group keys optimlab adds to every group
OUR_GROUP_KEYS = {"l1", "nonfinite", "skipped_steps"}


def _close(ours: Any, theirs: Any, rtol: float, atol: float, what: str) -> None:
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, torch.Tensor), what
        assert ours.dtype == theirs.dtype, f"{what}: {ours.dtype} != {theirs.dtype}"
        torch.testing.assert_close(ours, theirs, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")
    else:  # a Python number kept in state or in a param group (a step count, ...)
        assert type(ours) is type(theirs) and ours == theirs, f"{what}: {ours!r} != {theirs!r}"


def assert_same(
    ours: torch.optim.Optimizer,
    ours_params: list[torch.Tensor],
    theirs: torch.optim.Optimizer,
    theirs_params: list[torch.Tensor],
    rtol: float,
    atol: float,
) -> None:
    """Same parameters, same state (keys, dtypes, values) and same param-group entries."""
    for index, (a, b) in enumerate(zip(ours_params, theirs_params, strict=True)):
        assert torch.isfinite(b).all(), f"param {index}: the reference diverged"
        _close(a.detach(), b.detach(), rtol, atol, f"param {index}")
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert ours_sd["state"].keys() == theirs_sd["state"].keys()
    for index, their_state in theirs_sd["state"].items():
        assert ours_sd["state"][index].keys() == their_state.keys(), index
        for key, value in their_state.items():
            _close(ours_sd["state"][index][key], value, rtol, atol, f"state {index}.{key}")
    for ours_group, theirs_group in zip(ours_sd["param_groups"], theirs_sd["param_groups"], strict=True):
        assert set(ours_group) == set(theirs_group) | OUR_GROUP_KEYS
        for key, value in theirs_group.items():
            if key != "params":
                _close(ours_group[key], value, rtol, atol, f"group {key}")
