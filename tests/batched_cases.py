"""What the batched-replica tests share: a comparison's stored runs, and the tolerance of batched
against sequential numbers (float32 rounding of vmapped ops)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from optimlab.lab.protocol import Comparison, run_comparison
from optimlab.lab.runner import RunResult
from optimlab.lab.storage import Store

RTOL = 2e-5


def stored_runs(path: Path, comparison: Comparison, replicas: str) -> dict[str, RunResult]:
    """Run ``comparison`` into a new store at ``path`` (``replicas`` "auto" or "off"); its runs by key."""
    with Store(path) as store:
        run_comparison(comparison, store, replicas=replicas)  # type: ignore[arg-type]
        return {run.key: run.result for run in store.runs()}


def assert_close(a: float, b: float) -> None:
    """Equal infinities, else equal within :data:`RTOL` (and 1e-7 absolute)."""
    if math.isinf(a) or math.isinf(b):
        assert a == b
    else:
        assert a == pytest.approx(b, rel=RTOL, abs=1e-7)


def assert_same_curves(run: RunResult, seq: RunResult) -> None:
    """A batched run's lr schedule, per-step losses and evaluations are the sequential run's:
    learning rates to 1e-12, losses and metrics within :data:`RTOL`, the same evaluation steps."""
    assert run.lrs == pytest.approx(seq.lrs, rel=1e-12)
    assert len(run.losses) == len(seq.losses)
    for a, b in zip(run.losses, seq.losses, strict=True):
        assert_close(a, b)
    assert [e["step"] for e in run.evals] == [e["step"] for e in seq.evals]
    for ours, theirs in zip(run.evals, seq.evals, strict=True):
        assert ours.keys() == theirs.keys()
        for metric in ours.keys() - {"wall_s"}:
            assert_close(ours[metric], theirs[metric])
