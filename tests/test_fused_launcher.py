"""A planned step's kernel calls made by one C++ call (``optimlab/optim/engine/launcher.py``): the bits
of the kernels called from Python one after another, small kernels side by side only where no operand
a kernel writes shares memory with another, the thread count left as it was, and the Python calls
wherever the launcher or a kernel's entry point is missing or fails its check.

Small models and the Adam/SGD configurations the other fused tests compile (inductor caches them).
"""

from __future__ import annotations

import ctypes
import dataclasses

import pytest
import torch
from torch import nn

import optimlab.optim as ol
from optimlab.optim.engine import launcher, plans


@pytest.fixture(autouse=True)
def two_threads():
    """Two OpenMP threads (side by side needs more than one), whatever the machine."""
    if not launcher.available():
        pytest.skip("the launcher cannot be built here")
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def _steps(
    params: list[nn.Parameter],
    name: str = "Adam",
    steps: int = 4,
    between=None,
    **kwargs,
) -> tuple[torch.optim.Optimizer, list[bool]]:
    """``steps`` fused steps with seeded gradients (``between(optimizer, step)`` before each); the
    optimizer and, per step, whether it ran side by side (``None`` when it was not launched)."""
    generator = torch.Generator().manual_seed(0)
    optimizer = getattr(ol, name)(params, engine="fused", **kwargs)
    side_by_side = []
    for step in range(steps):
        for p in [p for group in optimizer.param_groups for p in group["params"]]:
            p.grad = torch.randn(p.shape, generator=generator)
        if between is not None:
            between(optimizer, step)
        optimizer.step()
        group_plans = list(optimizer.engine._plans.values())
        side_by_side.append(
            None
            if not group_plans or not all(p.launched for p in group_plans)
            else group_plans[0].side_by_side
        )
    return optimizer, side_by_side


def _parameters(shapes=((40, 3), (7,), (300,), (50, 10))) -> list[nn.Parameter]:
    generator = torch.Generator().manual_seed(1)
    return [nn.Parameter(torch.randn(s, generator=generator)) for s in shapes]


def _from_python(monkeypatch: pytest.MonkeyPatch, make, **kwargs):
    """The same steps with the kernels called from Python (the launcher off): the parameters."""
    with monkeypatch.context() as patch:
        patch.setattr(launcher, "available", lambda: False)
        params = make()
        optimizer, launched = _steps(params, **kwargs)
        assert launched[-1] is None and optimizer.engine.planned_steps > 0
    return [p.detach().clone() for p in params]


def _assert_same_bits(ours: list[torch.Tensor], theirs: list[torch.Tensor]) -> None:
    assert all(torch.equal(a.detach(), b) for a, b in zip(ours, theirs, strict=True))


@pytest.mark.parametrize(("name", "kwargs"), [("Adam", {"lr": 1e-2}), ("SGD", {"lr": 0.1, "momentum": 0.9})])
def test_launched_steps_give_the_python_calls_bits(
    monkeypatch: pytest.MonkeyPatch, name: str, kwargs: dict
) -> None:
    """Small kernels side by side, a large one (over ``SERIAL_MAX_NUMEL``, here 128) on both threads
    after them: the bits of the kernels called one after another from Python, and the thread count
    comes back."""
    monkeypatch.setattr(plans, "SERIAL_MAX_NUMEL", 128)
    params = _parameters()
    optimizer, side_by_side = _steps(params, name, **kwargs)
    first_planned = 1 if name == "Adam" else 2  # (SGD's momentum buffer appears on its first step)
    assert side_by_side == [None] * first_planned + [True] * (4 - first_planned)
    assert optimizer.engine.planned_steps == 4 * (4 - first_planned)
    assert torch.get_num_threads() == 2
    _assert_same_bits(params, _from_python(monkeypatch, _parameters, name=name, **kwargs))


def test_groups_are_launched_each_with_their_own_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    def make():
        params = _parameters()
        return [{"params": params[:2], "lr": 1e-2}, {"params": params[2:], "lr": 1e-3, "maximize": True}]

    groups = make()
    optimizer, side_by_side = _steps(groups)
    assert len(optimizer.engine._plans) == 2 and side_by_side[1:] == [True] * 3
    assert all(plan.launched for plan in optimizer.engine._plans.values())
    with monkeypatch.context() as patch:
        patch.setattr(launcher, "available", lambda: False)
        theirs = make()
        _steps(theirs)
    for ours_group, their_group in zip(groups, theirs, strict=True):
        _assert_same_bits(ours_group["params"], [p.detach() for p in their_group["params"]])


def _overlapping_views() -> list[nn.Parameter]:
    """Two parameters sharing 20 elements of one buffer, and one of their own."""
    buffer = torch.randn(100, generator=torch.Generator().manual_seed(2))
    return [nn.Parameter(buffer[:60]), nn.Parameter(buffer[40:]), nn.Parameter(torch.ones(30))]


def test_parameters_sharing_memory_are_stepped_one_after_another(monkeypatch: pytest.MonkeyPatch) -> None:
    """Overlapping parameters: the launcher calls the kernels in order, as Python does (the shared
    elements take both steps, the second on the first's result)."""
    params = _overlapping_views()
    _, side_by_side = _steps(params)
    assert side_by_side[1:] == [False] * 3
    _assert_same_bits(params, _from_python(monkeypatch, _overlapping_views))


