"""The fused engine against torch.optim under what users do to models and optimizers.

Every test compares ``engine="fused"`` with torch.optim's for-loop implementation step by step, and
checks what the engine must never do: move a parameter out of its storage, write into a gradient,
keep anything of the user's between steps. Compilations are the slow part, so the tests share a
handful of configurations (Adam float32 with default flags above all; inductor caches them across
tests and processes) on tiny models.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import pickle
import warnings

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

import optimlab.optim as ol
from optimlab.optim.engine import (
    ENGINE_CHOICES,
    EagerEngine,
    FusedEngine,
    fused,
    kernels,
    launcher,
    resolve_engine,
)

F32 = {"rtol": 1e-5, "atol": 1e-7}


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3))


def pair(name: str = "Adam", model: nn.Module | None = None, **kwargs):
    """(ours, theirs): the same model under optimlab's fused engine and torch.optim's for-loop."""
    ours_model = model if model is not None else mlp()
    theirs_model = copy.deepcopy(ours_model)
    ours = getattr(ol, name)(ours_model.parameters(), engine="fused", **kwargs)
    theirs = getattr(torch.optim, name)(theirs_model.parameters(), foreach=False, **kwargs)
    return (ours_model, ours), (theirs_model, theirs)


DATA = torch.randn(16, 6, generator=torch.Generator().manual_seed(1))
TARGET = torch.randn(16, 3, generator=torch.Generator().manual_seed(2))


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, zero: str = "optimizer") -> None:
    if zero == "optimizer":
        optimizer.zero_grad()
    elif zero == "optimizer-keep":
        optimizer.zero_grad(set_to_none=False)
    elif zero == "model":
        model.zero_grad()
    dtype = next(model.parameters()).dtype
    loss = ((model(DATA.to(dtype)) - TARGET.to(dtype)) ** 2).mean()
    loss.backward()
    optimizer.step()


def assert_same(ours: nn.Module | list, theirs: nn.Module | list, **tolerance) -> None:
    a = list(ours.parameters()) if isinstance(ours, nn.Module) else ours
    b = list(theirs.parameters()) if isinstance(theirs, nn.Module) else theirs
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x.detach(), y.detach(), **(tolerance or F32))


def same_random_gradients(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    """Give each pair of parameters the same random gradient."""
    for a, b in zip(ours, theirs, strict=True):
        g = torch.randn_like(a)
        a.grad, b.grad = g.clone(), g.clone()


def fused_steps(optimizer: torch.optim.Optimizer) -> int:
    """How many parameter steps the fused engine has taken with a compiled kernel."""
    return optimizer.engine.counts["fused"]


# --- choosing the engine -------------------------------------------------------------------------


def test_engine_choices_resolve() -> None:
    assert ENGINE_CHOICES == ("auto", "fused", "eager")
    assert isinstance(resolve_engine("eager"), EagerEngine)
    assert resolve_engine("fused").name == "fused"
    assert resolve_engine("auto").name == "auto"
    with pytest.raises(ValueError, match="Invalid engine"):
        resolve_engine("turbo")


def test_arguments_and_environment_choose_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    params = [nn.Parameter(torch.zeros(2))]
    assert ol.Adam(params).engine.name == "auto"
    assert ol.Adam(params, fused=True).engine.name == "fused"
    assert ol.Adam(params, fused=False).engine.name == "eager"
    monkeypatch.setenv("OPTIMLAB_ENGINE", "eager")
    assert ol.Adam(params).engine.name == "eager"
    assert ol.Adam(params, engine="fused").engine.name == "fused"  # an argument beats the environment
    monkeypatch.setenv("OPTIMLAB_ENGINE", "fused")
    assert isinstance(ol.NAdam(params).engine, FusedEngine)


def test_auto_keeps_tiny_models_eager_without_compiling() -> None:
    (model, ours), (their_model, theirs) = pair("Adam")
    ours = ol.Adam(model.parameters())  # default: engine="auto"
    before = kernels.compilations
    for _ in range(3):
        train_step(model, ours)
        train_step(their_model, theirs)
    assert kernels.compilations == before
    assert ours.engine.counts == {"fused": 0, "eager": 12}
    assert_same(model, their_model)


def test_auto_fuses_large_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused, "AUTO_MIN_NUMEL", 50)
    (model, _), (their_model, theirs) = pair("Adam")
    ours = ol.Adam(model.parameters(), lr=1e-2)
    theirs.param_groups[0]["lr"] = 1e-2
    for _ in range(3):
        train_step(model, ours)
        train_step(their_model, theirs)
    assert ours.engine.counts == {"fused": 12, "eager": 0}
    assert_same(model, their_model)


def test_auto_fuses_a_small_model_once_its_eager_steps_add_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rent or buy: "auto" steps a small model eagerly until those steps have cost about what a
    compilation costs, then fuses it, with the same state and torch's numbers throughout."""
    monkeypatch.setattr(fused, "AUTO_EAGER_SECONDS", 1e-9)  # any eager step exceeds it
    (model, _), (their_model, theirs) = pair("Adam")
    ours = ol.Adam(model.parameters())
    train_step(model, ours)
    train_step(their_model, theirs)
    assert ours.engine.counts == {"fused": 0, "eager": 4} and ours.engine.eager_seconds > 0
    for _ in range(3):
        train_step(model, ours)
        train_step(their_model, theirs)
    assert ours.engine.counts == {"fused": 12, "eager": 4}
    assert_same(model, their_model)
    for p, q in zip(model.parameters(), their_model.parameters(), strict=True):
        assert float(ours.state[p]["step"]) == float(theirs.state[q]["step"]) == 4


