"""Arrays as the figures take them: validated float arrays, gaps for non-finite values, subsampling.

Conventions of every figure: a non-finite loss (``nan``, ``±inf``) means the run diverged; statistics
(:func:`optimlab.lab.stats.quantiles`) count it as ``+inf`` (worse than any finite value), and the
spread across seeds is the inter-quartile range (numpy's "linear" rule). A figure draws a non-finite
value as a gap.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["finite_list", "float_array", "gaps", "per_point", "subsample"]


def float_array(value: ArrayLike, name: str) -> np.ndarray:
    """``value`` as a float array; ``ValueError`` naming ``name`` when it is not numeric."""
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {type(value).__name__}") from exc


def per_point(value: ArrayLike | None, name: str, seeds: int, points: int) -> np.ndarray | None:
    """``value`` as a [seeds, points] array; a 1-D [points] array is shared by all seeds."""
    if value is None:
        return None
    arr = float_array(value, name)
    if arr.ndim == 1 and arr.shape[0] == points:
        return np.broadcast_to(arr, (seeds, points)).copy()
    if arr.shape == (seeds, points):
        return arr
    raise ValueError(f"{name} must have shape ({points},) or ({seeds}, {points}), got {arr.shape}")


def gaps(values: ArrayLike, dtype: type = np.float64) -> np.ndarray:
    """``values`` with every non-finite value as NaN (a gap in Plotly and matplotlib). float32 halves
    what Plotly embeds where its precision is plenty (coordinates, contour heights); a value too large
    for it becomes a gap too."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(over="ignore"):
        out = np.where(np.isfinite(v), v, np.nan).astype(dtype)
    return np.where(np.isfinite(out), out, np.nan).astype(dtype)


def finite_list(values: ArrayLike, digits: int = 6) -> list[float | None]:
    """A flat list of floats rounded to ``digits`` significant digits, ``None`` for non-finite values.

    Plotly draws ``None`` as a gap, and the rounding keeps the embedded JSON small.
    """
    flat = np.asarray(values, dtype=float).ravel()
    return [float(f"{v:.{digits}g}") if math.isfinite(v) else None for v in flat.tolist()]


def subsample(n: int, max_points: int) -> np.ndarray:
    """At most ``max_points`` evenly spread indices into ``range(n)``, always the first and the last."""
    if n <= 0:
        return np.zeros(0, dtype=int)
    if max_points < 2:
        raise ValueError(f"max_points must be at least 2, got {max_points}")
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max_points)).astype(int))
