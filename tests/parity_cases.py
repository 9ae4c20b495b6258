"""The parity table: every optimlab optimizer next to its torch.optim namesake, with its flag variants.

One entry per optimizer. Each variant is a set of constructor arguments plus the overrides of a
second param group (so every run also covers several groups with different hyperparameters);
``invalid`` lists constructor arguments torch.optim rejects, which must fail the same way here.
Across an entry's variants every algorithm flag appears switched on and off; the parity tests
(tests/test_optim_parity.py, tests/test_optim_state_dict.py) run each variant against torch.optim
and require the same parameters and state after 40 steps.

Adding an optimizer means adding one entry here (see CONTRIBUTING.md). Keep the variants few and
dense — several flags per variant — because the table runs once per engine and dtype.

Tensor hyperparameters are float64 0-d tensors in the float64 runs, so that the comparison stays at
1e-9; ``Variant.dtypes`` lists the other dtypes a variant also runs in (float32, complex128).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch

import optimlab.optim as ol

FLOAT64 = "float64"
FLOAT32 = "float32"
COMPLEX = "complex128"
ALL_DTYPES = (FLOAT64, FLOAT32, COMPLEX)


def T(value: float) -> torch.Tensor:
    """A float64 0-d tensor hyperparameter."""
    return torch.tensor(value, dtype=torch.float64)


@dataclass(frozen=True)
class Variant:
    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: hyperparameters of the second param group that differ from the constructor's
    group: dict[str, Any] = field(default_factory=dict)
    dtypes: tuple[str, ...] = (FLOAT64,)

    def build(self, cls: type, groups: list[list[torch.Tensor]], **extra: Any) -> torch.optim.Optimizer:
        """``cls`` over ``groups`` (lists of params); the second group gets ``self.group``."""
        param_groups: list[dict[str, Any]] = [{"params": groups[0]}]
        param_groups += [{"params": g, **copy.deepcopy(self.group)} for g in groups[1:]]
        return cls(param_groups, **copy.deepcopy(self.kwargs), **extra)


@dataclass(frozen=True)
class ParityEntry:
    ours: type[torch.optim.Optimizer]
    theirs: type[torch.optim.Optimizer]
    #: flag variants, run against torch.optim for numerical parity (and checkpoint exchange)
    variants: tuple[Variant, ...]
    #: constructor arguments that torch.optim rejects: optimlab must raise the same exception with
    #: the same message (tests/test_optim_api.py adds the generic bad-params cases)
    invalid: tuple[dict[str, Any], ...] = ()
    #: the parameters' shapes (the first two in the first group, the rest in the second); ``None``:
    #: :data:`SHAPES`. Shape-aware rules (Adafactor's factored statistics) list their own.
    shapes: tuple[tuple[int, ...], ...] | None = None
    #: the gradients the harness gives: ``"dense"`` or ``"sparse"`` (SparseAdam, which takes
    #: nothing else; see :func:`gradient`)
    gradients: str = "dense"
    #: optimlab's own keyword-only options of this class beyond torch's (and beyond the shared
    #: ``l1``/``nonfinite``/``engine``): they come first among the extras and are param-group keys
    options: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.ours.__name__

    @property
    def param_shapes(self) -> list[tuple[int, ...]]:
        return list(self.shapes) if self.shapes else SHAPES

    def sample_param(self, **kwargs: Any) -> torch.Tensor:
        """A zero parameter this optimizer accepts (of its first shape)."""
        return torch.zeros(self.param_shapes[0], **kwargs)

    def params(self, dtype: torch.dtype, device: str = "cpu") -> list[torch.Tensor]:
        """This entry's initial parameters (leaves that require grad)."""
        return [p.requires_grad_() for p in initial_params(dtype, device, self.shapes)]


V = Variant