def test_eager_engine_passes_the_step_on_the_host_only_to_rules_declared_for_it() -> None:
    """``host_step = True`` (the built-in rules): the eager engine hands the rule the counter's
    value, as torch's for-loop reads it; a rule declared without it always gets the tensor."""
    seen: list[type] = []

    def spy(param, grad, state, **hyper):
        seen.append(type(state["step"]))
        return ol.Adam.rule(param, grad, state, **hyper)

    class TensorStepAdam(ol.Adam):
        rule = staticmethod(spy)
        host_step = False

    class HostStepAdam(TensorStepAdam):
        host_step = True

    results = []
    for cls in (TensorStepAdam, HostStepAdam):
        seen.clear()
        (model, _), _ = pair("Adam")
        optimizer = cls(model.parameters(), lr=0.01, engine="eager")
        for _ in range(3):
            train_step(model, optimizer)
        results.append(model)
        assert set(seen) == ({torch.Tensor} if cls is TensorStepAdam else {float})
    assert_same(results[0], results[1], rtol=1e-6, atol=1e-8)


def test_a_rule_not_declared_elementwise_is_never_fused() -> None:
    """``elementwise`` is opt-in: a rule that may mix elements (a norm, a matrix product) is
    stepped eagerly on whole tensors, never cut into flat runs or shards."""

    class WholeTensorAdam(ol.Adam):
        elementwise = False

    (model, _), (their_model, theirs) = pair("Adam", lr=1e-2)
    ours = WholeTensorAdam(model.parameters(), lr=1e-2, engine="fused")
    for _ in range(3):
        train_step(model, ours)
        train_step(their_model, theirs)
    assert ours.engine.counts == {"fused": 0, "eager": 12}
    assert_same(model, their_model)


# --- what the engine owns, and what it does not -------------------------------------------------


@pytest.mark.parametrize("zero", ["optimizer", "optimizer-keep", "model"])
def test_training_loop_matches_torch_and_leaves_storage_alone(zero: str) -> None:
    """Parameters stay in their own storage and gradients are never written: the tensors autograd
    hands over are read, and a gradient the user kept from an earlier step is unchanged."""
    (model, ours), (their_model, theirs) = pair("Adam", lr=1e-2)
    pointers = [p.data_ptr() for p in model.parameters()]
    kept: list[tuple[torch.Tensor, torch.Tensor]] = []  # (gradient a user holds, its values then)
    for _ in range(6):
        train_step(model, ours, zero)
        train_step(their_model, theirs, zero)
        for p in model.parameters():
            assert p.grad._version == 0 or zero != "optimizer"  # fresh gradients, never written
            if zero == "optimizer":
                kept.append((p.grad, p.grad.clone()))
    assert_same(model, their_model)
    assert [p.data_ptr() for p in model.parameters()] == pointers
    for grad, values in kept:
        torch.testing.assert_close(grad, values, rtol=0, atol=0)
    assert ours.engine.counts["fused"] == 24
    for p in model.parameters():  # state: torch.optim's per-parameter tensors, storage of their own
        for key in ("exp_avg", "exp_avg_sq"):
            state = ours.state[p][key]
            assert state.shape == p.shape and state.untyped_storage().nbytes() == p.numel() * 4


def test_gradient_version_is_never_bumped_but_parameters_are() -> None:
    """A fused step reads gradients without touching them (torch's test_grads_are_never_inplaced_into)
    and tells autograd the parameters changed in place, as torch's in-place ops do: a backward
    through a graph built before the step fails as it would with torch.optim."""
    for name in ("Adam", "SGD"):
        kwargs = {"lr": 0.1, "momentum": 0.9, "nesterov": True, "maximize": True} if name == "SGD" else {}
        (model, ours), _ = pair(name, weight_decay=0.1, **kwargs)
        for _ in range(3):
            train_step(model, ours)
        grads = [p.grad for p in model.parameters()]
        versions = [g._version for g in grads]
        parameter_versions = [p._version for p in model.parameters()]
        pending = (model(DATA) ** 2).mean()  # saves the weights for its backward
        ours.step()
        assert [g._version for g in grads] == versions
        assert all(p._version > v for p, v in zip(model.parameters(), parameter_versions, strict=True))
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            pending.backward()
        assert ours.engine.counts["eager"] <= 4  # SGD's first step creates its buffers eagerly


def test_parameters_replaced_after_construction() -> None:
    (model, ours), (their_model, theirs) = pair("Adam", lr=1e-2)
    for _ in range(2):
        train_step(model, ours)
        train_step(their_model, theirs)
    # model.load_state_dict copies into the parameters in place
    weights = {k: v + 0.1 for k, v in their_model.state_dict().items()}
    model.load_state_dict(weights)
    their_model.load_state_dict(weights)
    train_step(model, ours)
    train_step(their_model, theirs)
    assert_same(model, their_model)
    # assigning p.data gives a parameter new storage: the engine steps it there
    new_weight = torch.randn(8, 6)
    model[0].weight.data = new_weight.clone()
    their_model[0].weight.data = new_weight.clone()
    pointer = model[0].weight.data_ptr()
    for _ in range(2):
        train_step(model, ours)
        train_step(their_model, theirs)
    assert_same(model, their_model)
    assert model[0].weight.data_ptr() == pointer


