"""The properties PyTorch's own test/test_optim.py checks of torch.optim, checked of optimlab.optim.

PyTorch tests each optimizer over a table of CPU configurations (``optim_inputs_func`` in
torch/testing/_internal/common_optimizers.py), each also with ``differentiable=True`` and, where
torch has fused kernels, ``fused=True`` ("global cliquey kwargs"). :data:`CONFIGS` is that table
for torch 2.13, written out here; each test states the property in its own words and checks it of
optimlab's class, usually next to torch.optim's on the same run. ``differentiable`` checks that
need gradients through steps live in tests/test_optim_differentiable.py.
"""

from __future__ import annotations

import copy
import gc
import io
import weakref
from typing import Any

import pytest
import torch
from torch import nn

import optimlab.optim as ol

#: SparseAdam is not here: every property below is checked on dense gradients, which it refuses (as
#: PyTorch's suite skips it for them); tests/test_optim_sparse_adam.py checks it on sparse ones
NAMES = [
    "SGD",
    "Adagrad",
    "RMSprop",
    "Adadelta",
    "Adam",
    "AdamW",
    "Adamax",
    "NAdam",
    "RAdam",
    "Adafactor",
    "Rprop",
    "ASGD",
]
FUSED = {"SGD", "Adagrad", "Adam", "AdamW"}  # torch.optim has fused CPU kernels for these
NOT_DIFFERENTIABLE = {"Adafactor"}  # torch.optim's has no differentiable flag

_ADAM = [
    {},
    {"lr": 0.01},
    {"weight_decay": 0.1},
    {"weight_decay": 0.1, "maximize": True},
    {"weight_decay": 0.1, "amsgrad": True},
]
#: torch 2.13's optim_inputs_func(device="cpu") for each optimizer
BASE: dict[str, list[dict[str, Any]]] = {
    "SGD": [
        {},
        {"lr": 1e-2},
        {"lr": "tensor"},
        {"weight_decay": 0.5},
        {"momentum": 0.9},
        {"weight_decay": 0.1, "maximize": True},
        {"momentum": 0.9, "dampening": 0.5},
        {"momentum": 0.9, "weight_decay": 0.1},
        {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
    ],
    "Adagrad": [
        {},
        {"weight_decay": 0.1},
        {"weight_decay": 0.1, "maximize": True},
        {"lr": 0.1},
        {"initial_accumulator_value": 0.1, "weight_decay": 0.1},
        {"lr": 0.1, "lr_decay": 0.5, "weight_decay": 0.1},
        {"lr": "tensor"},
    ],
    "RMSprop": [
        {},
        {"lr": 1e-3},
        {"weight_decay": 0.1},
        {"maximize": True},
        {"weight_decay": 0.1, "centered": True},
        {"maximize": True, "weight_decay": 0.1},
        {"weight_decay": 0.1, "centered": True, "momentum": 0.1},
        {"weight_decay": 0.1, "centered": True, "momentum": 0.1, "maximize": True},
    ],
    "Adadelta": [
        {},
        {"lr": 0.01},
        {"weight_decay": 0.1},
        {"maximize": True},
        {"weight_decay": 0.1, "maximize": True},
        {"rho": 0.95, "weight_decay": 0.9},
    ],
    "Adam": _ADAM,
    "AdamW": _ADAM,
    "Adamax": [
        {},
        {"lr": 0.1},
        {"weight_decay": 0.1},
        {"maximize": True},
        {"weight_decay": 0.1, "maximize": True},
    ],
    "NAdam": [
        {},
        {"lr": 1e-3},
        {"momentum_decay": 6e-3},
        {"weight_decay": 0.1},
        {"weight_decay": 0.1, "momentum_decay": 6e-3},
        {"weight_decay": 0.1, "momentum_decay": 6e-3, "decoupled_weight_decay": True},
        {"weight_decay": 0.1, "maximize": True},
    ],
    "RAdam": [
        {},
        {"lr": 2e-3},
        {"eps": 1e-6},
        {"weight_decay": 0.1},
        {"weight_decay": 0.1, "decoupled_weight_decay": True},
        {"weight_decay": 0.1, "maximize": True},
    ],
    "Adafactor": [
        {},
        {"weight_decay": 0.1, "lr": 0.01},
        {"weight_decay": 0.1, "maximize": True},
        {"beta2_decay": -1.0},
        {"d": 1.5},
    ],
    "Rprop": [
        {},
        {"lr": 2e-4},
        {"etas": (0.5, 1.5)},
        {"step_sizes": (2e-6, 100)},
        {"maximize": True},
    ],
    "ASGD": [
        {},
        {"lambd": 0.1},
        {"lr": 0.02},
        {"t0": 100},
        {"maximize": True},
        {"weight_decay": 0.1},
        {"weight_decay": 0.1, "maximize": True},
    ],
}


def materialize(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The kwargs with ``lr="tensor"`` made a fresh 0-d tensor (never shared between optimizers)."""
    return {k: torch.tensor(0.001) if v == "tensor" else v for k, v in kwargs.items()}


def configs(name: str, *, cliquey: bool = True) -> list[dict[str, Any]]:
    """Every base config, and with ``cliquey`` each also with differentiable=True and (where torch has
    fused kernels) fused=True, as PyTorch's ``_get_optim_inputs_including_global_cliquey_kwargs``."""
    result = []
    for base in BASE[name]:
        result.append(dict(base))
        if cliquey and name not in NOT_DIFFERENTIABLE:
            result.append({**base, "differentiable": True})
            if name in FUSED:
                result.append({**base, "fused": True})
    return result


CASES = [(name, kwargs) for name in NAMES for kwargs in configs(name)]
CASE_IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for n, kw in CASES]
BASE_CASES = [(name, kwargs) for name in NAMES for kwargs in configs(name, cliquey=False)]
BASE_IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for n, kw in BASE_CASES]


