"""The eager engine's planned runs (optim/engine/run_plans.py): after a step, the runs of small
tensors are kept as a plan, checked at the next step in one guard call plus the state keys and the
shared 0-d values, and evaluated at once — bit for bit the runs the full path forms; anything the
plan does not cover takes the full path, with torch.optim's numbers, and is planned again."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch

import plan_cases
from optimlab.optim.engine import run_plans
from parity_cases import CASES, COMPLEX, DTYPES, PARITY, build_pair, run
from plan_cases import both_steps, new_parameter_step, replace_first_weight_storage, transposed_gradient_step

F32 = {"rtol": 2e-5, "atol": 1e-7}
ELEMENTWISE_CASES = [
    (name, variant, dtype)
    for name, variant in CASES
    if PARITY[name].ours.elementwise and not PARITY[name].ours.sparse_entries
    for dtype in variant.dtypes
    if dtype != COMPLEX  # complex parameters are sliced, never gathered
]


def _unplanned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run_plans.RunPlan, "replay", lambda self, runs, params, grads: None)


def _snapshot(optimizer: torch.optim.Optimizer, params: list[torch.Tensor]) -> list[torch.Tensor]:
    state = [v for p in params for v in optimizer.state[p].values() if isinstance(v, torch.Tensor)]
    return [t.detach().clone() for t in (*params, *state)]


@pytest.mark.parametrize(
    ("entry", "variant", "dtype"),
    ELEMENTWISE_CASES,
    ids=[f"{n}-{v.name}-{d}" for n, v, d in ELEMENTWISE_CASES],
)
def test_planned_runs_match_the_full_path_bit_for_bit(
    entry: str, variant, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parity table (every elementwise optimizer and flag, several groups, gradients that skip
    steps, so that parameters' counters part and plans fail): planned, the engine's bits."""
    results, engines = [], []
    for planned in (False, True):
        with monkeypatch.context() as patch:
            if not planned:
                _unplanned(patch)
            _, _, ours, params = build_pair(entry, variant, DTYPES[dtype], "eager")
            run(ours, params)
        results.append(_snapshot(ours, params))
        engines.append(ours.engine)
    assert len(results[0]) == len(results[1])
    for a, b in zip(*results, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b) or torch.equal(a.nan_to_num(), b.nan_to_num())
    assert engines[0].planned_steps == 0 and engines[1].planned_steps > 0


def pair(name: str = "Adam", **kwargs):
    return plan_cases.pair(name, engine="eager", **kwargs)


def assert_same(ours, theirs) -> None:
    for x, y in zip(ours[0].parameters(), theirs[0].parameters(), strict=True):
        torch.testing.assert_close(x.detach(), y.detach(), **F32)
    for x, y in zip(ours[0].parameters(), theirs[0].parameters(), strict=True):
        for key, value in theirs[1].state[y].items():
            torch.testing.assert_close(ours[1].state[x][key], value, **F32)


@pytest.mark.parametrize(("name", "kwargs"), [("Adam", {"lr": 1e-2}), ("SGD", {"lr": 0.1, "momentum": 0.9})])
def test_steps_after_the_first_are_planned_with_torchs_numbers(name: str, kwargs: dict) -> None:
    """Fresh gradients every step do not stop the plan (it checks metadata, not identities). SGD's
    momentum buffers appear on its first step, whose runs were formed without them: its second
    step is planned, and the plan runs from the third."""
    ours, theirs = pair(name, **kwargs)
    for _ in range(5):
        both_steps(ours, theirs)
    assert_same(ours, theirs)
    assert ours[1].engine.planned_steps == 4 * (4 if name == "Adam" else 3)


def test_what_the_plan_does_not_cover_goes_the_full_way_and_plans_again() -> None:
    """A gradient and a state entry of another layout, one parameter's step
    counter set back (its run's shared value), a state entry removed, an added parameter: each step
    is taken by the full path with torch's numbers, and the next ordinary one is planned again."""
    ours, theirs = pair("Adam", lr=1e-2)
    both_steps(ours, theirs)
    engine = ours[1].engine

    def planned_during(change) -> int:
        before = engine.planned_steps
        change()
        assert_same(ours, theirs)
        return engine.planned_steps - before

    assert planned_during(lambda: transposed_gradient_step(ours, theirs)) == 0
    # the plan made after that step has its gradient's layout: the next step plans anew
    assert planned_during(lambda: both_steps(ours, theirs)) == 0
    assert planned_during(lambda: both_steps(ours, theirs)) == 4

    def state_of(side, index: int) -> dict:
        return side[1].state[list(side[0].parameters())[index]]

    def transposed_state() -> None:
        for side in (ours, theirs):
            state = state_of(side, 0)  # the first weight: the same values, another layout
            state["exp_avg"] = state["exp_avg"].t().contiguous().t()
        both_steps(ours, theirs)

    assert planned_during(transposed_state) == 0
    both_steps(ours, theirs)

    def counter_set_back() -> None:
        for side in (ours, theirs):
            state_of(side, 2)["step"] = torch.tensor(1.0)
        both_steps(ours, theirs)

    assert planned_during(counter_set_back) == 0
    # planned from then on, with that parameter in a run of its own
    assert planned_during(lambda: both_steps(ours, theirs)) == 4

    def entry_removed() -> None:
        for side in (ours, theirs):
            state_of(side, 3).clear()  # as if never stepped: both make its state anew
        both_steps(ours, theirs)

    assert planned_during(entry_removed) == 0

    assert planned_during(lambda: new_parameter_step(ours, theirs)) == 0


def test_replaced_tensors_are_the_ones_stepped_and_a_plan_holds_none() -> None:
    """The plan keeps no tensor: a parameter's ``.data`` swapped for other storage and a state entry
    replaced by a copy are written where they are now; a dropped gradient and state entry are freed."""
    ours, theirs = pair("Adam", lr=1e-2)
    for _ in range(2):
        both_steps(ours, theirs)
    replace_first_weight_storage(ours, theirs)
    held = ours[1].state[ours[0][0].weight]["exp_avg"]
    storage = ours[0][0].weight.data_ptr()
    both_steps(ours, theirs)
    assert ours[1].engine.planned_steps == 8
    assert ours[0][0].weight.data_ptr() == storage
    assert held is ours[1].state[ours[0][0].weight]["exp_avg"]
    assert_same(ours, theirs)
    del held
    weight = ours[0][0].weight
    grad = weakref.ref(weight.grad)
    exp_avg = weakref.ref(ours[1].state[weight]["exp_avg"])
    weight.grad = None
    ours[1].state[weight]["exp_avg"] = ours[1].state[weight]["exp_avg"].clone()
    gc.collect()
    assert grad() is None and exp_avg() is None


def test_state_that_appears_later_is_read() -> None:
    """SGD without momentum keeps no state; momentum switched on later (a momentum schedule) makes
    the buffers, and the runs planned without them must not keep starting them afresh."""
    ours, theirs = pair("SGD", lr=0.1, momentum=0.0)
    for _ in range(2):
        both_steps(ours, theirs)
    for _, optimizer in (ours, theirs):
        optimizer.param_groups[0]["momentum"] = 0.9
    for _ in range(3):
        both_steps(ours, theirs)
    assert_same(ours, theirs)
    assert ours[1].engine.planned_steps >= 4
