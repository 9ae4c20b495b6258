"""Schedule-Free SGD and AdamW against the authors' package ``schedulefree`` 1.4.1, every engine.

Self-contained: the runs, the variants and the comparisons are here. Each variant has two param
groups with their own hyperparameters, shapes (3, 2), (4,) and (5,), 50 steps of deterministic
gradients with ``eval()``/``train()`` in the middle and ``eval()`` at the end.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import pytest
import schedulefree
import torch
from torch import nn

import optimlab.optim as ol
from optimlab.optim.modern import schedulefree as sf

ENGINES = ("eager", "fused", "auto")
STEPS = 50
RTOL, ATOL = 1e-9, 1e-12
GROUP_SCALARS = ("k", "lr_max", "weight_sum", "scheduled_lr", "train_mode")
OURS_ONLY_GROUP_KEYS = {"l1", "nonfinite", "skipped_steps"}
PAIRS = {
    "AdamWScheduleFree": (ol.AdamWScheduleFree, schedulefree.AdamWScheduleFree),
    "SGDScheduleFree": (ol.SGDScheduleFree, schedulefree.SGDScheduleFree),
}


@dataclass(frozen=True)
class Variant:
    name: str
    first: dict[str, Any]  # constructor arguments (the first group's)
    second: dict[str, Any] = field(default_factory=dict)  # the second group's own settings


def T(value: float) -> torch.Tensor:
    """A float64 0-d tensor learning rate (a float32 one agrees to float32 rounding, see README)."""
    return torch.tensor(value, dtype=torch.float64)


VARIANTS = {
    "AdamWScheduleFree": (
        Variant("defaults", {}, {"lr": 0.01}),
        Variant(
            "wd-warmup-poly-loop",
            {
                "lr": 0.05,
                "betas": (0.8, 0.99),
                "eps": 1e-6,
                "weight_decay": 0.1,
                "warmup_steps": 10,
                "r": 1.0,
                "weight_lr_power": 1.0,
                "foreach": False,
            },
            {"betas": (0.95, 0.9), "weight_decay": 0.0, "warmup_steps": 0, "r": 0.5, "weight_lr_power": 3.0},
        ),
        Variant(
            "foreach-no-lr-weight-zero-lr",
            {"lr": 0.03, "weight_lr_power": 0.0, "warmup_steps": 3, "foreach": True},
            {"lr": 0.0, "weight_decay": 0.05, "warmup_steps": 60},  # Σw = 0: the package's c = 0
        ),
        Variant("tensor-lr", {"lr": T(0.04), "warmup_steps": 5, "weight_decay": 0.01}, {"lr": T(0.02)}),
    ),
    "SGDScheduleFree": (
        Variant("defaults", {"lr": 0.1}, {"lr": 0.05}),
        Variant(
            "wd-warmup-poly-loop",
            {
                "lr": 0.2,
                "momentum": 0.8,
                "weight_decay": 0.1,
                "warmup_steps": 10,
                "r": 1.0,
                "weight_lr_power": 1.0,
                "foreach": False,
            },
            {"momentum": 0.95, "weight_decay": 0.0, "warmup_steps": 0, "r": 0.5, "weight_lr_power": 3},
        ),
        Variant(
            "foreach-no-lr-weight-zero-lr",
            {"lr": 0.1, "weight_lr_power": 0, "warmup_steps": 4, "foreach": True},
            {"lr": 0.0, "weight_decay": 0.05},
        ),
        Variant("tensor-lr", {"lr": T(0.1), "warmup_steps": 5, "weight_decay": 0.01}, {"lr": T(0.05)}),
    ),
}
CASES = [(name, v) for name, variants in VARIANTS.items() for v in variants]
CASE_IDS = [f"{name}-{v.name}" for name, v in CASES]


# --- the runs ---------------------------------------------------------------------------------


def initial_params(dtype: torch.dtype) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(13)
    return [torch.randn(shape, generator=g, dtype=torch.float64).to(dtype) for shape in ((3, 2), (4,), (5,))]


def build(cls: type, variant: Variant, dtype: torch.dtype = torch.float64, **extra: Any):
    params = [nn.Parameter(p) for p in initial_params(dtype)]
    groups = [{"params": params[:2]}, {"params": params[2:], **copy.deepcopy(variant.second)}]
    return cls(groups, **copy.deepcopy(variant.first), **extra), params


def set_grads(params: list[torch.Tensor], step: int) -> None:
    """Deterministic gradients: a quadratic pull towards 0 plus a wave (at y, the params)."""
    for index, p in enumerate(params):
        wave = torch.sin(step * (index + 1) * 0.7 + torch.arange(p.numel(), dtype=torch.float64))
        p.grad = (0.5 * p.detach() + wave.reshape(p.shape).to(p.dtype)).clone()


def run(opt: Any, params: list[torch.Tensor], steps: range, swap_at: tuple[int, ...] = ()) -> None:
    for step in steps:
        if step in swap_at:
            opt.eval()
            opt.train()
        set_grads(params, step)
        opt.step()


def full_run(opt: Any, params: list[torch.Tensor]) -> None:
    opt.train()
    run(opt, params, range(STEPS), swap_at=(STEPS // 2,))
    opt.eval()


def close(a: Any, b: Any, rtol: float = RTOL, atol: float = ATOL) -> bool:
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    return bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def assert_same(ours: Any, ours_params, theirs: Any, theirs_params, rtol=RTOL, atol=ATOL) -> None:
    for i, (a, b) in enumerate(zip(ours_params, theirs_params, strict=True)):
        assert a.dtype == b.dtype
        assert close(a.detach(), b.detach(), rtol, atol), f"param {i}: {(a - b).abs().max()}"
        sa, sb = ours.state[a], theirs.state[b]
        assert set(sa) == set(sb), f"param {i}: state keys {set(sa)} vs {set(sb)}"
        for key in sb:
            assert sa[key].dtype == sb[key].dtype
            assert close(sa[key], sb[key], rtol, atol), f"param {i} {key}: {(sa[key] - sb[key]).abs().max()}"
    for ga, gb in zip(ours.param_groups, theirs.param_groups, strict=True):
        # (after a checkpoint loads, torch's Optimizer.__setstate__ adds "differentiable" to the defaults)
        ignored = OURS_ONLY_GROUP_KEYS | {"differentiable"}
        assert set(ga) - ignored == set(gb) - ignored
        for key in GROUP_SCALARS:
            assert close(ga[key], gb[key], rtol, atol), f"group {key}: {ga[key]} vs {gb[key]}"


# --- parity -------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("name", "variant"), CASES, ids=CASE_IDS)
def test_parity_float64(name: str, variant: Variant, engine: str) -> None:
    ours_cls, ref_cls = PAIRS[name]
    ours, ours_params = build(ours_cls, variant, engine=engine)
    theirs, theirs_params = build(ref_cls, variant)
    full_run(ours, ours_params)
    full_run(theirs, theirs_params)
    assert_same(ours, ours_params, theirs, theirs_params)
    assert ours.param_groups[0]["k"] == STEPS
    if engine == "fused":  # every parameter went through a compiled kernel
        assert ours.engine.counts["eager"] == 0


@pytest.mark.parametrize("engine", ("eager", "fused"))
@pytest.mark.parametrize("name", PAIRS)
def test_parity_float32(name: str, engine: str) -> None:
    ours_cls, ref_cls = PAIRS[name]
    variant = VARIANTS[name][1]  # weight decay in both groups: one kernel to compile
    variant = Variant("float32", variant.first, {**variant.second, "weight_decay": 0.02})
    ours, ours_params = build(ours_cls, variant, torch.float32, engine=engine)
    theirs, theirs_params = build(ref_cls, variant, torch.float32)
    full_run(ours, ours_params)
    full_run(theirs, theirs_params)
    assert_same(ours, ours_params, theirs, theirs_params, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", PAIRS)
def test_parity_in_eval_mode_and_groups_without_gradients(name: str) -> None:
    """The swap mid-run compared in eval mode, and a group none of whose parameters has a gradient:
    the package advances its counters all the same."""
    ours_cls, ref_cls = PAIRS[name]
    variant = VARIANTS[name][1]
    runs = []
    for cls in (ours_cls, ref_cls):
        opt, params = build(cls, variant)
        idle = nn.Parameter(torch.ones(2, dtype=torch.float64))
        opt.add_param_group({"params": [idle], "lr": 0.3})
        opt.train()
        run(opt, params, range(20))
        opt.eval()
        runs.append((opt, params, idle))
    (ours, ours_params, ours_idle), (theirs, theirs_params, theirs_idle) = runs
    assert_same(ours, ours_params, theirs, theirs_params)
    assert ours.param_groups[2]["k"] == theirs.param_groups[2]["k"] == 20
    assert close(ours.param_groups[2]["weight_sum"], theirs.param_groups[2]["weight_sum"])
    assert torch.equal(ours_idle, theirs_idle)


# --- modes, errors, signature ----------------------------------------------------------------------


@pytest.mark.parametrize("name", PAIRS)
def test_step_in_eval_mode_raises_the_package_error(name: str) -> None:
    ours_cls, ref_cls = PAIRS[name]
    for cls in (ours_cls, ref_cls):
        opt, params = build(cls, VARIANTS[name][0])
        set_grads(params, 0)
        for prepare in (lambda o: None, lambda o: (o.train(), o.eval())):  # never trained, then eval()
            prepare(opt)
            before = [p.detach().clone() for p in params]
            with pytest.raises(Exception) as raised:
                opt.step()
            assert type(raised.value) is Exception
            assert str(raised.value) == sf.NOT_IN_TRAIN_MODE
            assert all(torch.equal(a, b) for a, b in zip(before, params, strict=True))


@pytest.mark.parametrize("name", PAIRS)
def test_train_eval_swap_y_and_x(name: str) -> None:
    """Params hold y in train mode and x = (y − (1 − β)z)/β in eval mode; the swaps are idempotent,
    and a swap before the first step (no z yet) leaves the parameters alone."""
    ours_cls, _ = PAIRS[name]
    opt, params = build(ours_cls, VARIANTS[name][1], engine="eager")
    initial = [p.detach().clone() for p in params]
    opt.eval()
    opt.train()
    opt.train()
    assert all(torch.equal(a, b) for a, b in zip(initial, params, strict=True))
    run(opt, params, range(10))
    ys = [p.detach().clone() for p in params]
    opt.eval()
    opt.eval()
    for group in opt.param_groups:
        assert group["train_mode"] is False
        beta = group["momentum"] if "momentum" in group else group["betas"][0]
        for p in group["params"]:
            y = ys[next(i for i, q in enumerate(params) if q is p)]
            assert close(p, (y - (1 - beta) * opt.state[p]["z"]) / beta)
    opt.train()
    assert all(close(a, b) for a, b in zip(ys, params, strict=True))
    assert all(g["train_mode"] is True for g in opt.param_groups)


def _positional(cls: type) -> list[tuple[str, Any, Any]]:
    return [
        (p.name, p.default, p.kind)
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind is not inspect.Parameter.KEYWORD_ONLY
    ]


@pytest.mark.parametrize("name", PAIRS)
def test_signature_and_group_defaults(name: str) -> None:
    ours_cls, ref_cls = PAIRS[name]
    assert _positional(ours_cls) == _positional(ref_cls)
    keyword_only = [
        p.name
        for p in inspect.signature(ours_cls.__init__).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    assert keyword_only == ["l1", "nonfinite", "engine", "state_dtype", "stochastic_rounding"]
    ours = ours_cls([nn.Parameter(torch.zeros(2))])
    theirs = ref_cls([nn.Parameter(torch.zeros(2))])
    assert {k: v for k, v in ours.defaults.items() if k not in OURS_ONLY_GROUP_KEYS} == theirs.defaults
    assert ours.defaults["l1"] == 0.0 and ours.defaults["nonfinite"] == "propagate"


SGD_INVALID = (
    {"lr": -0.1},
    {"weight_decay": -1e-3},
    {"momentum": 0.0},
    {"momentum": 1.0},
    {"momentum": -0.5},
)


@pytest.mark.parametrize("arguments", SGD_INVALID, ids=str)
def test_sgd_errors_are_the_package_errors(arguments: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as theirs:
        schedulefree.SGDScheduleFree([nn.Parameter(torch.zeros(2))], **arguments)
    with pytest.raises(ValueError) as ours:
        ol.SGDScheduleFree([nn.Parameter(torch.zeros(2))], **arguments)
    assert str(ours.value) == str(theirs.value)


def test_adamw_validates_what_the_package_validates() -> None:
    """The package checks none of AdamW's arguments; optimlab's own (l1, nonfinite) are checked."""
    for arguments in ({"lr": -0.1}, {"betas": (1.5, 0.999)}, {"eps": -1.0}, {"weight_decay": -1.0}):
        schedulefree.AdamWScheduleFree([nn.Parameter(torch.zeros(2))], **arguments)
        ol.AdamWScheduleFree([nn.Parameter(torch.zeros(2))], **arguments)
    for cls in (ol.AdamWScheduleFree, ol.SGDScheduleFree):
        with pytest.raises(ValueError, match="Invalid l1 value"):
            cls([nn.Parameter(torch.zeros(2))], l1=-1.0)
        with pytest.raises(ValueError, match="Invalid nonfinite policy"):
            cls([nn.Parameter(torch.zeros(2))], nonfinite="ignore")


# --- checkpoints --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ("train", "eval"))
@pytest.mark.parametrize("name", PAIRS)
def test_state_dict_loads_both_ways_mid_training(name: str, mode: str) -> None:
    ours_cls, ref_cls = PAIRS[name]
    variant = VARIANTS[name][1]
    ours, ours_params = build(ours_cls, variant, engine="eager")
    theirs, theirs_params = build(ref_cls, variant)
    for opt, params in ((ours, ours_params), (theirs, theirs_params)):
        opt.train()
        run(opt, params, range(20))
        if mode == "eval":
            opt.eval()  # the package advises saving in eval mode: the params then hold x
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert ours_sd["state"].keys() == theirs_sd["state"].keys()
    for index, state in theirs_sd["state"].items():
        assert state.keys() == ours_sd["state"][index].keys()
    # Each loads the other's checkpoint into fresh parameters holding the other's values.
    ours2, ours2_params = build(ours_cls, variant, engine="fused")
    theirs2, theirs2_params = build(ref_cls, variant)
    with torch.no_grad():
        pairs = (zip(ours2_params, theirs_params, strict=True), zip(theirs2_params, ours_params, strict=True))
        for new, old in itertools.chain(*pairs):
            new.copy_(old)
    ours2.load_state_dict(copy.deepcopy(theirs_sd))
    theirs2.load_state_dict(copy.deepcopy(ours_sd))
    assert all(g["train_mode"] is (mode == "train") for g in ours2.param_groups)
    assert ours2.param_groups[0]["k"] == 20
    for opt, params in (
        (ours2, ours2_params),
        (theirs, theirs_params),
        (ours, ours_params),
        (theirs2, theirs2_params),
    ):
        opt.train()
        run(opt, params, range(20, 40))
        opt.eval()
    assert_same(ours2, ours2_params, theirs, theirs_params)
    assert_same(ours, ours_params, theirs2, theirs2_params)


# --- l1, the rules, the gradient -----------------------------------------------------------------


def test_l1_is_the_proximal_step_on_z() -> None:
    """With l1, z follows proximal SGD (soft-thresholding at γₜκ), x is the package's weighted
    average of the z's (checked independently here), y = (1 − β)z + βx in train mode and x after
    eval(); every engine takes the same steps; coordinates whose gradient stays below κ keep z = 0."""
    kappa, momentum = 0.3, 0.9
    results = {}
    for engine in ("eager", "fused"):
        p = nn.Parameter(torch.tensor([2.0, -1.5, 0.5, 0.05, -3.0, 1.0], dtype=torch.float64))
        opt = ol.SGDScheduleFree([p], lr=0.2, momentum=momentum, warmup_steps=5, l1=kappa, engine=engine)
        opt.train()
        target = torch.tensor([1.0, -1.0, 0.2, 0.0, -2.0, 0.1], dtype=torch.float64)
        z = p.detach().clone()
        x = z.clone()
        for step in range(200):
            p.grad = p.detach() - target  # ∇ of ½‖θ − target‖², evaluated at y
            lr = 0.2 * min(1.0, (step + 1) / 5)
            z_next = torch.sign(z - lr * p.grad) * torch.clamp_min((z - lr * p.grad).abs() - lr * kappa, 0)
            opt.step()
            group = opt.param_groups[0]
            c = (
                (group["k"] ** group["r"])
                * (group["lr_max"] ** group["weight_lr_power"])
                / group["weight_sum"]
            )
            z = z_next
            x = (1 - c) * x + c * z
            assert close(opt.state[p]["z"], z), step
            assert close(p.detach(), (1 - momentum) * z + momentum * x), step
        opt.eval()
        assert close(p.detach(), x)
        results[engine] = p.detach().clone()
        zs = opt.state[p]["z"]
        # The lasso solution is soft-threshold(target, κ): z is exactly 0 where |target| ≤ κ; x, the
        # average of the z's, heads there (small, not exactly 0, where the early z's were not 0).
        assert torch.equal(zs[[2, 3, 5]], torch.zeros(3, dtype=torch.float64))
        solution = torch.tensor([0.7, -0.7, 0.0, 0.0, -1.7, 0.0], dtype=torch.float64)
        assert close(x, solution, rtol=0, atol=0.02)
    assert close(results["eager"], results["fused"], rtol=1e-12)


@pytest.mark.parametrize("name", PAIRS)
def test_l1_engines_agree_and_zero_l1_is_no_l1(name: str) -> None:
    ours_cls, _ = PAIRS[name]
    variant = VARIANTS[name][0]  # no weight decay: one kernel to compile (the lasso test's, for SGD)
    finals = {}
    for engine, l1 in (("eager", 0.05), ("fused", 0.05), ("eager", 0.0)):
        opt, params = build(ours_cls, variant, engine=engine, l1=l1)
        full_run(opt, params)
        finals[engine, l1] = [p.detach().clone() for p in params] + [
            opt.state[p]["z"].clone() for p in params
        ]
    assert all(close(a, b) for a, b in zip(finals["eager", 0.05], finals["fused", 0.05], strict=True))
    assert not all(close(a, b) for a, b in zip(finals["eager", 0.05], finals["eager", 0.0], strict=True))


@pytest.mark.parametrize("rule", (sf.sgd_schedulefree, sf.adamw_schedulefree))
def test_rules_are_pure(rule: Any) -> None:
    g = torch.Generator().manual_seed(0)
    param, grad, z, v = (torch.randn(4, generator=g, dtype=torch.float64) for _ in range(4))
    state = {"z": z, "exp_avg_sq": v.abs()} if rule is sf.adamw_schedulefree else {"z": z}
    hyper = {"lr": 0.1, "ckp1": 0.3, "weight_decay": 0.01, "l1": 0.01}
    if rule is sf.adamw_schedulefree:
        hyper["bias_correction2"] = 0.5
    before = [t.clone() for t in (param, grad, *state.values())]
    for l1 in (None, 0.01):
        rule(param, grad, state, **{**hyper, "l1": l1})
    assert all(torch.equal(a, b) for a, b in zip(before, (param, grad, *state.values()), strict=True))
    _, new_state = rule(param, grad, state, **hyper)
    assert new_state.keys() == state.keys()


@pytest.mark.parametrize("name", PAIRS)
def test_gradients_are_only_read_and_closure_loss_returned(name: str) -> None:
    """The package overwrites p.grad with the normalized gradient; optimlab only reads it."""
    ours_cls, _ = PAIRS[name]
    p = nn.Parameter(torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64))
    opt = ours_cls([p], weight_decay=0.1)
    opt.train()
    p.grad = torch.tensor([0.5, 0.25, -1.0], dtype=torch.float64)
    held = p.grad.clone()
    assert opt.step(lambda: 7.0) == 7.0
    assert torch.equal(p.grad, held)


def test_nonfinite_skip_leaves_the_group_counters() -> None:
    p = nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = ol.AdamWScheduleFree([p], nonfinite="skip")
    opt.train()
    p.grad = torch.tensor([1.0, math.nan, 0.0], dtype=torch.float64)
    opt.step()
    group = opt.param_groups[0]
    assert (group["k"], group["weight_sum"], group["skipped_steps"]) == (0, 0.0, 1)
    assert torch.equal(p.detach(), torch.ones(3, dtype=torch.float64))


# --- BatchNorm ------------------------------------------------------------------------------------


def _conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1),
        nn.BatchNorm2d(3),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 2),
        nn.BatchNorm1d(2),
    )


def _trained() -> tuple[nn.Module, Any, list[tuple[torch.Tensor, torch.Tensor]]]:
    g = torch.Generator().manual_seed(1)
    batches = [
        (torch.randn(8, 1, 4, 4, generator=g), torch.randint(0, 2, (8,), generator=g)) for _ in range(6)
    ]
    model = _conv_net()
    opt = ol.SGDScheduleFree(model.parameters(), lr=0.5, engine="eager")
    model.train()
    opt.train()
    for inputs, labels in batches:
        opt.zero_grad()
        nn.functional.cross_entropy(model(inputs), labels).backward()
        opt.step()
    return model, opt, batches


def test_recompute_batchnorm_is_the_authors_recipe() -> None:
    model, opt, batches = _trained()
    model_copy, opt_copy = copy.deepcopy((model, opt))
    at_y = model[1].running_mean.clone()
    sf.recompute_batchnorm(model, opt, batches[:4])
    # The README's recipe, by hand.
    model_copy.train()
    opt_copy.eval()
    with torch.no_grad():
        for inputs, _ in itertools.islice(batches, 4):
            model_copy(inputs)
    model_copy.eval()
    for a, b in zip(model.state_dict().values(), model_copy.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert not model.training and all(not g["train_mode"] for g in opt.param_groups)
    assert not torch.allclose(model[1].running_mean, at_y)
    assert all(p.grad is None or p.grad.grad_fn is None for p in model.parameters())
    with pytest.raises(ValueError, match="at least one batch"):
        sf.recompute_batchnorm(model, opt, [])


def test_recompute_batchnorm_precise_averages_the_batches_at_x() -> None:
    model, opt, batches = _trained()
    sf.recompute_batchnorm(model, opt, iter(batches), forward=lambda m, b: m(b[0]), precise=True)
    assert model[1].momentum == 0.1 and model[5].momentum == 0.1  # restored
    # x is now in the parameters: the first BatchNorm's mean is the average of the conv's batch means.
    with torch.no_grad():
        means = [model[0](inputs).mean(dim=(0, 2, 3)) for inputs, _ in batches]
    assert torch.allclose(model[1].running_mean, torch.stack(means).mean(0), atol=1e-6)
    assert model[1].num_batches_tracked.item() == len(batches)
    # Evaluating now gives finite outputs at x with the recomputed statistics.
    assert torch.isfinite(model(batches[0][0])).all()