def make(name: str, params: Any, kwargs: dict[str, Any], module: Any = ol) -> torch.optim.Optimizer:
    return getattr(module, name)(params, **materialize(kwargs))


def linear_problem(seed: int = 0, contiguous: bool = True) -> tuple[nn.Parameter, nn.Parameter, torch.Tensor]:
    """(weight, bias, x) of PyTorch's ``(W·x + b)²`` right-direction problem."""
    torch.manual_seed(seed)
    weight = nn.Parameter(torch.randn(2, 3) if contiguous else torch.randn(3, 2).t())
    bias = nn.Parameter(torch.randn(2))
    return weight, bias, torch.randn(3)


def make_closure(optimizer: torch.optim.Optimizer, weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor):
    """The closure ``optimizer.step`` takes: zero the gradients, evaluate ``(W·x + b)²``, backward."""

    def evaluate() -> torch.Tensor:
        optimizer.zero_grad()
        loss = (weight.mv(x) + bias).pow(2).sum()
        loss.backward()
        return loss

    return evaluate


# --- going the right way ------------------------------------------------------------------------


@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize(("name", "kwargs"), BASE_CASES, ids=BASE_IDS)
def test_for_loop_goes_right_direction(name: str, kwargs: dict[str, Any], contiguous: bool) -> None:
    """20 steps lower (or, maximizing, raise) the loss, with and without a scheduler driving lr."""
    for scheduled in (False, True):
        weight, bias, x = linear_problem(contiguous=contiguous)
        optimizer = make(name, [weight, bias], {**kwargs, "foreach": False})
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.9) if scheduled else None
        closure = make_closure(optimizer, weight, bias, x)
        initial = closure().item()
        for _ in range(20):
            optimizer.step(closure)
            if scheduler is not None:
                scheduler.step()
        final = closure().item()
        assert final > initial if kwargs.get("maximize") else final < initial


