"""The fused engine's planned steps: a group whose last step went through kernels whole is checked
in one call and stepped at once, with torch.optim's numbers, and anything the plan does not cover
goes the full way again (``optimlab/optim/engine/plans.py``). Also the kernels' unwrapped C++ calls
(``engine/unwrapped.py``) and the small kernels run on one thread.

Tiny models and the Adam/SGD configurations the other fused tests compile (inductor caches them).
"""

from __future__ import annotations

import copy
import gc
import types
import weakref

import pytest
import torch
from torch import nn

import optimlab.optim as ol
import plan_cases
from optimlab.optim.engine import fused, kernels, launcher, plans, unwrapped
from plan_cases import (
    DATA,
    Threads,
    both_steps,
    mlp,
    new_parameter_step,
    replace_first_weight_storage,
    train_step,
    transposed_gradient_step,
)

F32 = {"rtol": 1e-5, "atol": 1e-7}


def pair(name: str = "Adam", **kwargs):
    return plan_cases.pair(name, engine="fused", **kwargs)


def assert_same(ours: nn.Module, theirs: nn.Module) -> None:
    for x, y in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(x.detach(), y.detach(), **F32)


@pytest.mark.parametrize(("name", "kwargs"), [("Adam", {"lr": 1e-2}), ("SGD", {"lr": 0.1, "momentum": 0.9})])
def test_steps_after_the_first_fused_one_are_planned_with_torchs_numbers(name: str, kwargs: dict) -> None:
    """Fresh gradients every step (``zero_grad`` frees them) do not stop the plan: it checks metadata,
    not identities. SGD's momentum buffer appears on its first step (eager), so it plans on its second."""
    ours, theirs = pair(name, **kwargs)
    for _ in range(5):
        both_steps(ours, theirs)
    assert_same(ours[0], theirs[0])
    engine = ours[1].engine
    first_fused = 1 if name == "Adam" else 2
    assert engine.planned_steps == 4 * (5 - first_fused)
    assert engine.counts["fused"] == 4 * (5 - first_fused + 1)


def test_what_the_plan_does_not_cover_goes_the_full_way_and_plans_again() -> None:
    """A gradient of another layout, a lazily negated one, a replaced state entry of another dtype,
    an added parameter: each step is taken by the full path (eagerly where it must), with torch's
    numbers, and the next ordinary step is planned again."""
    ours, theirs = pair("Adam", lr=1e-2)
    both_steps(ours, theirs)
    engine = ours[1].engine

    def planned_during(change) -> int:
        before = engine.planned_steps
        change()
        return engine.planned_steps - before

    assert planned_during(lambda: transposed_gradient_step(ours, theirs)) == 0
    assert planned_during(lambda: both_steps(ours, theirs)) == 4  # the plan still holds for the rest

    def negated_gradient() -> None:
        for model, optimizer in (ours, theirs):
            optimizer.zero_grad()
            model(DATA).square().mean().backward()
            bias = model[2].bias
            bias.grad = (-bias.grad)._neg_view()  # lazily negated: its memory holds the opposite
            optimizer.step()

    assert planned_during(negated_gradient) == 0
    assert_same(ours[0], theirs[0])
    for _ in range(2):
        both_steps(ours, theirs)

    assert planned_during(lambda: new_parameter_step(ours, theirs)) == 0
    assert_same(ours[0], theirs[0])


def test_state_and_parameters_replaced_between_planned_steps_are_the_ones_stepped() -> None:
    """The plan keeps no tensor: a parameter's ``.data`` swapped for other storage and a state entry
    replaced by a copy — the next planned step writes where they are now. A checkpoint loaded makes
    new param groups, which the full path steps and plans anew."""
    ours, theirs = pair("Adam", lr=1e-2)
    for _ in range(2):
        both_steps(ours, theirs)
    replace_first_weight_storage(ours, theirs)
    held = ours[1].state[ours[0][0].weight]["exp_avg"]
    storage = ours[0][0].weight.data_ptr()
    engine = ours[1].engine
    both_steps(ours, theirs)
    assert engine.planned_steps == 4 + 4
    assert ours[0][0].weight.data_ptr() == storage
    torch.testing.assert_close(held, theirs[1].state[theirs[0][0].weight]["exp_avg"], **F32)
    assert_same(ours[0], theirs[0])
    for _, optimizer in (ours, theirs):
        optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    held = ours[1].state[ours[0][0].weight]["step"]
    both_steps(ours, theirs)
    assert engine.planned_steps == 8 and held.item() == 4.0
    both_steps(ours, theirs)
    assert engine.planned_steps == 12 and held.item() == 5.0
    assert_same(ours[0], theirs[0])