def test_state_replaced_by_hand_and_groups_added() -> None:
    """State dicts and state tensors replaced by hand are used as they are on the next step."""
    (model, ours), (their_model, theirs) = pair("Adam", lr=1e-2)
    for _ in range(2):
        train_step(model, ours)
        train_step(their_model, theirs)
    for optimizer, m in ((ours, model), (theirs, their_model)):
        state = optimizer.state[m[0].weight]
        optimizer.state[m[0].weight] = {
            k: v.clone() * (1.5 if k == "exp_avg" else 1) for k, v in state.items()
        }
        optimizer.state[m[2].bias]["exp_avg_sq"] = optimizer.state[m[2].bias]["exp_avg_sq"] * 2
    train_step(model, ours)
    train_step(their_model, theirs)
    assert_same(model, their_model)
    extra, their_extra = nn.Parameter(torch.ones(3)), nn.Parameter(torch.ones(3))
    ours.add_param_group({"params": [extra]})
    theirs.add_param_group({"params": [their_extra]})
    for _ in range(2):
        for p in (extra, their_extra):
            p.grad = torch.full((3,), 0.5)
        train_step(model, ours, zero="model")  # leaves the extra parameters' gradients alone
        train_step(their_model, theirs, zero="model")
    assert_same(model, their_model)
    assert_same([extra], [their_extra])
    assert extra.detach().lt(1).all() and ours.state[extra]["step"] == 2


def test_param_groups_edited_mid_training() -> None:
    """A parameter removed from its group stops being stepped; a group added later is fused too."""
    (model, ours), (their_model, theirs) = pair("Adam", lr=1e-2)
    for _ in range(2):
        train_step(model, ours)
        train_step(their_model, theirs)
    for optimizer in (ours, theirs):
        bias = optimizer.param_groups[0]["params"].pop()  # the last layer's bias
    frozen_bias = bias.detach().clone()
    for _ in range(2):
        train_step(model, ours)
        train_step(their_model, theirs)
    assert_same(model, their_model)
    torch.testing.assert_close(model[2].bias.detach(), frozen_bias, rtol=0, atol=0)
    ours.add_param_group({"params": [model[2].bias], "lr": 0.1})
    theirs.add_param_group({"params": [their_model[2].bias], "lr": 0.1})
    before = fused_steps(ours)
    for _ in range(2):
        train_step(model, ours)
        train_step(their_model, theirs)
    assert_same(model, their_model)
    assert fused_steps(ours) - before == 8


def test_model_converted_to_another_dtype() -> None:
    (model, ours), (their_model, theirs) = pair("Adam", lr=1e-2)
    model.double()  # before any step, as torch.optim supports
    their_model.double()
    for _ in range(3):
        train_step(model, ours)
        train_step(their_model, theirs)
    assert_same(model, their_model, rtol=1e-12, atol=1e-14)
    assert ours.state[model[0].weight]["exp_avg"].dtype == torch.float64
    assert fused_steps(ours) == 12


def test_unused_and_frozen_parameters_keep_their_own_step_counts() -> None:
    torch.manual_seed(3)
    initial = [torch.randn(4, 3), torch.randn(5), torch.randn(3), torch.randn(2, 2)]
    ours_params = [nn.Parameter(t.clone()) for t in initial]
    theirs_params = [nn.Parameter(t.clone()) for t in initial]
    for params in (ours_params, theirs_params):
        params[3].requires_grad_(False)  # frozen: never has a gradient
    ours = ol.Adam(ours_params, lr=0.05, engine="fused")
    theirs = torch.optim.Adam(theirs_params, lr=0.05, foreach=False)
    for step in range(9):
        for index, (a, b) in enumerate(zip(ours_params[:3], theirs_params[:3], strict=True)):
            # p1 misses every third step, p2 starts at step 2: their step counters differ
            if (index == 1 and step % 3 == 1) or (index == 2 and step < 2):
                a.grad = b.grad = None
            else:
                g = torch.randn_like(a)
                a.grad, b.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
        assert_same(ours_params, theirs_params)
    steps = [float(ours.state[p]["step"]) for p in ours_params[:3]]
    assert steps == [float(theirs.state[p]["step"]) for p in theirs_params[:3]] == [9.0, 6.0, 7.0]
    assert ours_params[3] not in ours.state
    torch.testing.assert_close(ours_params[3], initial[3], rtol=0, atol=0)


def test_mixed_dtypes_layouts_complex_groups_and_a_scheduler_do_not_recompile() -> None:
    torch.manual_seed(4)
    initial = [
        torch.randn(4, 3),
        torch.randn(5, dtype=torch.float64),
        torch.randn(3, 2, dtype=torch.complex64),
        torch.randn(2, 3).t(),  # not contiguous but dense: one flat run for the kernel
        torch.randn(1),  # one element: eager
    ]
    ours_params = [nn.Parameter(t.clone()) for t in initial]
    theirs_params = [nn.Parameter(t.clone()) for t in initial]

    def groups(params):
        return [{"params": params[:2]}, {"params": params[2:], "lr": 0.05, "betas": (0.8, 0.99)}]

    ours = ol.Adam(groups(ours_params), lr=0.02, engine="fused")
    theirs = torch.optim.Adam(groups(theirs_params), lr=0.02, foreach=False)
    ours_schedule = torch.optim.lr_scheduler.OneCycleLR(ours, max_lr=[0.05, 0.1], total_steps=12)
    theirs_schedule = torch.optim.lr_scheduler.OneCycleLR(theirs, max_lr=[0.05, 0.1], total_steps=12)
    compiled = None
    for step in range(12):
        same_random_gradients(ours_params, theirs_params)
        ours.step()
        theirs.step()
        ours_schedule.step()
        theirs_schedule.step()
        if step == 6:  # edit param_groups by hand, as users do
            for optimizer in (ours, theirs):
                optimizer.param_groups[1]["eps"] = 1e-6
                optimizer.param_groups[0]["betas"] = (0.85, 0.995)
        if step == 1:
            compiled = kernels.compilations
    assert kernels.compilations == compiled, "a scheduler or a param_groups edit recompiled"
    assert_same(ours_params, theirs_params, rtol=1e-5, atol=1e-6)
    assert ours_params[3].stride() == initial[3].stride()
    assert ours.state[ours_params[2]]["exp_avg"].dtype == torch.complex64
    assert ours.engine.counts == {"fused": 48, "eager": 12}