@pytest.mark.parametrize("name", NAMES)
def test_param_group_with_scheduler_goes_right_direction(name: str) -> None:
    weight, bias, x = linear_problem()
    optimizer = getattr(ol, name)([{"params": [weight]}, {"params": [bias], "lr": 0.01}])
    schedulers = [
        torch.optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.9),
        torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer),
    ]
    closure = make_closure(optimizer, weight, bias, x)
    initial = closure().item()
    for _ in range(20):
        loss = optimizer.step(closure)
        schedulers[0].step()
        schedulers[1].step(loss)
    assert closure().item() < initial


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [c for c in CASES if "differentiable" not in c[1]],
    ids=[i for i, c in zip(CASE_IDS, CASES, strict=True) if "differentiable" not in c[1]],
)
def test_tensor_lr_of_any_shape_equals_float_lr(name: str, kwargs: dict[str, Any]) -> None:
    """lr as a 0-, 1- or 2-dimensional one-element tensor gives the float lr's parameters at every step."""
    for dims in (0, 1, 2):
        runs = []
        for tensor_lr in (False, True):
            weight, bias, x = linear_problem()
            lr = kwargs.get("lr", 1e-3)
            lr = 1e-3 if lr == "tensor" else lr
            arguments = {**kwargs, "lr": torch.tensor(lr).reshape([1] * dims) if tensor_lr else lr}
            optimizer = make(name, [weight, bias], arguments)
            closure = make_closure(optimizer, weight, bias, x)
            runs.append([])
            for _ in range(5):
                optimizer.step(closure)
                runs[-1].append((weight.detach().clone(), bias.detach().clone()))
        for (w1, b1), (w2, b2) in zip(*runs, strict=True):
            torch.testing.assert_close(w1, w2)
            torch.testing.assert_close(b1, b2)


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("SGD", {"dampening": 0.5, "lr": 4.8e-3}),
        ("Adagrad", {"maximize": True, "lr": 0.1}),
        ("Adagrad", {"initial_accumulator_value": 0.1, "lr": 0.1}),
    ],
)
def test_uncoalesced_sparse_gradients_match_dense_ones(name: str, kwargs: dict[str, Any]) -> None:
    """Coordinate descent on Rosenbrock with uncoalesced sparse gradients (duplicate indices) follows
    the same path as with their dense equivalents, and approaches the minimum."""
    start = torch.tensor([1.5, 1.5])
    sparse_param, dense_param = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    sparse_opt = getattr(ol, name)([sparse_param], **kwargs)
    dense_opt = getattr(ol, name)([dense_param], **kwargs)
    scheduler = torch.optim.lr_scheduler.StepLR(sparse_opt, gamma=0.99999, step_size=300)
    dense_scheduler = torch.optim.lr_scheduler.StepLR(dense_opt, gamma=0.99999, step_size=300)

    def rosenbrock_grad(p: torch.Tensor) -> torch.Tensor:
        x, y = p
        return torch.stack([-400 * x * (y - x**2) - 2 * (1 - x), 200 * (y - x**2)])

    initial_distance = (start - torch.ones(2)).norm()
    for step in range(1800):
        index = step % 2
        grad = rosenbrock_grad(dense_param.detach())[index]
        half = grad / 2  # the same value twice at one index: uncoalesced
        sparse_param.grad = torch.sparse_coo_tensor(
            torch.tensor([[index, index]]), torch.stack([half, half]), (2,)
        )
        dense_param.grad = torch.zeros(2)
        dense_param.grad[index] = grad
        sparse_opt.step()
        dense_opt.step()
        scheduler.step()
        dense_scheduler.step()
        torch.testing.assert_close(sparse_param.detach(), dense_param.detach(), rtol=5e-6, atol=5e-6)
    distance = (sparse_param.detach() - torch.ones(2)).norm()
    assert distance > initial_distance if kwargs.get("maximize") else distance < initial_distance