BAD_LR_WD: tuple[dict[str, Any], ...] = (
    {"lr": -1.0},
    {"lr": torch.tensor([0.1, 0.2])},
    {"lr": torch.tensor(-0.1)},
    {"weight_decay": -1e-3},
)
BAD_BETAS: tuple[dict[str, Any], ...] = (
    {"betas": (1.0, 0.999)},
    {"betas": (-0.1, 0.999)},
    {"betas": (0.9, 1.0)},
    {"betas": (0.9, -0.5)},
)

PARITY: dict[str, ParityEntry] = {
    entry.name: entry
    for entry in (
        ParityEntry(
            ol.SGD,
            torch.optim.SGD,
            (
                V("plain", {"lr": 0.05}, {"lr": 0.02}),
                V(
                    "momentum-dampening-wd",
                    {"lr": 0.02, "momentum": 0.9, "dampening": 0.3, "weight_decay": 0.01},
                    {"momentum": 0.5, "dampening": 0.0, "weight_decay": 0.0},
                    ALL_DTYPES,
                ),
                V(
                    "nesterov-maximize",
                    {"lr": 0.01, "momentum": 0.8, "nesterov": True, "maximize": True, "weight_decay": 1e-3},
                    {"nesterov": False, "maximize": False, "lr": 0.03},
                    ALL_DTYPES,
                ),
                V("tensor-lr-wd", {"lr": T(0.02), "momentum": 0.7, "weight_decay": T(0.05)}, {"lr": T(0.01)}),
            ),
            invalid=(
                *BAD_LR_WD,
                {"momentum": -0.5},
                {"nesterov": True},
                {"nesterov": True, "momentum": 0.9, "dampening": 0.1},
                {"fused": True, "foreach": True},
            ),
        ),
        ParityEntry(
            ol.Adagrad,
            torch.optim.Adagrad,
            (
                V("plain", {}, {"lr": 0.05}),
                # torch.optim.Adagrad fills `sum` with the constructor's initial_accumulator_value
                # even for a group that sets its own; the second group checks we do the same.
                V(
                    "decay-wd-accumulator",
                    {
                        "lr": 0.05,
                        "lr_decay": 0.01,
                        "weight_decay": 0.01,
                        "initial_accumulator_value": 0.1,
                        "eps": 1e-8,
                    },
                    {"lr_decay": 0.0, "weight_decay": 0.0, "initial_accumulator_value": 0.5},
                    ALL_DTYPES,
                ),
                V("maximize-tensor-lr", {"lr": T(0.02), "maximize": True}, {"maximize": False}, ALL_DTYPES),
            ),
            invalid=(
                *BAD_LR_WD,
                {"lr_decay": -1.0},
                {"initial_accumulator_value": -0.1},
                {"eps": -1e-10},
                {"fused": True, "foreach": True},
            ),
        ),
        ParityEntry(
            ol.RMSprop,
            torch.optim.RMSprop,
            (
                V("plain", {"lr": 0.01}, {"alpha": 0.9}),
                V(
                    "centered-momentum-wd",
                    {"lr": 0.005, "momentum": 0.9, "centered": True, "weight_decay": 0.01},
                    {"momentum": 0.0, "centered": False, "weight_decay": 0.0},
                    ALL_DTYPES,
                ),
                V(
                    "maximize-tensor-lr",
                    {"lr": T(0.005), "alpha": 0.95, "eps": 1e-6, "maximize": True, "momentum": 0.5},
                    {"momentum": 0.0, "centered": True, "maximize": False},
                    ALL_DTYPES,
                ),
            ),
            invalid=(*BAD_LR_WD, {"eps": -1.0}, {"momentum": -0.9}, {"alpha": -0.5}),
        ),
        ParityEntry(
            ol.Adadelta,
            torch.optim.Adadelta,
            (
                V("plain", {}, {"rho": 0.5}),
                V(
                    "wd-maximize",
                    {"lr": 0.5, "rho": 0.95, "eps": 1e-5, "weight_decay": 0.01, "maximize": True},
                    {"weight_decay": 0.0, "lr": 2.0, "maximize": False},
                    ALL_DTYPES,
                ),
                V("tensor-lr", {"lr": T(0.8)}, {"lr": T(1.5)}),
            ),
            invalid=(*BAD_LR_WD, {"rho": 1.1}, {"rho": -0.1}, {"eps": -1.0}),
        ),
        ParityEntry(
            ol.Adam,
            torch.optim.Adam,
            (
                V("plain", {"lr": 0.01}, {"lr": 0.02, "betas": (0.8, 0.99)}),
                V(
                    "amsgrad-wd",
                    {"lr": 0.01, "amsgrad": True, "weight_decay": 0.01, "eps": 1e-6},
                    {"amsgrad": False, "weight_decay": 0.0},
                    ALL_DTYPES,
                ),
                V(
                    "decoupled-maximize",
                    {"lr": 0.01, "decoupled_weight_decay": True, "weight_decay": 0.1, "maximize": True},
                    {"amsgrad": True, "decoupled_weight_decay": False, "maximize": False},
                    ALL_DTYPES,
                ),
                V("tensor-lr-betas", {"lr": T(0.01), "betas": (T(0.9), T(0.99))}, {"lr": T(0.005)}),
            ),
            invalid=(
                *BAD_LR_WD,
                *BAD_BETAS,
                {"eps": -1.0},
                {"betas": (0.9, torch.tensor(0.999))},
                {"betas": (torch.tensor([0.9, 0.8]), torch.tensor(0.999))},
                {"betas": (torch.tensor(0.9), torch.tensor(0.999)), "foreach": True},
                {"lr": torch.tensor(0.1), "foreach": True},
                {"fused": True, "foreach": True},
            ),
        ),
        ParityEntry(
            ol.AdamW,
            torch.optim.AdamW,
            (
                V("plain", {"lr": 0.01}, {"weight_decay": 0.0}),
                V(
                    "amsgrad-maximize",
                    {"lr": 0.01, "amsgrad": True, "maximize": True, "weight_decay": 0.05},
                    {"lr": 0.03, "amsgrad": False},
                    ALL_DTYPES,
                ),
                V("tensor-lr-eps", {"lr": T(0.01), "weight_decay": 0.1, "eps": 1e-6}, {"lr": T(0.02)}),
            ),
            invalid=(
                *BAD_LR_WD,
                *BAD_BETAS,
                {"eps": -1.0},
                {"betas": (torch.tensor(0.9), 0.999)},
                {"lr": torch.tensor(0.1), "foreach": True},
                {"fused": True, "foreach": True},
            ),
        ),
        ParityEntry(
            ol.Adamax,
            torch.optim.Adamax,
            (
                V("plain", {}, {"betas": (0.8, 0.9)}),
                V(
                    "wd-maximize-tensor-lr",
                    {"lr": T(0.01), "weight_decay": 0.01, "maximize": True, "eps": 1e-6},
                    {"weight_decay": 0.0, "maximize": False},
                    ALL_DTYPES,
                ),
            ),
            invalid=(*BAD_LR_WD, *BAD_BETAS, {"eps": -1.0}),
        ),
        ParityEntry(
            ol.NAdam,
            torch.optim.NAdam,
            (
                V("plain", {}, {"momentum_decay": 0.01}),
                V(
                    "wd-momentum-decay",
                    {"lr": 0.01, "weight_decay": 0.01, "momentum_decay": 0.02, "eps": 1e-6},
                    {"lr": 0.005, "weight_decay": 0.0},
                    ALL_DTYPES,
                ),
                V(
                    "decoupled-maximize-tensor-lr",
                    {"lr": T(0.01), "decoupled_weight_decay": True, "weight_decay": 0.1, "maximize": True},
                    {"decoupled_weight_decay": False, "maximize": False},
                    ALL_DTYPES,
                ),
            ),
            invalid=(*BAD_LR_WD, *BAD_BETAS, {"eps": -1.0}, {"momentum_decay": -1e-3}),
        ),
        ParityEntry(
            ol.RAdam,
            torch.optim.RAdam,
            (
                V("plain", {"lr": 0.01}, {"betas": (0.9, 0.9)}),
                V(
                    "wd",
                    {"lr": 0.01, "weight_decay": 0.01, "eps": 1e-6},
                    {"weight_decay": 0.0, "betas": (0.8, 0.95)},
                    ALL_DTYPES,
                ),
                V(
                    "decoupled-maximize-tensor-lr",
                    {"lr": T(0.01), "decoupled_weight_decay": True, "weight_decay": 0.1, "maximize": True},
                    {"decoupled_weight_decay": False, "maximize": False, "betas": (0.9, 0.9)},
                    ALL_DTYPES,
                ),
            ),
            invalid=(*BAD_LR_WD, *BAD_BETAS, {"eps": -1.0}),
        ),
        # torch.optim.Muon: 2-D parameters only (p0, p1 tall and of one shape, p2 wide); its math is
        # in bfloat16 (Newton–Schulz) and optimlab's is the same ops in the same order, bit for bit.
        ParityEntry(
            ol.Muon,
            torch.optim.Muon,
            (
                V("plain", {"lr": 0.02}, {"lr": 0.01, "weight_decay": 0.0}),
                V(
                    "no-nesterov-rms-adamw",
                    {"lr": 0.02, "nesterov": False, "momentum": 0.9, "adjust_lr_fn": "match_rms_adamw"},
                    {"nesterov": True, "momentum": 0.0, "adjust_lr_fn": "original"},
                    (FLOAT64, FLOAT32),
                ),
                V(
                    "tensor-lr-ns",
                    {"lr": T(0.03), "ns_steps": 3, "eps": 1e-5, "ns_coefficients": (3.0, -3.2, 1.2)},
                    {"lr": T(0.01), "weight_decay": 0.2},
                    (FLOAT64, FLOAT32),
                ),
            ),
            invalid=(
                {"lr": -1.0},
                {"lr": torch.tensor([0.1, 0.2])},
                {"lr": torch.tensor(-0.1)},
                {"weight_decay": -1e-3},
                {"momentum": -0.5},
                {"adjust_lr_fn": "sqrt"},
            ),
            shapes=((3, 2), (3, 2), (2, 5)),
            options=("flatten", "batch_matrices"),
        ),
        # Adafactor factors its statistics over the last two dims: a matrix, a 3-D tensor (a stack of
        # factored matrices), a vector and a scalar (unfactored). torch rejects complex parameters.
        ParityEntry(
            ol.Adafactor,
            torch.optim.Adafactor,
            (
                V("plain", {}, {"lr": 0.05}, (FLOAT64, FLOAT32)),
                V(
                    "wd-maximize-d-decay",
                    {"lr": 0.02, "weight_decay": 0.1, "maximize": True, "d": 1.5, "beta2_decay": -0.5},
                    {"weight_decay": 0.0, "maximize": False, "d": 1.0},
                    (FLOAT64, FLOAT32),
                ),
                V(
                    "tensor-lr-eps",
                    {"lr": T(0.03), "eps": (1e-20, 1e-2), "weight_decay": T(0.05)},
                    {"lr": T(0.01), "eps": (None, 1e-3)},
                ),
            ),
            invalid=(
                {"lr": -1.0},
                {"lr": torch.tensor([0.1, 0.2])},
                {"lr": torch.tensor(-0.1)},
                {"beta2_decay": 0.5},
                {"eps": (-1e-30, 1e-3)},
                {"eps": (None, -1e-3)},
                {"d": 0.5},
                {"weight_decay": -1e-3},
            ),
            shapes=((3, 2), (2, 3, 4), (5,), ()),
        ),
        # SparseAdam takes sparse gradients only: rows of embedding-like matrices (duplicates, an
        # empty one) and single elements (see `gradient`); torch rejects complex parameters.
        ParityEntry(
            ol.SparseAdam,
            torch.optim.SparseAdam,
            (
                V("plain", {}, {"lr": 0.01}, (FLOAT64, FLOAT32)),
                V(
                    "maximize-betas-eps",
                    {"lr": 0.02, "betas": (0.8, 0.99), "eps": 1e-6, "maximize": True},
                    {"maximize": False, "betas": (0.9, 0.9)},
                    (FLOAT64, FLOAT32),
                ),
                V("tensor-lr", {"lr": T(0.01)}, {"lr": T(0.03), "maximize": True}),
            ),
            invalid=(
                {"lr": 0.0},
                {"lr": -1.0},
                {"lr": torch.tensor([0.1, 0.2])},
                {"eps": 0.0},
                *BAD_BETAS,
            ),
            shapes=((10, 3), (6,), (10, 3)),
            gradients="sparse",
        ),
        ParityEntry(
            ol.Rprop,
            torch.optim.Rprop,
            (
                V("plain", {"lr": 0.01}, {"lr": 0.05}),
                # small step-size bounds, so that both clamps act within the 40 steps
                V(
                    "etas-step-sizes-maximize",
                    {"lr": 0.02, "etas": (0.3, 1.5), "step_sizes": (1e-3, 0.1), "maximize": True},
                    {"etas": (0.6, 1.1), "step_sizes": (0, 1), "maximize": False},
                    ALL_DTYPES,
                ),
                V("tensor-lr", {"lr": T(0.03)}, {"lr": T(0.01), "etas": (0.5, 1.3)}),
            ),
            invalid=(
                *BAD_LR_WD[:3],
                {"etas": (1.0, 0.5)},
                {"etas": (0.0, 1.2)},
                {"etas": (0.5, 1.0)},
            ),
        ),
        ParityEntry(
            ol.ASGD,
            torch.optim.ASGD,
            (
                V("plain", {"lr": 0.05}, {"lr": 0.02}),
                # t0 small, so that the averaging (mu < 1) actually happens within the 40 steps
                V(
                    "averaging-wd-maximize",
                    {
                        "lr": 0.05,
                        "lambd": 1e-3,
                        "alpha": 0.5,
                        "t0": 5,
                        "weight_decay": 0.01,
                        "maximize": True,
                    },
                    {"t0": 20, "maximize": False, "weight_decay": 0.0, "lambd": 0.1, "alpha": 0.9},
                    ALL_DTYPES,
                ),
                V("tensor-lr", {"lr": T(0.03), "t0": 10}, {"lr": T(0.01), "weight_decay": 0.05}),
            ),
            invalid=(*BAD_LR_WD,),
        ),
    )
}

