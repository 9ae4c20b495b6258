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