@pytest.mark.parametrize(("name", "kwargs"), BASE_CASES, ids=BASE_IDS)
def test_complex_parameters_are_their_real_and_imaginary_parts(name: str, kwargs: dict[str, Any]) -> None:
    """A complex parameter follows exactly the path of its ``view_as_real`` twin, step by step
    (Adafactor refuses complex parameters at the step, with torch.optim's error)."""
    torch.manual_seed(0)
    if name == "Adafactor":
        errors = []
        for module in (ol, torch.optim):
            param = torch.randn(10, 5, dtype=torch.complex64, requires_grad=True)
            param.grad = torch.randn_like(param)
            with pytest.raises(RuntimeError) as error:
                make(name, [param], kwargs, module).step()
            errors.append(str(error.value))
        assert errors[0] == errors[1] == "Adafactor does not support complex parameters"
        return
    complex_params = [
        torch.randn(10, 5, dtype=torch.complex64),
        torch.randn(10, dtype=torch.complex64),
        torch.randn(10, 5),
    ]
    real_params = [torch.view_as_real(p).clone() if p.is_complex() else p.clone() for p in complex_params]
    complex_params = [nn.Parameter(p) for p in complex_params]
    real_params = [nn.Parameter(p) for p in real_params]
    complex_opt = make(name, complex_params, kwargs)
    real_opt = make(name, real_params, kwargs)
    for _ in range(3):
        for c, r in zip(complex_params, real_params, strict=True):
            g = torch.randn_like(r)
            r.grad = g.clone()
            c.grad = torch.view_as_complex(g) if c.is_complex() else g.clone()
        complex_opt.step()
        real_opt.step()
        for c, r in zip(complex_params, real_params, strict=True):
            torch.testing.assert_close(torch.view_as_real(c) if c.is_complex() else c, r)


def test_adamw_and_adam_keep_their_decoupled_weight_decay_through_checkpoints() -> None:
    model = nn.Linear(5, 5)
    adamw = ol.AdamW(model.parameters())
    adam = ol.Adam(model.parameters())
    adam.load_state_dict(adamw.state_dict())
    assert adam.param_groups[0]["decoupled_weight_decay"] is True
    assert ol.Adam(model.parameters()).state_dict()["param_groups"][0]["decoupled_weight_decay"] is False
    adamw_again = ol.AdamW(model.parameters())
    adamw_again.load_state_dict(ol.Adam(model.parameters()).state_dict())
    assert adamw_again.param_groups[0]["decoupled_weight_decay"] is True
    old = adamw.state_dict()
    del old["param_groups"][0]["decoupled_weight_decay"]  # a checkpoint from before the flag existed
    adamw_again.load_state_dict(old)
    assert adamw_again.param_groups[0]["decoupled_weight_decay"] is True


# --- implementations agree ----------------------------------------------------------------------