def test_a_plan_holds_no_gradient_or_state_tensor() -> None:
    ours, _ = pair("Adam", lr=1e-2)
    for _ in range(3):
        train_step(*ours)
    model, optimizer = ours
    assert optimizer.engine.planned_steps > 0
    weight = model[0].weight
    grad = weakref.ref(weight.grad)
    exp_avg = weakref.ref(optimizer.state[weight]["exp_avg"])
    weight.grad = None
    optimizer.state[weight]["exp_avg"] = optimizer.state[weight]["exp_avg"].clone()
    gc.collect()
    assert grad() is None and exp_avg() is None


def test_small_kernels_run_on_one_thread_and_the_count_comes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a planned step the kernels of at most ``SERIAL_MAX_NUMEL`` elements run on one thread, the
    others on the thread count the step found, which the step leaves as it was. (The kernels called
    from Python: the launcher's own thread counts are tested in test_fused_launcher.py.)"""
    monkeypatch.setattr(launcher, "available", lambda: False)
    runtime = Threads(4)
    monkeypatch.setattr(plans, "_openmp", lambda: (runtime.set, runtime.get))
    monkeypatch.setattr(plans, "SERIAL_MAX_NUMEL", 24)
    ours, theirs = pair("Adam", lr=1e-2)
    both_steps(ours, theirs)  # the full path: no switching
    assert runtime.asked == []
    both_steps(ours, theirs)
    # weight 8×6 (48 elements: 4 threads), then bias 8, weight 3×8 (24) and bias 3 on one
    assert runtime.asked == [1, 4]
    assert runtime.count == 4
    assert ours[1].engine.planned_steps == 4
    assert_same(ours[0], theirs[0])


def test_the_openmp_runtime_found_is_torchs() -> None:
    """The setting is changed through the OpenMP runtime torch uses (``torch.get_num_threads`` follows
    it), and a planned step leaves it as it was."""
    runtime = plans._openmp()
    if runtime is None:
        pytest.skip("no OpenMP runtime found in the process")
    threads = torch.get_num_threads()
    try:
        runtime[0](1)
        assert torch.get_num_threads() == 1
    finally:
        runtime[0](threads)
    ours, theirs = pair("Adam", lr=1e-2)
    torch.set_num_threads(2)
    try:
        for _ in range(3):
            both_steps(ours, theirs)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)
    assert_same(ours[0], theirs[0])


def test_one_thread_or_several_give_the_same_bits(monkeypatch: pytest.MonkeyPatch) -> None:
    results = []
    for limit in (0, 1 << 30):
        monkeypatch.setattr(plans, "SERIAL_MAX_NUMEL", limit)
        model, optimizer = mlp(), None
        optimizer = ol.Adam(model.parameters(), lr=1e-2, engine="fused")
        for _ in range(4):
            train_step(model, optimizer)
        assert optimizer.engine.planned_steps == 12
        results.append([p.detach().clone() for p in model.parameters()])
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)