def test_layouts_that_differ_between_a_parameter_and_its_gradient_step_eagerly() -> None:
    """A gradient whose strides differ from its parameter's (set by hand) cannot be one flat run with
    it: that parameter is stepped eagerly, with torch's numbers."""
    torch.manual_seed(8)
    initial = torch.randn(4, 6)
    a, b = nn.Parameter(initial.clone()), nn.Parameter(initial.clone())
    ours = ol.Adam([a], lr=0.05, engine="fused")
    theirs = torch.optim.Adam([b], lr=0.05, foreach=False)
    for _ in range(4):
        g = torch.randn(6, 4).t()  # same values layout-transposed
        a.grad, b.grad = g.clone(memory_format=torch.preserve_format), g.clone()
        assert a.grad.stride() != a.stride()
        ours.step()
        theirs.step()
    assert_same([a], [b])
    assert ours.engine.counts == {"fused": 0, "eager": 4}


class Observed(torch.Tensor):
    """A tensor subclass that sees every operation on it (as quantization and logging wrappers do)."""

    seen = 0

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        Observed.seen += 1
        return super().__torch_function__(func, types, args, kwargs or {})


def test_tensor_subclasses_with_their_own_ops_are_stepped_by_their_ops() -> None:
    """A kernel writes through data pointers, past a subclass's ``__torch_function__`` or
    ``__torch_dispatch__``: such parameters are stepped eagerly, through their own operations."""
    torch.manual_seed(9)
    initial = torch.randn(6, 4)
    ours_param = torch.Tensor._make_subclass(Observed, initial.clone(), True)  # a leaf, like a parameter
    theirs_param = nn.Parameter(initial.clone())
    ours = ol.Adam([ours_param], lr=0.05, engine="fused")
    theirs = torch.optim.Adam([theirs_param], lr=0.05, foreach=False)
    for _ in range(3):
        g = torch.randn(6, 4)
        ours_param.grad, theirs_param.grad = g.clone(), g.clone()
        Observed.seen = 0
        ours.step()
        assert Observed.seen > 0
        theirs.step()
    torch.testing.assert_close(ours_param.detach().as_subclass(torch.Tensor), theirs_param.detach(), **F32)
    assert ours.engine.counts == {"fused": 0, "eager": 3}


@pytest.mark.parametrize(
    ("name", "kwargs"), [("Adam", {"lr": 1e-2, "eps": 1e-3}), ("SGD", {"lr": 0.1, "momentum": 0.9})]
)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_close_to_torch(dtype: torch.dtype, name: str, kwargs: dict) -> None:
    """bf16/fp16: computed in float32 and rounded once when stored, like torch's fused kernels:
    within a few ulps of torch's for-loop (which rounds after every operation) and on average about
    as close as it (within 25%) to the same run in float32. (torch 2.13's own fused SGD is not: it skips
    the update of full vector blocks in these dtypes, pytorch/pytorch#191763.)"""
    torch.manual_seed(5)
    initial = [torch.randn(64).to(dtype), torch.randn(8, 8).to(dtype)]
    ours_params = [nn.Parameter(t.clone()) for t in initial]
    theirs_params = [nn.Parameter(t.clone()) for t in initial]
    exact_params = [nn.Parameter(t.float()) for t in initial]
    ours = getattr(ol, name)(ours_params, engine="fused", **kwargs)
    theirs = getattr(torch.optim, name)(theirs_params, foreach=False, **kwargs)
    exact = getattr(torch.optim, name)(exact_params, foreach=False, **kwargs)
    for _ in range(10):
        for a, b, c in zip(ours_params, theirs_params, exact_params, strict=True):
            g = torch.randn_like(a)
            a.grad, b.grad, c.grad = g.clone(), g.clone(), g.float()
        for optimizer in (ours, theirs, exact):
            optimizer.step()
    ulp = torch.finfo(dtype).eps
    for a, b, c in zip(ours_params, theirs_params, exact_params, strict=True):
        assert a.dtype == dtype
        torch.testing.assert_close(a.detach().float(), b.detach().float(), rtol=8 * ulp, atol=8 * ulp)
        ours_error = (a.detach().float() - c.detach()).abs().mean()
        theirs_error = (b.detach().float() - c.detach()).abs().mean()
        assert ours_error <= theirs_error * 1.25
    assert all(v.dtype == dtype for v in ours.state[ours_params[0]].values() if v.dim() > 0)
    assert fused_steps(ours) >= 18


def test_scalar_state_and_state_created_by_the_rule() -> None:
    """NAdam keeps a scalar besides step (mu_product); SGD's momentum buffer is created by the
    rule on the first step (stepped eagerly once, then fused)."""
    for name, kwargs in (("NAdam", {"lr": 1e-2}), ("SGD", {"lr": 1e-2, "momentum": 0.9})):
        (model, ours), (their_model, theirs) = pair(name, **kwargs)
        for _ in range(4):
            train_step(model, ours)
            train_step(their_model, theirs)
        assert_same(model, their_model)
        assert ours.engine.counts == (
            {"fused": 16, "eager": 0} if name == "NAdam" else {"fused": 12, "eager": 4}
        )
        for p, q in zip(model.parameters(), their_model.parameters(), strict=True):
            for key, value in theirs.state[q].items():
                torch.testing.assert_close(ours.state[p][key], value, **F32)


# --- checkpoints ---------------------------------------------------------------------------------


def _round_trip(state_dict: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state_dict, buffer)
    buffer.seek(0)
    return torch.load(buffer)