def training_trajectory(
    name: str, kwargs: dict[str, Any], dtype: torch.dtype, module: Any = ol
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """PyTorch's foreach/fused comparison run: Linear-Sigmoid-Linear-Sigmoid plus a 0-d parameter,
    a step with no gradients, a layer frozen for two steps."""
    torch.manual_seed(2024)
    model = nn.Sequential(nn.Linear(2, 3), nn.Sigmoid(), nn.Linear(3, 1), nn.Sigmoid()).to(dtype)
    model.register_parameter("scalar", nn.Parameter(torch.tensor(0.5, dtype=dtype)))
    optimizer = make(name, model.parameters(), kwargs, module)
    for step in range(7):
        optimizer.zero_grad()
        if step != 2:
            if step in (3, 4):
                model[2].requires_grad_(False)
            else:
                model[2].requires_grad_(True)
            x = torch.rand(4, 2, generator=torch.Generator().manual_seed(step), dtype=dtype)
            (model(x).sum() * model.scalar).backward()
        optimizer.step()
    return model, optimizer


def assert_same_run(
    a: tuple[nn.Module, torch.optim.Optimizer], b: tuple[nn.Module, torch.optim.Optimizer], **tolerance: Any
) -> None:
    for p, q in zip(a[0].parameters(), b[0].parameters(), strict=True):
        torch.testing.assert_close(p, q, **tolerance)
        state_a, state_b = a[1].state[p], b[1].state[q]
        assert state_a.keys() == state_b.keys()
        for key in state_a:
            assert isinstance(state_a[key], torch.Tensor)
            torch.testing.assert_close(state_a[key], state_b[key], **tolerance)  # dtypes too


@pytest.mark.parametrize(("name", "kwargs"), BASE_CASES, ids=BASE_IDS)
def test_foreach_matches_for_loop(name: str, kwargs: dict[str, Any]) -> None:
    """foreach=True is accepted on CPU and gives the for-loop's parameters and state (every state
    value a tensor, same keys, same dtypes), with torch.optim's for-loop as the reference."""
    forloop = training_trajectory(name, {**kwargs, "foreach": False}, torch.float64)
    foreach = training_trajectory(name, {**kwargs, "foreach": True}, torch.float64)
    assert_same_run(forloop, foreach, rtol=0, atol=0)
    theirs = training_trajectory(name, {**kwargs, "foreach": False}, torch.float64, module=torch.optim)
    assert_same_run(forloop, theirs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize(
    ("name", "kwargs"),
    [c for c in BASE_CASES if c[0] in FUSED],
    ids=[i for i, c in zip(BASE_IDS, BASE_CASES, strict=True) if c[0] in FUSED],
)
def test_fused_matches_for_loop(name: str, kwargs: dict[str, Any], dtype: torch.dtype) -> None:
    """fused=True agrees with the for-loop: float32/float64 to rounding; in half precision, where
    the fused kernel computes in float32 and rounds once (as torch's fused kernels do), no further
    from the for-loop than PyTorch's tolerance (5e-3) or torch.optim's own fused kernel, whichever
    is larger."""
    if dtype == torch.float16 and name in ("Adam", "AdamW"):
        kwargs = {**kwargs, "eps": 0.1}  # as PyTorch's configs do: 1e-8 underflows in float16
    forloop = training_trajectory(name, {**kwargs, "fused": False}, dtype)
    fused = training_trajectory(name, {**kwargs, "fused": True}, dtype)
    tolerance: dict[str, float] = {}
    if dtype in (torch.bfloat16, torch.float16):
        allowed = 5e-3
        if name != "SGD":  # torch 2.13's fused SGD skips updates in half precision (pytorch#191763)
            theirs = training_trajectory(name, {**kwargs, "fused": True}, dtype, module=torch.optim)
            theirs_loop = training_trajectory(name, {**kwargs, "foreach": False}, dtype, module=torch.optim)
            distances = [
                (a - b).abs().max().item()
                for a, b in zip(theirs[0].parameters(), theirs_loop[0].parameters(), strict=True)
            ]
            allowed = max(allowed, max(distances))
        # and a last-bit difference in rounding (a fused multiply-add, say) is one ulp: 2⁻⁷ for bfloat16
        tolerance = {"rtol": max(5e-3, torch.finfo(dtype).eps), "atol": allowed}
    assert_same_run(forloop, fused, **tolerance)


@pytest.mark.parametrize("name", sorted(FUSED))
def test_fused_skips_the_step_when_an_inf_was_found(name: str) -> None:
    """fused=True takes the gradient scale and inf flag GradScaler sets on the optimizer
    (``grad_scale``, ``found_inf``), as torch's fused kernels do: an inf means no change at all (a
    new step counter stays at float32 zero, and ``nonfinite="raise"`` does not raise: there is
    nothing to step); a scale is divided out of the gradients, in place as torch's kernels do."""
    for scale in (None, torch.ones(1)):
        param = nn.Parameter(torch.randn(5))
        param.grad = torch.randn(5)
        before = param.detach().clone()
        optimizer = getattr(ol, name)([param], lr=0.1, fused=True, nonfinite="raise")
        assert optimizer._step_supports_amp_scaling
        optimizer.grad_scale = scale
        optimizer.found_inf = torch.ones(())
        param.grad[0] = float("inf")
        optimizer.step()
        torch.testing.assert_close(param.detach(), before, rtol=0, atol=0)
        if "step" in optimizer.state[param]:
            assert optimizer.state[param]["step"].dtype == torch.float32
            assert float(optimizer.state[param]["step"]) == 0
    results = []
    for module in (ol, torch.optim):
        torch.manual_seed(3)
        param = nn.Parameter(torch.randn(5))
        grad = torch.randn(5)
        param.grad = grad * 4
        optimizer = getattr(module, name)([param], lr=0.1, fused=True)
        optimizer.grad_scale = torch.full((1,), 4.0)
        optimizer.found_inf = torch.zeros(())
        optimizer.step()
        results.append((param.detach(), param.grad))
    for ours, theirs in zip(*results, strict=True):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
@pytest.mark.parametrize("name", sorted(FUSED - {"SGD"}))
def test_fused_grad_scaler_takes_half_precision_parameters(name: str, dtype: torch.dtype) -> None:
    """With fused=True GradScaler hands the scale to the step (no in-place unscaling it would refuse
    for float16 gradients), and training matches torch.optim's fused kernels."""
    results = []
    for module in (ol, torch.optim):
        torch.manual_seed(0)
        model = nn.Linear(8, 4).to(dtype)
        optimizer = getattr(module, name)(model.parameters(), lr=1e-2, fused=True, eps=1e-3)
        scaler = torch.amp.GradScaler("cpu")
        for _ in range(3):
            optimizer.zero_grad()
            scaler.scale(model(torch.randn(2, 8).to(dtype)).float().sum()).backward()
            scaler.step(optimizer)
            scaler.update()
        results.append((list(model.parameters()), [p.grad for p in model.parameters()]))
    (ours, ours_grads), (theirs, theirs_grads) = results
    tolerance = {"rtol": 2e-3, "atol": 2e-3} if dtype == torch.float16 else {}
    for a, b in zip(ours + ours_grads, theirs + theirs_grads, strict=True):
        torch.testing.assert_close(a, b, **tolerance)


@pytest.mark.parametrize("name", sorted(FUSED))
def test_fused_grad_scaler_training_matches_torch_fused(name: str) -> None:
    results = []
    for module in (ol, torch.optim):
        torch.manual_seed(1)
        model = nn.Linear(4, 2)
        optimizer = getattr(module, name)(model.parameters(), lr=0.01, fused=True)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16, growth_interval=2)
        x = torch.randn(16, 4)
        for step in range(6):
            optimizer.zero_grad()
            loss = model(x).pow(2).mean() * (1e36 if step == 3 else 1.0)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        results.append((list(model.parameters()), scaler.get_scale()))
    (ours, ours_scale), (theirs, theirs_scale) = results
    assert ours_scale == theirs_scale
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_fused_on_meta_parameters_refuses_then_works_once_materialized() -> None:
    for name in sorted(FUSED):
        model = nn.Linear(3, 2, device="meta")
        optimizer = getattr(ol, name)(model.parameters(), fused=True)
        for p in model.parameters():
            p.grad = torch.rand_like(p)
        with pytest.raises(
            RuntimeError, match="`fused=True` requires all the params to be floating point Tensors"
        ):
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        model.to_empty(device="cpu")
        for p in model.parameters():
            p.grad = torch.rand_like(p)
        optimizer.step()


# --- groups, no-ops, gradients ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [c for c in CASES if "differentiable" not in c[1]],
    ids=[i for i, c in zip(CASE_IDS, CASES, strict=True) if "differentiable" not in c[1]],
)
def test_param_groups_weight_decay_and_lr(name: str, kwargs: dict[str, Any]) -> None:
    """A group with the config and one without weight decay both go the right way; with the outer lr
    at 1e-28, a group of its own that keeps that lr does not move."""
    weight, bias, x = linear_problem()
    group_kwargs = {k: v for k, v in materialize(kwargs).items() if k not in ("fused",)}
    optimizer = getattr(ol, name)(
        [{"params": [weight], **group_kwargs}, {"params": [bias], **group_kwargs, "weight_decay": 0}],
        **({"fused": True} if kwargs.get("fused") else {}),
    )
    closure = make_closure(optimizer, weight, bias, x)
    initial = closure().item()
    for _ in range(20):
        optimizer.step(closure)
    final = closure().item()
    assert final > initial if kwargs.get("maximize") else final < initial
    irrelevant = nn.Parameter(torch.randn(2, 2))
    before = irrelevant.detach().clone()
    weight, bias, x = linear_problem()
    lr_free = {k: v for k, v in group_kwargs.items() if k != "lr"}
    outer: dict[str, Any] = {"lr": 1e-28}
    if name == "Rprop":  # as PyTorch's test: the smallest step size may be 0 (else it is 1e-6, not lr)
        lr_free.pop("step_sizes", None)
        outer["step_sizes"] = (0, 50)
    optimizer = getattr(ol, name)(
        [
            {"params": [weight, bias], **group_kwargs, "lr": group_kwargs.get("lr", 1e-3)},
            {"params": [irrelevant], **lr_free},
        ],
        **outer,
        **({"fused": True} if kwargs.get("fused") else {}),
    )
    for _ in range(5):
        irrelevant.grad = torch.rand_like(irrelevant)
        optimizer.step(make_closure(optimizer, weight, bias, x))
    torch.testing.assert_close(irrelevant.detach(), before)


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=CASE_IDS)
def test_step_is_a_noop_without_gradients_and_for_zero_gradients(name: str, kwargs: dict[str, Any]) -> None:
    params = [torch.randn(2, 3, requires_grad=False) for _ in range(2)]
    optimizer = make(name, params, kwargs)
    optimizer.step(lambda: torch.tensor(1.0))  # no parameter has a gradient: nothing happens
    if kwargs.get("weight_decay", 0) != 0:
        return
    torch.manual_seed(0)
    param = torch.randn(5, 1)
    # torch's test: with differentiable=True a plain tensor stands in for a non-leaf one
    param = param.detach() if kwargs.get("differentiable") else nn.Parameter(param)
    lr = 1e-5 if name == "AdamW" else kwargs.get("lr", 1e-3)
    optimizer = make(name, [param], {**kwargs, "lr": lr})
    expected = param.detach().clone()
    if name == "ASGD":  # ζ (lambd) decays the weights even with a zero gradient (PyTorch skips ASGD here)
        twin = param.detach().clone()
        twin.grad = torch.zeros_like(twin)
        make(name, [twin], {**kwargs, "lr": lr}, module=torch.optim).step()
        expected = twin.detach()
        assert not torch.equal(expected, param.detach())
    param.grad = torch.zeros_like(param)
    optimizer.step()
    torch.testing.assert_close(param.detach(), expected)