def test_unwrapped_calls_are_used_only_once_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel calls its C++ code without inductor's wrapper only when tracing the wrapper accounted
    for all it does and the unwrapped calls gave the compiled function's bits; otherwise the planned
    steps call the kernel as before, with the same numbers."""
    monkeypatch.setattr(fused, "_KERNELS", {})
    train_step(*pair("Adam", lr=1e-2)[0])
    ((key, kernel),) = fused._KERNELS.items()  # the configuration the next pairs compile
    assert kernel.unwrapped is not None and len(kernel.unwrapped.calls) == 1
    real_launcher = unwrapped.Unwrapped.launcher

    def off_by_one(self, device):
        launch = real_launcher(self, device)

        def launch_and_spoil(values):
            launch(values)
            values[0].add_(1.0)  # the parameter, as if the unwrapped call had computed it wrongly

        return launch_and_spoil

    monkeypatch.setattr(unwrapped.Unwrapped, "launcher", off_by_one)
    checked = kernels.Kernel(key)
    assert checked.direct is not None and checked.unwrapped is None
    monkeypatch.setattr(fused, "_KERNELS", {key: checked})
    ours, theirs = pair("Adam", lr=1e-2)
    for _ in range(3):
        both_steps(ours, theirs)
    assert list(fused._KERNELS.values()) == [checked]
    assert ours[1].engine.planned_steps == 8
    assert_same(ours[0], theirs[0])


def _call_source(body: str) -> str:
    return f"def call(self, args):\n    a, b, s = args\n    args.clear()\n    {body}\n    return ()\n"


class _Runner:
    """A stand-in for inductor's generated module: ``call`` as its wrapper's source would be, calling
    ``cpp_fused_0`` (a built-in function, as a C++ kernel's Python binding is)."""

    def __init__(self, source: str) -> None:
        namespace = {"cpp_fused_0": torch.lerp, "reinterpret_tensor": lambda t: t}
        exec(source, namespace)  # a test-only stand-in for generated code
        self.call = types.MethodType(namespace["call"], self)


def test_a_wrapper_that_does_more_than_allocate_and_call_kernels_is_not_unwrapped() -> None:
    values = [torch.ones(3), torch.zeros(3), 3]
    order = lambda values: tuple(values)  # noqa: E731 - the wrapper takes the values in their order
    traced = unwrapped.trace(_Runner(_call_source("cpp_fused_0(a, b, s)")).call, order, values, 1)
    assert traced is not None and traced.calls == ((torch.lerp, (0, 1, 2)),) and traced.scratch == ()
    for body in (
        "cpp_fused_0(reinterpret_tensor(a), b, s)",  # a view: a name it may not use
        "cpp_fused_0(a, b, s * 2)",  # a computed size
        "cpp_fused_0(a, b, s); return (b,)",  # a result
        "torch.add(a, b)",  # anything of torch but its dtypes
    ):
        assert unwrapped.trace(_Runner(_call_source(body)).call, order, values, 1) is None


def test_groups_are_planned_each_on_their_own_and_old_groups_plans_are_dropped() -> None:
    """Two groups with their own settings, each planned; a checkpoint load (new group dicts) leaves
    no plan behind for the groups it replaced."""
    models = [mlp(), mlp()]
    ours_model, theirs_model = models
    groups = [
        {"params": list(ours_model[0].parameters()), "lr": 1e-2},
        {"params": list(ours_model[2].parameters()), "lr": 1e-3, "maximize": True},
    ]
    their_groups = [
        {"params": list(theirs_model[0].parameters()), "lr": 1e-2},
        {"params": list(theirs_model[2].parameters()), "lr": 1e-3, "maximize": True},
    ]
    ours = ol.Adam(groups, engine="fused")
    theirs = torch.optim.Adam(their_groups, foreach=False)
    for _ in range(3):
        both_steps((ours_model, ours), (theirs_model, theirs))
    assert ours.engine.planned_steps == 8 and len(ours.engine._plans) == 2
    for _ in range(2):
        ours.load_state_dict(copy.deepcopy(ours.state_dict()))
        theirs.load_state_dict(copy.deepcopy(theirs.state_dict()))
        both_steps((ours_model, ours), (theirs_model, theirs))
    assert set(ours.engine._plans) == {id(g) for g in ours.param_groups}
    assert_same(ours_model, theirs_model)


def test_without_a_guard_or_an_openmp_runtime_nothing_is_planned_or_switched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(plans, "_tensor_guards", lambda tensors: None)
    ours, theirs = pair("Adam", lr=1e-2)
    for _ in range(3):
        both_steps(ours, theirs)
    assert ours[1].engine.planned_steps == 0 and ours[1].engine.counts == {"fused": 12, "eager": 0}
    assert_same(ours[0], theirs[0])
    monkeypatch.undo()
    monkeypatch.setattr(plans, "_openmp", lambda: None)
    ours, theirs = pair("Adam", lr=1e-2)
    threads = torch.get_num_threads()
    for _ in range(3):
        both_steps(ours, theirs)
    assert ours[1].engine.planned_steps == 8 and torch.get_num_threads() == threads
    assert_same(ours[0], theirs[0])


def test_a_step_under_inference_mode_or_autocast_takes_the_full_path() -> None:
    """Their dispatch keys differ, so a plan made outside does not pass: the full path steps, exactly,
    and plans for what it saw."""
    ours, theirs = pair("Adam", lr=1e-2)
    for _ in range(2):
        both_steps(ours, theirs)
    before = ours[1].engine.planned_steps
    for model, optimizer in (ours, theirs):
        optimizer.zero_grad()
        model(DATA).square().mean().backward()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            optimizer.step()
    assert ours[1].engine.planned_steps == before
    for model, optimizer in (ours, theirs):
        optimizer.zero_grad()
        model(DATA).square().mean().backward()
        with torch.inference_mode():
            optimizer.step()
    assert ours[1].engine.planned_steps == before
    both_steps(ours, theirs)  # (planned under inference mode: the full path plans again)
    both_steps(ours, theirs)
    assert ours[1].engine.planned_steps == before + 4
    for _ in range(3):  # always under autocast: planned under it, and checked under it
        for model, optimizer in (ours, theirs):
            optimizer.zero_grad()
            model(DATA).square().mean().backward()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                optimizer.step()
    assert ours[1].engine.planned_steps == before + 4 + 8
    assert_same(ours[0], theirs[0])


def _elementwise_optimizers() -> list[str]:
    return sorted(
        name
        for name in ol.__all__
        if isinstance(getattr(ol, name), type)
        and issubclass(getattr(ol, name), torch.optim.Optimizer)
        and getattr(getattr(ol, name), "elementwise", False)
    )


def _five_steps(name: str, dtype: torch.dtype, planned: bool) -> tuple[list[torch.Tensor], int, bool]:
    """Five steps of three small parameters on two threads: the parameters, the planned parameter
    steps, and whether the group's plan (if any) called its kernels through the launcher, side by side."""
    generator = torch.Generator().manual_seed(0)
    params = [nn.Parameter(torch.randn(s, generator=generator).to(dtype)) for s in ((40, 3), (7,), (300,))]
    optimizer = getattr(ol, name)(params, engine="fused")
    if callable(getattr(optimizer, "train", None)):
        optimizer.train()  # Schedule-Free
    if not planned:
        optimizer.engine._plans = _NoPlans()
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # (so that the launcher runs the kernels side by side)
    try:
        for _ in range(5):
            for p in params:
                p.grad = torch.randn(p.shape, generator=generator).to(dtype)
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    launched = all(plan.launched and plan.side_by_side for plan in optimizer.engine._plans.values())
    return [p.detach().clone() for p in params], optimizer.engine.planned_steps, launched


class _NoPlans(dict):
    """An engine's plan table that keeps nothing: every step takes the full path."""

    def __setitem__(self, key, value) -> None:
        pass


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("name", _elementwise_optimizers())
def test_planned_steps_give_the_full_paths_bits_for_every_elementwise_optimizer(
    name: str, dtype: torch.dtype
) -> None:
    """Planned or not, the same kernels on the same operands: the same bits. Rules with statistics
    (LAMB, Prodigy) are never planned."""
    planned, planned_steps, launched = _five_steps(name, dtype, planned=True)
    full, _, _ = _five_steps(name, dtype, planned=False)
    assert all(torch.equal(a, b) for a, b in zip(planned, full, strict=True))
    assert planned_steps == (0 if getattr(ol, name).statistics is not None else 12)
    assert launched  # every plan's kernels called by the launcher, side by side
    with pytest.MonkeyPatch.context() as patch:  # and from Python, one after another
        patch.setattr(launcher, "available", lambda: False)
        from_python, _, _ = _five_steps(name, dtype, planned=True)
    assert all(torch.equal(a, b) for a, b in zip(from_python, full, strict=True))


def test_planned_steps_give_the_full_paths_bits() -> None:
    """The default run's share of the test above: Adam in float32 and bfloat16."""
    for dtype in (torch.float32, torch.bfloat16):
        planned, planned_steps, launched = _five_steps("Adam", dtype, planned=True)
        full, _, _ = _five_steps("Adam", dtype, planned=False)
        assert planned_steps == 12 and launched
        assert all(torch.equal(a, b) for a, b in zip(planned, full, strict=True))