#: (entry name, variant) pairs, flattened for pytest.mark.parametrize
CASES: list[tuple[str, Variant]] = [(name, v) for name, entry in PARITY.items() for v in entry.variants]

#: L-BFGS (closure-based, one param group) variants: constructor arguments only.
LBFGS_VARIANTS: dict[str, dict[str, Any]] = {
    "plain": {},
    "lr-history": {"lr": 0.5, "history_size": 3, "max_iter": 10},
    "strong-wolfe": {"line_search_fn": "strong_wolfe"},
    "strong-wolfe-history-tolerances": {
        "line_search_fn": "strong_wolfe",
        "history_size": 4,
        "max_iter": 7,
        "max_eval": 12,
        "tolerance_grad": 1e-9,
        "tolerance_change": 1e-11,
    },
}


# --- the harness the parity tests share ---------------------------------------------------------

STEPS = 40
SHAPES = [(3, 2), (4,), (5,)]  # p0, p1 in the first group; p2 in the second
DTYPES = {FLOAT64: torch.float64, FLOAT32: torch.float32, COMPLEX: torch.complex128}
#: (rtol, atol) per dtype
TOLERANCE = {FLOAT64: (1e-9, 1e-12), COMPLEX: (1e-9, 1e-12), FLOAT32: (2e-5, 1e-6)}