@pytest.mark.parametrize(("name", "kwargs"), CASES, ids=CASE_IDS)
def test_gradients_are_never_written_into(name: str, kwargs: dict[str, Any]) -> None:
    param = torch.randn(5, 1, requires_grad=not kwargs.get("differentiable")).detach().requires_grad_(False)
    param = nn.Parameter(param) if not kwargs.get("differentiable") else param
    optimizer = make(name, [param], kwargs)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        param.grad = torch.rand_like(param)
        return torch.tensor(1.0)

    closure()
    for _ in range(5):
        grad = param.grad
        version = grad._version
        optimizer.step(lambda: torch.tensor(1.0))
        assert grad._version == version
        closure()
    assert repr(optimizer)  # and it can be printed


# --- state dicts --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [c for c in CASES if "differentiable" not in c[1]],
    ids=[i for i, c in zip(CASE_IDS, CASES, strict=True) if "differentiable" not in c[1]],
)
def test_state_dict_is_deterministic(name: str, kwargs: dict[str, Any]) -> None:
    """A state dict loaded into a twin optimizer continues the run identically, and saves the same."""
    weight, bias, x = linear_problem()
    optimizer = make(name, [weight, bias], kwargs)
    closure = make_closure(optimizer, weight, bias, x)
    for _ in range(10):
        optimizer.step(closure)
    twin_weight, twin_bias = nn.Parameter(weight.detach().clone()), nn.Parameter(bias.detach().clone())
    twin = make(name, [twin_weight, twin_bias], kwargs)
    twin.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    twin_closure = make_closure(twin, twin_weight, twin_bias, x)
    for _ in range(10):
        optimizer.step(closure)
        twin.step(twin_closure)
        torch.testing.assert_close(weight, twin_weight)
        torch.testing.assert_close(bias, twin_bias)
    ours, theirs = optimizer.state_dict(), twin.state_dict()
    assert ours["param_groups"] == theirs["param_groups"] or _groups_close(ours, theirs)
    for key in ours["state"]:
        for name_ in ours["state"][key]:
            torch.testing.assert_close(ours["state"][key][name_], theirs["state"][key][name_])


