"""How to scale an axis for the values it shows: log or linear, where to put log ticks, where to mark
what diverged. Shared by every figure and its PNG twin, so both choose alike."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["all_positive", "auto_log", "finite_values", "log_dtick", "lr_axis", "top_of"]


def finite_values(*arrays: ArrayLike) -> np.ndarray:
    """Every finite value of ``arrays``, flattened."""
    vals = np.concatenate([np.asarray(a, dtype=float).ravel() for a in arrays]) if arrays else np.zeros(0)
    return vals[np.isfinite(vals)]


def auto_log(*arrays: ArrayLike, decades: float = 2.0) -> bool:
    """Log scale when every finite value is positive and they span more than ``decades`` decades."""
    vals = finite_values(*arrays)
    if vals.size == 0 or np.any(vals <= 0):
        return False
    return bool(math.log10(vals.max()) - math.log10(vals.min()) > decades)


def all_positive(*arrays: ArrayLike) -> bool:
    vals = finite_values(*arrays)
    return bool(vals.size and np.all(vals > 0))


def log_dtick(*arrays: ArrayLike, max_ticks: int = 8) -> int | str | None:
    """Plotly ``dtick`` for a log axis over these values.

    A labelled tick every n decades (n = 1, 2, 3, 5, 10, 20, ...; about ``max_ticks`` ticks) when they
    span at least 1.5 decades; ``"D2"`` (labels at 1, 2, 5 × 10^k) for 0.7 to 1.5 decades; ``None``
    (Plotly's choice) below that or without positive values.
    """
    vals = finite_values(*arrays)
    vals = vals[vals > 0]
    if vals.size == 0:
        return None
    span = math.log10(vals.max()) - math.log10(vals.min())
    if span < 0.7:
        return None
    if span < 1.5:
        return "D2"
    want = span / max(1, max_ticks)
    for nice in (1, 2, 3, 5, 10, 20, 25, 50, 100):
        if nice >= want:
            return nice
    return 100


def lr_axis(*lrs: ArrayLike) -> tuple[bool, tuple[float, float] | None]:
    """How to draw learning rates: ``(log, range)`` — log when they span more than 1.3 decades, else a
    linear axis from 0 to a little above the largest (a constant lr is not drawn as the middle of an
    arbitrary range around it)."""
    if auto_log(*lrs, decades=1.3):
        return True, None
    vals = finite_values(*lrs)
    if vals.size == 0 or np.any(vals < 0):
        return False, None
    top = float(vals.max())
    return False, (0.0, top * 1.15 if top > 0 else 1.0)


def top_of(values: list[np.ndarray], log: bool) -> float:
    """A y just above every finite value (where diverged runs are marked)."""
    vals = finite_values(*values)
    if vals.size == 0:
        return 1.0
    hi, lo = float(vals.max()), float(vals.min())
    if log and lo > 0:
        decades = math.log10(hi) - math.log10(lo)
        top = math.log10(hi) + (0.08 * decades if decades > 0 else 0.3)
        return 10.0 ** min(top, 300.0)
    return min(hi + 0.08 * (hi - lo if hi > lo else abs(hi) or 1.0), 1e300)
