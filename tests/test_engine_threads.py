"""Small elementwise work runs on the calling thread alone (optim/engine/threads.py): the eager
engine's runs of gathered small tensors, as torch's own ops on each of them do; the thread count
comes back afterwards, also when the work raises; slices of large tensors keep it."""

from __future__ import annotations

import pytest
import torch

import optimlab.optim as ol
from optimlab.optim.engine import chunks, eager, threads
from plan_cases import Threads


def test_one_thread_sets_one_and_restores_even_on_error(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = Threads(3)
    monkeypatch.setattr(threads, "openmp", lambda: (runtime.set, runtime.get))
    with threads.one_thread():
        assert runtime.count == 1
    assert runtime.asked == [1, 3]
    with pytest.raises(ZeroDivisionError), threads.one_thread():
        assert runtime.count == 1
        _ = 1 / 0
    assert runtime.count == 3


@pytest.mark.parametrize("runtime", [None, Threads(1)], ids=["no runtime", "one thread already"])
def test_one_thread_changes_nothing_it_need_not(
    runtime: Threads | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = None if runtime is None else (runtime.set, runtime.get)
    monkeypatch.setattr(threads, "openmp", lambda: found)
    with threads.one_thread():
        pass
    assert runtime is None or runtime.asked == []


def test_the_runtime_found_is_torchs() -> None:
    runtime = threads.openmp()
    if runtime is None:
        pytest.skip("no OpenMP runtime found in the process")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with threads.one_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_eager_runs_are_evaluated_on_one_thread_and_slices_are_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adam on two small tensors (one run) and one larger than a slice: the run's rule call sees one
    thread, the slices the step's count, and the step leaves the count as it found it."""
    runtime = Threads(2)
    monkeypatch.setattr(threads, "openmp", lambda: (runtime.set, runtime.get))
    monkeypatch.setattr(chunks, "CHUNK_NUMEL", 64)
    monkeypatch.setattr(chunks, "RUN_NUMEL", 64)
    seen: list[tuple[str, int]] = []
    evaluate, in_chunks = chunks.SmallTensorRuns._evaluate, eager.step_in_chunks

    def _evaluate(runs, run):
        seen.append(("run", runtime.count))
        return evaluate(runs, run)

    def step_in_chunks(*args, **kwargs):
        seen.append(("slices", runtime.count))
        return in_chunks(*args, **kwargs)

    monkeypatch.setattr(chunks.SmallTensorRuns, "_evaluate", _evaluate)
    monkeypatch.setattr(eager, "step_in_chunks", step_in_chunks)
    torch.manual_seed(0)
    params = [torch.randn(5, 3), torch.randn(7), torch.randn(200)]
    reference = [p.clone() for p in params]
    ours = ol.Adam(params, lr=1e-2, engine="eager")
    theirs = torch.optim.Adam(reference, lr=1e-2, foreach=False)
    for _ in range(3):
        for p, q in zip(params, reference, strict=True):
            p.grad = torch.randn_like(p)
            q.grad = p.grad.clone()
        ours.step()
        theirs.step()
    assert ("run", 1) in seen and ("slices", 2) in seen
    assert {count for kind, count in seen if kind == "run"} == {1}
    assert {count for kind, count in seen if kind == "slices"} == {2}
    assert runtime.count == 2
    for p, q in zip(params, reference, strict=True):
        torch.testing.assert_close(p, q, rtol=2e-5, atol=1e-7)