def _groups_close(a: dict, b: dict) -> bool:
    for ga, gb in zip(a["param_groups"], b["param_groups"], strict=True):
        for key in ga:
            va, vb = ga[key], gb[key]
            if isinstance(va, torch.Tensor):
                torch.testing.assert_close(va, vb)
            elif va != vb:
                return False
    return True


@pytest.mark.parametrize(("name", "kwargs"), BASE_CASES, ids=BASE_IDS)
def test_older_and_plainer_state_dicts_load(name: str, kwargs: dict[str, Any]) -> None:
    """A state dict without the flags older torch versions lacked (foreach, differentiable,
    maximize, capturable, fused), with plain-number step counts, through ``torch.load`` with and
    without ``weights_only``, loads and steps; named and unnamed parameters load into each other."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(4, 2, 1, stride=2), nn.BatchNorm2d(2, eps=1e-5, momentum=0.1))
    optimizer = make(name, model.parameters(), kwargs)
    x = torch.randn(1, 4, 16, 16)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = model(x).sum()
        loss.backward()
        return loss

    for _ in range(3):
        optimizer.step(closure)
    state_dict = copy.deepcopy(optimizer.state_dict())
    for group in state_dict["param_groups"]:
        for flag in ("foreach", "differentiable", "maximize", "capturable", "fused"):
            group.pop(flag, None)
    for state in state_dict["state"].values():
        for key in ("step", "eta", "mu"):  # ASGD's eta and mu were plain numbers once too
            if key in state:
                state[key] = state[key].item()
    older = make(name, model.parameters(), kwargs)
    older.load_state_dict(state_dict)
    theirs = make(name, model.parameters(), kwargs, module=torch.optim)
    theirs.load_state_dict(copy.deepcopy(state_dict))
    for ours_state, theirs_state in zip(older.state.values(), theirs.state.values(), strict=True):
        for key, value in theirs_state.items():  # plain numbers become tensors as torch.optim makes them
            assert torch.is_tensor(ours_state[key]) and ours_state[key].dtype == value.dtype, key
    older.step(closure)
    buffer = io.BytesIO()
    torch.save(optimizer.state_dict(), buffer)
    for weights_only in (False, True):
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=weights_only)
        assert loaded.keys() == optimizer.state_dict().keys()
        restored = make(name, model.parameters(), kwargs)
        restored.load_state_dict(loaded)
        restored.step(closure)
    named = make(name, model.named_parameters(), kwargs)
    named.load_state_dict(make(name, model.parameters(), kwargs).state_dict())
    plain = make(name, model.parameters(), kwargs)
    plain.load_state_dict(named.state_dict())
    named.step(closure)
    assert named.state_dict()["param_groups"][0]["param_names"] == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
    ]


@pytest.mark.parametrize("name", NAMES)
def test_copies_state_and_references(name: str) -> None:
    """A deepcopy keeps every public attribute; no state entry is ever empty; dropping an optimizer
    with a scheduler leaves no reference cycle behind."""
    weight, bias, x = linear_problem()
    optimizer = getattr(ol, name)([weight, bias])
    for _ in range(3):
        optimizer.step(make_closure(optimizer, weight, bias, x))
    clone = copy.deepcopy(optimizer)
    public = {k for k in optimizer.__dict__ if not k.startswith("_")}
    assert public == {k for k in clone.__dict__ if not k.startswith("_")}
    layer = nn.Linear(5, 5, bias=False)
    sparse_state = getattr(ol, name)(layer.parameters())
    layer(torch.randn(2, 5)).sum().backward()
    sparse_state.step()
    assert all(sparse_state.state.values()), "an empty state entry"
    optimizer = getattr(ol, name)([weight, bias], lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    optimizer.step(make_closure(optimizer, weight, bias, x))
    scheduler.step()
    alive = weakref.ref(optimizer)
    gc.disable()  # freed by reference counting alone, or there is a cycle
    try:
        del scheduler, optimizer
        assert alive() is None
    finally:
        gc.enable()