def test_state_dict_both_directions_with_torch_mid_training() -> None:
    (model, ours), (their_model, theirs) = pair("Adam", lr=1e-2)
    for _ in range(3):
        train_step(model, ours)
        train_step(their_model, theirs)
    # optimlab -> torch and torch -> optimlab, through torch.save
    model_b, their_model_b = copy.deepcopy(model), copy.deepcopy(their_model)
    theirs_b = torch.optim.Adam(model_b.parameters(), lr=1e-2, foreach=False)
    theirs_b.load_state_dict(_round_trip(ours.state_dict()))
    ours_b = ol.Adam(their_model_b.parameters(), lr=1e-2, engine="fused")
    ours_b.load_state_dict(_round_trip(theirs.state_dict()))
    saved = ours.state_dict()
    assert all(torch.is_tensor(v) and v.dim() == 0 for v in (s["step"] for s in saved["state"].values()))
    for _ in range(3):
        for m, o in ((model, ours), (their_model, theirs), (model_b, theirs_b), (their_model_b, ours_b)):
            train_step(m, o)
    assert_same(model, their_model)
    assert_same(model_b, their_model)
    assert_same(their_model_b, their_model)
    # loading into the same optimizer mid-training
    ours.load_state_dict(_round_trip(theirs.state_dict()))
    for _ in range(2):
        train_step(model, ours)
        train_step(their_model, theirs)
    assert_same(model, their_model)


def test_deepcopy_and_pickle_keep_the_engine() -> None:
    (model, ours), _ = pair("Adam", lr=1e-2)
    train_step(model, ours)
    clone = copy.deepcopy(ours)
    assert clone.engine.name == "fused"
    assert pickle.loads(pickle.dumps(ours)).engine.name == "fused"
    clone.step()  # the copy steps its own copies of the parameters


# --- robustness ----------------------------------------------------------------------------------


@pytest.mark.parametrize("launched", [True, False])
def test_a_step_allocates_no_parameter_sized_temporary(
    monkeypatch: pytest.MonkeyPatch, launched: bool
) -> None:
    """Planned, by the launcher (whose scratch buffers are its threads' own) or from Python (a few
    scalars per step)."""
    if not launched:
        monkeypatch.setattr(launcher, "available", lambda: False)
    params = [nn.Parameter(torch.randn(256, 256)), nn.Parameter(torch.randn(256))]
    optimizer = ol.Adam(params, engine="fused")
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer.step()
    optimizer.step()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        marker = torch.empty(16)  # (64 bytes, freed at once: so that the profiler sees an allocation)
        del marker
        optimizer.step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    current = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        current += event.nbytes()
        peak = max(peak, current)
    assert events, "the profiler saw no allocation at all"
    assert peak < 4096, f"a fused step allocated {peak} bytes"


def test_sparse_gradients_and_nonfinite_skip() -> None:
    (model, ours), (their_model, theirs) = pair("Adam", lr=1e-2)
    for optimizer in (ours, theirs):
        optimizer.param_groups[0]["nonfinite"] = "skip"
    train_step(model, ours)
    train_step(their_model, theirs)
    before = [p.detach().clone() for p in model.parameters()]
    ours.zero_grad()
    loss = (model(DATA) ** 2).mean() * float("nan")
    loss.backward()
    ours.step()
    assert ours.param_groups[0]["skipped_steps"] == 1
    assert_same(list(model.parameters()), before, rtol=0, atol=0)
    # SGD's sparse gradients are stepped eagerly (densified), next to fused dense ones
    embedding, their_embedding = nn.Embedding(10, 4, sparse=True), nn.Embedding(10, 4, sparse=True)
    their_embedding.load_state_dict(embedding.state_dict())
    dense_weight = nn.Parameter(torch.randn(4, 4))
    their_dense = nn.Parameter(dense_weight.detach().clone())
    ours = ol.SGD([*embedding.parameters(), dense_weight], lr=0.1, engine="fused")
    theirs = torch.optim.SGD([*their_embedding.parameters(), their_dense], lr=0.1, foreach=False)
    index = torch.tensor([1, 3, 3, 7])
    for e, w, o in ((embedding, dense_weight, ours), (their_embedding, their_dense, theirs)):
        for _ in range(3):
            o.zero_grad()
            (e(index) @ w).pow(2).sum().backward()
            o.step()
    assert_same([embedding.weight, dense_weight], [their_embedding.weight, their_dense])
    assert ours.engine.counts == {"fused": 3, "eager": 3}


def test_l1_matches_the_eager_engine() -> None:
    torch.manual_seed(6)
    initial = torch.randn(50)
    a, b = nn.Parameter(initial.clone()), nn.Parameter(initial.clone())
    fused_opt = ol.Adam([a], lr=0.05, l1=0.5, engine="fused")
    eager_opt = ol.Adam([b], lr=0.05, l1=0.5, engine="eager")
    for _ in range(20):
        g = 0.1 * torch.randn(50)
        a.grad, b.grad = g.clone(), g.clone()
        fused_opt.step()
        eager_opt.step()
    torch.testing.assert_close(a.detach(), b.detach(), **F32)
    assert (a == 0).sum() == (b == 0).sum() > 0
    assert fused_steps(fused_opt) == 20


def test_kernels_call_inductor_directly_only_after_checking_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel calls inductor's generated code directly only once that gave the compiled function's
    results bit for bit on its probe; otherwise it calls the compiled function (guarded) — with
    torch's numbers either way."""
    key = kernels.KernelKey(
        ol.Adam.rule,
        (
            ("amsgrad", False),
            ("decoupled_weight_decay", False),
            ("l1", None),
            ("maximize", False),
            ("weight_decay", None),
        ),
        ("exp_avg", "exp_avg_sq"),
        ("step",),
        (torch.float32,),
        ("beta1", "beta2", "eps", "lr"),
        torch.float32,
        torch.device("cpu"),
    )
    assert kernels.Kernel(key).direct is not None
    monkeypatch.setattr(kernels, "_same", lambda a, b: False)  # as if the direct call disagreed
    checked = kernels.Kernel(key)
    assert checked.direct is None
    monkeypatch.setattr(fused, "_KERNELS", {})
    (model, ours), (their_model, theirs) = pair("Adam", lr=1e-2)
    for _ in range(3):
        train_step(model, ours)
        train_step(their_model, theirs)
    assert_same(model, their_model)
    assert fused_steps(ours) == 12
    assert all(k.direct is None for k in fused._KERNELS.values())


