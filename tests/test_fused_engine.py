"""The fused engine against torch.optim under what users do to models and optimizers.

Every test compares ``engine="fused"`` with torch.optim's for-loop implementation step by step.
Compilations are the slow part, so the tests share a handful of configurations (Adam float32 with
default flags above all; inductor caches them across tests and processes) on tiny models.
"""

from __future__ import annotations

import copy
import io
import pickle
import warnings

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

import optimlab.optim as ol
from optimlab.optim.engine import ENGINE_CHOICES, EagerEngine, FusedEngine, fused, resolve_engine

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


def plan_of(optimizer: torch.optim.Optimizer, group: int = 0):
    return optimizer.engine._plans[id(optimizer.param_groups[group])]


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
    before = fused.compilations
    for _ in range(3):
        train_step(model, ours)
        train_step(their_model, theirs)
    assert fused.compilations == before
    assert ours.engine._plans == {}  # nothing flattened: the parameters keep their own storage
    assert_same(model, their_model)


def test_auto_fuses_large_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fused, "AUTO_MIN_NUMEL", 50)
    (model, _), (their_model, theirs) = pair("Adam")
    ours = ol.Adam(model.parameters(), lr=1e-2)
    theirs.param_groups[0]["lr"] = 1e-2
    for _ in range(3):
        train_step(model, ours)
        train_step(their_model, theirs)
    assert plan_of(ours).buckets, "auto should have fused a model above AUTO_MIN_NUMEL"
    assert_same(model, their_model)


def test_auto_fuses_a_small_model_once_its_eager_steps_add_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Rent or buy: "auto" steps a small model eagerly until those steps have cost about what a
    compilation costs, then fuses it, carrying its state over, with torch's numbers throughout."""
    monkeypatch.setattr(fused, "AUTO_EAGER_SECONDS", 1e-9)  # any eager step exceeds it
    (model, _), (their_model, theirs) = pair("Adam")
    ours = ol.Adam(model.parameters())
    train_step(model, ours)
    train_step(their_model, theirs)
    assert ours.engine._plans == {} and ours.engine.eager_seconds > 0  # the first step ran eagerly
    for _ in range(3):
        train_step(model, ours)
        train_step(their_model, theirs)
    assert plan_of(ours).buckets and not plan_of(ours).buckets[0].failed
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


# --- training loops ------------------------------------------------------------------------------


@pytest.mark.parametrize("zero", ["optimizer", "optimizer-keep", "model"])
def test_training_loop_matches_torch(zero: str) -> None:
    (model, ours), (their_model, theirs) = pair("Adam", lr=1e-2)
    for _ in range(6):
        train_step(model, ours, zero)
        train_step(their_model, theirs, zero)
    assert_same(model, their_model)
    bucket = plan_of(ours).buckets[0]
    flat = bucket.flat_param
    for p, view in zip(bucket.members, bucket.grad_views, strict=True):
        # parameters live in the flat buffer and the next backward accumulates into its views
        assert p.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
        assert p.grad is view
    if zero == "optimizer-keep":  # gradients zeroed in place stay where they are: no gather
        pointers = [p.grad.data_ptr() for p in model.parameters()]
        train_step(model, ours, zero)
        assert [p.grad.data_ptr() for p in model.parameters()] == pointers


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
    # assigning p.data moves a parameter out of the flat buffer: the engine rebuilds
    new_weight = torch.randn(8, 6)
    model[0].weight.data = new_weight.clone()
    their_model[0].weight.data = new_weight.clone()
    for _ in range(2):
        train_step(model, ours)
        train_step(their_model, theirs)
    assert_same(model, their_model)
    assert model[0].weight.data_ptr() != new_weight.data_ptr()  # back in a flat buffer


def test_state_replaced_by_hand_and_state_added_elsewhere() -> None:
    """A state dict or state tensor replaced by hand is picked up (the engine rebuilds); state
    created for another group's parameters leaves this group's buffers alone."""
    (model, ours), (their_model, theirs) = pair("Adam", lr=1e-2)
    for _ in range(2):
        train_step(model, ours)
        train_step(their_model, theirs)
    first_plan = plan_of(ours)
    for optimizer, m in ((ours, model), (theirs, their_model)):
        state = optimizer.state[m[0].weight]
        optimizer.state[m[0].weight] = {
            k: v.clone() * (1.5 if k == "exp_avg" else 1) for k, v in state.items()
        }
        optimizer.state[m[2].bias]["exp_avg_sq"] = optimizer.state[m[2].bias]["exp_avg_sq"] * 2
    train_step(model, ours)
    train_step(their_model, theirs)
    assert_same(model, their_model)
    assert plan_of(ours) is not first_plan  # rebuilt around the new state
    rebuilt = plan_of(ours)
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
    assert plan_of(ours) is rebuilt  # the new group's state did not invalidate the first group


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
    for _ in range(2):
        train_step(model, ours)
        train_step(their_model, theirs)
    assert_same(model, their_model)
    assert plan_of(ours, 1).buckets