def initial_params(
    dtype: torch.dtype, device: str = "cpu", shapes: tuple[tuple[int, ...], ...] | None = None
) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=gen, dtype=dtype).to(device) for shape in shapes or SHAPES]


def gradient(step: int, index: int, param: torch.Tensor, kind: str = "dense") -> torch.Tensor | None:
    """A noisy quadratic's gradient; p1 skips some steps and p2 starts late (grad None).

    ``kind="sparse"``: the same gradient at some entries only, as an uncoalesced sparse COO tensor
    with duplicate indices (torch sums them): whole rows (a hybrid tensor, as ``nn.Embedding``'s) for
    p0, p1 and any tensor of fewer than 2 dims; single elements (sparse in every dim) for p2 and
    later ones; and for p0 an empty gradient (no entries) every 11th step."""
    if (index == 1 and step % 4 == 1) or (index == 2 and (step == 0 or step % 7 == 3)):
        return None
    gen = torch.Generator().manual_seed(1000 * step + index)
    noise = torch.randn(param.shape, generator=gen, dtype=param.dtype).to(param.device)
    dense = 0.3 * param.detach() + noise
    if kind == "dense":
        return dense
    if index == 0 and step % 11 == 5:
        return torch.sparse_coo_tensor(
            torch.zeros((1, 0), dtype=torch.long, device=param.device),
            dense[:0],
            param.shape,
            check_invariants=True,
        )
    if index >= 2 and param.dim() >= 2:  # single elements
        flat = torch.randint(0, param.numel(), (param.numel() // 3,), generator=gen)
        rows = torch.stack(torch.unravel_index(flat, param.shape))
    else:  # whole rows, over the first dim
        rows = torch.randint(0, param.shape[0], (param.shape[0] // 2 + 1,), generator=gen)[None]
    rows = rows.to(param.device)
    return torch.sparse_coo_tensor(rows, dense[tuple(rows)], param.shape, check_invariants=True)


def gradient_kind(optimizer: torch.optim.Optimizer) -> str:
    """The gradients the table's entry of ``optimizer``'s class takes (``"dense"`` outside the table)."""
    entry = PARITY.get(type(optimizer).__name__)
    return entry.gradients if entry is not None else "dense"


def run(
    optimizer: torch.optim.Optimizer,
    params: list[torch.Tensor],
    steps: int = STEPS,
    start: int = 0,
    kind: str | None = None,
) -> None:
    """``steps`` steps with the table's gradients (their ``kind``: by default the entry's)."""
    kind = kind or gradient_kind(optimizer)
    for step in range(start, start + steps):
        for index, p in enumerate(params):
            p.grad = gradient(step, index, p, kind)
        optimizer.step()


def build_pair(entry_name: str, variant: Variant, dtype: torch.dtype, engine: str, device: str = "cpu"):
    entry = PARITY[entry_name]
    theirs_params, ours_params = entry.params(dtype, device), entry.params(dtype, device)
    theirs = variant.build(entry.theirs, [theirs_params[:2], theirs_params[2:]])
    ours = variant.build(entry.ours, [ours_params[:2], ours_params[2:]], engine=engine)
    return theirs, theirs_params, ours, ours_params


def assert_same_params(
    ours: list[torch.Tensor], theirs: list[torch.Tensor], rtol: float, atol: float
) -> None:
    for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert torch.isfinite(torch.view_as_real(b) if b.is_complex() else b).all()
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, i=index: f"param {i}: {m}")


def assert_same_state(ours: torch.optim.Optimizer, theirs: torch.optim.Optimizer, rtol: float, atol: float):
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert ours_sd["state"].keys() == theirs_sd["state"].keys()
    for index, their_state in theirs_sd["state"].items():
        our_state = ours_sd["state"][index]
        assert our_state.keys() == their_state.keys(), index
        for key, value in their_state.items():
            if not isinstance(value, torch.Tensor):  # a Python-number counter (SparseAdam's step)
                assert type(our_state[key]) is type(value) and our_state[key] == value, (index, key)
                continue
            assert our_state[key].dtype == value.dtype, (index, key)
            torch.testing.assert_close(
                our_state[key], value, rtol=rtol, atol=atol, msg=f"state {index}.{key}"
            )