@pytest.fixture
def float64_default():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.mark.usefixtures("float64_default")
def test_float64_scalar_state_advances() -> None:
    """Scalar state in float64 — every step counter under ``torch.set_default_dtype(torch.float64)``,
    NAdam's ``mu_product`` once a checkpoint load has cast it to the parameters' dtype — advances
    in the kernel as in torch.optim (torch 2.13's compiled code drops in-place writes to 0-d float64
    inputs, so the kernels take one-element views)."""
    for name in ("Adam", "NAdam"):
        (model, ours), (their_model, theirs) = pair(name, lr=1e-2)
        model.double()
        their_model.double()
        for step in range(6):
            train_step(model, ours)
            train_step(their_model, theirs)
            if step == 1:  # a round trip through a checkpoint, as torch.optim loads it
                ours.load_state_dict(_round_trip(ours.state_dict()))
                theirs.load_state_dict(_round_trip(theirs.state_dict()))
        assert_same(model, their_model, rtol=1e-12, atol=1e-14)
        for p, q in zip(model.parameters(), their_model.parameters(), strict=True):
            for key, value in theirs.state[q].items():
                assert ours.state[p][key].dtype == value.dtype
                torch.testing.assert_close(ours.state[p][key], value, rtol=1e-12, atol=1e-14)
        assert ours.state[next(model.parameters())]["step"].dtype == torch.float64
        assert ours.engine.counts == {"fused": 24, "eager": 0}


def test_a_kernel_that_disagrees_with_the_eager_rule_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every compiled kernel is first run on a probe and compared with the rule run eagerly; one that
    disagrees (a compiler bug) is refused with a warning and the parameters are stepped eagerly."""
    real = kernels._eager_reference

    def off_by_a_little(key, probe):
        expected = real(key, probe)
        expected[0] = expected[0] + 1e-3  # the parameter's update, as if the compiled one were wrong
        return expected

    monkeypatch.setattr(kernels, "_eager_reference", off_by_a_little)
    monkeypatch.setattr(fused, "_KERNELS", {})
    monkeypatch.setattr(fused, "_FAILED", {})
    monkeypatch.setattr(fused, "_warned", set())
    (model, ours), (their_model, theirs) = pair("Adam", lr=1e-2)
    with pytest.warns(RuntimeWarning, match="disagrees with the rule run eagerly"):
        for _ in range(3):
            train_step(model, ours)
            train_step(their_model, theirs)
    assert_same(model, their_model)
    assert ours.engine.counts == {"fused": 0, "eager": 12}


#: ASGD after a checkpoint load (η and μ cast to the float64 parameters, ``step`` kept in float32):
#: its scalar state is updated after the kernel's parallel loop
ASGD_LOADED = kernels.KernelKey(
    ol.ASGD.rule,
    (("l1", None), ("maximize", True), ("eta_dtype", torch.float32), ("mu_dtype", torch.float32)),
    ("ax",),
    ("eta", "mu", "step"),
    (torch.float64, torch.float64, torch.float32),
    ("lr", "lambd", "alpha", "t0", "weight_decay"),
    torch.float64,
    torch.device("cpu"),
)


@pytest.fixture
def one_thread_cold_compiles():
    """Compiles in a process that uses one thread, none of them from inductor's caches."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch._inductor.config.patch(fx_graph_cache=False):
            yield
    finally:
        torch.set_num_threads(threads)