def test_model_converted_to_another_dtype() -> None:
    (model, ours), (their_model, theirs) = pair("Adam", lr=1e-2)
    model.double()  # before any step, as torch.optim supports
    their_model.double()
    for _ in range(3):
        train_step(model, ours)
        train_step(their_model, theirs)
    assert_same(model, their_model, rtol=1e-12, atol=1e-14)
    assert plan_of(ours).buckets[0].dtype == torch.float64
    assert ours.state[model[0].weight]["exp_avg"].dtype == torch.float64


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


def test_mixed_dtypes_complex_groups_and_a_scheduler_do_not_recompile() -> None:
    torch.manual_seed(4)
    initial = [
        torch.randn(4, 3),
        torch.randn(5, dtype=torch.float64),
        torch.randn(3, 2, dtype=torch.complex64),
        torch.randn(2, 3).t(),  # not contiguous: keeps its strides inside the flat buffer
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
            compiled = fused.compilations
    assert fused.compilations == compiled, "a scheduler or a param_groups edit recompiled"
    assert_same(ours_params, theirs_params, rtol=1e-5, atol=1e-6)
    assert ours_params[3].stride() == initial[3].stride()
    assert len(plan_of(ours, 0).buckets) == 2  # float32 and float64 buckets in the first group
    assert ours.state[ours_params[2]]["exp_avg"].dtype == torch.complex64


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


def test_scalar_state_and_state_created_by_the_rule() -> None:
    """NAdam keeps a scalar besides step (mu_product); SGD's momentum buffer is created by the
    rule on the first step (the engine steps eagerly once, then fuses)."""
    for name, kwargs in (("NAdam", {"lr": 1e-2}), ("SGD", {"lr": 1e-2, "momentum": 0.9})):
        (model, ours), (their_model, theirs) = pair(name, **kwargs)
        for _ in range(4):
            train_step(model, ours)
            train_step(their_model, theirs)
        assert_same(model, their_model)
        assert plan_of(ours).buckets and not plan_of(ours).buckets[0].failed
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
    # loading into the same optimizer mid-training (the state is replaced: the engine rebuilds)
    ours.load_state_dict(_round_trip(theirs.state_dict()))
    for _ in range(2):
        train_step(model, ours)
        train_step(their_model, theirs)
    assert_same(model, their_model)
    # the plan of the replaced param group went with it (its buffers are not kept alive)
    assert list(ours.engine._plans) == [id(ours.param_groups[0])]


def test_deepcopy_and_pickle_keep_the_engine() -> None:
    (model, ours), _ = pair("Adam", lr=1e-2)
    train_step(model, ours)
    clone = copy.deepcopy(ours)
    assert clone.engine.name == "fused"
    assert pickle.loads(pickle.dumps(ours)).engine.name == "fused"
    clone.step()  # the copy steps its own copies of the parameters


# --- robustness ----------------------------------------------------------------------------------


def test_a_step_allocates_no_parameter_sized_temporary() -> None:
    params = [nn.Parameter(torch.randn(256, 256)), nn.Parameter(torch.randn(256))]
    optimizer = ol.Adam(params, engine="fused")
    for p in params:
        p.grad = torch.randn_like(p)
    optimizer.step()
    optimizer.step()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        optimizer.step()
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    current = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        current += event.nbytes()
        peak = max(peak, current)
    assert events, "the profiler saw no allocation at all (not even the new step counter)"
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


def test_compile_failure_falls_back_to_eager_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(gm, example_inputs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(fused, "_backend", broken)
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
    assert not plan_of(ours).buckets


def test_optimizer_step_inside_torch_compile() -> None:
    """torch.compile of a function calling optimizer.step() (as torch's tutorials suggest) leaves
    the engine's bookkeeping untraced and still runs its compiled kernel."""
    (model, ours), (their_model, theirs) = pair("Adam", lr=1e-2)
    compiled_step = torch.compile(ours.step)
    for _ in range(3):
        for m in (model, their_model):
            m.zero_grad()
            ((m(DATA) - TARGET) ** 2).mean().backward()
        compiled_step()
        theirs.step()
    assert_same(model, their_model)
    assert plan_of(ours).buckets and not plan_of(ours).buckets[0].failed


# --- CUDA (Triton); these run where a GPU is present ---------------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@needs_cuda
@pytest.mark.parametrize(
    "name", ["SGD", "Adagrad", "RMSprop", "Adadelta", "Adam", "AdamW", "Adamax", "NAdam", "RAdam"]
)
def test_cuda_training_loop_matches_torch(name: str) -> None:
    """Every optimizer's rule compiled by Triton, against torch.optim's CUDA for-loop, with
    parameters moved to the GPU after construction (``model.to()``: the engine rebuilds)."""
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
    buckets = plan_of(ours).buckets
    assert buckets and all(b.device.type == "cuda" and not b.failed for b in buckets)


@needs_cuda
def test_cuda_and_cpu_parameters_in_one_group() -> None:
    """A group with parameters on two devices gets one bucket (and one kernel) per device."""
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
    kinds = sorted((b.device.type, str(b.dtype)) for b in plan_of(ours).buckets)
    assert kinds == [("cpu", "torch.float32"), ("cuda", "torch.bfloat16"), ("cuda", "torch.float32")]