def test_operands_made_to_share_memory_after_planning_are_seen_at_each_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The guard checks metadata, not memory: a state entry shared by two parameters, then a gradient
    that is another parameter's memory, each set after the plan was made, make that step run in order;
    once they are apart again the kernels run side by side again. Bits as from Python throughout."""

    def between(optimizer, step) -> None:
        first, second = optimizer.param_groups[0]["params"][:2]
        if step == 2:  # (a view: the same tensor twice in a group is never planned)
            optimizer.state[second]["exp_avg"] = optimizer.state[first]["exp_avg"].view(32)
        if step == 3:
            optimizer.state[second]["exp_avg"] = optimizer.state[second]["exp_avg"].clone()
        if step == 4:
            first.grad = second.detach()  # (same shape): read by one kernel, written by another
        # step 5: fresh gradients again

    def make() -> list[nn.Parameter]:
        return _parameters(((32,), (32,), (5,)))

    params = make()
    optimizer, side_by_side = _steps(params, steps=6, between=between)
    assert side_by_side == [None, True, False, True, False, True]
    assert optimizer.engine.planned_steps == 15
    _assert_same_bits(params, _from_python(monkeypatch, make, steps=6, between=between))


def test_a_kernel_that_may_touch_shared_state_runs_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inductor's integer division helpers use a global flag, so a kernel whose code calls them (or
    keeps any static state) is never run side by side; the others still are."""
    source = 'extern "C" void kernel(const int64_t* in_ptr0, int64_t* out_ptr0, const int64_t ks0) {\n%s\n}'
    assert launcher._SHARED_STATE.search(source % "out_ptr0[0] = in_ptr0[0] * 2;") is None
    for body in (
        "out_ptr0[0] = floor_divide_integral(in_ptr0[0], ks0);",
        "out_ptr0[0] = mod(in_ptr0[0], ks0);",
        "out_ptr0[0] = remainder_integral(in_ptr0[0], ks0);",
        "static int calls = 0; out_ptr0[0] = ++calls;",
    ):
        assert launcher._SHARED_STATE.search(source % body) is not None
    real_entry = launcher.entry
    monkeypatch.setattr(launcher, "entry", lambda k: dataclasses.replace(real_entry(k), parallel_safe=False))
    params = _parameters()
    _, side_by_side = _steps(params)
    assert side_by_side[1:] == [False] * 3
    assert torch.get_num_threads() == 2
    monkeypatch.undo()
    _assert_same_bits(params, _from_python(monkeypatch, _parameters))


def test_an_entry_point_is_used_only_once_it_gives_the_unwrapped_calls_bits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An entry point that does not step the probe (libc's ``getpid``, which ignores its arguments)
    is refused, and the plan calls the kernels from Python, with their bits."""
    optimizer, _ = _steps(_parameters(), steps=2)
    (plan,) = optimizer.engine._plans.values()
    (kernel,) = plan.kernels
    found = launcher.entry(kernel)
    assert found is not None and found.parallel_safe
    assert launcher._gives_the_unwrapped_bits(kernel, found)
    getpid = ctypes.cast(ctypes.CDLL(None).getpid, ctypes.c_void_p).value
    assert not launcher._gives_the_unwrapped_bits(kernel, dataclasses.replace(found, address=getpid))
    monkeypatch.setattr(launcher, "_ENTRIES", type(launcher._ENTRIES)())
    monkeypatch.setattr(launcher, "_find_entry", lambda k: dataclasses.replace(found, address=getpid))
    params = _parameters()
    optimizer, side_by_side = _steps(params)
    assert side_by_side == [None] * 4 and optimizer.engine.planned_steps == 12
    monkeypatch.undo()
    _assert_same_bits(params, _from_python(monkeypatch, _parameters))


def test_without_the_launcher_the_kernels_are_called_from_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """A build or load that fails leaves no launcher, and planned steps go on as before."""
    from torch._inductor.codecache import CppPythonBindingsCodeCache

    def fail(*args, **kwargs):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(CppPythonBindingsCodeCache, "load", fail)
    assert launcher._extension.__wrapped__() is None
    monkeypatch.setattr(launcher, "_extension", launcher._extension.__wrapped__)
    assert not launcher.available()
    params = _parameters()
    optimizer, side_by_side = _steps(params)
    assert side_by_side == [None] * 4 and optimizer.engine.planned_steps == 12
    reference = _parameters()
    torch_adam = torch.optim.Adam(reference, foreach=False)
    generator = torch.Generator().manual_seed(0)
    for _ in range(4):
        for p in reference:
            p.grad = torch.randn(p.shape, generator=generator)
        torch_adam.step()
    for a, b in zip(params, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_entry_points_taking_anything_but_pointers_and_64_bit_integers_are_not_used() -> None:
    """The launcher passes every argument as a 64-bit word: a pointer or an int64 is passed alike, a
    float or a 32-bit integer is not (the generated signature decides)."""
    for passed_alike in (
        "const float*",
        "double*",
        "const at::BFloat16*",
        "const int64_t",
        "int64_t",
        "bool*",
    ):
        assert launcher._WORD_TYPES.fullmatch(passed_alike)
    for not_alike in ("float", "const double", "int32_t", "const int", "bool"):
        assert launcher._WORD_TYPES.fullmatch(not_alike) is None