def _asgd_operands(numel: int, seed: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    elements = [torch.rand(numel, generator=generator, dtype=torch.float64) + 0.5 for _ in range(3)]
    scalars = [
        torch.tensor(v, dtype=d) for v, d in zip((0.006, 0.9, 3.0), ASGD_LOADED.scalar_dtypes, strict=True)
    ]
    hyper = [torch.tensor(v, dtype=torch.float64) for v in (0.01, 1e-4, 0.75, 1e6, 0.1)]
    return [*elements, *scalars, *hyper]


@pytest.mark.usefixtures("one_thread_cold_compiles")
def test_a_kernel_compiled_on_one_thread_is_exact_on_several() -> None:
    """torch 2.13's inductor decides from ``torch.get_num_threads()`` at compile time whether serial
    code after a parallel loop goes under ``omp single`` (and its caches do not tell the counts
    apart): ASGD's kernel compiled on one thread advanced ``step`` from every thread when it ran on
    several — right or wrong from one call to the next, and right on its probe, which ran on one.
    Kernels compile for several threads, so this one is exact on any number."""
    kernel = kernels.Kernel(ASGD_LOADED)
    assert kernel.direct is not None
    assert kernels._unsynchronized_stores(kernel._capture.compiled.source_code) == []
    torch.set_num_threads(4)
    for seed in range(10):
        for numel in (6, 37, 1000):
            operands = _asgd_operands(numel, seed)
            expected = kernels._eager_reference(
                ASGD_LOADED, [t.reshape(1) if t.dim() == 0 else t.clone() for t in operands]
            )
            kernel(operands, numel)
            for index in (0, 2, 3, 4, 5):  # the parameter, ax, eta, mu, step
                torch.testing.assert_close(operands[index].reshape(-1), expected[index].reshape(-1))
    assert operands[5].item() == 4.0


@pytest.mark.usefixtures("one_thread_cold_compiles")
def test_a_kernel_that_writes_from_every_thread_is_never_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The code torch 2.13 generated with the thread count left to the process (as the engine once
    compiled, or as another program's settings may leave in inductor's caches) writes ASGD's scalar
    state from every thread. Its numbers on one thread are right, so only the code shows it: such a
    kernel is refused (the engine then steps eagerly), whatever its probe gave."""
    monkeypatch.delitem(kernels._INDUCTOR_CONFIG, "cpp.threads")
    monkeypatch.setattr(kernels, "_CHECK_THREADS", 1)  # the probe on one thread: its numbers right
    with pytest.raises(RuntimeError, match="writes its outputs from every thread"):
        kernels.Kernel(ASGD_LOADED)


def test_unsynchronized_stores_are_the_writes_every_thread_runs() -> None:
    source = """
    {
        out_ptr0[static_cast<int64_t>(0L)] = tmp2;
    }
    #pragma omp parallel
    {
        int tid = omp_get_thread_num();
        float tmp_acc0_local = 0;
        {
            #pragma omp for
            for(int64_t x0=0; x0<ks0; x0+=16L)
            {
                tmp0.store(out_ptr4 + x0, 16);
            }
        }
        tmp_acc0_arr[tid] = tmp_acc0_local;
        #pragma omp single
        {
            {
                out_ptr7[static_cast<int64_t>(0L)] = tmp14;
            }
        }
        {
            out_ptr9[static_cast<int64_t>(0L)] = tmp21;
            tmp3.store(in_out_ptr1 + 0, 1);
        }
    }
    out_ptr11[0] = tmp5;
    """
    assert kernels._unsynchronized_stores(source) == [
        "out_ptr9[static_cast<int64_t>(0L)] = tmp21;",
        "tmp3.store(in_out_ptr1 + 0, 1);",
    ]


@pytest.mark.filterwarnings(
    "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
)  # torch's own imports
def test_watched_steps_are_taken_by_ops_that_are_seen() -> None:
    """A kernel writes through data pointers, past anything watching the step's ops: under a
    dispatch mode (make_fx, FlopCounterMode) or forward-mode AD the engine steps with the eager
    engine's ops, which are recorded (and give torch.optim's tangents)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Recorder(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.ops: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    (model, ours), _ = pair("Adam", lr=1e-2)
    train_step(model, ours)  # compiled outside the mode
    recorder = Recorder()
    with recorder:
        ours.step()
    assert any("copy_" in op for op in recorder.ops), "the update never showed in the mode"
    assert ours.engine.counts == {"fused": 4, "eager": 4}
    import torch.autograd.forward_ad as forward_ad

    tangents = []
    for make in (
        lambda p: ol.SGD(p, lr=0.5, weight_decay=0.5, engine="fused"),
        lambda p: torch.optim.SGD(p, lr=0.5, weight_decay=0.5, foreach=False),
    ):
        with forward_ad.dual_level():
            param = forward_ad.make_dual(torch.ones(8), torch.ones(8))
            optimizer = make([param])
            param.grad = torch.ones(8)
            optimizer.step()
            tangents.append(forward_ad.unpack_dual(param).tangent.clone())
    torch.testing.assert_close(*tangents)


def test_gradients_that_are_not_their_memory_and_legacy_none_state() -> None:
    """A gradient with a lazy negation bit or a ZeroTensor is not what its memory holds, and torch
    1.x saved SGD's ``momentum_buffer`` as None: all are stepped as torch.optim steps them."""
    for make_grad in (lambda g: torch._neg_view(-g), lambda g: torch._efficientzerotensor(g.shape)):
        ours_param, theirs_param = nn.Parameter(torch.ones(16)), nn.Parameter(torch.ones(16))
        ours = ol.SGD([ours_param], lr=0.5, momentum=0.9, engine="fused")
        theirs = torch.optim.SGD([theirs_param], lr=0.5, momentum=0.9, foreach=False)
        for _ in range(3):
            g = torch.randn(16)
            ours_param.grad, theirs_param.grad = make_grad(g), make_grad(g)
            ours.step()
            theirs.step()
        assert_same([ours_param], [theirs_param])
    for momentum in (0.0, 0.9):
        for engine in ENGINE_CHOICES:
            ours_param, theirs_param = nn.Parameter(torch.ones(16)), nn.Parameter(torch.ones(16))
            ours = ol.SGD([ours_param], lr=0.1, momentum=momentum, engine=engine)
            theirs = torch.optim.SGD([theirs_param], lr=0.1, momentum=momentum, foreach=False)
            ours.state[ours_param]["momentum_buffer"] = None
            theirs.state[theirs_param]["momentum_buffer"] = None
            for _ in range(3):
                ours_param.grad, theirs_param.grad = torch.full((16,), 0.5), torch.full((16,), 0.5)
                ours.step()
                theirs.step()
            assert_same([ours_param], [theirs_param])


def test_state_versions_advance_and_numpy_hyperparameters_are_numbers() -> None:
    """A fused step bumps the version of every tensor it writes (the state too, as in-place ops
    would); a NumPy scalar learning rate (LambdaLR returning np.float32) is a number: it never
    recompiles and gives torch.optim's parameters."""
    import numpy as np

    (model, ours), (their_model, theirs) = pair("Adam", lr=1e-2)
    train_step(model, ours)
    train_step(their_model, theirs)
    weight = model[0].weight
    versions = {k: v._version for k, v in ours.state[weight].items()}
    train_step(model, ours)
    train_step(their_model, theirs)
    assert all(ours.state[weight][k]._version > v for k, v in versions.items())
    schedules = [
        torch.optim.lr_scheduler.LambdaLR(o, lambda epoch: np.float32(0.9) ** epoch) for o in (ours, theirs)
    ]
    compiled = kernels.compilations
    for _ in range(4):
        train_step(model, ours)
        train_step(their_model, theirs)
        for schedule in schedules:
            schedule.step()
    assert isinstance(ours.param_groups[0]["lr"], np.floating)
    assert kernels.compilations == compiled
    assert_same(model, their_model)


def test_tensors_too_large_for_32_bit_indexing_take_the_guarded_route(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Generated code may index with 32-bit integers below 2³¹ elements (Triton): larger tensors
    are stepped through the compiled function, whose guards recompile for them."""
    monkeypatch.setattr(kernels, "_INT32_LIMIT", 40)  # so that a 48-element tensor counts as large
    monkeypatch.setattr(fused, "_KERNELS", {})
    calls = []
    (model, ours), (their_model, theirs) = pair("Adam", lr=1e-2)
    for _ in range(3):
        train_step(model, ours)
        train_step(their_model, theirs)
        for kernel in fused._KERNELS.values():
            if kernel.direct is not None and not isinstance(kernel.direct, _Spy):
                kernel.direct = _Spy(kernel.direct, calls)
            unwrapped = kernel.unwrapped
            if unwrapped is not None and not isinstance(unwrapped.calls[0][0], _ArgumentsSpy):
                spied = tuple((_ArgumentsSpy(f, calls), order) for f, order in unwrapped.calls)
                kernel.unwrapped = dataclasses.replace(unwrapped, calls=spied)
    assert_same(model, their_model)
    assert ours.engine.planned_steps > 0
    assert calls and max(calls) < 40  # the direct calls never saw the 48-element weight


class _ArgumentsSpy:
    """An unwrapped C++ kernel (called with its arguments) that records its largest int argument."""

    def __init__(self, function, calls: list[int]) -> None:
        self.function, self.calls = function, calls

    def __call__(self, *arguments) -> None:
        self.calls.append(max(a for a in arguments if isinstance(a, int)))
        self.function(*arguments)


class _Spy:
    def __init__(self, call, calls: list[int]) -> None:
        self.call, self.calls = call, calls

    def __call__(self, arguments: list) -> None:
        self.calls.append(max(a for a in arguments if isinstance(a, int)))
        self.call(arguments)


def test_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(capture, gm, example_inputs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(kernels, "_backend", broken)
    monkeypatch.setattr(fused, "_KERNELS", {})
    monkeypatch.setattr(fused, "_FAILED", {})
    monkeypatch.setattr(fused, "_warned", set())
    (model, ours), (their_model, theirs) = pair("Adam", lr=1e-2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3):
            train_step(model, ours)
            train_step(their_model, theirs)
    messages = [str(w.message) for w in caught if "fused engine" in str(w.message)]
    assert len(messages) == 1 and "running eagerly" in messages[0]
    assert_same(model, their_model)
    assert ours.engine.counts == {"fused": 0, "eager": 12}


def test_no_compiler_means_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused, "compiler_available", lambda device_type: False)
    monkeypatch.setattr(fused, "_warned", set())
    monkeypatch.setattr(fused, "AUTO_MIN_NUMEL", 10)
    (model, ours), (their_model, theirs) = pair("Adam", lr=1e-2)
    auto = ol.Adam(copy.deepcopy(their_model).parameters(), lr=1e-2)
    with pytest.warns(RuntimeWarning, match="no compiler"):
        train_step(model, ours)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "auto" falls back silently
        train_step(copy.deepcopy(their_model), auto)
    train_step(their_model, theirs)
    assert_same(model, their_model)
    assert ours.engine.counts == {"fused": 0, "eager": 4}


# --- CUDA (Triton); these run where a GPU is present ---------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
@pytest.mark.parametrize(
    "name", ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Adamax", "NAdam", "RAdam"]
)
def test_cuda_training_loop_matches_torch(name: str) -> None:
    """Every optimizer's rule compiled by Triton, against torch.optim's CUDA for-loop, with
    parameters moved to the GPU after construction (``model.to()``)."""
    kwargs = {"lr": 1e-2, **({"momentum": 0.9} if name == "SGD" else {})}
    (model, ours), (their_model, theirs) = pair(name, **kwargs)
    data, target = DATA.cuda(), TARGET.cuda()
    for m in (model, their_model):
        m.cuda()
    for step in range(6):
        for m, o in ((model, ours), (their_model, theirs)):
            o.zero_grad(set_to_none=step % 2 == 0)
            ((m(data) - target) ** 2).mean().backward()
            o.step()
    assert_same(model, their_model)
    assert fused_steps(ours) >= 20


@needs_cuda
def test_cuda_and_cpu_parameters_in_one_group() -> None:
    """A group with parameters on two devices: each parameter's kernel runs where it lives."""
    torch.manual_seed(7)
    initial = [torch.randn(4, 3), torch.randn(5).cuda(), torch.randn(6, dtype=torch.bfloat16).cuda()]
    ours_params = [nn.Parameter(t.clone()) for t in initial]
    theirs_params = [nn.Parameter(t.clone()) for t in initial]
    ours = ol.AdamW(ours_params, lr=0.02, engine="fused")
    theirs = torch.optim.AdamW(theirs_params, lr=0.02, foreach=False)
    for _ in range(5):
        same_random_gradients(ours_params, theirs_params)
        ours.step()
        theirs.step()
    for a, b in zip(ours_params, theirs_params, strict=True):
        tolerance = {"rtol": 0.02, "atol": 0.02} if a.dtype == torch.bfloat16 else F32
        torch.testing.assert_close(a.detach(), b.detach(), **tolerance)
    assert ours.engine.counts == {"fused": 15, "eager": 0}
